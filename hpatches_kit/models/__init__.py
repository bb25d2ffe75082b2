"""Keras models: the model registry (:mod:`.registry`: every architecture by name with its input contract),
U-Net denoisers (:mod:`.unet`), the L2-Net/HardNet descriptor (:mod:`.l2net`: ``from hpatches_kit.models.l2net
import l2net``, or ``get_model("l2net")``) and its fused batch norm
(:mod:`.layers`), the joint denoiser + descriptor (:mod:`.joint`), PCA reduction (:mod:`.pca`), Keras twins of PyTorch descriptors and their
checkpoint import (:mod:`.torch_ports`, :func:`from_torch`; PyTorch itself is imported only to read a checkpoint
file), model loading (:mod:`.io`) and, lazily, the ViT adapter (``models/vit/``, another package).

The registry is importable without Keras (``--help`` and ``names()`` stay fast); the Keras objects load on first
use (PEP 562 module ``__getattr__``). Their layers register with Keras' deserialiser as soon as Keras is imported
(``import hpatches_kit`` arranges it), so a saved model loads without importing this package first.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from . import registry
from .registry import ModelEntry, build_descriptor, register, unregister

_LAZY = {
    "L2Normalize": ".l2net",
    "PatchStandardize": ".l2net",
    "FusedBatchNorm": ".layers",
    "with_fused_batch_norm": ".layers",
    "from_torch": ".torch_import",
    "InstanceNorm": ".torch_ports",
    "torch_port": ".torch_ports",
    "TORCH_ARCHS": (".torch_ports", "ARCHS"),
    "deep_unet": ".unet",
    "shallow_unet": ".unet",
    "denoise_describe": ".joint",
    "joint_parts": ".joint",
    "joint_training_model": ".joint",
    "load_model": ".io",
    "PCAProjection": ".pca",
    "with_pca": ".pca",
}


def __getattr__(name):
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    mod, attr = target if isinstance(target, tuple) else (target, name)
    value = getattr(importlib.import_module(mod, __name__), attr)
    globals()[name] = value
    return value


def vit_adapter(*a, **k):
    """See :func:`hpatches_kit.models.vit.vit_adapter` (imported lazily: the ViT stack is large)."""
    from .vit import vit_adapter as f

    return f(*a, **k)


def parameter_report(model):
    """See :func:`hpatches_kit.models.vit.parameter_report`."""
    from .vit import parameter_report as f

    return f(model)


class _ModelsView(Mapping):
    """``{name: builder}`` read from the registry (:mod:`.registry`), kept for the old ``MODELS`` dict."""

    def __getitem__(self, name):
        return registry.entry(name).builder

    def __iter__(self):
        return iter(registry.names())

    def __len__(self):
        return len(registry.names())


MODELS = _ModelsView()


def get_model(name: str, **kwargs):
    """Build a model by registered name (``-`` and ``_`` are equivalent) or ``MODULE:FUNCTION``: the registry's
    :func:`~.registry.get`."""
    return registry.get(name, **kwargs)


def names(kind: str | None = None):
    """The registered model names (:func:`.registry.names`)."""
    return registry.names(kind)


def entry(name: str):
    """The :class:`~.registry.ModelEntry` of a name (:func:`.registry.entry`)."""
    return registry.entry(name)


__all__ = [
    "shallow_unet",
    "deep_unet",
    "PatchStandardize",
    "L2Normalize",
    "vit_adapter",
    "parameter_report",
    "FusedBatchNorm",
    "with_fused_batch_norm",
    "denoise_describe",
    "joint_parts",
    "joint_training_model",
    "get_model",
    "MODELS",
    "from_torch",
    "torch_port",
    "InstanceNorm",
    "TORCH_ARCHS",
    "registry",
    "register",
    "unregister",
    "names",
    "entry",
    "ModelEntry",
    "build_descriptor",
    "load_model",
    "PCAProjection",
    "with_pca",
]
