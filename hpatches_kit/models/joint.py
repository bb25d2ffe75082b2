"""One model that denoises and describes: a U-Net denoiser followed by a descriptor (L2-Net), trained end to end.

The denoise-then-describe pipeline of N-HPatches runs two models trained for two objectives: the U-Net for pixel
error (MAE), the descriptor for the triplet loss. :func:`denoise_describe` joins them into one Keras model,
noisy patch in, descriptor out, so the triplet loss's gradient reaches the U-Net
(:func:`hpatches_kit.training.joint.train_joint`). The saved ``.keras`` is used like any descriptor:
``hpatches-eval --model joint.keras --noisy`` (no ``--denoiser``: the model takes the raw noisy patch).

Between the two the denoised patch is clipped to [0, 255] (``keras.layers.ReLU(max_value=255)``, differentiable
inside the range), the range the descriptor was trained on. It is *not* rounded to 8 bits as the two-model
pipeline does (``keras_describer(denoiser=...)``): rounding has no gradient.

Layers: ``denoiser`` (the U-Net, a nested model), ``denoised`` (the clip), ``descriptor`` (the nested descriptor);
:func:`joint_parts` returns the two nested models, :func:`joint_training_model` the two-output model the training
loss needs (descriptor and the U-Net's unclipped output, sharing every weight).
"""

from __future__ import annotations

import keras

__all__ = ["denoise_describe", "joint_training_model", "joint_parts", "is_joint", "DESCRIPTOR", "DENOISED"]

DESCRIPTOR = "descriptor"  # name of the descriptor output of the training model (and of the nested descriptor)
DENOISED = "denoised"  # name of the denoised-patch output of the training model (the U-Net's raw output)
_DENOISER = "denoiser"


def _renamed(model: keras.Model, name: str) -> keras.Model:
    """``model`` itself when already called ``name``, else a functional copy under that name, same weights."""
    if model.name == name:
        return model
    copy = type(model).from_config({**model.get_config(), "name": name})
    copy.set_weights(model.get_weights())
    return copy


def denoise_describe(denoiser: keras.Model, descriptor: keras.Model, name: str = "denoise_describe") -> keras.Model:
    """Join a denoiser and a descriptor into one model: noisy patch -> clip(denoiser(patch), 0, 255) -> descriptor.

    Args:
        denoiser: a model ``(P, P, 1)`` grey levels -> ``(P, P, 1)`` grey levels (``shallow_unet``, ``deep_unet``).
        descriptor: a model ``(P, P, 1)`` grey levels -> ``(D,)`` (``l2net``), the same ``P``.
        name: the joint model's name.

    Returns:
        A functional ``keras.Model``; its layers ``denoiser`` and ``descriptor`` are copies of the two models
        (same weights) named so, and ``denoised`` is the clip between them.

    Shape:
        ``(B, P, P, 1)`` float32 noisy patches in [0, 255] -> ``(B, D)`` float32.

    Examples:
        >>> from hpatches_kit.models import shallow_unet
        >>> from hpatches_kit.models.l2net import l2net
        >>> m = denoise_describe(shallow_unet(32), l2net(32))
        >>> m.input_shape, m.output_shape
        ((None, 32, 32, 1), (None, 128))
    """
    for what, m in (("denoiser", denoiser), ("descriptor", descriptor)):
        shape = tuple(m.input_shape)
        if len(shape) != 4 or shape[-1] != 1 or shape[1] != shape[2] or shape[1] is None:
            raise ValueError(
                f"denoise_describe: the {what} must take (P, P, 1) square grey patches, its input shape is {shape[1:]}"
            )
    if tuple(denoiser.output_shape[1:]) != tuple(denoiser.input_shape[1:]):
        raise ValueError(
            f"denoise_describe: the denoiser must return patches of its input shape "
            f"{denoiser.input_shape[1:]}, it returns {denoiser.output_shape[1:]}"
        )
    if tuple(descriptor.input_shape[1:]) != tuple(denoiser.output_shape[1:]):
        raise ValueError(
            f"denoise_describe: the descriptor takes {descriptor.input_shape[1:]} patches, the denoiser "
            f"gives {denoiser.output_shape[1:]}"
        )
    den, desc = _renamed(denoiser, _DENOISER), _renamed(descriptor, DESCRIPTOR)
    inp = keras.Input(tuple(denoiser.input_shape[1:]), name="noisy")
    clean = keras.layers.ReLU(max_value=255.0, dtype="float32", name=DENOISED)(den(inp))
    return keras.Model(inp, desc(clean), name=name)


def is_joint(model) -> bool:
    """Whether ``model`` is a :func:`denoise_describe` model (has nested ``denoiser`` and ``descriptor`` models)."""
    names = {layer.name for layer in getattr(model, "layers", [])}
    return {_DENOISER, DESCRIPTOR, DENOISED} <= names


def joint_parts(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """``(denoiser, descriptor)``: the nested models of a :func:`denoise_describe` model (shared, not copies).

    Examples:
        >>> den, desc = joint_parts(keras.models.load_model("joint.keras"))
    """
    if not is_joint(model):
        raise ValueError(
            f"{getattr(model, 'name', model)!r} is not a denoise_describe model (no nested "
            f"'{_DENOISER}' and '{DESCRIPTOR}' models)"
        )
    return model.get_layer(_DENOISER), model.get_layer(DESCRIPTOR)


def joint_training_model(model: keras.Model) -> keras.Model:
    """The two-output model a joint training step needs, sharing every weight with ``model``.

    Args:
        model: a :func:`denoise_describe` model.

    Returns:
        ``keras.Model`` with outputs ``{"descriptor": (B, D), "denoised": (B, P, P, 1)}``; ``denoised`` is the
        U-Net's own (unclipped) output, what the reconstruction loss (MAE against the clean patch) is taken of.
        Training it trains ``model``'s layers (the same objects).
    """
    den, desc = joint_parts(model)
    inp = keras.Input(tuple(model.input_shape[1:]), name="noisy")
    raw = den(inp)
    d = desc(model.get_layer(DENOISED)(raw))
    # identity layers name the outputs (Keras keys dict outputs and losses by these names)
    out = {
        DESCRIPTOR: keras.layers.Identity(name=f"{DESCRIPTOR}_out")(d),
        DENOISED: keras.layers.Identity(name=f"{DENOISED}_out")(raw),
    }
    return keras.Model(inp, out, name=f"{model.name}_training")
