"""L2-Net / HardNet descriptor network.

Input: float patches in [0, 255], shape ``(P, P, 1)`` (``P`` divisible by 4; 32 as in the papers).
Architecture (HardNet, Mishchuk et al. 2017): per-patch standardisation, then 3x3 convs
32, 32, 64 (stride 2), 64, 128 (stride 2), 128, each without bias and followed by BatchNorm without
affine parameters (``center=False, scale=False``) and ReLU; dropout; a ``P/4 x P/4`` valid conv to ``dim``
channels + affine-free BatchNorm; flatten; L2 normalisation. The output (unit vectors) is float32 even
under a mixed-precision policy, so losses are computed in float32.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from hpatches_kit.models.layers import FusedBatchNorm


@keras.saving.register_keras_serializable(package="hpatches_kit")
class PatchStandardize(layers.Layer):
    """Standardise each sample to zero mean and unit standard deviation over its pixels:
    ``(x - mean) / (std + eps)`` (L2-Net's input normalisation; no trainable weights).

    Args:
        epsilon: added to the standard deviation.
        ddof: delta degrees of freedom of the standard deviation: 0 (population, the default) or 1 (the
            unbiased ``torch.std`` that the PyTorch HardNet / L2-Net code uses).

    Shape:
        - Input: :math:`(B, ...)`
        - Output: same as the input.
    """

    def __init__(self, epsilon: float = 1e-7, ddof: int = 0, **kwargs):
        super().__init__(**kwargs)
        if int(ddof) not in (0, 1):
            raise ValueError(f"PatchStandardize: ddof must be 0 or 1, got {ddof}")
        self.epsilon = float(epsilon)
        self.ddof = int(ddof)

    def call(self, x):
        axes = tuple(range(1, len(x.shape)))
        mean = ops.mean(x, axis=axes, keepdims=True)
        var = ops.mean(ops.square(x - mean), axis=axes, keepdims=True)
        if self.ddof:
            n = 1
            for a in axes:
                n *= int(x.shape[a])
            var = var * ops.cast(n / (n - self.ddof), x.dtype)
        std = ops.sqrt(var)
        return (x - mean) / (std + ops.cast(self.epsilon, x.dtype))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon, "ddof": self.ddof}


@keras.saving.register_keras_serializable(package="hpatches_kit")
class L2Normalize(layers.Layer):
    """``x / max(||x||_2, eps)`` along the last axis, computed in the layer's dtype: float32 unless another
    ``dtype`` is given, even under a mixed-precision global policy (descriptors and losses stay float32)."""

    def __init__(self, epsilon: float = 1e-10, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, x):
        x = ops.cast(x, self.compute_dtype)
        n = ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True))
        return x / ops.maximum(n, self.epsilon)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


_CONVS = ((32, 1), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1))


def l2net(
    input_size: int = 32, dim: int = 128, dropout: float = 0.3, name: str = "l2net", fused_bn: bool = True
) -> keras.Model:
    """Build the L2-Net/HardNet descriptor: ``(P, P, 1)`` floats in [0, 255] -> ``(dim,)`` unit vectors.

    Args:
        input_size: patch side ``P`` (a positive multiple of 4).
        dim: descriptor length.
        dropout: dropout rate before the final conv (0 for none).
        name: model name.
        fused_bn: use :class:`~hpatches_kit.models.layers.FusedBatchNorm` (TensorFlow's fused batch-norm kernel,
            ~1.4x faster train step on CPU; same weights and outputs) instead of ``keras.layers.BatchNormalization``.

    Returns:
        An uncompiled ``keras.Model``.

    Raises:
        ValueError: ``input_size`` not a positive multiple of 4, or ``dropout`` outside [0, 1).

    Shape:
        - Input: :math:`(B, P, P, 1)` float patches in [0, 255] (standardised inside the model)
        - Output: :math:`(B, dim)` float32, unit L2 norm

    Examples:
        >>> import numpy as np
        >>> m = l2net(input_size=32, dim=128)
        >>> m.input_shape, m.output_shape
        ((None, 32, 32, 1), (None, 128))
        >>> d = np.asarray(m(np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 1)), training=False))
        >>> d.shape, np.allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-5)
        ((2, 128), True)
    """
    if input_size <= 0 or input_size % 4:
        raise ValueError(f"l2net: input_size must be a positive multiple of 4, got {input_size}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"l2net: dropout must be in [0, 1), got {dropout}")
    bn = FusedBatchNorm if fused_bn else layers.BatchNormalization
    inp = keras.Input((input_size, input_size, 1), name="patch")
    x = PatchStandardize(name="standardize")(inp)
    for i, (f, s) in enumerate(_CONVS):
        x = layers.Conv2D(f, 3, strides=s, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = bn(center=False, scale=False, name=f"bn{i}")(x)
        x = layers.Activation("relu", name=f"relu{i}")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    k = input_size // 4
    x = layers.Conv2D(dim, k, padding="valid", use_bias=False, name="conv_final")(x)
    x = bn(center=False, scale=False, name="bn_final")(x)
    x = layers.Flatten(name="flatten")(x)
    out = L2Normalize(dtype="float32", name="l2norm")(x)
    return keras.Model(inp, out, name=name)
