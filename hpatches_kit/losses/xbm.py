"""Cross-batch memory (XBM, Wang et al., "Cross-Batch Memory for Embedding Learning", CVPR 2020), in ``keras.ops``.

:class:`CrossBatchMemory` keeps the embeddings and labels of the last ``M`` training samples in a FIFO ring of
non-trainable ``keras.Variable`` s of static shape (TPU/XLA-friendly): every training step, *after* the loss
has read it, the current (global) batch is written over the oldest entries, without gradient.
:class:`XBMLoss` mines every query of the batch against **batch + memory**: the reference set is the current
batch (with gradient) followed by the memory's valid entries (constants), so each query sees up to ``B + M``
candidates -- the hard negatives of a large batch at the memory cost of a small one. Before step ``start``
(the paper's warm-up; the embeddings drift too fast at first) the memory is neither read nor written and the
loss is the in-batch loss.

Losses over the reference set (``q`` = queries = the batch, ``r`` = references, ``P`` = same label and not the
query itself, ``N`` = other label):

* ``"contrastive"`` -- the XBM paper's on cosine similarities ``s`` of L2-normalised embeddings, margin
  ``beta = 0.5``: ``1/n sum_q [ sum_{r in P} (1 - s_qr) + sum_{r in N} max(0, s_qr - beta) ]`` (the paper's
  formula, also the Image Retrieval Transformer's; the authors' code ``ret_benchmark/losses/contrastive_loss.py``
  sums ``s_qr`` instead of ``s_qr - beta`` over the active negatives: same gradient, value higher by ``beta``
  per active negative).
* ``"batch-hard"`` -- ``mean_q max(0, m + max_{r in P} d_qr - min_{r in N} d_qr)`` (Hermans et al.).
* ``"hardnet"`` -- for each positive pair ``(q, p)`` of the batch, ``max(0, m + d_qp - min(n_q, n_p))`` with
  ``n_q = min_{r in N(q)} d_qr`` (anchor swap; HardNet's loss on arbitrary labels), averaged over pairs.
* ``"infonce"`` -- ``mean_{(q, p in P)} [ logsumexp_{r != q} (s_qr / T) - s_qp / T ]``, ``T = 0.05``.

With an empty memory each equals the in-batch loss (batch-hard, HardNet on labels as
:mod:`hpatches_kit.losses.triplet` / :mod:`hpatches_kit.losses.hardnet` compute them).

**Labels.** This toolkit's S x K batches label tracks ``0 .. S-1`` *in each batch*: with ``batch_labels=True``
(default) the memory stores ``label + step * B`` so that entries of other steps are never positives of the
current batch (they are other tracks; a track drawn again within ``M / B`` steps is, rarely, a false negative,
as in the in-batch losses of a very large batch). Pass ``batch_labels=False`` for labels that are global
class ids (retrieval), which are then compared as they are. ``hpatches-train descriptor --xbm`` does the
latter: its pipelines label every track by its dataset-wide id (``descriptor_dataset(labels="track")``), so a
track drawn again within ``M / B`` steps is a positive of its own memory entries, never a false negative.

**tf.distribute.** The loss gathers the batch of every replica (``ReplicaContext.all_gather``, as
:func:`hpatches_kit.training.mining.GlobalBatchLoss`): every replica mines the *global* batch and writes the
same global batch into its copy of the memory (variables with ``aggregation="only_first_replica"``), and the
value is divided by the number of replicas once, so loss and gradients equal one device's on the whole batch.
Create the loss under ``strategy.scope()`` (``model.compile`` there does).

**Validation.** Keras calls the loss in ``evaluate`` and ``validation_data`` too; pass :class:`XBMCallback`
(``loss.callback()``) to ``fit`` so that validation batches read the memory but never write it (nor count as
steps). The callback can also save the memory every epoch and :func:`restore_memory` puts it back, which
``hpatches-train descriptor --xbm ... --resume`` does.

Examples:
    >>> import numpy as np, keras
    >>> from hpatches_kit.losses import XBMLoss
    >>> loss = XBMLoss("hardnet", memory_size=64, dim=8, start=0)
    >>> y = np.repeat(np.arange(8), 2); x = np.random.default_rng(0).normal(size=(16, 8)).astype("float32")
    >>> _ = loss(y, x); _ = loss(y, x)
    >>> int(loss.memory.count.numpy()), int(loss.memory.steps.numpy())
    (32, 2)

    With ``model.fit`` (any model mapping inputs to ``(B, dim)`` embeddings, S x K batches, no shuffling inside
    a batch)::

        loss = XBMLoss("contrastive", memory_size=8192, dim=128, start=1000)
        model.compile(optimizer="adam", loss=loss)
        model.fit(dataset, epochs=10, validation_data=val, callbacks=[loss.callback()])
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from .base import LabelledLoss
from .distances import DISTANCE_METRICS, check_metric, flat_labels, safe_sqrt

__all__ = ["CrossBatchMemory", "XBMLoss", "XBMCallback", "xbm_loss", "restore_memory", "KINDS"]

PKG = "hpatches_kit.losses"
KINDS = ("contrastive", "batch-hard", "hardnet", "infonce")
DEFAULT_MARGIN = {"contrastive": 0.5, "batch-hard": 1.0, "hardnet": 1.0, "infonce": None}
_BIG = 1e9


def _l2n(x):
    return x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), 1e-12))


def cross_distance(q, r, metric="L2"):
    """``(n, D), (m, D) -> (n, m)`` distances (``"L2"`` with a safe square root, ``"squared-L2"``,
    ``"angular"`` = ``1 - cos``)."""
    if metric == "angular":
        return 1.0 - ops.matmul(_l2n(q), ops.transpose(_l2n(r)))
    d2 = (
        ops.sum(ops.square(q), axis=1)[:, None]
        + ops.sum(ops.square(r), axis=1)[None, :]
        - 2.0 * ops.matmul(q, ops.transpose(r))
    )
    d2 = ops.maximum(d2, 0.0)
    return d2 if metric == "squared-L2" else safe_sqrt(d2)


def xbm_loss(
    q_labels, q, r_labels, r, r_valid, kind="contrastive", margin=None, temperature=0.05, distance_metric="L2"
):
    """One of :data:`KINDS` for queries ``q`` against references ``r`` whose first ``n`` rows are the queries
    themselves (so ``r[i]`` is query ``i`` for ``i < n``; that self pair is never used).

    Args:
        q_labels: ``(n,)`` labels of the queries; q: ``(n, D)`` embeddings.
        r_labels: ``(m,)``; r: ``(m, D)``, ``m >= n``; r_valid: ``(m,)`` bool, which references exist.
        kind, margin, temperature, distance_metric: the loss (module docstring); ``margin=None``: its default.

    Returns:
        A scalar (0 when no query has a positive or a negative).

    Shape:
        ``q`` ``(n, D)``, ``r`` ``(m, D)``.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown XBM loss {kind!r}; expected one of {', '.join(KINDS)}")
    margin = DEFAULT_MARGIN[kind] if margin is None else margin
    n, m = q.shape[0], r.shape[0]
    same = ops.equal(q_labels[:, None], r_labels[None, :])
    not_self = ops.logical_not(ops.equal(ops.arange(n)[:, None], ops.arange(m)[None, :]))
    valid = ops.broadcast_to(r_valid[None, :], (n, m))
    pos = ops.logical_and(ops.logical_and(same, not_self), valid)
    neg = ops.logical_and(ops.logical_not(same), valid)
    zero = ops.zeros((n, m), q.dtype)
    if kind == "contrastive":
        s = ops.matmul(_l2n(q), ops.transpose(_l2n(r)))
        pos_l = ops.sum(ops.where(pos, 1.0 - s, zero), axis=1)
        neg_l = ops.sum(ops.where(neg, ops.relu(s - margin), zero), axis=1)
        return ops.mean(pos_l + neg_l)
    if kind == "infonce":
        s = ops.matmul(_l2n(q), ops.transpose(_l2n(r))) / temperature
        others = ops.logical_and(not_self, valid)
        lse = ops.logsumexp(ops.where(others, s, ops.full_like(s, -_BIG)), axis=1)
        per = ops.where(pos, lse[:, None] - s, zero)
        return ops.sum(per) / ops.maximum(ops.sum(ops.cast(pos, q.dtype)), 1.0)
    d = cross_distance(q, r, distance_metric)
    hardest_neg = ops.min(ops.where(neg, d, ops.full_like(d, _BIG)), axis=1)  # (n,)
    has_neg = ops.any(neg, axis=1)
    if kind == "batch-hard":
        hardest_pos = ops.max(ops.where(pos, d, ops.full_like(d, -_BIG)), axis=1)
        ok = ops.logical_and(ops.any(pos, axis=1), has_neg)
        per = ops.relu(margin + hardest_pos - hardest_neg)
        return ops.sum(ops.where(ok, per, ops.zeros_like(per))) / ops.maximum(ops.sum(ops.cast(ok, q.dtype)), 1.0)
    # hardnet: positive pairs within the batch (the first n references), anchor swap
    dq = d[:, :n]
    hn = hardest_neg
    swap = ops.minimum(hn[:, None], hn[None, :])
    ok = ops.logical_and(pos[:, :n], ops.logical_and(has_neg[:, None], has_neg[None, :]))
    per = ops.relu(margin + dq - swap)
    return ops.sum(ops.where(ok, per, ops.zeros_like(per))) / ops.maximum(ops.sum(ops.cast(ok, q.dtype)), 1.0)


class CrossBatchMemory:
    """The FIFO memory: ``feats`` ``(size, dim)`` float32, ``labels`` ``(size,)`` int32, ``count`` (filled
    entries, <= size), ``ptr`` (next slot to write), ``steps`` (training steps seen) and ``training`` (1: a
    call writes; 0: read only, set by :class:`XBMCallback` during validation) -- all non-trainable
    ``keras.Variable`` s of static shape (``aggregation="only_first_replica"``: under ``tf.distribute`` every
    replica writes the same global batch).

    Args:
        size: ``M``, the number of entries.
        dim: the embedding dimension.
        name: prefix of the variables' names.
    """

    def __init__(self, size: int, dim: int, name: str = "xbm"):
        size, dim = int(size), int(dim)
        if size < 1 or dim < 1:
            raise ValueError(f"XBM memory size and dim must be >= 1, got {size} and {dim}")
        self.size, self.dim = size, dim

        def var(value, dtype, suffix):
            return keras.Variable(
                value, dtype=dtype, trainable=False, aggregation="only_first_replica", name=f"{name}_{suffix}"
            )

        self.feats = var(np.zeros((size, dim), np.float32), "float32", "feats")
        self.labels = var(np.zeros((size,), np.int32), "int32", "labels")
        self.count = var(0, "int32", "count")
        self.ptr = var(0, "int32", "ptr")
        self.steps = var(0, "int32", "steps")
        self.training = var(1, "int32", "training")

    @property
    def variables(self):
        return [self.feats, self.labels, self.count, self.ptr, self.steps, self.training]

    def valid(self):
        """``(size,)`` bool: slots that hold an entry."""
        return ops.arange(self.size) < self.count

    def enqueue(self, feats, labels, write=True):
        """Write ``(n, dim)`` ``feats`` and ``(n,)`` labels over the oldest entries (no gradient); ``write``
        (a boolean tensor) False leaves everything as it is."""
        n = feats.shape[0]
        if n is None or n > self.size:
            raise ValueError(
                f"XBM memory of {self.size} entries cannot hold a batch of {n}: use a memory of at "
                "least one (global) batch"
            )
        write = ops.convert_to_tensor(write)
        idx = (self.ptr + ops.arange(n, dtype="int32")) % self.size
        new_f = ops.scatter_update(self.feats.value, idx[:, None], ops.stop_gradient(ops.cast(feats, "float32")))
        new_l = ops.scatter_update(self.labels.value, idx[:, None], ops.cast(labels, "int32"))
        self.feats.assign(ops.where(write, new_f, self.feats.value))
        self.labels.assign(ops.where(write, new_l, self.labels.value))
        self.ptr.assign(ops.where(write, (self.ptr.value + n) % self.size, self.ptr.value))
        self.count.assign(ops.where(write, ops.minimum(self.count.value + n, self.size), self.count.value))

    def contents(self):
        """``(feats, labels)`` as NumPy, oldest entry first (eager)."""
        c, p = int(self.count.numpy()), int(self.ptr.numpy())
        order = np.arange(c) if c < self.size else (np.arange(self.size) + p) % self.size
        return np.asarray(self.feats.numpy())[order], np.asarray(self.labels.numpy())[order]

    def state(self) -> dict:
        """Every variable's value (NumPy), for :meth:`load_state`."""
        return {v.name.split("_")[-1]: np.asarray(v.numpy()) for v in self.variables}

    def load_state(self, state: dict) -> None:
        """Put :meth:`state` back; a memory of another size/dim raises ``ValueError``."""
        if tuple(np.shape(state["feats"])) != (self.size, self.dim):
            raise ValueError(
                f"XBM state holds a memory of shape {np.shape(state['feats'])}, this one is "
                f"{(self.size, self.dim)} (check --xbm and --dim)"
            )
        for v in self.variables:
            key = v.name.split("_")[-1]
            if key != "training":
                v.assign(np.asarray(state[key]).astype(v.dtype))

    def reset(self) -> None:
        for v in (self.count, self.ptr, self.steps):
            v.assign(0)


def _gather_global(y_true, y_pred):
    """The global batch under ``tf.distribute`` (labels in their own dtype), as ``GlobalBatchLoss``."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        ctx = tf.distribute.get_replica_context()
        if ctx is not None and ctx.num_replicas_in_sync > 1:
            r = ctx.num_replicas_in_sync
            n, rest = y_pred.shape[0], tuple(y_pred.shape[1:])
            labels = ctx.all_gather(ops.reshape(y_true, (-1,)), axis=0)
            emb = ctx.all_gather(y_pred, axis=0)
            if n is not None:  # all_gather loses the static shape: the memory needs it (and XLA/TPU)
                labels, emb = ops.reshape(labels, (-1,)), ops.reshape(emb, (n * r, *rest))
            return labels, emb
    return y_true, y_pred


@keras.saving.register_keras_serializable(package=PKG)
class XBMLoss(LabelledLoss):
    """A batch loss mined over the current batch + a :class:`CrossBatchMemory` (module docstring).

    Args:
        kind: ``"contrastive"`` (XBM's, margin 0.5), ``"batch-hard"``, ``"hardnet"`` or ``"infonce"``.
        memory_size: ``M`` entries (>= the global batch size).
        dim: embedding dimension.
        start: training steps before the memory is used (and filled).
        margin: the loss's margin (``None``: 0.5 contrastive, 1 triplets).
        temperature: InfoNCE's ``T``.
        distance_metric: ``"L2"``, ``"squared-L2"`` or ``"angular"`` (triplet kinds).
        batch_labels: labels are per-batch ids (the S x K pipelines): made unique per step in the memory.
        name, reduction, dtype: as ``keras.losses.Loss``.

    Returns:
        ``loss(y_true, y_pred)``: a scalar, divided by the number of replicas under ``tf.distribute``.

    Shape:
        ``y_true`` ``(B,)`` integer labels, ``y_pred`` ``(B, dim)``; or pair-stacked ``y_pred`` ``(B, 2, dim)``
        (the ViT adapter's image pairs; ``y_true`` ignored, pair ``i`` is class ``i`` of its step).
    """

    def __init__(
        self,
        kind="contrastive",
        memory_size=4096,
        dim=128,
        start=0,
        margin=None,
        temperature=0.05,
        distance_metric="L2",
        batch_labels=True,
        name=None,
        reduction="sum_over_batch_size",
        dtype=None,
    ):
        if kind not in KINDS:
            raise ValueError(f"unknown XBM loss {kind!r}; expected one of {', '.join(KINDS)}")
        if int(start) < 0:
            raise ValueError(f"XBM start must be >= 0, got {start}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if distance_metric not in DISTANCE_METRICS:
            check_metric(distance_metric)
            raise ValueError(f"XBM needs a named distance_metric ({', '.join(DISTANCE_METRICS)})")
        super().__init__(name=name or f"xbm_{kind.replace('-', '_')}", reduction=reduction, dtype=dtype)
        self.kind, self.memory_size, self.dim, self.start = kind, int(memory_size), int(dim), int(start)
        self.margin = None if margin is None else float(margin)
        self.temperature, self.distance_metric, self.batch_labels = (
            float(temperature),
            distance_metric,
            bool(batch_labels),
        )
        self.memory = CrossBatchMemory(self.memory_size, self.dim, name=self.name)

    def call(self, y_true, y_pred):
        labels, emb = _gather_global(flat_labels(y_true), y_pred)
        if len(emb.shape) == 3:  # pair-stacked (B, 2, D) image pairs (the ViT adapter): pair i is class i
            from .embedding import pair_labels

            labels, emb = pair_labels(emb)
        emb = ops.cast(emb, "float32")
        if len(emb.shape) != 2 or emb.shape[-1] != self.dim:
            raise ValueError(f"XBMLoss(dim={self.dim}) got embeddings of shape {tuple(emb.shape)}")
        n = emb.shape[0]
        mem = self.memory
        labels = ops.cast(labels, "int32")
        if self.batch_labels:
            labels = labels + mem.steps.value * n  # unique per step: other steps' tracks are other tracks
        training = ops.equal(mem.training.value, 1)
        active = mem.steps.value >= self.start
        refs = ops.concatenate([emb, ops.stop_gradient(mem.feats.value)], axis=0)
        ref_labels = ops.concatenate([labels, mem.labels.value], axis=0)
        ref_valid = ops.concatenate([ops.ones((n,), "bool"), ops.logical_and(mem.valid(), active)], axis=0)
        value = xbm_loss(
            labels, emb, ref_labels, refs, ref_valid, self.kind, self.margin, self.temperature, self.distance_metric
        )
        mem.enqueue(emb, labels, write=ops.logical_and(training, active))
        mem.steps.assign(mem.steps.value + ops.cast(training, "int32"))
        return value

    def callback(self, directory=None, keep: int = 2):
        """:class:`XBMCallback` for this loss."""
        return XBMCallback(self, directory=directory, keep=keep)

    def get_config(self):
        return {
            **super().get_config(),
            "kind": self.kind,
            "memory_size": self.memory_size,
            "dim": self.dim,
            "start": self.start,
            "margin": self.margin,
            "temperature": self.temperature,
            "distance_metric": self.distance_metric,
            "batch_labels": self.batch_labels,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def memory_file(directory, epoch: int):
    """``<directory>/xbm-epoch-XXXX.npz``: the memory after ``epoch`` epochs."""
    from pathlib import Path

    return Path(directory) / f"xbm-epoch-{int(epoch):04d}.npz"


class XBMCallback(keras.callbacks.Callback):
    """Keeps validation from writing the memory (``on_test_begin/end``) and, with ``directory``, saves the
    memory after every epoch to ``xbm-epoch-XXXX.npz`` (written atomically; the ``keep`` newest kept), which
    :func:`restore_memory` reads on resume.

    Args:
        loss: the :class:`XBMLoss` (or a wrapper of it with ``.loss``).
        directory: where to save (``None``: nothing saved).
        keep: how many epoch files to keep.
    """

    def __init__(self, loss, directory=None, keep: int = 2):
        super().__init__()
        self.xbm = find_xbm(loss)
        if self.xbm is None:
            raise ValueError(f"{loss!r} holds no XBMLoss")
        self.directory, self.keep = directory, int(keep)

    def on_test_begin(self, logs=None):
        self.xbm.memory.training.assign(0)

    def on_test_end(self, logs=None):
        self.xbm.memory.training.assign(1)

    def on_epoch_end(self, epoch, logs=None):
        if self.directory is None:
            return
        from pathlib import Path

        from ..io import atomic_path

        d = Path(self.directory)
        d.mkdir(parents=True, exist_ok=True)
        with atomic_path(memory_file(d, epoch + 1), suffix=".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **self.xbm.memory.state())
        if self.keep > 0:
            for old in sorted(d.glob("xbm-epoch-*.npz"))[: -self.keep]:
                old.unlink(missing_ok=True)


def find_xbm(loss):
    """The :class:`XBMLoss` in ``loss`` (itself or wrapped as ``.loss``), or ``None``."""
    while loss is not None and not isinstance(loss, XBMLoss):
        loss = getattr(loss, "loss", None) if not isinstance(loss, (list, tuple, dict)) else None
    return loss


def restore_memory(loss, directory, epoch: int) -> bool:
    """Load the memory saved after ``epoch`` epochs (:class:`XBMCallback`) into ``loss``'s memory.

    Returns:
        ``True`` when restored, ``False`` when there is no such file (the memory stays empty).

    Raises:
        ValueError: the file holds a memory of another size or dimension.
    """
    xbm = find_xbm(loss)
    f = memory_file(directory, epoch)
    if xbm is None or not f.is_file():
        return False
    with np.load(f) as z:
        xbm.memory.load_state({k: z[k] for k in z.files})
    return True
