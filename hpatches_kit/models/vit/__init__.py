"""Vision Transformer with Houlsby bottleneck adapters for image-pair matching and retrieval embeddings.

* :func:`vit_adapter` -- build a (frozen) ViT with trainable adapters, optional projection head.
* :mod:`.presets` -- ``vit-b16``, ``vit-s16``, ``vit-ti16``, ``vit-l16``, ``vit-mini`` (CPU benchmark),
  ``vit-tiny`` (tests).
* :mod:`.hf` -- load Hugging Face ViT safetensors checkpoints (``google/vit-base-patch16-224`` naming).
"""

from .backbone import expected_adapter_params, find_backbone, parameter_report, vit_adapter
from .hf import hf_config_to_vit, load_hf_weights, read_hf_checkpoint
from .layers import BottleneckAdapter, ClassTokenPosition, EncoderBlock, PatchEmbedding, TokenPooling
from .presets import PRESETS, ViTConfig, get_preset

__all__ = [
    "vit_adapter",
    "parameter_report",
    "expected_adapter_params",
    "find_backbone",
    "load_hf_weights",
    "read_hf_checkpoint",
    "hf_config_to_vit",
    "BottleneckAdapter",
    "ClassTokenPosition",
    "EncoderBlock",
    "PatchEmbedding",
    "TokenPooling",
    "PRESETS",
    "ViTConfig",
    "get_preset",
]
