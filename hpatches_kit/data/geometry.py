"""Geometry for building HPatches-format data: homographies, patch sampling frames, ellipse overlap.

Conventions
-----------
* Points are ``(x, y)`` pixel coordinates (column, row), pixel centres at integers (OpenCV's convention).
* A *region* is an affine frame ``A`` (3x3, last row ``0 0 1``) mapping the unit disk of normalised patch
  coordinates onto the measurement ellipse in an image: ``x = A @ [u, v, 1]``.
* An ellipse given by a frame ``A`` is ``{A @ [u, v, 1] : u^2 + v^2 <= 1}``.
"""

from __future__ import annotations

import functools
import math

import numpy as np

__all__ = [
    "apply_homography",
    "circle_iou",
    "ellipse_iou",
    "unit_disk_iou",
    "ellipse_polygon",
    "region_frame",
    "patch_to_norm",
    "sample_jitter",
    "jitter_overlaps",
    "calibrate_jitter",
    "JITTER_TARGETS",
    "JITTER_SHAPE",
]

#: Target median overlaps of the jittered vs un-jittered measurement ellipse (HPatches easy/hard/tough).
JITTER_TARGETS = {"e": 0.85, "h": 0.72, "t": 0.60}


def apply_homography(H, pts) -> np.ndarray:
    """Map ``(N, 2)`` points through a 3x3 homography."""
    pts = np.asarray(pts, np.float64).reshape(-1, 2)
    ph = np.concatenate([pts, np.ones((len(pts), 1))], axis=1) @ np.asarray(H, np.float64).T
    return ph[:, :2] / ph[:, 2:3]


def ellipse_polygon(frame, n: int = 256) -> np.ndarray:
    """``(n, 2)`` vertices of the ellipse ``frame @ unit-circle`` (counter-clockwise in u-v)."""
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    # Circumscribe-vs-inscribe correction: scale the polygon so its area equals the circle's (pi).
    k = math.sqrt(2 * math.pi / (n * math.sin(2 * math.pi / n)))
    uv = np.stack([k * np.cos(t), k * np.sin(t), np.ones_like(t)], axis=0)
    xy = np.asarray(frame, np.float64) @ uv
    return (xy[:2] / xy[2]).T


def ellipse_iou(frame_a, frame_b, n: int = 2048) -> float:
    """Intersection-over-union of two ellipses given by affine frames (3x3 or 2x3).

    IoU is affine-invariant, so the pair is first mapped so that ``a`` is the unit disk; see
    :func:`unit_disk_iou` for the (semi-analytic) integration.
    """
    fa, fb = _as3(frame_a), _as3(frame_b)
    rel = np.linalg.inv(fa) @ fb
    return float(unit_disk_iou(rel[None], n)[0])


def unit_disk_iou(frames, n: int = 2048) -> np.ndarray:
    """IoU of the unit disk with each ellipse ``frames[i] @ unit-disk`` (``(N, 3, 3)``), vectorised.

    The intersection area is integrated exactly along y (the chord of the ellipse at abscissa x is the
    solution of a quadratic) and numerically along x with the substitution ``x = sin(theta)`` (midpoint
    rule on ``n`` nodes), which removes the square-root singularity at the disk's ends; the ellipse's
    area is ``pi |det|``. Accuracy ~1e-5 at n=2048.
    """
    F = np.asarray(frames, np.float64).reshape(-1, 3, 3)
    M = F[:, :2, :2]
    t = F[:, :2, 2]
    B = np.linalg.inv(M)  # q -> unit-disk coordinates of the ellipse
    theta = (np.arange(n) + 0.5) / n * np.pi - np.pi / 2
    x = np.sin(theta)[None, :]  # (1, n)
    dx = (np.pi / n) * np.cos(theta)[None, :]
    half = np.sqrt(np.clip(1 - x**2, 0, None))
    b1, b2 = B[:, :, 0], B[:, :, 1]  # (N, 2)
    xr = x - t[:, 0:1]  # (N, n)
    # w = b1 * (x - tx); ellipse: |w + b2 s|^2 <= 1 with s = y - ty
    wx = b1[:, 0:1] * xr
    wy = b1[:, 1:2] * xr
    bb = (b2**2).sum(1)[:, None]
    wb = wx * b2[:, 0:1] + wy * b2[:, 1:2]
    ww = wx**2 + wy**2
    disc = wb**2 - bb * (ww - 1)
    ok = disc > 0
    sq = np.sqrt(np.where(ok, disc, 0.0))
    lo = (-wb - sq) / bb + t[:, 1:2]
    hi = (-wb + sq) / bb + t[:, 1:2]
    seg = np.clip(np.minimum(hi, half) - np.maximum(lo, -half), 0, None) * ok
    inter = (seg * dx).sum(1)
    area_b = np.pi * np.abs(np.linalg.det(M))
    union = np.pi + area_b - inter
    return np.clip(inter / union, 0.0, 1.0)


def circle_iou(c1, r1, c2, r2) -> np.ndarray:
    """Closed-form IoU of circles (broadcasting over arrays of centres ``(..., 2)`` and radii)."""
    c1, c2 = np.asarray(c1, np.float64), np.asarray(c2, np.float64)
    r1, r2 = np.asarray(r1, np.float64), np.asarray(r2, np.float64)
    d = np.linalg.norm(c1 - c2, axis=-1)
    r1, r2, d = np.broadcast_arrays(r1, r2, d)
    small, big = np.minimum(r1, r2), np.maximum(r1, r2)
    inter = np.zeros(d.shape)
    inside = d <= big - small
    inter[inside] = np.pi * small[inside] ** 2
    part = (~inside) & (d < r1 + r2)
    if np.any(part):
        a, b, dd = r1[part], r2[part], d[part]
        alpha = np.arccos(np.clip((dd**2 + a**2 - b**2) / (2 * dd * a), -1, 1))
        beta = np.arccos(np.clip((dd**2 + b**2 - a**2) / (2 * dd * b), -1, 1))
        inter[part] = a**2 * (alpha - np.sin(2 * alpha) / 2) + b**2 * (beta - np.sin(2 * beta) / 2)
    union = np.pi * (r1**2 + r2**2) - inter
    return inter / union


def _as3(f) -> np.ndarray:
    f = np.asarray(f, np.float64)
    if f.shape == (2, 3):
        f = np.vstack([f, [0.0, 0.0, 1.0]])
    if f.shape != (3, 3):
        raise ValueError(f"expected a 2x3 or 3x3 frame, got shape {f.shape}")
    return f


def region_frame(x: float, y: float, radius: float, angle_rad: float) -> np.ndarray:
    """Frame of a circular oriented measurement region (centre, radius, orientation)."""
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    return np.array([[radius * c, -radius * s, x], [radius * s, radius * c, y], [0.0, 0.0, 1.0]])


def patch_to_norm(patch_size: int) -> np.ndarray:
    """Map patch pixel coordinates to normalised coordinates: the patch's inscribed disk -> unit disk."""
    h = (patch_size - 1) / 2.0
    return np.array([[1.0 / h, 0.0, -1.0], [0.0, 1.0 / h, -1.0], [0.0, 0.0, 1.0]])


# -- affine jitter -----------------------------------------------------------------------------------------
#: Shape of the jitter distribution: each variant draws, at magnitude ``m`` (calibrated per variant),
#: rotation ~ U(-1, 1) * ROT * m (degrees), log anisotropic scale factors ~ U(-1, 1) * SCALE * m
#: (independently along a random axis and its normal), translation ~ U(-1, 1) * TRANS * m per axis
#: (in units of the region radius).
JITTER_SHAPE = {"rot_deg": 25.0, "log_scale": 0.25, "trans": 0.25}


def sample_jitter(rng: np.random.Generator, magnitude: float, n: int, shape: dict | None = None) -> np.ndarray:
    """``(n, 3, 3)`` random jitter frames at ``magnitude`` (0 = identity): per frame
    ``T(tx, ty) R(rot) R(axis) diag(sx, sy) R(-axis)`` in normalised coordinates, drawn as :data:`JITTER_SHAPE`
    says."""
    sh = JITTER_SHAPE if shape is None else shape
    u = rng.uniform(-1.0, 1.0, size=(n, 5))
    axis = rng.uniform(0.0, np.pi, size=n)
    rot = np.radians(u[:, 0] * sh["rot_deg"] * magnitude)
    sx = np.exp(u[:, 1] * sh["log_scale"] * magnitude)
    sy = np.exp(u[:, 2] * sh["log_scale"] * magnitude)
    ca, sa = np.cos(axis), np.sin(axis)
    # S = Ra diag(sx, sy) Ra^T
    s00 = sx * ca * ca + sy * sa * sa
    s11 = sx * sa * sa + sy * ca * ca
    s01 = (sx - sy) * ca * sa
    cr, sr = np.cos(rot), np.sin(rot)
    out = np.zeros((n, 3, 3))
    out[:, 0, 0] = cr * s00 - sr * s01
    out[:, 0, 1] = cr * s01 - sr * s11
    out[:, 1, 0] = sr * s00 + cr * s01
    out[:, 1, 1] = sr * s01 + cr * s11
    out[:, 0, 2] = u[:, 3] * sh["trans"] * magnitude
    out[:, 1, 2] = u[:, 4] * sh["trans"] * magnitude
    out[:, 2, 2] = 1.0
    return out


def jitter_overlaps(jitters: np.ndarray, n: int = 1024) -> np.ndarray:
    """IoU of each jittered unit disk with the unit disk. Because IoU is affine-invariant this equals the
    overlap of the jittered vs un-jittered measurement ellipse of any region in the reference frame."""
    jitters = np.asarray(jitters, np.float64).reshape(-1, 3, 3)
    out = np.empty(len(jitters))
    for s in range(0, len(jitters), 512):
        out[s : s + 512] = unit_disk_iou(jitters[s : s + 512], n)
    return out


@functools.lru_cache(maxsize=64)
def _calibrate(target: float, samples: int, seed: int, shape_items: tuple) -> float:
    shape = dict(shape_items)
    lo, hi = 0.0, 8.0
    for _ in range(18):
        mid = 0.5 * (lo + hi)
        med = float(np.median(jitter_overlaps(sample_jitter(np.random.default_rng(seed), mid, samples, shape), 256)))
        if med > target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def calibrate_jitter(target: float, samples: int = 2000, seed: int = 12345, shape: dict | None = None) -> float:
    """Jitter magnitude whose median ellipse overlap is ``target`` (bisection on a fixed Monte-Carlo sample)."""
    if not 0.0 < target < 1.0:
        raise ValueError(f"target overlap must be in (0, 1), got {target}")
    sh = JITTER_SHAPE if shape is None else shape
    return _calibrate(float(target), int(samples), int(seed), tuple(sorted(sh.items())))
