"""Keras twins of published PyTorch patch descriptors, layer for layer, so their checkpoints can be loaded
(:func:`hpatches_kit.models.from_torch`, in :mod:`.torch_import`, which depends on this module, never the
reverse).

Each port reproduces the PyTorch forward pass exactly, including the details a "same-looking" TensorFlow
re-implementation gets wrong:

* **padding**: PyTorch ``Conv2d(..., stride=2, padding=1)`` pads one pixel on *every* side; Keras
  ``padding="same"`` with stride 2 on an even input pads 0 before and 1 after, shifting every sampled
  position by one pixel. Strided convs are therefore an explicit ``ZeroPadding2D(1)`` + ``"valid"`` conv
  (stride-1 3x3 convs with ``padding=1`` are identical to ``"same"``).
* **batch norm**: PyTorch's ``eps`` is 1e-5 (Keras' default 1e-3) and its ``momentum=0.1`` is Keras'
  ``momentum=0.9``.
* **input normalisation**: ``torch.std`` is the unbiased (N-1) estimate (HardNet, L2-Net:
  :class:`~hpatches_kit.models.l2net.PatchStandardize` with ``ddof=1``); ``InstanceNorm2d`` puts its
  ``eps`` inside the square root of the population variance (TFeat, SOSNet: :class:`InstanceNorm`).
* **flatten order**: PyTorch flattens ``(C, H, W)``; Keras flattens ``(H, W, C)``. The ports flatten the
  Keras way and :mod:`.torch_import` permutes the rows of the first ``Linear`` weight instead.
* **input range**: the project's models take patches in [0, 255]; PyTorch descriptors are fed [0, 1]
  (``ToTensor``). A leading ``Rescaling(input_scale)`` layer (default 1/255) bridges the two.

Layers carrying weights are named after their PyTorch module path with ``.`` replaced by ``_``
(``features.1`` -> ``features_1``), which is how :mod:`.torch_import` finds the state-dict entry of each.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from .l2net import L2Normalize, PatchStandardize

__all__ = ["ARCHS", "InstanceNorm", "torch_port"]

#: Supported architectures -> one-line description (PyTorch source the port follows).
ARCHS = {
    "tfeat": "TFeat (Balntas et al. 2016; vbalnt/tfeat, kornia.feature.TFeat): InstanceNorm, conv7-tanh-pool-"
    "conv6-tanh, Linear(4096, 128)-tanh; not L2-normalised",
    "hardnet": "HardNet (Mishchuk et al. 2017; kornia.feature.HardNet): input (x - mean) / (std + 1e-6), "
    "7 conv + affine-free BN, L2 norm",
    "l2net": "L2-Net architecture as in the original PyTorch HardNet code: input (x - mean) / (std + 1e-7), "
    "same layers as hardnet, L2 norm",
    "hardnet8": "HardNet8 (Pultar 2020; kornia.feature.HardNet8): 8 conv + BN to 512, L2 norm, PCA to 128 "
    "(buffers mean, components), L2 norm",
    "sosnet": "SOSNet (Tian et al. 2019; kornia.feature.SOSNet): InstanceNorm, hardnet layers in `layers`, "
    "LocalResponseNorm over all channels (= L2 norm)",
}
INPUT_SIZE = 32  # every port ends in an 8x8 conv or Linear(64*8*8): fixed 32x32 input
TORCH_BN_EPS = 1e-5
_HARDNET_CONVS = ((32, 1), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1))
_HARDNET8_CONVS = ((32, 1), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (256, 1))


@keras.saving.register_keras_serializable(package="hpatches_kit")
class InstanceNorm(layers.Layer):
    """PyTorch's ``InstanceNorm2d(C, affine=False)``: each sample and channel normalised over its pixels,
    ``(x - mean) / sqrt(var + eps)`` with the population variance (no weights, no running statistics).

    Args:
        epsilon: added to the variance inside the square root (PyTorch's default 1e-5).

    Shape:
        - Input: :math:`(B, H, W, C)`
        - Output: :math:`(B, H, W, C)`

    Example:
        >>> import numpy as np
        >>> y = InstanceNorm()(np.arange(8, dtype="float32").reshape(1, 2, 4, 1))
        >>> print(np.round(np.asarray(y).ravel()[:2], 4))
        [-1.5275 -1.0911]
    """

    def __init__(self, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        if not epsilon >= 0:
            raise ValueError(f"InstanceNorm: epsilon must be >= 0, got {epsilon}")
        self.epsilon = float(epsilon)

    def call(self, x):
        if len(x.shape) != 4:
            raise ValueError(f"InstanceNorm expects (B, H, W, C) inputs, got shape {tuple(x.shape)}")
        mean = ops.mean(x, axis=(1, 2), keepdims=True)
        var = ops.mean(ops.square(x - mean), axis=(1, 2), keepdims=True)
        return (x - mean) / ops.sqrt(var + ops.cast(self.epsilon, x.dtype))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


def _bn(name):
    return layers.BatchNormalization(center=False, scale=False, epsilon=TORCH_BN_EPS, momentum=0.9, name=name)


def _conv(x, filters, kernel, stride, name, use_bias=False, pad=0):
    if pad and stride > 1:  # PyTorch pads symmetrically; Keras "same" would pad (0, 1) at stride 2
        x = layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
        padding = "valid"
    else:
        padding = "same" if pad else "valid"
    return layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=use_bias, name=name)(x)


def _hardnet_body(x, convs, final_dim, prefix, offset, dropout):
    """``nn.Sequential`` of (conv3x3 pad 1, BN, ReLU) * n, Dropout, conv8x8, BN at ``prefix.<offset + i>``."""
    i = offset
    for f, s in convs:
        x = _conv(x, f, 3, s, f"{prefix}_{i}", pad=1)
        x = _bn(f"{prefix}_{i + 1}")(x)
        x = layers.Activation("relu", name=f"{prefix}_{i + 2}")(x)
        i += 3
    x = layers.Dropout(dropout, name=f"{prefix}_{i}")(x)
    x = _conv(x, final_dim, 8, 1, f"{prefix}_{i + 1}")
    x = _bn(f"{prefix}_{i + 2}")(x)
    return layers.Flatten(name="flatten")(x)


def torch_port(
    arch: str, input_scale: float = 1.0 / 255.0, name: str | None = None, dropout: float | None = None
) -> keras.Model:
    """Build the Keras twin of a PyTorch descriptor (random weights; load them with ``from_torch``).

    Args:
        arch: one of :data:`ARCHS` (``tfeat``, ``hardnet``, ``l2net``, ``hardnet8``, ``sosnet``).
        input_scale: the model multiplies its [0, 255] input by this before the PyTorch layers (1/255: the
            PyTorch model was fed [0, 1] patches; 1: it was fed [0, 255]).
        name: model name (default: ``arch``).
        dropout: rate of the dropout before the last conv (default: the PyTorch model's, 0.3; SOSNet 0.1).
            Dropout is active only in training, so the imported network computes the same either way.

    Returns:
        A ``keras.Model`` mapping ``(32, 32, 1)`` float patches in [0, 255] to ``(128,)`` float32
        descriptors.

    Shape:
        - Input: :math:`(B, 32, 32, 1)`
        - Output: :math:`(B, 128)`

    Example:
        >>> m = torch_port("tfeat")
        >>> m.output_shape
        (None, 128)
    """
    key = str(arch).replace("-", "_").lower()
    if key not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {', '.join(ARCHS)}")
    if not input_scale > 0:
        raise ValueError(f"torch_port: input_scale must be > 0, got {input_scale}")
    if dropout is not None and not 0.0 <= dropout < 1.0:
        raise ValueError(f"torch_port: dropout must be in [0, 1), got {dropout}")

    def rate(default):
        return default if dropout is None else float(dropout)

    inp = keras.Input((INPUT_SIZE, INPUT_SIZE, 1), name="patch")
    x = layers.Rescaling(float(input_scale), name="input_scale")(inp)
    if key == "tfeat":
        x = InstanceNorm(name="features_0")(x)
        x = _conv(x, 32, 7, 1, "features_1", use_bias=True)
        x = layers.Activation("tanh", name="features_2")(x)
        x = layers.MaxPooling2D(2, name="features_3")(x)
        x = _conv(x, 64, 6, 1, "features_4", use_bias=True)
        x = layers.Activation("tanh", name="features_5")(x)
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(128, name="descr_0")(x)
        out = layers.Activation("tanh", dtype="float32", name="descr_1")(x)
    elif key in ("hardnet", "l2net"):
        x = PatchStandardize(epsilon=1e-6 if key == "hardnet" else 1e-7, ddof=1, name="input_norm")(x)
        x = _hardnet_body(x, _HARDNET_CONVS, 128, "features", 0, rate(0.3))
        out = L2Normalize(epsilon=1e-12, name="l2norm")(x)
    elif key == "hardnet8":
        x = PatchStandardize(epsilon=1e-7, ddof=1, name="input_norm")(x)
        x = _hardnet_body(x, _HARDNET8_CONVS, 512, "features", 0, rate(0.3))
        x = L2Normalize(epsilon=1e-12, name="l2norm_pre_pca")(x)
        # (x - mean) @ components == x @ components + bias with bias = -mean @ components (set on import).
        # PyTorch keeps the PCA as fixed buffers, not parameters: the layer is frozen (trainable=False, kept in
        # the saved config). A model trained from scratch projects with a fixed random orthonormal basis.
        x = layers.Dense(128, kernel_initializer=keras.initializers.Orthogonal(seed=0), trainable=False, name="pca")(x)
        out = L2Normalize(epsilon=1e-12, name="l2norm")(x)
    else:  # sosnet
        x = InstanceNorm(name="layers_0")(x)
        x = _hardnet_body(x, _HARDNET_CONVS, 128, "layers", 1, rate(0.1))
        # LocalResponseNorm(256, alpha=256, beta=0.5, k=0) on 128 channels: every window covers all channels
        # and divides by (alpha * sum x^2 / size)^0.5 = ||x||; SOSNet's "+ 1e-10" before it is below float32
        # resolution of the batch-normed features and is left out.
        out = L2Normalize(epsilon=1e-12, name="desc_norm")(x)
    return keras.Model(inp, out, name=name or key)
