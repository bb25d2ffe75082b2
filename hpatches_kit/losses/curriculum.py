"""The curriculum triplet loss: batch-all first, then batch-hard, as a variable weight moves from 0 to 1
(set each epoch by :class:`MiningCurriculum`, the callback its registry entry asks the trainer for)."""

from __future__ import annotations

import keras
from keras import ops

from .base import MetricLoss
from .distances import check_metric, check_views
from .triplet import batch_all_triplet_loss, batch_hard_triplet_loss

__all__ = ["curriculum_triplet_loss", "CurriculumTripletLoss", "MiningCurriculum"]


def curriculum_triplet_loss(
    y_true, y_pred, margin=1.0, hard_weight=1.0, soft=False, distance_metric="L2", views_per_track=None
):
    """``(1 - w) * batch_all_triplet_loss + w * batch_hard_triplet_loss`` with ``w = hard_weight`` (a number
    or a scalar variable), both with the same ``margin``, ``soft`` and ``distance_metric``; float32."""
    w = ops.cast(ops.convert_to_tensor(hard_weight), "float32")
    hard = batch_hard_triplet_loss(y_true, y_pred, margin, soft, distance_metric)
    alls = batch_all_triplet_loss(y_true, y_pred, margin, soft, distance_metric, views_per_track=views_per_track)
    return (1.0 - w) * ops.cast(alls, "float32") + w * ops.cast(hard, "float32")


@keras.saving.register_keras_serializable(package="hpatches_kit")
class CurriculumTripletLoss(MetricLoss):
    """:func:`curriculum_triplet_loss` (``views_per_track`` speeds up batch-all on S x K batches). ``w``
    (``hard_weight``) is a non-trainable variable: 0 = batch-all, 1 = batch-hard; the config saves its value."""

    def __init__(
        self,
        margin: float = 1.0,
        hard_weight: float = 1.0,
        soft: bool = False,
        distance_metric="L2",
        views_per_track=None,
        name=None,
        **kwargs,
    ):
        weight = keras.Variable(float(hard_weight), trainable=False, dtype="float32", name="hard_weight")
        super().__init__(
            curriculum_triplet_loss,
            dict(
                margin=float(margin),
                hard_weight=weight,
                soft=bool(soft),
                distance_metric=check_metric(distance_metric),
                views_per_track=check_views(views_per_track, None),
            ),
            name=name or "curriculum_triplet",
            **kwargs,
        )


class MiningCurriculum(keras.callbacks.Callback):
    """Progressive mining: sets ``loss.hard_weight`` (a :class:`CurriculumTripletLoss`) to 0
    (batch-all) for ``warmup`` epochs, then ramps it linearly to 1 (batch-hard) over ``ramp`` epochs."""

    def __init__(self, loss, warmup: int = 1, ramp: int = 1):
        super().__init__()
        self.loss, self.warmup, self.ramp = loss, int(warmup), int(ramp)
        self.weights: list[float] = []

    def weight(self, epoch: int) -> float:
        if epoch < self.warmup:
            return 0.0
        if self.ramp <= 0:
            return 1.0
        return float(min(1.0, (epoch - self.warmup + 1) / self.ramp))

    def on_epoch_begin(self, epoch, logs=None):
        w = self.weight(epoch)
        self.loss.hard_weight.assign(w)
        self.weights.append(w)
