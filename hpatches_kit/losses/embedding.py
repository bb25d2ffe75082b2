"""Embedding losses for image-pair matching and retrieval, written with ``keras.ops``.

Pair batches are *pair-stacked*: ``y_pred`` of shape ``(B, 2, D)`` holds left ``y_pred[:, 0]`` and right
``y_pred[:, 1]`` embeddings of ``B`` matching pairs. Retrieval losses also accept the descriptor-batch
contract of the rest of the toolkit, ``(labels (N,), embeddings (N, D))``.

* :func:`cosine_embedding_loss` / :class:`CosineEmbeddingLoss` -- PyTorch ``CosineEmbeddingLoss``:
  ``1 - cos`` for target ``+1``, ``max(0, cos - margin)`` for ``-1`` (0 for any other target), mean.
* :func:`symmetric_contrastive_loss` / :class:`SymmetricContrastiveLoss` -- in-batch: pair ``(l_i, r_i)`` is
  a positive, every ``(l_i, r_j)``, ``i != j``, a negative, in both directions (``l -> r`` and ``r -> l``);
  ``pos_weight * mean_i(1 - cos_ii) + neg_weight * mean_{i != j} max(0, cos_ij - margin)``, default 2/3 : 1/3.
* :func:`info_nce_loss` / :class:`InfoNCELoss` -- symmetric InfoNCE (CLIP / SimCLR-style): with
  ``s_ij = cos(l_i, r_j) / T``, ``0.5 * mean_i[-log softmax_j(s_ij)_i] + 0.5 * mean_j[-log softmax_i(s_ij)_j]``;
  every other pair of the batch is a negative, weighted by how hard it is (temperature ``T``, default 0.05).
* :func:`irt_contrastive_loss`, :func:`koleo_loss`, :class:`IRTLoss`, :class:`KoLeoRegularizer` -- the Image
  Retrieval Transformer objective (El-Nouby et al. 2021) on L2-normalised embeddings ``z``::

      L_contr = 1/N sum_i [ sum_{j != i, y_j = y_i} (1 - z_i.z_j) + sum_{y_j != y_i} max(0, z_i.z_j - beta) ]
      L_KoLeo = -1/N sum_i log(min_{j != i} ||z_i - z_j|| + eps)
      L       = L_contr + lambda * L_KoLeo,   beta = 0.5, lambda = 0.7
"""

from __future__ import annotations

import keras
from keras import ops

from .base import MetricLoss
from .distances import nan_if_not_finite, safe_sqrt

__all__ = [
    "cosine_similarity_matrix",
    "cosine_embedding_loss",
    "symmetric_contrastive_loss",
    "irt_contrastive_loss",
    "koleo_loss",
    "irt_loss",
    "pair_labels",
    "info_nce_loss",
    "CosineEmbeddingLoss",
    "SymmetricContrastiveLoss",
    "IRTLoss",
    "InfoNCELoss",
    "KoLeoRegularizer",
]

PKG = "hpatches_kit.losses"
_TORCH_EPS = 1e-12  # torch.nn.functional.cosine_embedding_loss's EPSILON


def _l2n(x, eps=1e-12):
    return x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), eps))


def cosine_similarity_matrix(a, b):
    """``(N, D), (M, D) -> (N, M)`` cosine similarities."""
    return ops.matmul(_l2n(a), ops.transpose(_l2n(b)))


def cosine_embedding_loss(x1, x2, target, margin: float = 0.0, reduction: str = "mean"):
    """PyTorch ``F.cosine_embedding_loss``: ``x1, x2`` ``(B, D)``, ``target`` ``(B,)`` of ``+1 / -1``."""
    x1 = ops.convert_to_tensor(x1, "float32")
    x2 = ops.convert_to_tensor(x2, "float32")
    t = ops.reshape(ops.cast(target, x1.dtype), (-1,))
    prod = ops.sum(x1 * x2, axis=-1)
    m1 = ops.sum(x1 * x1, axis=-1) + _TORCH_EPS
    m2 = ops.sum(x2 * x2, axis=-1) + _TORCH_EPS
    cos = prod / ops.sqrt(m1 * m2)
    zeros = ops.zeros_like(cos)
    pos = ops.where(ops.equal(t, 1.0), 1.0 - cos, zeros)
    neg = ops.where(ops.equal(t, -1.0), ops.maximum(cos - margin, 0.0), zeros)
    loss = pos + neg
    if reduction == "mean":
        return ops.mean(loss)
    if reduction == "sum":
        return ops.sum(loss)
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _split_pairs(y_pred):
    if len(y_pred.shape) != 3 or y_pred.shape[1] != 2:
        raise ValueError(f"pair losses expect pair-stacked embeddings (B, 2, D), got shape {tuple(y_pred.shape)}")
    return y_pred[:, 0], y_pred[:, 1]


def symmetric_contrastive_loss(
    left, right, margin: float = 0.0, pos_weight: float = 2.0 / 3.0, neg_weight: float = 1.0 / 3.0
):
    """In-batch symmetric contrastive loss on cosine similarities (see module docstring). Needs ``B >= 2``."""
    s = cosine_similarity_matrix(ops.convert_to_tensor(left, "float32"), ops.convert_to_tensor(right, "float32"))
    b = ops.shape(s)[0]
    eye = ops.eye(b, dtype=s.dtype)
    pos = ops.sum((1.0 - s) * eye) / ops.cast(b, s.dtype)
    off = 1.0 - eye
    hinge = ops.maximum(s - margin, 0.0) * off
    n_off = ops.maximum(ops.cast(b * (b - 1), s.dtype), 1.0)
    # direction l->r (rows) and r->l (columns, i.e. the transposed matrix): same pairs, averaged both ways
    neg = 0.5 * (ops.sum(hinge) / n_off + ops.sum(ops.transpose(hinge)) / n_off)
    return pos_weight * pos + neg_weight * neg


def info_nce_loss(left, right, temperature: float = 0.05):
    """Symmetric InfoNCE over the in-batch cosine matrix (see module docstring). Needs ``B >= 2``."""
    s = cosine_similarity_matrix(ops.convert_to_tensor(left, "float32"), ops.convert_to_tensor(right, "float32"))
    s = s / temperature
    diag = ops.diagonal(s)
    l2r = ops.logsumexp(s, axis=1) - diag  # left i retrieves right i among all rights
    r2l = ops.logsumexp(s, axis=0) - diag  # right j retrieves left j among all lefts
    return 0.5 * (ops.mean(l2r) + ops.mean(r2l))


def pair_labels(y_pred):
    """Pair-stacked ``(B, 2, D)`` -> ``(labels (2B,), embeddings (2B, D))`` with pair ``i`` labelled ``i``."""
    left, right = _split_pairs(y_pred)
    b = ops.shape(left)[0]
    ids = ops.arange(b)
    return ops.concatenate([ids, ids], axis=0), ops.concatenate([left, right], axis=0)


def irt_contrastive_loss(labels, embeddings, beta: float = 0.5):
    """IRT contrastive loss on L2-normalised embeddings (positives ``1 - s``, negatives ``max(0, s - beta)``,
    self-pairs excluded, summed per anchor, averaged over anchors)."""
    z = _l2n(ops.convert_to_tensor(embeddings, "float32"))
    y = ops.reshape(labels, (-1,))
    s = ops.matmul(z, ops.transpose(z))
    n = ops.shape(s)[0]
    same = ops.cast(ops.equal(y[:, None], y[None, :]), s.dtype)
    not_self = 1.0 - ops.eye(n, dtype=s.dtype)
    pos = ops.sum((1.0 - s) * same * not_self)
    neg = ops.sum(ops.maximum(s - beta, 0.0) * (1.0 - same))
    return (pos + neg) / ops.cast(n, s.dtype)


def koleo_loss(embeddings, eps: float = 1e-8, normalize: bool = True):
    """Kozachenko-Leonenko differential-entropy regulariser: ``-mean_i log(min_{j != i} ||z_i - z_j|| + eps)``
    (``z`` L2-normalised first unless ``normalize=False``). Needs ``N >= 2``."""
    z = ops.convert_to_tensor(embeddings, "float32")
    if normalize:
        z = _l2n(z)
    sq = ops.sum(ops.square(z), axis=-1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * ops.matmul(z, ops.transpose(z))
    n = ops.shape(z)[0]
    big = ops.eye(n, dtype=d2.dtype) * 1e9
    # safe_sqrt: value and gradient 0 at zero distance (coincident embeddings), where sqrt's gradient is inf
    # and inf * 0 made the whole gradient NaN behind a finite loss
    nn = safe_sqrt(ops.min(d2 + big, axis=1))
    return nan_if_not_finite(-ops.mean(ops.log(nn + eps)), z)


def irt_loss(labels, embeddings, beta: float = 0.5, koleo_weight: float = 0.7):
    return irt_contrastive_loss(labels, embeddings, beta) + koleo_weight * koleo_loss(embeddings)


# Keras losses on ``(y_true, y_pred)``: each is one of the functions below plus its keyword arguments
# (a :class:`~.base.MetricLoss`, which serialises them).


def _cosine_embedding(y_true, y_pred, margin=0.0, reduction="mean"):
    """:func:`cosine_embedding_loss` on pair-stacked ``y_pred`` ``(B, 2, D)`` with targets ``y_true``."""
    left, right = _split_pairs(y_pred)
    return cosine_embedding_loss(left, right, y_true, margin, reduction=reduction)


def _symmetric_contrastive(y_true, y_pred, margin=0.0, pos_weight=2.0 / 3.0, neg_weight=1.0 / 3.0):
    """:func:`symmetric_contrastive_loss` on pair-stacked ``y_pred``; ``y_true`` ignored."""
    left, right = _split_pairs(y_pred)
    return symmetric_contrastive_loss(left, right, margin, pos_weight, neg_weight)


def _info_nce(y_true, y_pred, temperature=0.05):
    """:func:`info_nce_loss` on pair-stacked ``y_pred``; ``y_true`` ignored."""
    left, right = _split_pairs(y_pred)
    return info_nce_loss(left, right, temperature)


def _irt(y_true, y_pred, beta=0.5, koleo_weight=0.7):
    """:func:`irt_loss` on ``(labels, (N, D))``, or on pair-stacked ``(B, 2, D)`` (pair ``i`` is class ``i``)."""
    if len(y_pred.shape) == 3:
        y_true, y_pred = pair_labels(y_pred)
    return irt_loss(y_true, y_pred, beta, koleo_weight)


def _koleo(y_true, y_pred, weight=1.0, eps=1e-8):
    """``weight * koleo_loss`` on ``(N, D)`` or pair-stacked embeddings (flattened); ``y_true`` ignored."""
    if len(y_pred.shape) == 3:
        y_pred = ops.reshape(y_pred, (-1, y_pred.shape[-1]))
    return weight * koleo_loss(y_pred, eps)


@keras.saving.register_keras_serializable(package=PKG)
class CosineEmbeddingLoss(MetricLoss):
    """``y_true`` ``(B,)`` targets ``+1/-1``, ``y_pred`` pair-stacked ``(B, 2, D)``; PyTorch semantics."""

    def __init__(self, margin: float = 0.0, name: str = "cosine_embedding_loss", **kwargs):
        kwargs.setdefault("reduction", "sum_over_batch_size")
        super().__init__(_cosine_embedding, dict(margin=float(margin)), name=name, **kwargs)

    def call(self, y_true, y_pred):
        # LabelledLoss does not reduce: apply the configured reduction here (Keras' default is the mean).
        red = {"sum": "sum", "none": "none", None: "none"}.get(self.reduction, "mean")
        return self.fn(y_true, y_pred, reduction=red, **self.fn_kwargs)


@keras.saving.register_keras_serializable(package=PKG)
class SymmetricContrastiveLoss(MetricLoss):
    """``y_pred`` pair-stacked ``(B, 2, D)``; ``y_true`` ignored (pairs are positives by construction)."""

    def __init__(
        self,
        margin: float = 0.0,
        pos_weight: float = 2.0 / 3.0,
        neg_weight: float = 1.0 / 3.0,
        name: str = "symmetric_contrastive_loss",
        **kwargs,
    ):
        super().__init__(
            _symmetric_contrastive,
            dict(margin=float(margin), pos_weight=float(pos_weight), neg_weight=float(neg_weight)),
            name=name,
            **kwargs,
        )


@keras.saving.register_keras_serializable(package=PKG)
class InfoNCELoss(MetricLoss):
    """``y_pred`` pair-stacked ``(B, 2, D)``; ``y_true`` ignored. Symmetric InfoNCE with ``temperature``."""

    def __init__(self, temperature: float = 0.05, name: str = "info_nce_loss", **kwargs):
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        super().__init__(_info_nce, dict(temperature=float(temperature)), name=name, **kwargs)


@keras.saving.register_keras_serializable(package=PKG)
class IRTLoss(MetricLoss):
    """IRT contrastive + ``koleo_weight`` x KoLeo. ``y_pred`` either ``(N, D)`` with ``y_true`` integer labels,
    or pair-stacked ``(B, 2, D)`` (``y_true`` ignored, pair ``i`` is class ``i``)."""

    def __init__(self, beta: float = 0.5, koleo_weight: float = 0.7, name: str = "irt_loss", **kwargs):
        super().__init__(_irt, dict(beta=float(beta), koleo_weight=float(koleo_weight)), name=name, **kwargs)


@keras.saving.register_keras_serializable(package=PKG)
class KoLeoRegularizer(MetricLoss):
    """Standalone KoLeo as a Keras loss (``y_true`` ignored; ``y_pred`` ``(N, D)`` or pair-stacked), scaled by
    ``weight``: add it to a descriptor loss to spread embeddings uniformly."""

    def __init__(self, weight: float = 1.0, eps: float = 1e-8, name: str = "koleo", **kwargs):
        super().__init__(_koleo, dict(weight=float(weight), eps=float(eps)), name=name, **kwargs)
