"""Pair losses for descriptors: contrastive (Hadsell et al. 2006) and cosine, in ``keras.ops``.

Batch form on ``(labels, embeddings)``: every unordered pair ``i < j`` of the batch is a pair, matching
when the labels are equal.

* contrastive: matching ``d^2``, non-matching ``max(0, margin - d)^2`` (``d`` from ``distance_metric``,
  default L2; the tfa/Keras convention without Hadsell's factor 1/2).
* cosine: matching ``1 - cos``, non-matching ``max(0, cos - margin)`` (PyTorch ``CosineEmbeddingLoss``
  per-pair terms, margin default 0).

``balance=True`` (default) averages the matching and the non-matching terms separately and adds the two
means (an S x K batch has far more non-matching pairs); ``balance=False`` averages over all pairs.
A batch without any pair of a kind contributes 0 for that kind.

Explicit pairs: :func:`contrastive_pair_loss` / :func:`cosine_pair_loss` take ``(a, b, same)`` rows.
"""

from __future__ import annotations

import keras
from keras import ops

from .base import MetricLoss
from .distances import (
    _as_float,
    labelled_batch,
    pairwise_distance,
    safe_mean,
    safe_sqrt,
)

__all__ = [
    "pair_contrastive_loss",
    "pair_cosine_loss",
    "contrastive_pair_loss",
    "cosine_pair_loss",
    "PairContrastiveLoss",
    "PairCosineLoss",
]

_PAIR_METRICS = ("L2", "squared-L2")


def _check_pair_metric(distance_metric):
    if distance_metric not in _PAIR_METRICS:
        raise ValueError(f"distance_metric must be one of {_PAIR_METRICS}, got {distance_metric!r}")
    return distance_metric


def _pair_masks(labels):
    same = ops.equal(ops.expand_dims(labels, 1), ops.expand_dims(labels, 0))
    idx = ops.arange(ops.shape(labels)[0])
    upper = ops.expand_dims(idx, 1) < ops.expand_dims(idx, 0)
    return ops.logical_and(same, upper), ops.logical_and(ops.logical_not(same), upper)


def _reduce(pos_term, neg_term, pos, neg, balance):
    if balance:
        return safe_mean(pos_term, pos) + safe_mean(neg_term, neg)
    both = ops.where(pos, pos_term, neg_term)
    return safe_mean(both, ops.logical_or(pos, neg))


def pair_contrastive_loss(y_true, y_pred, margin=1.0, distance_metric="L2", balance=True):
    """Contrastive loss over all pairs of the batch (see module docstring)."""
    _check_pair_metric(distance_metric)
    labels, emb = labelled_batch(y_true, y_pred)
    d = pairwise_distance(emb, distance_metric)
    pos, neg = _pair_masks(labels)
    return _reduce(ops.square(d), ops.square(ops.relu(margin - d)), pos, neg, balance)


def _cosine_matrix(emb):
    sq = ops.sum(ops.square(emb), axis=1, keepdims=True)
    xn = emb / ops.sqrt(ops.maximum(sq, 1e-12))
    return ops.matmul(xn, ops.transpose(xn))


def pair_cosine_loss(y_true, y_pred, margin=0.0, balance=True):
    """Cosine loss over all pairs of the batch (see module docstring)."""
    labels, emb = labelled_batch(y_true, y_pred)
    cos = _cosine_matrix(emb)
    pos, neg = _pair_masks(labels)
    return _reduce(1.0 - cos, ops.relu(cos - margin), pos, neg, balance)


def contrastive_pair_loss(a, b, same, margin=1.0, distance_metric="L2"):
    """Mean over rows of ``same * d^2 + (1 - same) * max(0, margin - d)^2`` for explicit ``(N, D)`` pairs."""
    _check_pair_metric(distance_metric)
    a, b = _as_float(a), _as_float(b)
    y = ops.cast(ops.reshape(ops.convert_to_tensor(same), (-1,)), a.dtype)
    d2 = ops.sum(ops.square(a - b), axis=-1)
    d = d2 if distance_metric == "squared-L2" else safe_sqrt(d2)
    return ops.mean(y * ops.square(d) + (1.0 - y) * ops.square(ops.relu(margin - d)))


def cosine_pair_loss(a, b, same, margin=0.0):
    """Mean over rows of ``same * (1 - cos) + (1 - same) * max(0, cos - margin)`` for explicit pairs."""
    a, b = _as_float(a), _as_float(b)
    y = ops.cast(ops.reshape(ops.convert_to_tensor(same), (-1,)), a.dtype)
    na = ops.sqrt(ops.maximum(ops.sum(ops.square(a), axis=-1), 1e-12))
    nb = ops.sqrt(ops.maximum(ops.sum(ops.square(b), axis=-1), 1e-12))
    cos = ops.sum(a * b, axis=-1) / (na * nb)
    return ops.mean(y * (1.0 - cos) + (1.0 - y) * ops.relu(cos - margin))


@keras.saving.register_keras_serializable(package="hpatches_kit")
class PairContrastiveLoss(MetricLoss):
    """Keras loss for :func:`pair_contrastive_loss`."""

    def __init__(self, margin=1.0, distance_metric="L2", balance=True, name=None, **kwargs):
        super().__init__(
            pair_contrastive_loss,
            dict(margin=float(margin), balance=bool(balance), distance_metric=_check_pair_metric(distance_metric)),
            name=name or "pair_contrastive_loss",
            **kwargs,
        )


@keras.saving.register_keras_serializable(package="hpatches_kit")
class PairCosineLoss(MetricLoss):
    """Keras loss for :func:`pair_cosine_loss`."""

    def __init__(self, margin=0.0, balance=True, name=None, **kwargs):
        super().__init__(
            pair_cosine_loss,
            dict(margin=float(margin), balance=bool(balance)),
            name=name or "pair_cosine_loss",
            **kwargs,
        )
