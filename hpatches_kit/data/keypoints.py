"""Keypoints and their patches for whole-image matching and for detector-noise training data: detect DoG /
Harris / Hessian keypoints in an image (:func:`detect_keypoints`) and cut oriented patches around them the way
the HPatches extractor does (:func:`keypoint_patches`); measure how far a detector's orientation and scale are
from the truth under a known homography (:func:`measure_keypoint_errors`, the table behind
:mod:`.view_noise`). Data-layer code: the image-matching benchmark
(:mod:`hpatches_kit.evaluation.image_matching`) and :mod:`.detector_tracks` both use it, so the patches a model
is trained on and evaluated on are cut identically.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = [
    "ORIENTATIONS",
    "detect_keypoints",
    "keypoint_orientations",
    "keypoint_patches",
    "measure_keypoint_errors",
    "measure_sequences",
]

ORIENTATIONS = ("dominant", "upright", "detector")


def detect_keypoints(
    img: np.ndarray, detector: str = "dog", max_keypoints: int = 2000, orientation: str = "dominant"
) -> np.ndarray:
    """Keypoints of one grey image, strongest first.

    Args:
        img: ``(H, W) uint8`` image.
        detector: ``dog`` (OpenCV SIFT detector), ``harris`` (multi-scale) or ``hessian``.
        max_keypoints: keep at most this many.
        orientation: ``detector`` keeps the detector's own orientations (DoG: SIFT's orientation histogram,
            one keypoint per orientation peak, so a location can appear several times; other detectors: NaN,
            replaced by the dominant orientation when cutting patches); ``dominant``/``upright`` keep one
            keypoint per location (OpenCV's DoG repeats a location for each orientation peak; with one
            orientation per location the repeats would be identical patches).

    Returns:
        ``(N, 3) float64``: x, y, scale (the detector's sigma; the patch covers ``magnification x scale``);
        with ``orientation="detector"`` ``(N, 4)``, the fourth column the angle (radians, image coordinates,
        y down; NaN where the detector gives none).

    Example:
        >>> img = (np.random.default_rng(0).random((96, 96)) * 255).astype(np.uint8)
        >>> detect_keypoints(img, "dog", 50).shape[1], detect_keypoints(img, "dog", 50, "detector").shape[1]
        (3, 4)
    """
    from .extract import DETECTORS as FN

    if detector not in FN:
        raise ValueError(f"unknown detector {detector!r}; expected one of {', '.join(FN)}")
    if orientation not in ORIENTATIONS:
        raise ValueError(f"unknown orientation {orientation!r}; expected one of {', '.join(ORIENTATIONS)}")
    if detector == "dog":
        kps = cv2.SIFT_create().detect(img, None)
        a = np.array(
            [(k.pt[0], k.pt[1], k.size / 2.0, math.radians(k.angle), k.response) for k in kps], np.float64
        ).reshape(-1, 5)
        a = a[np.argsort(-a[:, 4], kind="stable")]
        if orientation != "detector" and len(a):
            _, first = np.unique(a[:, :3], axis=0, return_index=True)
            a = a[np.sort(first)]
        return np.ascontiguousarray(a[: int(max_keypoints), : 4 if orientation == "detector" else 3])
    a = FN[detector](img, int(max_keypoints))
    a = np.asarray(a[:, :3], np.float64).reshape(-1, 3)
    return np.column_stack([a, np.full(len(a), np.nan)]) if orientation == "detector" else a


def keypoint_patches(
    img: np.ndarray,
    keypoints: np.ndarray,
    patch_size: int = 65,
    orientation: str = "dominant",
    magnification: float | None = None,
) -> np.ndarray:
    """Oriented patches around keypoints, sampled like the HPatches extractor samples the reference view.

    Args:
        img: ``(H, W) uint8`` image.
        keypoints: ``(N, 3)`` x, y, scale, or ``(N, 4)`` with the angle (radians) of :func:`detect_keypoints`.
        patch_size: output patch size.
        orientation: ``dominant`` (one SIFT-style dominant gradient orientation per keypoint, computed here),
            ``upright`` (angle 0) or ``detector`` (the keypoint's own angle; dominant where it is NaN or absent).
        magnification: measurement-disk radius / scale (default: the HPatches extractor's 5); the disk is
            mapped to the patch's inscribed disk.

    Returns:
        ``(N, patch_size, patch_size) uint8``.

    Example:
        >>> img = np.zeros((64, 64), np.uint8); img[:, 32:] = 255
        >>> keypoint_patches(img, np.array([[32.0, 32.0, 2.0]]), 33, "upright").shape
        (1, 33, 33)
    """
    from . import geometry as G
    from .extract import MAGNIFICATION, _BlurStack, _sample

    if orientation not in ORIENTATIONS:
        raise ValueError(f"unknown orientation {orientation!r}; expected one of {', '.join(ORIENTATIONS)}")
    mag_f = MAGNIFICATION if magnification is None else float(magnification)
    if len(keypoints) == 0:  # an image without keypoints (flat, or tiny): no patches, not a reshape error
        return np.zeros((0, patch_size, patch_size), np.uint8)
    kp = np.asarray(keypoints, np.float64).reshape(len(keypoints), -1)
    if orientation == "upright":
        angles = np.zeros(len(kp))
    else:
        angles = keypoint_orientations(img, kp[:, :3])
        if orientation == "detector" and kp.shape[1] > 3:
            angles = np.where(np.isfinite(kp[:, 3]), kp[:, 3], angles)
    stack, N = _BlurStack(img), G.patch_to_norm(patch_size)
    out = np.empty((len(kp), patch_size, patch_size), np.uint8)
    for i, row in enumerate(kp):
        x, y, s = row[:3]
        out[i] = _sample(stack, G.region_frame(x, y, mag_f * s, float(angles[i])) @ N, patch_size)
    return out


def keypoint_orientations(img: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """SIFT-style dominant gradient orientation (radians, image coordinates) of each ``(x, y, scale)`` keypoint:
    the orientation :func:`keypoint_patches` rotates a ``dominant`` patch to.

    Example:
        >>> img = np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))  # brightness grows to the right
        >>> round(float(keypoint_orientations(img, np.array([[32.0, 32.0, 3.0]]))[0]), 2)
        0.09
    """
    from .detect import dominant_orientation

    if len(keypoints) == 0:
        return np.zeros(0, np.float64)
    kp = np.asarray(keypoints, np.float64).reshape(len(keypoints), -1)
    f = img.astype(np.float32)
    gx = cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=1)
    gy = cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=1)
    mag, ang = np.hypot(gx, gy), np.mod(np.arctan2(gy, gx), 2 * np.pi)
    return np.array([dominant_orientation(mag, ang, x, y, s) for x, y, s in kp[:, :3]], np.float64)


def _wrap_deg(a):
    return (np.asarray(a, np.float64) + 180.0) % 360.0 - 180.0


def _local_affine(H: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """``(N, 2, 2)`` Jacobian of the homography ``H`` at ``pts`` (N, 2)."""
    x, y = pts[:, 0], pts[:, 1]
    u = H[0, 0] * x + H[0, 1] * y + H[0, 2]
    v = H[1, 0] * x + H[1, 1] * y + H[1, 2]
    w = H[2, 0] * x + H[2, 1] * y + H[2, 2]
    J = np.empty((len(pts), 2, 2))
    J[:, 0, 0] = (H[0, 0] * w - u * H[2, 0]) / w**2
    J[:, 0, 1] = (H[0, 1] * w - u * H[2, 1]) / w**2
    J[:, 1, 0] = (H[1, 0] * w - v * H[2, 0]) / w**2
    J[:, 1, 1] = (H[1, 1] * w - v * H[2, 1]) / w**2
    return J


def measure_keypoint_errors(
    ref: np.ndarray,
    img: np.ndarray,
    H: np.ndarray,
    detector: str = "dog",
    max_keypoints: int = 2000,
    tol: float = 2.0,
) -> dict:
    """Orientation and scale errors of the keypoints that the detector finds again in ``img``.

    Args:
        ref, img: ``(H, W) uint8`` grey images. H: the 3x3 homography ``ref -> img``.
        detector: a detector of :func:`hpatches_kit.data.keypoints.detect_keypoints`.
        max_keypoints: keypoints per image (strongest first), as the benchmark uses.
        tol: a correspondence is the mutual nearest reprojected keypoint within ``tol`` px whose scale is within
            an octave of the expected one.

    Returns:
        ``{"angle": (M,) degrees in (-180, 180], "log2_scale": (M,), "expected_angle": (M,) degrees,
        "ref_keypoints": (M, 3), "keypoints": (M, 3)}`` for the ``M`` corresponding keypoints.
    """
    from scipy.spatial import cKDTree

    from .geometry import apply_homography

    empty = {k: np.zeros(0) for k in ("angle", "log2_scale", "expected_angle")}
    kr = detect_keypoints(ref, detector, max_keypoints, "dominant")
    kt = detect_keypoints(img, detector, max_keypoints, "dominant")
    if len(kr) == 0 or len(kt) == 0:
        return {**empty, "ref_keypoints": np.zeros((0, 3)), "keypoints": np.zeros((0, 3))}
    H = np.asarray(H, np.float64)
    proj = apply_homography(H, kr[:, :2])
    ok = np.isfinite(proj).all(1)
    d_rt, j_rt = cKDTree(kt[:, :2]).query(np.where(ok[:, None], proj, 1e9), k=1)
    _, j_tr = cKDTree(np.where(ok[:, None], proj, 1e9)).query(kt[:, :2], k=1)
    i = np.flatnonzero(ok & (d_rt <= tol) & (j_tr[np.minimum(j_rt, len(kt) - 1)] == np.arange(len(kr))))
    j = j_rt[i]
    J = _local_affine(H, kr[i, :2])
    exp_scale = kr[i, 2] * np.sqrt(np.abs(np.linalg.det(J)))
    log2s = np.log2(kt[j, 2] / exp_scale)
    keep = np.abs(log2s) <= 1.0
    i, j, J, log2s = i[keep], j[keep], J[keep], log2s[keep]
    a_ref = keypoint_orientations(ref, kr[i])
    a_img = keypoint_orientations(img, kt[j])
    v = np.einsum("nij,nj->ni", J, np.stack([np.cos(a_ref), np.sin(a_ref)], 1))
    expected = np.degrees(np.arctan2(v[:, 1], v[:, 0]))
    return {
        "angle": _wrap_deg(np.degrees(a_img) - expected),
        "log2_scale": log2s,
        "expected_angle": expected,
        "ref_keypoints": kr[i],
        "keypoints": kt[j],
    }


def measure_sequences(sequences, detector: str = "dog", max_keypoints: int = 2000, tol: float = 2.0) -> dict:
    """:func:`measure_keypoint_errors` over every pair (image 1, image k) of ``[(name, images, Hs)]``.

    Returns:
        ``{name: {"angle": ..., "log2_scale": ..., "pairs": n}}`` with the errors of a sequence's pairs pooled.
    """
    out = {}
    for name, images, Hs in sequences:
        parts = [
            measure_keypoint_errors(images[0], im, H, detector, max_keypoints, tol) for im, H in zip(images[1:], Hs)
        ]
        out[name] = {
            "angle": np.concatenate([p["angle"] for p in parts]) if parts else np.zeros(0),
            "log2_scale": np.concatenate([p["log2_scale"] for p in parts]) if parts else np.zeros(0),
            "pairs": len(parts),
        }
    return out
