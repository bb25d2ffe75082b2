"""HyNet's loss (Tian et al., "HyNet: Learning Local Descriptor with Hybrid Similarity Measure and Triplet
Loss", NeurIPS 2020), in ``keras.ops``.

For N matching pairs with *raw* descriptors ``(r_i, r_i^+)`` (the network output before L2 normalisation) and
their L2-normalised ``x = r / ||r||``, ``s = x . y`` (cosine) and ``d = sqrt(|2 - 2 s| + eps)``:

**Hybrid similarity** ``s_H(x, y) = alpha * s - d`` (the inner product and the L2 distance combined; the
paper's ``1/Z`` is a constant folded into the margin). The triplet loss on it, with the hardest of the four
in-batch negatives (as SOSNet; false negatives ``d <= 8e-3`` skipped)::

    L_H = 1/N sum_i max(0, gamma_m + s_H(x_i, x_neg(i)) - s_H(x_i, x_i^+))
        = 1/N sum_i max(0, m + (d_pos + alpha d_pos^2 / 2) - (d_neg + alpha d_neg^2 / 2))

(the second line is the authors' code, ``yuruntian/HyNet`` ``train.py`` ``triplet_loss_hybrid``: with
``d^2 = 2 - 2 s`` it is the first up to the constant). Defaults as the paper/code: ``alpha = 2``, margin
``m = 1.2``.

**L2-norm regulariser** on the raw descriptors, pulling the norms of a matching pair together::

    R_L2 = 1/N sum_i (||r_i|| - ||r_i^+||)^2,        L = L_H + gamma * R_L2,  gamma = 0.1

(norms as the code computes them, ``sqrt(sum r^2 + eps)``). A model that already L2-normalises its output
(``l2net``) makes ``R_L2`` identically 0: give the loss the pre-normalisation output to train with it.
The code sums over pairs; this averages (same ratio of the two terms).

S x K track-major batches (``views_per_track=K``): mean over the ``K(K-1)/2`` view pairs, as
:mod:`hpatches_kit.losses.sosnet`. Registry name ``"hynet"``.

Examples:
    >>> import numpy as np
    >>> from hpatches_kit.losses import HyNetLoss
    >>> x = np.random.default_rng(0).normal(size=(32, 8)).astype("float32")
    >>> loss = HyNetLoss(views_per_track=2)
    >>> loss.margin, loss.alpha, loss.gamma
    (1.2, 2.0, 0.1)
    >>> float(loss(np.repeat(np.arange(16), 2), x)) > 0
    True
"""

from __future__ import annotations

import keras
from keras import ops

from .base import MetricLoss
from .distances import check_structured_labels, check_views, nan_if_not_finite
from .sosnet import EPS_SQRT, FN_THRESHOLD, _blocks, _hardest_negative, _sosr, view_pair_blocks

__all__ = ["hynet_loss", "HyNetLoss"]

EPS_L2_NORM = 1e-10  # the authors' eps_l2_norm


def hynet_loss(
    y_true,
    y_pred,
    margin=1.2,
    alpha=2.0,
    gamma=0.1,
    views_per_track=2,
    sos_weight=0.0,
    knn=8,
    fn_threshold=FN_THRESHOLD,
):
    """HyNet's ``L_H + gamma * R_L2`` (module docstring), plus ``sos_weight * R_SOS`` (the code's ``is_sosr``
    option, off by default) on the normalised descriptors.

    Args:
        y_true: ``(B,)`` track labels, S x K track-major.
        y_pred: ``(B, D)`` raw descriptors (normalised inside; their norms feed ``R_L2``).
        margin, alpha, gamma: the paper's ``m = 1.2``, ``alpha = 2``, ``gamma = 0.1``.
        views_per_track: ``K >= 2``.
        sos_weight, knn: SOSR weight and neighbourhood (the authors' code's neighbourhood).
        fn_threshold: negatives at or below this distance are not mined.

    Returns:
        A scalar.

    Shape:
        ``y_true`` ``(S*K,)``, ``y_pred`` ``(S*K, D)``.
    """
    labels, raw, k = _blocks(y_true, y_pred, views_per_track)
    sq = ops.sum(ops.square(raw), axis=1)
    x = raw / ops.expand_dims(ops.sqrt(sq + EPS_L2_NORM), 1)
    gram = ops.matmul(x, ops.transpose(x))
    dist = ops.sqrt(ops.abs(2.0 * (1.0 - gram)) + EPS_SQRT)
    L, R, LR = view_pair_blocks(dist, k)
    pos = ops.diagonal(LR, axis1=-2, axis2=-1)
    neg = _hardest_negative(L, R, LR, fn_threshold)
    hybrid = ops.relu(margin + (pos + alpha * ops.square(pos) / 2.0) - (neg + alpha * ops.square(neg) / 2.0))
    value = ops.mean(hybrid)
    if gamma:
        norms = ops.sqrt(sq + EPS_SQRT)
        s = norms.shape[0] // k
        nv = ops.reshape(norms, (s, k))
        diffs = ops.stack([nv[:, u] - nv[:, v] for u in range(k) for v in range(u + 1, k)])
        value = value + gamma * ops.mean(ops.square(diffs))
    if sos_weight:
        value = value + sos_weight * _sosr(L, R, LR, knn, "official", fn_threshold)
    return nan_if_not_finite(check_structured_labels(labels, k, value), raw)


@keras.saving.register_keras_serializable(package="hpatches_kit.losses")
class HyNetLoss(MetricLoss):
    """HyNet's hybrid-similarity triplet loss + L2-norm regulariser (:func:`hynet_loss`)."""

    def __init__(
        self,
        margin=1.2,
        alpha=2.0,
        gamma=0.1,
        views_per_track=2,
        sos_weight=0.0,
        knn=8,
        fn_threshold=FN_THRESHOLD,
        name="hynet_loss",
        **kwargs,
    ):
        k = check_views(views_per_track, None)
        if k is None or k < 2:
            raise ValueError(f"views_per_track must be >= 2, got {views_per_track}")
        if alpha < 0 or gamma < 0:
            raise ValueError(f"alpha and gamma must be >= 0, got {alpha} and {gamma}")
        super().__init__(
            hynet_loss,
            dict(
                margin=float(margin),
                alpha=float(alpha),
                gamma=float(gamma),
                views_per_track=k,
                sos_weight=float(sos_weight),
                knn=int(knn),
                fn_threshold=float(fn_threshold),
            ),
            name=name,
            **kwargs,
        )
