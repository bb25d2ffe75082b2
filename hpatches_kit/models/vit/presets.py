"""ViT size presets (hidden size, depth, heads, MLP width, patch size, default image size)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class ViTConfig:
    hidden_size: int
    num_layers: int
    num_heads: int
    mlp_dim: int
    patch_size: int
    image_size: int
    channels: int = 3
    layer_norm_eps: float = 1e-12  # Hugging Face ViT default

    def __post_init__(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    def to_dict(self) -> dict:
        return asdict(self)

    def replace(self, **kw) -> ViTConfig:
        return replace(self, **kw)


PRESETS: dict[str, ViTConfig] = {
    # Dosovitskiy et al. 2021 / DeiT sizes, 16x16 patches at 224x224.
    "vit-b16": ViTConfig(768, 12, 12, 3072, 16, 224),
    "vit-l16": ViTConfig(1024, 24, 16, 4096, 16, 224),
    "vit-s16": ViTConfig(384, 12, 6, 1536, 16, 224),
    "vit-ti16": ViTConfig(192, 12, 3, 768, 16, 224),
    # CPU-sized: the benchmark (64x64 images, 8x8 patches) and the unit tests (32x32 images).
    "vit-mini": ViTConfig(96, 4, 4, 192, 8, 64),
    "vit-tiny": ViTConfig(32, 2, 2, 64, 8, 32),
}


def get_preset(name: str, **overrides) -> ViTConfig:
    try:
        cfg = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown ViT preset {name!r}; expected one of {', '.join(PRESETS)}") from None
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return cfg.replace(**overrides) if overrides else cfg
