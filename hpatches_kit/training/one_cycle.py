"""PyTorch's one-cycle learning-rate schedule as a Keras schedule (``hpatches-train vit-adapter``)."""

from __future__ import annotations

import math

import keras
from keras import ops

__all__ = ["OneCycle"]


@keras.saving.register_keras_serializable(package="hpatches_kit")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """PyTorch ``OneCycleLR`` (cosine annealing, ``three_phase=False``): from ``max_lr/div_factor`` up to
    ``max_lr`` over the first ``pct_start`` of ``total_steps``, then down to ``initial/final_div_factor``."""

    def __init__(
        self,
        max_lr: float,
        total_steps: int,
        pct_start: float = 0.3,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
    ):
        self.max_lr, self.total_steps = float(max_lr), int(total_steps)
        self.pct_start, self.div_factor, self.final_div_factor = (
            float(pct_start),
            float(div_factor),
            float(final_div_factor),
        )

    def __call__(self, step):
        step = ops.cast(step, "float32")
        init = self.max_lr / self.div_factor
        low = init / self.final_div_factor
        end1 = float(self.pct_start * self.total_steps) - 1.0
        end2 = float(self.total_steps) - 1.0

        def anneal(start, end, pct):
            return end + (start - end) / 2.0 * (ops.cos(math.pi * pct) + 1.0)

        p1 = ops.clip(step / max(end1, 1e-9), 0.0, 1.0)
        p2 = ops.clip((step - end1) / max(end2 - end1, 1e-9), 0.0, 1.0)
        return ops.where(step <= end1, anneal(init, self.max_lr, p1), anneal(self.max_lr, low, p2))

    def get_config(self):
        return {
            "max_lr": self.max_lr,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
        }
