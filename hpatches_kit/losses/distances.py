"""Pairwise distances for metric learning, in ``keras.ops`` (backend-portable).

Metrics (names as in tensorflow-addons 0.23):

* ``"L2"`` -- Euclidean distance ``||x_i - x_j||``; computed from the Gram matrix with a *safe* square root:
  exact zeros stay zero and their gradient is zero (never NaN/inf). The diagonal is set to zero.
* ``"squared-L2"`` -- ``||x_i - x_j||^2`` clamped at 0, diagonal zero.
* ``"angular"`` -- ``1 - cos(x_i, x_j)`` after L2-normalising rows (``x / sqrt(max(sum x^2, 1e-12))``),
  clamped below at ``1e-16`` (tfa semantics: the diagonal is *not* forced to zero).
* any callable ``f(embeddings) -> (B, B)``.

Squared norms are read off the Gram matrix's own diagonal, so two identical rows get a distance of
exactly 0 (the ``|a|^2 + |b|^2 - 2 a.b`` expansion with separately summed norms leaves ~1e-7 of rounding,
i.e. ~3e-4 after the square root).
"""

from __future__ import annotations

from keras import ops

from .base import LabelledLoss  # noqa: F401 - its old home; the base of every loss is in base.py

__all__ = ["DISTANCE_METRICS", "pairwise_distance", "safe_sqrt", "check_metric"]

DISTANCE_METRICS: tuple[str, ...] = ("L2", "squared-L2", "angular")


def check_metric(metric):
    """Return ``metric`` if it is a known name or a callable, else raise a clear ``ValueError``."""
    if callable(metric) or metric in DISTANCE_METRICS:
        return metric
    raise ValueError(f"unknown distance_metric {metric!r}; expected one of {', '.join(DISTANCE_METRICS)} or a callable")


def safe_sqrt(x):
    """``sqrt(max(x, 0))`` whose value and gradient are 0 where ``x <= 0`` (finite everywhere)."""
    zero = x <= 0
    safe = ops.where(zero, ops.ones_like(x), x)
    return ops.where(zero, ops.zeros_like(x), ops.sqrt(safe))


def _as_float(embeddings):
    x = ops.convert_to_tensor(embeddings)
    if x.dtype in ("float16", "bfloat16") or "int" in str(x.dtype):
        x = ops.cast(x, "float32")
    return x


def _off_diagonal(n):
    idx = ops.arange(n)
    return ops.not_equal(ops.expand_dims(idx, 1), ops.expand_dims(idx, 0))


def pairwise_distance(embeddings, metric: str = "L2"):
    """``(B, D)`` embeddings -> ``(B, B)`` distance matrix under ``metric`` (see module docstring).

    float16/bfloat16 inputs are computed in float32 (as tfa does) and the result stays float32.
    """
    check_metric(metric)
    x = _as_float(embeddings)
    if len(x.shape) != 2:
        raise ValueError(f"embeddings must be 2-D (batch, dim), got shape {tuple(x.shape)}")
    if callable(metric):
        return metric(x)
    if metric == "angular":
        sq = ops.sum(ops.square(x), axis=1, keepdims=True)
        xn = x / ops.sqrt(ops.maximum(sq, 1e-12))
        return ops.maximum(1.0 - ops.matmul(xn, ops.transpose(xn)), 1e-16)
    gram = ops.matmul(x, ops.transpose(x))
    sq = ops.diagonal(gram)
    d2 = ops.expand_dims(sq, 1) + ops.expand_dims(sq, 0) - 2.0 * gram
    d2 = ops.maximum(d2, 0.0)
    off = ops.cast(_off_diagonal(ops.shape(x)[0]), d2.dtype)
    if metric == "squared-L2":
        return d2 * off
    return safe_sqrt(d2) * off


# ----------------------------------------------------------------------------------------------------
# Private helpers shared by triplet.py, hardnet.py and pair.py
# ----------------------------------------------------------------------------------------------------


def flat_labels(labels):
    """Labels as a 1-D tensor of their *own* dtype (no float cast: int ids compare exactly)."""
    lab = ops.convert_to_tensor(labels)
    return ops.reshape(lab, (-1,))


def check_batch(labels, embeddings):
    if len(embeddings.shape) != 2:
        raise ValueError(f"embeddings must be 2-D (batch, dim), got shape {tuple(embeddings.shape)}")
    nl, ne = labels.shape[0], embeddings.shape[0]
    if nl is not None and ne is not None and nl != ne:
        raise ValueError(f"labels ({nl}) and embeddings ({ne}) have different batch sizes")


def labelled_batch(y_true, y_pred):
    """``(labels, embeddings)`` of a batch: labels flat in their own dtype, embeddings float (half precision and
    integers as float32), 2-D, batch sizes checked."""
    labels = flat_labels(y_true)
    emb = _as_float(y_pred)
    check_batch(labels, emb)
    return labels, emb


def label_masks(labels):
    """``(pos, neg)`` boolean ``(B, B)`` masks: same label off the diagonal, different label."""
    same = ops.equal(ops.expand_dims(labels, 1), ops.expand_dims(labels, 0))
    pos = ops.logical_and(same, _off_diagonal(ops.shape(labels)[0]))
    return pos, ops.logical_not(same)


def masked_min(data, mask, axis=-1):
    """tfa's ``_masked_minimum`` (without keepdims): min over ``mask``; the row max where ``mask`` is empty."""
    m = ops.cast(mask, data.dtype)
    top = ops.max(data, axis=axis, keepdims=True)
    return ops.squeeze(ops.min((data - top) * m, axis=axis, keepdims=True) + top, axis=axis)


def masked_max(data, mask, axis=-1):
    """tfa's ``_masked_maximum`` (without keepdims): max over ``mask``; the row min where ``mask`` is empty."""
    m = ops.cast(mask, data.dtype)
    bottom = ops.min(data, axis=axis, keepdims=True)
    return ops.squeeze(ops.max((data - bottom) * m, axis=axis, keepdims=True) + bottom, axis=axis)


def safe_mean(values, mask):
    """Mean of ``values`` over ``mask``; exactly 0 (with zero gradient) when the mask is empty."""
    m = ops.cast(mask, values.dtype)
    total = ops.sum(ops.where(mask, values, ops.zeros_like(values)))
    count = ops.sum(m)
    return total / ops.maximum(count, 1.0)


def hinge(x, margin, soft):
    """``max(0, margin + x)`` or, when ``soft``, ``softplus(x)`` (margin unused, as in tfa)."""
    return ops.softplus(x) if soft else ops.relu(x + margin)


def structured_positives(dist, views_per_track):
    """S x K track-major fast path: ``(B, K)`` distances from each anchor to the K views of its own track,
    and the ``(B, K)`` mask excluding the anchor itself."""
    k = int(views_per_track)
    b = ops.shape(dist)[0]
    s = b // k
    d3 = ops.reshape(dist, (b, s, k))
    track = ops.arange(b) // k
    idx = ops.broadcast_to(ops.reshape(track, (b, 1, 1)), (b, 1, k))
    dp = ops.squeeze(ops.take_along_axis(d3, idx, axis=1), axis=1)
    view = ops.arange(b) % k
    mask = ops.not_equal(ops.expand_dims(view, 1), ops.expand_dims(ops.arange(k), 0))
    return dp, mask


def nan_if_not_finite(value, embeddings):
    """``value``, or NaN when any embedding is NaN/Inf: a bad input shows in the loss (and stops training with
    ``keras.callbacks.TerminateOnNaN``) instead of hiding behind a finite value whose gradient is NaN (mining
    masks can drop the NaN rows from the value but not from the gradient)."""
    finite = ops.all(ops.isfinite(embeddings))
    return ops.where(finite, value, ops.cast(float("nan"), value.dtype))


def _concrete_bool(x):
    """``bool(x)`` when ``x`` has a value now (eager), ``None`` inside a traced function (graph/XLA)."""
    try:
        return bool(ops.convert_to_numpy(x))
    except Exception:  # noqa: BLE001 - symbolic tensor
        return None


def check_structured_labels(labels, views_per_track, value):
    """An S x K loss trusts the batch layout: the K labels of each track are equal and differ from every other
    track's. Eagerly a wrong layout raises ``ValueError``; in a traced step (no value to look at) the loss
    becomes NaN. Returns ``value``."""
    k = int(views_per_track)
    lab = ops.reshape(labels, (-1,))
    b = ops.shape(lab)[0]
    same = ops.equal(ops.expand_dims(lab, 1), ops.expand_dims(lab, 0))
    track = ops.arange(b) // k
    block = ops.equal(ops.expand_dims(track, 1), ops.expand_dims(track, 0))
    ok = ops.all(ops.equal(same, block))
    got = _concrete_bool(ok)
    if got is False:
        raise ValueError(
            f"views_per_track={k}: labels are not S x K track-major (each run of {k} labels must be "
            f"one track id, different from every other run); got {ops.convert_to_numpy(lab)[: 4 * k]}..."
        )
    if got is None:
        return ops.where(ok, value, ops.cast(float("nan"), value.dtype))
    return value


def check_views(views_per_track, batch):
    if views_per_track is None:
        return None
    k = int(views_per_track)
    if k < 1:
        raise ValueError(f"views_per_track must be >= 1, got {views_per_track}")
    if batch is not None and batch % k:
        raise ValueError(f"batch size {batch} is not a multiple of views_per_track={k} (S x K batches expected)")
    return k
