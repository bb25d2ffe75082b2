"""Triplet-family losses on ``(labels, embeddings)``, all in ``keras.ops``.

* tensorflow-addons 0.23 drop-ins: :func:`triplet_hard_loss`, :func:`triplet_semihard_loss`,
  :class:`TripletHardLoss`, :class:`TripletSemiHardLoss` -- same arguments, same values (see
  ``docs/losses.md`` for the two deliberate differences: degenerate batches give 0, soft margin uses a
  stable softplus).
* Online mining: :func:`batch_all_triplet_loss` / :class:`BatchAllTripletLoss`,
  :func:`batch_hard_triplet_loss` / :class:`BatchHardTripletLoss` (averaged over anchors that have a
  positive and a negative), semi-hard via the tfa functions; hinge with margin or soft margin.
* Random-triplet baseline: :func:`triplet_margin_loss` on explicit ``(anchor, positive, negative)`` rows,
  :func:`random_triplet_loss` / :class:`RandomTripletLoss` (``y_pred`` shaped ``(N, 3, D)``; the
  triplets come from :func:`hpatches_kit.training.pipelines.triplet_dataset`).
* Batch helpers: :func:`sk_labels` for S tracks x K views, track-major.

Every class is a :class:`~.base.MetricLoss`: one of the functions above plus its keyword arguments.

``__all__`` also re-exports the public names of :mod:`.distances`, :mod:`.hardnet` and :mod:`.pair`, so
``from hpatches_kit.losses import *`` gives the whole family.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from .base import MetricLoss
from .distances import (
    DISTANCE_METRICS,
    _as_float,
    check_metric,
    check_views,
    hinge,
    label_masks,
    labelled_batch,
    masked_max,
    masked_min,
    nan_if_not_finite,
    pairwise_distance,
    safe_mean,
    safe_sqrt,
    structured_positives,
)

_PKG = "hpatches_kit"


def sk_labels(S: int, K: int, track_ids=None, dtype="int32") -> np.ndarray:
    """Labels of an S x K track-major batch: ``[t0]*K + [t1]*K + ...`` (``track_ids`` default ``arange(S)``)."""
    if S < 1 or K < 1:
        raise ValueError(f"S and K must be >= 1, got S={S}, K={K}")
    ids = np.arange(S) if track_ids is None else np.asarray(track_ids)
    if ids.shape != (S,):
        raise ValueError(f"track_ids must have shape ({S},), got {ids.shape}")
    return np.repeat(ids, K).astype(dtype)


def _prepare(y_true, y_pred, distance_metric):
    check_metric(distance_metric)
    labels, emb = labelled_batch(y_true, y_pred)
    dist = pairwise_distance(emb, distance_metric)
    pos, neg = label_masks(labels)
    return labels, emb, dist, pos, neg


def _any_triplet(pos, neg):
    return ops.logical_and(ops.any(pos), ops.any(neg))


def _out_dtype(y_pred, value):
    value = nan_if_not_finite(value, y_pred)
    dt = ops.convert_to_tensor(y_pred).dtype
    return ops.cast(value, dt) if dt in ("float16", "bfloat16") else value


def _positives(dist, pos, views_per_track):
    """Per-anchor positive distances ``(B, P)`` and mask: all B columns, or the K own-track views."""
    if views_per_track is None:
        return dist, pos
    return structured_positives(dist, views_per_track)


def _check_average(average):
    if average not in BATCH_ALL_AVERAGES:
        raise ValueError(f"average must be one of {BATCH_ALL_AVERAGES}, got {average!r}")
    return average


def _check_row_metric(distance_metric):
    if callable(distance_metric) or distance_metric not in DISTANCE_METRICS:
        raise ValueError(f"distance_metric must be one of {', '.join(DISTANCE_METRICS)}, got {distance_metric!r}")
    return distance_metric


# --------------------------------------------------------------------------------------------------
# tensorflow-addons drop-ins
# --------------------------------------------------------------------------------------------------


def triplet_hard_loss(y_true, y_pred, margin=1.0, soft=False, distance_metric="L2"):
    """Batch-hard triplet loss with tfa 0.23 semantics (``tfa.losses.triplet_hard_loss``).

    Per anchor: hardest positive ``max_p d(a, p)`` and hardest negative ``min_n d(a, n)``; loss
    ``max(hp - hn + margin, 0)`` (or ``softplus(hp - hn)`` when ``soft``), averaged over *all* anchors.
    As in tfa, an anchor without positives uses its row minimum as "hardest positive" (0 for L2).
    A batch with no valid triplet (one label, or all labels distinct) returns 0 (tfa: a meaningless value).
    """
    labels, emb, dist, pos, neg = _prepare(y_true, y_pred, distance_metric)
    hard_neg = masked_min(dist, neg)
    hard_pos = masked_max(dist, pos)
    loss = ops.mean(hinge(hard_pos - hard_neg, margin, soft))
    loss = ops.where(_any_triplet(pos, neg), loss, ops.zeros_like(loss))
    return _out_dtype(y_pred, loss)


def _semihard_outside_structured(dist, neg, dp):
    """S x K path: for the (B, K) own-track positive distances, tfa's ``negatives_outside`` by direct
    comparison with every negative (memory B*K*B)."""
    d_n = ops.expand_dims(dist, 1)  # (B, 1, B): d(a, n)
    outside_mask = ops.logical_and(ops.expand_dims(neg, 1), d_n > ops.expand_dims(dp, 2))  # (B, K, B)
    has_outside = ops.any(outside_mask, axis=2)
    row_max = ops.max(dist, axis=1)  # tfa's masked minimum uses the anchor row's maximum as offset
    m = ops.cast(outside_mask, dist.dtype)
    outside = ops.min((d_n - row_max[:, None, None]) * m, axis=2) + row_max[:, None]
    return outside, has_outside


def _semihard_outside_sorted(dist, neg):
    """General labels: sort each anchor's negative distances once and binary-search every d(a, p) in them
    (``side="right"``: the first negative strictly farther). Memory B^2, time O(B^2 log B)."""
    fill = ops.max(dist) + 1.0  # larger than every distance: non-negatives sort last, never counted
    negvals = ops.stop_gradient(ops.where(neg, dist, fill))
    order = ops.argsort(negvals, axis=1)
    sorted_neg = ops.take_along_axis(negvals, order, axis=1)
    count = ops.vectorized_map(
        lambda t: ops.searchsorted(t[0], t[1], side="right"), (sorted_neg, ops.stop_gradient(dist))
    )
    n_neg = ops.sum(ops.cast(neg, count.dtype), axis=1, keepdims=True)
    has_outside = count < n_neg
    first = ops.cast(ops.minimum(count, ops.shape(dist)[1] - 1), order.dtype)
    outside = ops.take_along_axis(dist, ops.take_along_axis(order, first, axis=1), axis=1)
    return outside, has_outside


def _semihard(dist, pos, neg, margin, soft, views_per_track):
    if views_per_track is None:
        dp, pmask = dist, pos
        outside, has_outside = _semihard_outside_sorted(dist, neg)
    else:
        dp, pmask = structured_positives(dist, views_per_track)  # (B, K)
        outside, has_outside = _semihard_outside_structured(dist, neg, dp)
    inside = masked_max(dist, neg)  # largest negative distance (row min if none, as tfa)
    semi = ops.where(has_outside, outside, ops.expand_dims(inside, 1))
    loss = hinge(dp - semi, margin, soft)
    loss = ops.where(pmask, loss, ops.zeros_like(loss))
    n_pos = ops.sum(ops.cast(pmask, dist.dtype))
    return ops.sum(loss) / ops.maximum(n_pos, 1.0)


def triplet_semihard_loss(y_true, y_pred, margin=1.0, distance_metric="L2", *, soft=False, views_per_track=None):
    """Semi-hard triplet loss with tfa 0.23 semantics (``tfa.losses.triplet_semihard_loss``).

    For every anchor-positive pair (a, p): the closest negative farther than p (``min d(a,n) > d(a,p)``,
    tfa's ``negatives_outside``), else the farthest negative (``negatives_inside``); loss
    ``max(margin + d(a,p) - d(a,n*), 0)`` summed over positive pairs and divided by their number.
    Extras (keyword-only, not in tfa): ``soft`` uses ``softplus(d(a,p) - d(a,n*))``; ``views_per_track=K``
    takes positives from the S x K track-major structure (memory ``B*K*B``, faster for small K); the general
    path sorts each anchor's negatives and binary-searches the positive distances (memory ``B^2``,
    time ``O(B^2 log B)``; tfa's tiled algorithm needs ``B^3``).
    Batches with no valid triplet return 0 (tfa: NaN for all-distinct labels).
    """
    labels, emb, dist, pos, neg = _prepare(y_true, y_pred, distance_metric)
    views = check_views(views_per_track, emb.shape[0])
    loss = _semihard(dist, pos, neg, margin, soft, views)
    loss = ops.where(_any_triplet(pos, neg), loss, ops.zeros_like(loss))
    return _out_dtype(y_pred, loss)


# --------------------------------------------------------------------------------------------------
# Other online mining
# --------------------------------------------------------------------------------------------------

BATCH_ALL_AVERAGES = ("positive", "all")


def batch_all_triplet_loss(
    y_true, y_pred, margin=1.0, soft=False, distance_metric="L2", average="positive", views_per_track=None
):
    """Batch-all triplet loss: every valid triplet (a, p, n) -- ``a != p`` same label, ``n`` other label --
    contributes ``max(margin + d(a,p) - d(a,n), 0)`` (or ``softplus(d(a,p) - d(a,n))``).

    ``average="positive"`` divides the sum by the number of triplets with a loss > 1e-16 (Hermans et al.'s
    "BA≠0"); ``average="all"`` by the number of valid triplets. Memory ``B^3`` (``B*K*B`` with
    ``views_per_track=K`` on S x K track-major batches). No valid triplet -> 0.
    """
    _check_average(average)
    labels, emb, dist, pos, neg = _prepare(y_true, y_pred, distance_metric)
    views = check_views(views_per_track, emb.shape[0])
    dp, pmask = _positives(dist, pos, views)
    valid = ops.logical_and(ops.expand_dims(pmask, 2), ops.expand_dims(neg, 1))  # (B, P, B)
    loss = hinge(ops.expand_dims(dp, 2) - ops.expand_dims(dist, 1), margin, soft)
    if average == "positive":
        valid = ops.logical_and(valid, loss > 1e-16)
    return _out_dtype(y_pred, safe_mean(loss, valid))


def batch_hard_triplet_loss(y_true, y_pred, margin=1.0, soft=False, distance_metric="L2"):
    """Batch-hard triplet loss (Hermans et al. 2017), averaged over the anchors that have at least one
    positive and one negative (unlike tfa's :func:`triplet_hard_loss`, which averages over all anchors).
    No valid anchor -> 0."""
    labels, emb, dist, pos, neg = _prepare(y_true, y_pred, distance_metric)
    hard_pos = masked_max(dist, pos)
    hard_neg = masked_min(dist, neg)
    valid = ops.logical_and(ops.any(pos, axis=1), ops.any(neg, axis=1))
    return _out_dtype(y_pred, safe_mean(hinge(hard_pos - hard_neg, margin, soft), valid))


# --------------------------------------------------------------------------------------------------
# Random triplets (classic baseline)
# --------------------------------------------------------------------------------------------------


def _row_distance(a, b, metric):
    if metric == "angular":
        na = ops.sqrt(ops.maximum(ops.sum(ops.square(a), axis=-1), 1e-12))
        nb = ops.sqrt(ops.maximum(ops.sum(ops.square(b), axis=-1), 1e-12))
        return ops.maximum(1.0 - ops.sum(a * b, axis=-1) / (na * nb), 1e-16)
    d2 = ops.sum(ops.square(a - b), axis=-1)
    return d2 if metric == "squared-L2" else safe_sqrt(d2)


def triplet_margin_loss(anchor, positive, negative, margin=1.0, soft=False, distance_metric="L2", swap=False):
    """Mean over rows of ``max(0, margin + d(a, p) - d(a, n))`` (``softplus(d(a,p) - d(a,n))`` when ``soft``)
    on explicit ``(N, D)`` triplets; ``swap`` (Balntas et al. 2016) uses ``min(d(a,n), d(p,n))``."""
    _check_row_metric(distance_metric)
    a, p, n = (_as_float(t) for t in (anchor, positive, negative))
    d_ap = _row_distance(a, p, distance_metric)
    d_an = _row_distance(a, n, distance_metric)
    if swap:
        d_an = ops.minimum(d_an, _row_distance(p, n, distance_metric))
    return ops.mean(hinge(d_ap - d_an, margin, soft))


def random_triplet_loss(y_true, y_pred, margin=1.0, soft=False, distance_metric="L2", swap=False):
    """:func:`triplet_margin_loss` on pre-sampled triplets stacked as ``y_pred`` ``(N, 3, D)`` = (anchor,
    positive, negative); ``y_true`` is ignored."""
    if len(y_pred.shape) != 3 or (y_pred.shape[1] is not None and y_pred.shape[1] != 3):
        raise ValueError(f"RandomTripletLoss expects y_pred of shape (N, 3, D), got {tuple(y_pred.shape)}")
    return triplet_margin_loss(y_pred[:, 0], y_pred[:, 1], y_pred[:, 2], margin, soft, distance_metric, swap)


# --------------------------------------------------------------------------------------------------
# Keras Loss classes: each is its function plus the checked keyword arguments (MetricLoss serialises them)
# --------------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package=_PKG)
class TripletHardLoss(MetricLoss):
    """tfa-compatible batch-hard triplet loss (see :func:`triplet_hard_loss`)."""

    def __init__(self, margin=1.0, soft=False, distance_metric="L2", name=None, **kwargs):
        super().__init__(
            triplet_hard_loss,
            dict(margin=float(margin), soft=bool(soft), distance_metric=check_metric(distance_metric)),
            name=name or "triplet_hard_loss",
            **kwargs,
        )


@keras.saving.register_keras_serializable(package=_PKG)
class TripletSemiHardLoss(MetricLoss):
    """tfa-compatible semi-hard triplet loss (see :func:`triplet_semihard_loss`)."""

    def __init__(self, margin=1.0, distance_metric="L2", name=None, soft=False, views_per_track=None, **kwargs):
        super().__init__(
            triplet_semihard_loss,
            dict(
                margin=float(margin),
                soft=bool(soft),
                distance_metric=check_metric(distance_metric),
                views_per_track=check_views(views_per_track, None),
            ),
            name=name or "triplet_semihard_loss",
            **kwargs,
        )


@keras.saving.register_keras_serializable(package=_PKG)
class BatchAllTripletLoss(MetricLoss):
    """See :func:`batch_all_triplet_loss`."""

    def __init__(
        self,
        margin=1.0,
        soft=False,
        distance_metric="L2",
        average="positive",
        views_per_track=None,
        name=None,
        **kwargs,
    ):
        super().__init__(
            batch_all_triplet_loss,
            dict(
                margin=float(margin),
                soft=bool(soft),
                distance_metric=check_metric(distance_metric),
                average=_check_average(average),
                views_per_track=check_views(views_per_track, None),
            ),
            name=name or "batch_all_triplet_loss",
            **kwargs,
        )


@keras.saving.register_keras_serializable(package=_PKG)
class BatchHardTripletLoss(MetricLoss):
    """Batch-hard triplet loss (Hermans et al. 2017) as a Keras loss: for each anchor, its farthest positive
    and closest negative in the batch, ``mean(relu(d(a, p) - d(a, n) + margin))`` (softplus with ``soft``).
    See :func:`batch_hard_triplet_loss`.

    Args:
        margin: the hinge margin (unused with ``soft``).
        soft: soft-margin variant, ``softplus(d(a, p) - d(a, n))``.
        distance_metric: ``"L2"``, ``"squared-L2"`` or ``"angular"`` (or a callable).
        name: the loss name.

    Returns:
        ``loss(labels, embeddings)``: a scalar (divided by the replicas under ``tf.distribute``).

    Shape:
        - y_true: :math:`(B,)` integer track labels (never cast to float)
        - y_pred: :math:`(B, D)` descriptors

    Examples:
        >>> import numpy as np
        >>> labels = np.array([0, 0, 1, 1])
        >>> emb = np.array([[0, 0], [0, 0], [1, 0], [1, 0]], np.float32)  # positives at 0, negatives at 1
        >>> round(float(BatchHardTripletLoss(margin=1.5)(labels, emb)), 4)
        0.5
    """

    def __init__(self, margin=1.0, soft=False, distance_metric="L2", name=None, **kwargs):
        super().__init__(
            batch_hard_triplet_loss,
            dict(margin=float(margin), soft=bool(soft), distance_metric=check_metric(distance_metric)),
            name=name or "batch_hard_triplet_loss",
            **kwargs,
        )


@keras.saving.register_keras_serializable(package=_PKG)
class RandomTripletLoss(MetricLoss):
    """Classic triplet loss on pre-sampled triplets (see :func:`random_triplet_loss`): ``y_pred`` is
    ``(N, 3, D)`` = (anchor, positive, negative) descriptors (e.g. from :func:`hpatches_kit.training.pipelines.triplet_dataset`);
    ``y_true`` is ignored."""

    def __init__(self, margin=1.0, soft=False, distance_metric="L2", swap=False, name=None, **kwargs):
        super().__init__(
            random_triplet_loss,
            dict(
                margin=float(margin),
                soft=bool(soft),
                distance_metric=_check_row_metric(distance_metric),
                swap=bool(swap),
            ),
            name=name or "random_triplet_loss",
            **kwargs,
        )


from .hardnet import *  # noqa: E402,F401,F403
from .hardnet import __all__ as _hardnet_all  # noqa: E402
from .pair import *  # noqa: E402,F401,F403
from .pair import __all__ as _pair_all  # noqa: E402

__all__ = [
    "DISTANCE_METRICS",
    "pairwise_distance",
    "safe_sqrt",
    "sk_labels",
    "triplet_hard_loss",
    "triplet_semihard_loss",
    "TripletHardLoss",
    "TripletSemiHardLoss",
    "batch_all_triplet_loss",
    "BatchAllTripletLoss",
    "batch_hard_triplet_loss",
    "BatchHardTripletLoss",
    "triplet_margin_loss",
    "random_triplet_loss",
    "RandomTripletLoss",
    *_hardnet_all,
    *_pair_all,
]
