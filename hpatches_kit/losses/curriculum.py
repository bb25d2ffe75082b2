"""The curriculum triplet loss: batch-all first, then batch-hard, as a variable weight moves from 0 to 1
(set each epoch by :class:`hpatches_kit.training.callbacks.MiningCurriculum`)."""

from __future__ import annotations

import keras
from keras import ops

from .distances import LabelledLoss, check_metric, check_views, deserialize_metric, serialize_metric
from .triplet import batch_all_triplet_loss, batch_hard_triplet_loss

__all__ = ["CurriculumTripletLoss"]


@keras.saving.register_keras_serializable(package="hpatches_kit")
class CurriculumTripletLoss(LabelledLoss):
    """``(1 - w) * batch_all_triplet_loss + w * batch_hard_triplet_loss`` (same ``margin``, ``soft``,
    ``distance_metric``; ``views_per_track`` speeds up batch-all on S x K batches). ``w`` (``hard_weight``)
    is a non-trainable variable: 0 = batch-all, 1 = batch-hard."""

    def __init__(self, margin: float = 1.0, hard_weight: float = 1.0, soft: bool = False, distance_metric="L2",
                 views_per_track=None, name=None, **kwargs):
        super().__init__(name=name or "curriculum_triplet", **kwargs)
        self.margin, self.soft, self.distance_metric = float(margin), bool(soft), check_metric(distance_metric)
        self.views_per_track = check_views(views_per_track, None)
        self.hard_weight = keras.Variable(float(hard_weight), trainable=False, dtype="float32", name="hard_weight")

    def call(self, y_true, y_pred):
        w = ops.convert_to_tensor(self.hard_weight)
        hard = batch_hard_triplet_loss(y_true, y_pred, self.margin, self.soft, self.distance_metric)
        alls = batch_all_triplet_loss(y_true, y_pred, self.margin, self.soft, self.distance_metric,
                                      views_per_track=self.views_per_track)
        return (1.0 - w) * ops.cast(alls, "float32") + w * ops.cast(hard, "float32")

    def get_config(self):
        return {**super().get_config(), "margin": self.margin, "soft": self.soft,
                "distance_metric": serialize_metric(self.distance_metric), "views_per_track": self.views_per_track,
                "hard_weight": float(ops.convert_to_numpy(self.hard_weight))}

    @classmethod
    def from_config(cls, config):
        return cls(**{**config, "distance_metric": deserialize_metric(config.get("distance_metric", "L2"))})
