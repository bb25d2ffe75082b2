"""ViT backbone + Houlsby bottleneck adapters as one Keras functional model."""

from __future__ import annotations

import keras
import numpy as np

from .layers import (
    POOLINGS,
    BottleneckAdapter,
    ClassTokenPosition,
    EncoderBlock,
    PatchEmbedding,
    TokenPooling,
    find_backbone,
)
from .presets import ViTConfig, get_preset


def vit_adapter(
    preset: str | ViTConfig = "vit-b16",
    bottleneck: int = 64,
    train_layernorms: bool = False,
    head: int | None = None,
    train_head: bool = True,
    pooling: str = "cls",
    normalize: bool = False,
    image_size: int | None = None,
    adapter_activation: str = "gelu",
    adapter_init_scale: float = 1e-3,
    train_backbone: bool = False,
    weights=None,
    name: str | None = None,
    **overrides,
) -> keras.Model:
    """Build a ViT with a bottleneck adapter after the attention output and after the MLP output of every block.

    The backbone (patch embedding, class token, position embeddings, attention and MLP weights) is frozen;
    ``model.trainable_weights`` are exactly the adapters, plus all LayerNorms when ``train_layernorms``, plus
    the projection head (``head`` output units) when ``head`` and ``train_head``. ``bottleneck=0`` builds
    the plain frozen backbone. Input: ``(B, S, S, 3)`` float images scaled to ``[-1, 1]``;
    output ``(B, D)`` (``D = head or hidden_size``; L2-normalised when ``normalize``).

    ``weights``: a Hugging Face ViT safetensors checkpoint (file or folder) loaded into the backbone
    (see :func:`hpatches_kit.models.vit.hf.load_hf_weights`). ``overrides`` change preset fields
    (``hidden_size``, ``num_layers``, ``num_heads``, ``mlp_dim``, ``patch_size``, ``layer_norm_eps``).
    """
    if isinstance(preset, ViTConfig):
        cfg = preset.replace(**{k: v for k, v in dict(image_size=image_size, **overrides).items() if v is not None})
        preset_name = "custom"
    else:
        cfg = get_preset(preset, image_size=image_size, **overrides)
        preset_name = preset
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; expected one of {', '.join(POOLINGS)}")
    tl = bool(train_layernorms or train_backbone)
    inp = keras.Input((cfg.image_size, cfg.image_size, cfg.channels), name="image")
    x = PatchEmbedding(cfg.hidden_size, cfg.patch_size, train_backbone=train_backbone, name="patch_embedding")(inp)
    x = ClassTokenPosition(train_backbone=train_backbone, name="embeddings")(x)
    for i in range(cfg.num_layers):
        x = EncoderBlock(
            cfg.hidden_size,
            cfg.num_heads,
            cfg.mlp_dim,
            cfg.layer_norm_eps,
            bottleneck=bottleneck,
            adapter_activation=adapter_activation,
            adapter_init_scale=adapter_init_scale,
            train_backbone=train_backbone,
            train_layernorms=train_layernorms,
            name=f"block_{i}",
        )(x)
    x = keras.layers.LayerNormalization(epsilon=cfg.layer_norm_eps, trainable=tl, name="layernorm")(x)
    x = TokenPooling(pooling, name="pool")(x)
    if head:
        x = keras.layers.Dense(int(head), trainable=bool(train_head), name="head")(x)
    if normalize:
        x = keras.layers.UnitNormalization(name="l2_normalize")(x)
    model = keras.Model(inp, x, name=name or f"{preset_name}_adapter{int(bottleneck or 0)}")
    if weights is not None:
        from .hf import load_hf_weights

        load_hf_weights(model, weights)
    return model


def _count(weights) -> int:
    return int(sum(int(np.prod(w.shape)) for w in weights))


def iter_layers(model):
    """All layers of ``model`` recursively (nested models and sub-layers included)."""
    stack = list(model.layers)
    while stack:
        layer = stack.pop(0)
        yield layer
        stack[:0] = list(getattr(layer, "_layers", []) or [])


def parameter_report(model) -> dict:
    """Parameter counts: ``total``, ``trainable``, ``adapters``, ``head``, ``backbone`` (everything else) and
    ``adapter_overhead`` = adapters / backbone, ``trainable_fraction`` = trainable / total."""
    vit = find_backbone(model)
    adapters = _count([w for l in iter_layers(vit) if isinstance(l, BottleneckAdapter) for w in l.weights])
    head = _count(vit.get_layer("head").weights) if any(l.name == "head" for l in vit.layers) else 0
    total = _count(vit.weights)
    trainable = _count(vit.trainable_weights)
    backbone = total - adapters - head
    return {
        "total": total,
        "trainable": trainable,
        "adapters": adapters,
        "head": head,
        "backbone": backbone,
        "adapter_overhead": adapters / backbone if backbone else float("nan"),
        "trainable_fraction": trainable / total if total else float("nan"),
    }


def expected_adapter_params(hidden_size: int, num_layers: int, bottleneck: int) -> int:
    """Two adapters per block, each ``D*m + m + m*D + D`` parameters."""
    return num_layers * 2 * (2 * hidden_size * bottleneck + bottleneck + hidden_size)
