"""Keras models: U-Net denoisers (:mod:`.unet`), the L2-Net/HardNet descriptor (:mod:`.l2net`) and its
fused batch norm (:mod:`.layers`), the joint denoiser + descriptor (:mod:`.joint`), PCA reduction (:mod:`.pca`), Keras
twins of PyTorch descriptors and their checkpoint import (:mod:`.torch_ports`, :func:`from_torch`; PyTorch
itself is imported only to read a checkpoint file) and, lazily, the ViT adapter (``models/vit/``, another
package)."""

from .l2net import L2Normalize, PatchStandardize, l2net
from .layers import FusedBatchNorm, with_fused_batch_norm
from .torch_import import from_torch
from .torch_ports import ARCHS as TORCH_ARCHS
from .torch_ports import InstanceNorm, torch_port
from .unet import deep_unet, shallow_unet
from .pca import PCAProjection, with_pca
from .joint import denoise_describe, joint_parts, joint_training_model


def vit_adapter(*a, **k):
    """See :func:`hpatches_kit.models.vit.vit_adapter` (imported lazily: the ViT stack is large)."""
    from .vit import vit_adapter as f

    return f(*a, **k)


def parameter_report(model):
    """See :func:`hpatches_kit.models.vit.parameter_report`."""
    from .vit import parameter_report as f

    return f(model)


MODELS = {"shallow_unet": shallow_unet, "deep_unet": deep_unet, "l2net": l2net}


def get_model(name: str, **kwargs):
    """Build a model by name (``shallow_unet``, ``deep_unet``, ``l2net``; ``-`` and ``_`` are equivalent)."""
    key = name.replace("-", "_").lower()
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    return MODELS[key](**kwargs)


__all__ = ["shallow_unet", "deep_unet", "l2net", "PatchStandardize", "L2Normalize", "vit_adapter", "parameter_report",
           "FusedBatchNorm", "with_fused_batch_norm", "denoise_describe", "joint_parts", "joint_training_model",
           "get_model", "MODELS", "from_torch", "torch_port", "InstanceNorm", "TORCH_ARCHS",
           "PCAProjection", "with_pca"]
