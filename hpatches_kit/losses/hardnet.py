"""HardNet loss (Mishchuk et al., "Working hard to know your neighbor's margins", NIPS 2017), in ``keras.ops``.

Original (K = 2): a batch of matched pairs ``(a_i, p_i)``; ``D[i, j] = d(a_i, p_j)``. For pair ``i`` the
hardest in-batch negative is ``min(min_{j != i} D[i, j], min_{j != i} D[j, i])`` (row and column, i.e. with
*anchor swap*); loss ``mean_i max(0, margin + D[i, i] - d_neg(i))``, margin 1.

Generalisation to S x K track-major batches (``views_per_track=K``): every unordered pair of views
``u < v`` of the K views is a HardNet batch (anchors = view u of each track, positives = view v); the loss
is the mean over the ``K(K-1)/2`` view pairs of their HardNet losses (each an S x S distance matrix,
sliced from one ``B x B`` matrix). For K = 2 this is exactly the original.

Arbitrary labels (``views_per_track=None``): every ordered pair ``(i, j)``, ``i != j`` with the same label is
a positive pair; its hardest negative is the closest embedding with another label to ``i`` (and, with
anchor swap, to ``j``); loss = mean over positive pairs. Unlike the structured form the negatives of a
K = 2 batch then also include anchor-anchor and positive-positive distances.
"""

from __future__ import annotations

import keras
from keras import ops

from .base import MetricLoss
from .distances import (
    _off_diagonal,
    check_metric,
    check_structured_labels,
    check_views,
    label_masks,
    labelled_batch,
    masked_min,
    nan_if_not_finite,
    pairwise_distance,
    safe_mean,
)

__all__ = ["hardnet_loss", "HardNetLoss"]


def _hardnet_structured(dist, k, margin, anchor_swap):
    b = ops.shape(dist)[0]
    s = b // k
    d4 = ops.transpose(ops.reshape(dist, (s, k, s, k)), (1, 3, 0, 2))  # [u, v, i, j] = d(x_iu, x_jv)
    off = _off_diagonal(s)  # (S, S)
    off4 = ops.broadcast_to(off, ops.shape(d4))
    row_min = masked_min(d4, off4, axis=3)  # (K, K, S): min_{j != i} d(x_iu, x_jv)
    hard_neg = row_min
    if anchor_swap:
        col_min = masked_min(d4, off4, axis=2)  # (K, K, S): min_{j != i} d(x_ju, x_iv)
        hard_neg = ops.minimum(row_min, col_min)
    pos_d = ops.diagonal(d4, axis1=2, axis2=3)  # (K, K, S)
    loss = ops.relu(margin + pos_d - hard_neg)
    ku = ops.arange(k)
    upper = ops.expand_dims(ku, 1) < ops.expand_dims(ku, 0)  # u < v
    mask = ops.logical_and(ops.broadcast_to(ops.expand_dims(upper, 2), ops.shape(loss)), s > 1)
    return safe_mean(loss, mask)


def _hardnet_labels(dist, pos, neg, margin, anchor_swap):
    hn = masked_min(dist, neg)  # (B,)
    hard_neg = ops.expand_dims(hn, 1)
    if anchor_swap:
        hard_neg = ops.minimum(hard_neg, ops.expand_dims(hn, 0))
    loss = ops.relu(margin + dist - hard_neg)
    any_neg = ops.any(neg, axis=1)
    valid = ops.logical_and(pos, ops.logical_and(ops.expand_dims(any_neg, 1), ops.expand_dims(any_neg, 0)))
    return safe_mean(loss, valid)


def hardnet_loss(y_true, y_pred, margin=1.0, distance_metric="L2", views_per_track=None, anchor_swap=True):
    """HardNet loss on ``(labels, embeddings)`` (see module docstring). ``views_per_track=K`` assumes an
    S x K track-major batch with distinct track ids (checked: a wrong layout raises eagerly, gives NaN in a
    traced step);
    ``None`` works on arbitrary labels. No positive pair or no negative -> 0."""
    check_metric(distance_metric)
    labels, emb = labelled_batch(y_true, y_pred)
    k = check_views(views_per_track, emb.shape[0])
    dist = pairwise_distance(emb, distance_metric)
    if k is not None:
        if k < 2:
            return ops.zeros((), dist.dtype)
        value = check_structured_labels(labels, k, _hardnet_structured(dist, k, margin, anchor_swap))
        return nan_if_not_finite(value, emb)
    pos, neg = label_masks(labels)
    return nan_if_not_finite(_hardnet_labels(dist, pos, neg, margin, anchor_swap), emb)


@keras.saving.register_keras_serializable(package="hpatches_kit")
class HardNetLoss(MetricLoss):
    """HardNet's loss (Mishchuk et al. 2017) as a Keras loss: each matching pair against its hardest
    in-batch non-matching descriptor (with anchor swap), ``mean(relu(margin + d(a, p) - d_min_neg))``.
    See :func:`hardnet_loss`.

    Args:
        margin: the hinge margin.
        distance_metric: ``"L2"``, ``"squared-L2"`` or ``"angular"`` (or a callable).
        views_per_track: ``K`` of an S x K track-major batch (the fast structured path), or ``None`` for any
            labelling.
        anchor_swap: also mine the hardest negative of the positive.
        name: the loss name.

    Returns:
        ``loss(labels, embeddings)``: a scalar (divided by the replicas under ``tf.distribute``).

    Shape:
        - y_true: :math:`(B,)` integer track labels
        - y_pred: :math:`(B, D)` descriptors

    Examples:
        >>> import numpy as np
        >>> labels = np.array([0, 0, 1, 1])
        >>> emb = np.array([[0, 0], [0, 0], [1, 0], [1, 0]], np.float32)
        >>> round(float(HardNetLoss(margin=1.5, views_per_track=2)(labels, emb)), 4)
        0.5
    """

    def __init__(self, margin=1.0, distance_metric="L2", views_per_track=None, anchor_swap=True, name=None, **kwargs):
        super().__init__(
            hardnet_loss,
            dict(
                margin=float(margin),
                distance_metric=check_metric(distance_metric),
                views_per_track=check_views(views_per_track, None),
                anchor_swap=bool(anchor_swap),
            ),
            name=name or "hardnet_loss",
            **kwargs,
        )
