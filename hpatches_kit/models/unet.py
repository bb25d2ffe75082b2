"""U-Net denoisers for N-HPatches (noisy patch -> clean patch).

Pixel scaling: both models take float patches **in [0, 255]** of shape ``(P, P, 1)`` and predict the clean
patch **in [0, 255]** (linear output). Internally the input is divided by 255 and the last conv's output is
multiplied by 255, so the network itself works on [0, 1] values while losses (e.g. MAE) and the denoised
patches handed to a descriptor are in pixel units.
"""

from __future__ import annotations

import keras
from keras import layers


def _check_size(input_size: int, factor: int, name: str) -> None:
    if input_size <= 0 or input_size % factor:
        raise ValueError(f"{name}: input_size must be a positive multiple of {factor}, got {input_size}")


def shallow_unet(input_size: int = 32, name: str = "shallow_unet") -> keras.Model:
    """The classic N-HPatches baseline denoiser:
    conv16 -> maxpool -> conv32 -> upsample -> conv64 -> concat(conv16) -> conv64 -> conv1 (3x3, ReLU, same)."""
    _check_size(input_size, 2, "shallow_unet")
    inp = keras.Input((input_size, input_size, 1), name="noisy")
    x = layers.Rescaling(1.0 / 255.0, name="scale_in")(inp)
    c1 = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv16")(x)
    x = layers.MaxPooling2D(2, name="pool")(c1)
    x = layers.Conv2D(32, 3, padding="same", activation="relu", name="conv32")(x)
    x = layers.UpSampling2D(2, name="up")(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu", name="conv64_up")(x)
    x = layers.Concatenate(name="skip")([x, c1])
    x = layers.Conv2D(64, 3, padding="same", activation="relu", name="conv64")(x)
    x = layers.Conv2D(1, 3, padding="same", name="conv1")(x)
    out = layers.Rescaling(255.0, dtype="float32", name="clean")(x)
    return keras.Model(inp, out, name=name)


#: ``deep_unet``'s default batch-norm momentum: the moving averages follow the last ~10 steps. At Keras' 0.99
#: (~100 steps) they lag the changing weights so far in runs of a few hundred steps that inference-mode MAE was
#: 12.92 where training-mode MAE was 5.80 (README "Denoising"); at 0.9 the deep U-Net beats the shallow one.
DEEP_UNET_BN_MOMENTUM = 0.9


def _conv_block(x, filters: int, prefix: str, bn_momentum: float = DEEP_UNET_BN_MOMENTUM):
    for i in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{prefix}_conv{i}")(x)
        x = layers.BatchNormalization(momentum=bn_momentum, name=f"{prefix}_bn{i}")(x)
        x = layers.Activation("relu", name=f"{prefix}_relu{i}")(x)
    return x


def deep_unet(
    input_size: int = 32,
    base: int = 16,
    depth: int = 4,
    name: str = "deep_unet",
    bn_momentum: float = DEEP_UNET_BN_MOMENTUM,
) -> keras.Model:
    """A ``depth``-level U-Net (level ``i`` has ``base * 2**i`` filters; two conv-BN-ReLU per level; max-pool
    down, transposed conv up, skip concatenations) with a global residual: ``clean = noisy + correction``.
    ``input_size`` must be divisible by ``2**(depth-1)``.

    Args:
        input_size: patch size ``P``.
        base: filters of the first level.
        depth: levels (``>= 2``).
        name: the model's name.
        bn_momentum: the batch norms' moving-average momentum, default 0.9 (:data:`DEEP_UNET_BN_MOMENTUM`):
            the averages follow the last ~10 steps. Keras' 0.99 averages over ~100 steps, and in runs of a few
            hundred steps the inference-mode statistics then lag far behind the training batches' (docs/training.md
            "Deep vs shallow U-Net"). Models saved with 0.99 load with 0.99 (it is in their config).

    Returns:
        The functional model.

    Shape:
        ``(B, P, P, 1)`` grey levels in [0, 255] -> ``(B, P, P, 1)`` float32 grey levels.

    Example:
        >>> deep_unet(32).get_layer("down0_bn1").momentum
        0.9
    """
    if not 0.0 <= bn_momentum < 1.0:
        raise ValueError(f"deep_unet: bn_momentum must be in [0, 1), got {bn_momentum}")
    if depth < 2:
        raise ValueError(f"deep_unet: depth must be >= 2, got {depth}")
    _check_size(input_size, 2 ** (depth - 1), "deep_unet")
    inp = keras.Input((input_size, input_size, 1), name="noisy")
    x = layers.Rescaling(1.0 / 255.0, name="scale_in")(inp)
    skips = []
    for lvl in range(depth - 1):
        x = _conv_block(x, base * 2**lvl, f"down{lvl}", bn_momentum)
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"pool{lvl}")(x)
    x = _conv_block(x, base * 2 ** (depth - 1), "bottom", bn_momentum)
    for lvl in reversed(range(depth - 1)):
        x = layers.Conv2DTranspose(base * 2**lvl, 2, strides=2, padding="same", name=f"up{lvl}")(x)
        x = layers.Concatenate(name=f"skip{lvl}")([x, skips[lvl]])
        x = _conv_block(x, base * 2**lvl, f"dec{lvl}", bn_momentum)
    # Residual output: the network predicts the correction (minus the noise) and adds it to the input, so
    # the identity is the starting point (the DnCNN / residual U-Net design) and the output is the clean patch.
    # zero-initialised head: the untrained model is exactly the identity (MAE = the noise level), not a
    # random perturbation of 255 x unit-variance features.
    x = layers.Conv2D(1, 1, kernel_initializer="zeros", name="conv_out")(x)
    correction = layers.Rescaling(255.0, dtype="float32", name="correction")(x)
    out = layers.Add(dtype="float32", name="clean")(
        [layers.Activation("linear", dtype="float32", name="noisy_f32")(inp), correction]
    )
    return keras.Model(inp, out, name=name)
