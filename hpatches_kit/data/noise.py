"""N-HPatches-style noisy twins of patches.

Every image type gets additive Gaussian noise (grey levels, on 0..255) of the level of its variant:
``e*`` easy, ``h*`` hard, ``t*`` tough; the reference patch gets the **easy** level. Values are rounded and
clipped to uint8.
"""

from __future__ import annotations

import numpy as np

from ..layout import TYPES

__all__ = ["NOISE_LEVELS", "noise_level", "add_noise", "noisy_tracks"]

#: Gaussian noise standard deviation (grey levels) per difficulty.
NOISE_LEVELS = {"easy": 10.0, "hard": 20.0, "tough": 30.0}
_VARIANT_LEVEL = {"ref": "easy", "e": "easy", "h": "hard", "t": "tough"}


def noise_level(image_type: str) -> float:
    """Noise std for an image type (``"ref"``, ``"e1"``, ...): the ref gets the easy level."""
    key = "ref" if image_type == "ref" else image_type[0]
    return NOISE_LEVELS[_VARIANT_LEVEL[key]]


def add_noise(patches: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``uint8`` patches plus N(0, sigma^2) noise, rounded and clipped."""
    x = patches.astype(np.float32) + rng.normal(0.0, sigma, size=patches.shape).astype(np.float32)
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def noisy_tracks(tracks: np.ndarray, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """Noisy twin of ``(N, 16, P, P)`` tracks, each image type at its level times ``scale``.

    Args:
        tracks: ``(N, 16, P, P) uint8`` clean tracks (image types in :data:`~hpatches_kit.layout.TYPES` order).
        rng: the noise's generator.
        scale: multiplies every level (1: N-HPatches' 10 / 20 / 30; 2: 20 / 40 / 60 grey levels).

    Returns:
        ``(N, 16, P, P) uint8``.

    Example:
        >>> noisy_tracks(tracks, np.random.default_rng(0), scale=2.0)  # doctest: +SKIP
    """
    if not np.isfinite(scale) or scale < 0:
        raise ValueError(f"noisy_tracks: scale must be a finite number >= 0, got {scale}")
    out = np.empty_like(tracks)
    for j, t in enumerate(TYPES):
        out[:, j] = add_noise(tracks[:, j], noise_level(t) * scale, rng)
    return out
