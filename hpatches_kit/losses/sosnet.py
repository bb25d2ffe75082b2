"""SOSNet (Tian et al., "SOSNet: Second Order Similarity Regularization for Local Descriptor Learning", CVPR 2019).

For a batch of N matching pairs ``(x_i, x_i^+)`` (anchors and positives, L2-normalised descriptors) with
``d(a, b) = sqrt(||a - b||^2 + eps)`` (``eps = 1e-6``, the authors' ``eps_sqrt``):

**First order (FOS)**, a HardNet-style loss with a *squared* hinge and the four in-batch negatives::

    d_i^neg = min_{j != i} ( d(x_i, x_j), d(x_i, x_j^+), d(x_i^+, x_j), d(x_i^+, x_j^+) )
    L_FOS   = 1/N sum_i max(0, t + d(x_i, x_i^+) - d_i^neg)^2,                t = 1

**Second-order similarity regulariser (SOSR)**: the distances of a pair to its neighbours should be the same
on both sides of the pair::

    R_SOS = 1/N sum_i sqrt( sum_{j != i, j in c_i} (d(x_i, x_j) - d(x_i^+, x_j^+))^2 + eps )

with ``c_i = kNN(x_i) u kNN(x_i^+)``, the ``k = 8`` nearest neighbours of ``x_i`` among the anchors and of
``x_i^+`` among the positives (``neighbourhood="paper"``). ``neighbourhood="official"`` takes the authors'
code's larger set (``yuruntian/HyNet`` ``train.py`` ``Loss_SOSNet.sos_loss``): the symmetrised union of the
kNN graphs of the anchors, of the positives and of the anchor-positive distances (both directions).
``L = L_FOS + w * R_SOS`` with ``w = 1``.

As in the authors' code, negatives closer than ``fn_threshold = 8e-3`` (HardNet's false-negative threshold) are
neither mined nor counted as neighbours, and the mining/kNN choice carries no gradient. The paper averages over
the N pairs (the code sums; with Adam only the ratio of the two terms matters, and it is the same).

S x K track-major batches (``views_per_track=K``, ``K >= 2``): every pair of views ``u < v`` is one such batch
(anchors = view ``u`` of each track, positives = view ``v``); the loss is the mean over the ``K(K-1)/2`` view
pairs. For ``K = 2`` this is the paper's loss.

* :func:`sos_regularizer` / :class:`SOSRegularizer` -- ``R_SOS`` alone (a loss on its own);
  :class:`SOSRegularized` adds ``w * R_SOS`` to any other ``(labels, embeddings)`` loss.
* :func:`sosnet_loss` / :class:`SOSNetLoss` -- ``L_FOS + w * R_SOS`` (registry name ``"sosr"``).

Examples:
    >>> import numpy as np
    >>> from hpatches_kit.losses import SOSNetLoss
    >>> x = np.random.default_rng(0).normal(size=(32, 8)).astype("float32")
    >>> x /= np.linalg.norm(x, axis=1, keepdims=True)
    >>> loss = SOSNetLoss(views_per_track=2, knn=4)
    >>> float(loss(np.repeat(np.arange(16), 2), x)) > 0
    True
"""

from __future__ import annotations

import keras
from keras import ops

from .base import MetricLoss
from .distances import _as_float, check_structured_labels, check_views, flat_labels, nan_if_not_finite

__all__ = ["sos_regularizer", "sosnet_loss", "SOSRegularizer", "SOSNetLoss", "SOSRegularized", "NEIGHBOURHOODS"]

PKG = "hpatches_kit.losses"
EPS_SQRT = 1e-6  # the authors' eps_sqrt
FN_THRESHOLD = 8e-3  # the authors' dist_th (HardNet): closer "negatives" are treated as false negatives
NEIGHBOURHOODS = ("paper", "official")
_BIG = 1e6


def _check_neighbourhood(value):
    if value not in NEIGHBOURHOODS:
        raise ValueError(f"neighbourhood must be one of {', '.join(NEIGHBOURHOODS)}, got {value!r}")
    return value


def descriptor_distances(emb, eps=EPS_SQRT):
    """``(B, D) -> (B, B)`` ``sqrt(max(||x_i - x_j||^2, 0) + eps)`` (the authors' distance; finite gradient
    everywhere, the diagonal is ``sqrt(eps)``)."""
    gram = ops.matmul(emb, ops.transpose(emb))
    sq = ops.diagonal(gram)
    d2 = ops.maximum(ops.expand_dims(sq, 1) + ops.expand_dims(sq, 0) - 2.0 * gram, 0.0)
    return ops.sqrt(d2 + eps)


def view_pair_blocks(dist, k):
    """``(B, B)`` distances of an S x K track-major batch -> ``(L, R, LR)``, each ``(P, S, S)`` over the
    ``P = K(K-1)/2`` view pairs ``u < v``: ``L[p, i, j] = d(x_iu, x_ju)``, ``R = d(x_iv, x_jv)``,
    ``LR = d(x_iu, x_jv)``."""
    b = dist.shape[0]
    s = b // k
    d4 = ops.transpose(ops.reshape(dist, (s, k, s, k)), (1, 3, 0, 2))  # [u, v, i, j] = d(x_iu, x_jv)
    pairs = [(u, v) for u in range(k) for v in range(u + 1, k)]
    take = lambda a, c: ops.stack([d4[p[a], p[c]] for p in pairs])  # noqa: E731
    return take(0, 0), take(1, 1), take(0, 1)


def _excluded(d, fn_threshold):
    """``(P, S, S)`` mask of the pairs never mined: the diagonal and the false negatives (no gradient)."""
    s = d.shape[-1]
    eye = ops.cast(ops.eye(s), "bool")
    return ops.logical_or(eye, ops.stop_gradient(d) <= fn_threshold)


def _hardest_negative(L, R, LR, fn_threshold):
    """``d_i^neg`` (P, S): the closest of the four negatives of pair ``i`` (see module docstring)."""

    def masked(d):
        return ops.where(_excluded(d, fn_threshold), ops.cast(_BIG, d.dtype), d)

    Lm, Rm, LRm = masked(L), masked(R), masked(LR)
    anchor = ops.minimum(ops.min(LRm, axis=-1), ops.min(Lm, axis=-1))  # d(x_i, x_j^+), d(x_i, x_j)
    positive = ops.minimum(ops.min(LRm, axis=-2), ops.min(Rm, axis=-2))  # d(x_j, x_i^+), d(x_j^+, x_i^+)
    return ops.minimum(anchor, positive)


def _knn_mask(d, knn, fn_threshold, axis=-1):
    """``(P, S, S)`` boolean: ``[p, i, j]`` is one of the ``knn`` smallest of row ``i`` (``axis=-1``) or of
    column ``j`` (``axis=-2``) of ``d``, diagonal and false negatives left out."""
    s = d.shape[-1]
    x = ops.where(_excluded(d, fn_threshold), ops.cast(_BIG, d.dtype), ops.stop_gradient(d))
    if axis == -2:
        x = ops.swapaxes(x, -1, -2)
    _, idx = ops.top_k(-x, k=knn)  # (P, S, knn)
    mask = ops.sum(ops.one_hot(idx, s, dtype="float32"), axis=-2) > 0
    return ops.swapaxes(mask, -1, -2) if axis == -2 else mask


def _sym(m):
    return ops.logical_or(m, ops.swapaxes(m, -1, -2))


def _sosr(L, R, LR, knn, neighbourhood, fn_threshold, eps=EPS_SQRT):
    s = L.shape[-1]
    k = min(int(knn), s - 1)
    if neighbourhood == "paper":
        c = ops.logical_or(_knn_mask(L, k, fn_threshold), _knn_mask(R, k, fn_threshold))
    else:  # the authors' code: symmetrised kNN graphs of L, R and LR (rows and columns)
        lr = ops.logical_or(_knn_mask(LR, k, fn_threshold), _knn_mask(LR, k, fn_threshold, axis=-2))
        c = ops.logical_or(
            ops.logical_or(_sym(_knn_mask(L, k, fn_threshold)), _sym(_knn_mask(R, k, fn_threshold, axis=-2))), _sym(lr)
        )
    c = ops.logical_and(c, ops.logical_not(ops.cast(ops.eye(s), "bool")))
    diff = ops.where(c, L - R, ops.zeros_like(L))
    return ops.mean(ops.sqrt(ops.sum(ops.square(diff), axis=-1) + eps))


def _blocks(y_true, y_pred, views_per_track):
    labels = flat_labels(y_true)
    emb = _as_float(y_pred)
    if len(emb.shape) != 2:
        raise ValueError(f"embeddings must be 2-D (batch, dim), got shape {tuple(emb.shape)}")
    if emb.shape[0] is None:
        raise ValueError("SOSNet/HyNet losses need a static batch size (drop_remainder=True)")
    k = check_views(views_per_track, emb.shape[0])
    if k is None or k < 2:
        raise ValueError(f"views_per_track must be >= 2 (S x K track-major batches), got {views_per_track}")
    if emb.shape[0] // k < 2:
        raise ValueError(f"need at least 2 tracks per batch, got {emb.shape[0] // k}")
    return labels, emb, k


def sos_regularizer(y_true, y_pred, knn=8, views_per_track=2, neighbourhood="paper", fn_threshold=FN_THRESHOLD):
    """``R_SOS`` of an S x K track-major batch (module docstring).

    Args:
        y_true: ``(B,)`` track labels (checked to be S x K track-major).
        y_pred: ``(B, D)`` descriptors (L2-normalised, as SOSNet's network outputs).
        knn: neighbours per side (paper: 8; capped at ``S - 1``).
        views_per_track: ``K >= 2``.
        neighbourhood: ``"paper"`` (``kNN(x_i) u kNN(x_i^+)``) or ``"official"`` (the authors' code).
        fn_threshold: distances at or below it are false negatives, never neighbours.

    Returns:
        A scalar.

    Shape:
        ``y_true`` ``(S*K,)``, ``y_pred`` ``(S*K, D)``.
    """
    labels, emb, k = _blocks(y_true, y_pred, views_per_track)
    L, R, LR = view_pair_blocks(descriptor_distances(emb), k)
    value = _sosr(L, R, LR, knn, neighbourhood, fn_threshold)
    return nan_if_not_finite(check_structured_labels(labels, k, value), emb)


def sosnet_loss(
    y_true,
    y_pred,
    margin=1.0,
    knn=8,
    sos_weight=1.0,
    views_per_track=2,
    neighbourhood="paper",
    fn_threshold=FN_THRESHOLD,
):
    """SOSNet's ``L_FOS + sos_weight * R_SOS`` (module docstring); arguments as :func:`sos_regularizer`, plus
    ``margin`` (``t``, paper: 1) and ``sos_weight`` (paper: 1).

    Returns:
        A scalar.

    Shape:
        ``y_true`` ``(S*K,)``, ``y_pred`` ``(S*K, D)``.
    """
    labels, emb, k = _blocks(y_true, y_pred, views_per_track)
    L, R, LR = view_pair_blocks(descriptor_distances(emb), k)
    pos = ops.diagonal(LR, axis1=-2, axis2=-1)
    fos = ops.mean(ops.square(ops.relu(margin + pos - _hardest_negative(L, R, LR, fn_threshold))))
    value = fos
    if sos_weight:
        value = value + sos_weight * _sosr(L, R, LR, knn, neighbourhood, fn_threshold)
    return nan_if_not_finite(check_structured_labels(labels, k, value), emb)


def _sos_regularized(
    y_true, y_pred, loss, weight=1.0, knn=8, views_per_track=2, neighbourhood="paper", fn_threshold=FN_THRESHOLD
):
    fn = loss.call if isinstance(loss, keras.losses.Loss) else loss
    base = ops.cast(fn(y_true, y_pred), "float32")
    return base + weight * ops.cast(
        sos_regularizer(y_true, y_pred, knn, views_per_track, neighbourhood, fn_threshold), "float32"
    )


def _checked(knn, views_per_track, neighbourhood, fn_threshold):
    if int(knn) < 1:
        raise ValueError(f"knn must be >= 1, got {knn}")
    k = check_views(views_per_track, None)
    if k is None or k < 2:
        raise ValueError(f"views_per_track must be >= 2, got {views_per_track}")
    return dict(
        knn=int(knn),
        views_per_track=k,
        neighbourhood=_check_neighbourhood(neighbourhood),
        fn_threshold=float(fn_threshold),
    )


@keras.saving.register_keras_serializable(package=PKG)
class SOSRegularizer(MetricLoss):
    """``weight * R_SOS`` as a Keras loss (:func:`sos_regularizer`)."""

    def __init__(
        self,
        weight=1.0,
        knn=8,
        views_per_track=2,
        neighbourhood="paper",
        fn_threshold=FN_THRESHOLD,
        name="sos_regularizer",
        **kwargs,
    ):
        super().__init__(
            _weighted_sosr,
            dict(weight=float(weight), **_checked(knn, views_per_track, neighbourhood, fn_threshold)),
            name=name,
            **kwargs,
        )


def _weighted_sosr(y_true, y_pred, weight=1.0, **kw):
    return weight * sos_regularizer(y_true, y_pred, **kw)


@keras.saving.register_keras_serializable(package=PKG)
class SOSNetLoss(MetricLoss):
    """SOSNet's loss (:func:`sosnet_loss`): squared-hinge first-order loss + ``sos_weight`` x SOSR."""

    def __init__(
        self,
        margin=1.0,
        knn=8,
        sos_weight=1.0,
        views_per_track=2,
        neighbourhood="paper",
        fn_threshold=FN_THRESHOLD,
        name="sosnet_loss",
        **kwargs,
    ):
        super().__init__(
            sosnet_loss,
            dict(
                margin=float(margin),
                sos_weight=float(sos_weight),
                **_checked(knn, views_per_track, neighbourhood, fn_threshold),
            ),
            name=name,
            **kwargs,
        )


@keras.saving.register_keras_serializable(package=PKG)
class SOSRegularized(MetricLoss):
    """``loss + weight * R_SOS``: the SOSR term added to any ``(labels, embeddings)`` loss (evaluated unscaled,
    the sum scaled once for ``tf.distribute``), e.g. ``SOSRegularized(HardNetLoss(views_per_track=2))``."""

    def __init__(
        self,
        loss,
        weight=1.0,
        knn=8,
        views_per_track=2,
        neighbourhood="paper",
        fn_threshold=FN_THRESHOLD,
        name=None,
        **kwargs,
    ):
        loss = keras.losses.get(loss) if isinstance(loss, (str, dict)) else loss
        super().__init__(
            _sos_regularized,
            dict(loss=loss, weight=float(weight), **_checked(knn, views_per_track, neighbourhood, fn_threshold)),
            name=name or f"{getattr(loss, 'name', 'loss')}_sosr",
            **kwargs,
        )
