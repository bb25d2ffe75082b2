"""Realistic photometric changes for synthesised sequences (applied to float RGB images in [0, 1]).

* :func:`illumination_change`: colour-temperature shift (before greyscale conversion), smooth spatially
  varying shading, an optional soft cast shadow, global gain (exposure) and gamma, with clipping -- all
  growing with ``strength`` in [0, 1].
* :func:`camera_pipeline`: greyscale conversion, optical blur, signal-dependent sensor noise, 8-bit
  quantisation and JPEG compression.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["to_grey", "illumination_change", "camera_pipeline", "smooth_field"]


def to_grey(rgb: np.ndarray) -> np.ndarray:
    """Luma (ITU-R BT.601 weights) of a float RGB image; greyscale input is returned as is."""
    if rgb.ndim == 2:
        return rgb
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def smooth_field(shape, rng: np.random.Generator, cells: int = 4) -> np.ndarray:
    """A smooth random field with zero mean and unit-ish std: a bicubically upsampled ``cells x cells``
    Gaussian grid plus a random linear ramp."""
    h, w = shape[:2]
    g = rng.normal(0.0, 1.0, size=(cells, cells)).astype(np.float32)
    f = cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.normal(0.0, 1.0, 2)
    ramp = (a[0] * (xx / max(w - 1, 1) - 0.5) + a[1] * (yy / max(h - 1, 1) - 0.5)) * 2.0
    f = f + ramp
    return (f - f.mean()) / (f.std() + 1e-6)


def illumination_change(rgb: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """A lighting change of the scene in ``rgb`` (float32 HxWx3 in [0, 1]); returns float32 RGB (unclipped
    above by shading, clipped at the end as a sensor would saturate)."""
    s = float(np.clip(strength, 0.0, 1.5))
    img = rgb.astype(np.float32)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    # colour temperature: warm/cool white balance shift (R and B in opposite directions)
    t = rng.uniform(-1.0, 1.0) * 0.45 * s
    img = img * np.array([np.exp(0.5 * t), 1.0, np.exp(-0.5 * t)], np.float32)
    h, w = img.shape[:2]
    # smooth shading from a moved light source
    shade = np.exp(0.55 * s * rng.uniform(0.5, 1.0) * smooth_field((h, w), rng))
    # soft cast shadow (a blurred half-plane) in some images
    if rng.uniform() < 0.6 * s:
        ang = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        d = (xx - rng.uniform(0.2, 0.8) * w) * np.cos(ang) + (yy - rng.uniform(0.2, 0.8) * h) * np.sin(ang)
        soft = rng.uniform(4.0, 0.08 * max(h, w))
        mask = 1.0 / (1.0 + np.exp(-d / soft))
        shade = shade * (1.0 - rng.uniform(0.25, 0.6) * mask)
    img = img * shade[..., None].astype(np.float32)
    # exposure (gain) and tone curve (gamma)
    gain = np.exp(rng.uniform(-1.0, 1.0) * 0.7 * s)
    gamma = np.exp(rng.uniform(-1.0, 1.0) * 0.35 * s)
    img = np.clip(img * gain, 0.0, 1.0) ** gamma
    return img.astype(np.float32)


def camera_pipeline(
    img: np.ndarray, rng: np.random.Generator, blur: float = 0.0, noise: float = 1.0, jpeg: int | None = 95
) -> np.ndarray:
    """Greyscale ``uint8`` image as a camera would record ``img`` (float RGB or grey in [0, 1]).

    ``blur``: Gaussian sigma (px); ``noise``: sensor noise std in grey levels at mid-grey (shot noise grows
    with the signal, plus a read-noise floor); ``jpeg``: quality or ``None``.
    """
    g = to_grey(img).astype(np.float32) * 255.0
    if blur > 0.05:
        g = cv2.GaussianBlur(g, (0, 0), float(blur))
    if noise > 0:
        std = noise * np.sqrt(0.3 + 0.7 * np.clip(g, 0, 255) / 128.0)
        g = g + rng.normal(0.0, 1.0, size=g.shape).astype(np.float32) * std
    out = np.clip(np.round(g), 0, 255).astype(np.uint8)
    if jpeg is not None:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg)])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    return out
