"""Region detection for the HPatches extraction: DoG, multi-scale Harris and Hessian detectors, clustering
of overlapping measurement regions and the dominant gradient orientation (steps 1, 2 and 4 of
:mod:`.extract`)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from . import geometry as G

#: Measurement region radius = MAGNIFICATION x detected scale (HPatches uses 5).
MAGNIFICATION = 5.0


def _detect_dog(img, n):
    sift = cv2.SIFT_create(nfeatures=n)
    kps = sift.detect(img, None)
    if not kps:
        return np.zeros((0, 4))
    a = np.array([(k.pt[0], k.pt[1], k.size / 2.0, k.response) for k in kps], np.float64)
    return a[np.argsort(-a[:, 3], kind="stable")][:n]


def _detect_harris(img, n, min_side=48):
    out = []
    f = 1.0
    im = img
    per_level = max(8, n // 4)
    while min(im.shape) >= min_side:
        pts = cv2.goodFeaturesToTrack(
            im, maxCorners=per_level, qualityLevel=0.01, minDistance=3, blockSize=5, useHarrisDetector=True, k=0.04
        )
        if pts is not None:
            pts = pts.reshape(-1, 2)
            rank = np.arange(len(pts)) / max(len(pts), 1)
            # integration scale of a 5x5 Harris window ~ 1.6 px at this level
            out.append(np.column_stack([pts[:, 0] * f, pts[:, 1] * f, np.full(len(pts), 1.6 * f), 1.0 - rank]))
        f *= math.sqrt(2.0)
        im = cv2.resize(img, (int(round(img.shape[1] / f)), int(round(img.shape[0] / f))), interpolation=cv2.INTER_AREA)
    if not out:
        return np.zeros((0, 4))
    a = np.concatenate(out)
    return a[np.argsort(-a[:, 3], kind="stable")][:n]


def _detect_hessian(img, n, sigma0=1.6, per_octave=3, octaves=4):
    from scipy.ndimage import maximum_filter

    im = img.astype(np.float32) / 255.0
    sigmas = [sigma0 * 2 ** (i / per_octave) for i in range(per_octave * octaves + 2)]
    stack = []
    for s in sigmas:
        L = cv2.GaussianBlur(im, (0, 0), s)
        Lxx = cv2.Sobel(L, cv2.CV_32F, 2, 0, ksize=3) / 4.0
        Lyy = cv2.Sobel(L, cv2.CV_32F, 0, 2, ksize=3) / 4.0
        Lxy = cv2.Sobel(L, cv2.CV_32F, 1, 1, ksize=3) / 4.0
        stack.append((s**4) * (Lxx * Lyy - Lxy * Lxy))
    D = np.stack(stack)
    mx = maximum_filter(D, size=(3, 3, 3), mode="nearest")
    peak = (D == mx) & (D > 1e-5)
    peak[0] = peak[-1] = False
    z, y, x = np.nonzero(peak)
    if len(z) == 0:
        return np.zeros((0, 4))
    resp = D[z, y, x]
    a = np.column_stack([x.astype(np.float64), y, np.asarray(sigmas)[z], resp])
    return a[np.argsort(-a[:, 3], kind="stable")][:n]


DETECTORS = {"dog": _detect_dog, "harris": _detect_harris, "hessian": _detect_hessian}


def detect_regions(img, per_detector: int = 1000, min_scale: float = 2.0, max_overlap: float = 0.5) -> np.ndarray:
    """Detections of all three detectors, clustered: ``(N, 4)`` = x, y, scale, detector id.

    Candidates are ranked by their rank within their own detector (so the detectors interleave); a candidate
    is dropped when its measurement disk (radius ``MAGNIFICATION * scale``) overlaps an already kept one by
    more than ``max_overlap`` (IoU).
    """
    cands = []
    for d, fn in enumerate(DETECTORS.values()):
        a = fn(img, per_detector)
        if len(a):
            a = a[a[:, 2] >= min_scale] if min_scale else a
            rank = np.arange(len(a)) / max(len(a), 1)
            cands.append(np.column_stack([a[:, :3], np.full(len(a), d), rank]))
    if not cands:
        return np.zeros((0, 4))
    c = np.concatenate(cands)
    c = c[np.lexsort((c[:, 3], c[:, 4]))]
    kept = cluster_regions(c[:, :2], MAGNIFICATION * c[:, 2], max_overlap)
    return c[kept, :4]


def cluster_regions(centres, radii, max_overlap: float = 0.5) -> np.ndarray:
    """Greedy clustering in the given (priority) order: indices of the kept disks, none of which overlaps a
    previously kept one by more than ``max_overlap`` IoU."""
    centres = np.asarray(centres, np.float64)
    radii = np.asarray(radii, np.float64)
    kept: list[int] = []
    kc = np.zeros((0, 2))
    kr = np.zeros(0)
    for i in range(len(radii)):
        if len(kept):
            # cheap reject: disks whose centres are farther than r1 + r2 do not overlap
            near = np.abs(kc - centres[i]).max(1) < kr + radii[i]
            if np.any(near) and np.max(G.circle_iou(kc[near], kr[near], centres[i], radii[i])) > max_overlap:
                continue
        kept.append(i)
        kc = np.vstack([kc, centres[i]])
        kr = np.append(kr, radii[i])
    return np.asarray(kept, np.int64)


def dominant_orientation(grad_mag, grad_ang, x, y, scale) -> float:
    """SIFT-style dominant gradient orientation (radians) around ``(x, y)`` at ``scale``."""
    sw = 1.5 * scale
    R = int(round(3 * sw))
    h, w = grad_mag.shape
    x0, x1 = max(int(round(x)) - R, 0), min(int(round(x)) + R + 1, w)
    y0, y1 = max(int(round(y)) - R, 0), min(int(round(y)) + R + 1, h)
    if x1 <= x0 or y1 <= y0:
        return 0.0
    yy, xx = np.mgrid[y0:y1, x0:x1]
    wgt = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sw * sw)) * grad_mag[y0:y1, x0:x1]
    bins = (np.floor(grad_ang[y0:y1, x0:x1] / (2 * np.pi) * 36).astype(np.int64)) % 36
    hist = np.bincount(bins.ravel(), weights=wgt.ravel(), minlength=36)
    for _ in range(2):
        hist = 0.25 * np.roll(hist, 1) + 0.5 * hist + 0.25 * np.roll(hist, -1)
    k = int(np.argmax(hist))
    l, c, r = hist[k - 1], hist[k], hist[(k + 1) % 36]
    den = l - 2 * c + r
    off = 0.5 * (l - r) / den if den != 0 else 0.0
    return float(((k + 0.5 + off) / 36.0) * 2 * np.pi)
