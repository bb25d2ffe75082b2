"""Keypoints and their patches for whole-image matching and for detector-noise training data: detect DoG /
Harris / Hessian keypoints in an image (:func:`detect_keypoints`) and cut oriented patches around them the way
the HPatches extractor does (:func:`keypoint_patches`). Data-layer code: the image-matching benchmark
(:mod:`hpatches_kit.evaluation.image_matching`) and :mod:`.detector_tracks` both use it, so the patches a model
is trained on and evaluated on are cut identically.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["ORIENTATIONS", "detect_keypoints", "keypoint_patches"]

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
    from .extract import MAGNIFICATION, _BlurStack, _sample, dominant_orientation

    if orientation not in ORIENTATIONS:
        raise ValueError(f"unknown orientation {orientation!r}; expected one of {', '.join(ORIENTATIONS)}")
    mag_f = MAGNIFICATION if magnification is None else float(magnification)
    if len(keypoints) == 0:  # an image without keypoints (flat, or tiny): no patches, not a reshape error
        return np.zeros((0, patch_size, patch_size), np.uint8)
    kp = np.asarray(keypoints, np.float64).reshape(len(keypoints), -1)
    f = img.astype(np.float32)
    gx = cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=1)
    gy = cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=1)
    mag, ang = np.hypot(gx, gy), np.mod(np.arctan2(gy, gx), 2 * np.pi)
    stack, N = _BlurStack(img), G.patch_to_norm(patch_size)
    out = np.empty((len(kp), patch_size, patch_size), np.uint8)
    for i, row in enumerate(kp):
        x, y, s = row[:3]
        if orientation == "upright":
            a = 0.0
        elif orientation == "detector" and kp.shape[1] > 3 and np.isfinite(row[3]):
            a = float(row[3])
        else:
            a = dominant_orientation(mag, ang, x, y, s)
        out[i] = _sample(stack, G.region_frame(x, y, mag_f * s, a) @ N, patch_size)
    return out
