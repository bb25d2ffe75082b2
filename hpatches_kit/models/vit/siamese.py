"""The shared-weight two-tower wrapper a ViT adapter trains in: ``(left, right)`` images -> ``(B, 2, D)``."""

from __future__ import annotations

import keras
from keras import ops

from .layers import PKG

__all__ = ["PairStack", "siamese"]


@keras.saving.register_keras_serializable(package=PKG)
class PairStack(keras.layers.Layer):
    """``[(B, D), (B, D)] -> (B, 2, D)`` (pair-stacked embeddings for the pair losses)."""

    def call(self, inputs):
        return ops.stack(list(inputs), axis=1)

    def compute_output_shape(self, input_shapes):
        s = input_shapes[0]
        return (s[0], 2, s[1])


def siamese(backbone: keras.Model) -> keras.Model:
    """Shared-weight two-tower model: ``(left, right)`` images -> ``(B, 2, D)``."""
    shape = backbone.input_shape[1:]
    left = keras.Input(shape, name="left")
    right = keras.Input(shape, name="right")
    out = PairStack(name="pair_stack")([backbone(left), backbone(right)])
    return keras.Model([left, right], out, name="siamese")
