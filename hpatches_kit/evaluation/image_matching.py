"""Full-image matching on homography sequences: mean matching accuracy (D2-Net protocol) and homography accuracy.

For every sequence (``hpatches-sequences-release`` layout ``1..6.ppm`` + ``H_1_k``, or the Oxford layout
``img1..6`` + ``H1tokp``; read by :func:`hpatches_kit.data.extract.read_source_sequence`, which names a
sequence ``i_*`` when all its homographies are the identity, else ``v_*`` unless the folder already says) and
every pair (image 1, image k), k = 2..6:

1. keypoints are detected in *each* image independently (:func:`detect_keypoints`: DoG, multi-scale Harris or
   Hessian of :mod:`hpatches_kit.data.extract`, strongest first);
2. each keypoint becomes a patch exactly as the HPatches extractor samples one: the disk of radius
   ``MAGNIFICATION x scale`` around it, rotated to its dominant gradient orientation, mapped to the patch's
   inscribed disk (anti-aliased ``warpPerspective``); any describer ``(N, P, P) uint8 -> (N, D)`` describes
   them;
3. mutual nearest neighbours in descriptor space (OpenCV ``BFMatcher`` with ``crossCheck``, L2);
4. **MMA** (Dusmanu et al., D2-Net, CVPR 2019): a match is correct at threshold t when the reference keypoint
   mapped by the ground-truth homography lies within t px of the matched keypoint; the pair's accuracy is the
   fraction of correct matches (0 without matches); MMA(t) is the mean over pairs, reported for t = 1..10 px
   over all pairs, illumination (``i_``) and viewpoint (``v_``) sequences;
5. **homography accuracy**: OpenCV ``findHomography`` (RANSAC, or USAC MAGSAC++) on the matches; the error of
   a pair is the mean distance between the four reference-image corners mapped by the estimated and by the
   true homography (infinite when estimation fails); accuracy at 1/3/5 px = fraction of pairs within.

D2-Net's own evaluation also leaves out eight high-resolution sequences of ``hpatches-sequences-release``;
point ``--data`` at a folder without them to reproduce its numbers.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["DETECTORS", "read_sequences", "detect_keypoints", "keypoint_patches", "mutual_nn", "match_errors",
           "corner_error", "estimate_homography", "pair_accuracy", "evaluate_sequences", "format_sequences"]

DETECTORS = ("dog", "harris", "hessian")
THRESHOLDS = tuple(range(1, 11))
CORNER_THRESHOLDS = (1, 3, 5)
METHODS = {"ransac": cv2.RANSAC, "usac": cv2.USAC_MAGSAC}


def read_sequences(root) -> list[tuple[str, list[np.ndarray], list[np.ndarray]]]:
    """``[(name, [6 grey images], [5 homographies 1 -> k])]`` of every sequence under ``root`` (sorted)."""
    from ..data.extract import find_source_sequences, read_source_sequence

    return [read_source_sequence(p) for p in find_source_sequences(root)]


def detect_keypoints(img: np.ndarray, detector: str = "dog", max_keypoints: int = 2000) -> np.ndarray:
    """Keypoints of one grey image, strongest first.

    Args:
        img: ``(H, W) uint8`` image.
        detector: ``dog`` (OpenCV SIFT detector), ``harris`` (multi-scale) or ``hessian``.
        max_keypoints: keep at most this many.

    Returns:
        ``(N, 3) float64``: x, y, scale (the detector's sigma; the patch covers ``MAGNIFICATION x scale``).
    """
    from ..data.extract import DETECTORS as FN

    if detector not in FN:
        raise ValueError(f"unknown detector {detector!r}; expected one of {', '.join(FN)}")
    a = FN[detector](img, int(max_keypoints))
    return np.asarray(a[:, :3], np.float64).reshape(-1, 3)


def keypoint_patches(img: np.ndarray, keypoints: np.ndarray, patch_size: int = 65) -> np.ndarray:
    """Oriented patches around keypoints, sampled like the HPatches extractor samples the reference view.

    Args:
        img: ``(H, W) uint8`` image.
        keypoints: ``(N, 3)`` x, y, scale.
        patch_size: output patch size.

    Returns:
        ``(N, patch_size, patch_size) uint8``.
    """
    from ..data import geometry as G
    from ..data.extract import MAGNIFICATION, _BlurStack, _sample, dominant_orientation

    f = img.astype(np.float32)
    gx = cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=1)
    gy = cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=1)
    mag, ang = np.hypot(gx, gy), np.mod(np.arctan2(gy, gx), 2 * np.pi)
    stack, N = _BlurStack(img), G.patch_to_norm(patch_size)
    out = np.empty((len(keypoints), patch_size, patch_size), np.uint8)
    for i, (x, y, s) in enumerate(np.asarray(keypoints, np.float64)):
        A = G.region_frame(x, y, MAGNIFICATION * s, dominant_orientation(mag, ang, x, y, s))
        out[i] = _sample(stack, A @ N, patch_size)
    return out


def mutual_nn(desc_a: np.ndarray, desc_b: np.ndarray) -> np.ndarray:
    """Mutual nearest neighbours (L2): ``(M, 2) int64`` index pairs (a, b), sorted by a.

    Example:
        >>> mutual_nn(np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32)[[2, 0, 1]]).tolist()
        [[0, 1], [1, 2], [2, 0]]
    """
    a, b = np.ascontiguousarray(desc_a, np.float32), np.ascontiguousarray(desc_b, np.float32)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((0, 2), np.int64)
    ms = cv2.BFMatcher(cv2.NORM_L2, crossCheck=True).match(a, b)
    m = np.array([(x.queryIdx, x.trainIdx) for x in ms], np.int64).reshape(-1, 2)
    return m[np.argsort(m[:, 0], kind="stable")]


def _project(H, pts):
    q = np.column_stack([pts, np.ones(len(pts))]) @ np.asarray(H, np.float64).T
    return q[:, :2] / q[:, 2:]


def match_errors(kp_a, kp_b, matches, H) -> np.ndarray:
    """Reprojection error (px) of each match: ``|H(kp_a[i]) - kp_b[j]|`` for ``(i, j)`` in ``matches``."""
    if len(matches) == 0:
        return np.zeros(0)
    return np.linalg.norm(_project(H, np.asarray(kp_a)[matches[:, 0], :2]) - np.asarray(kp_b)[matches[:, 1], :2], axis=1)


def corner_error(H_est, H_true, shape) -> float:
    """Mean distance of the four image corners mapped by ``H_est`` and ``H_true`` (inf if ``H_est`` is None)."""
    if H_est is None or not np.all(np.isfinite(H_est)):
        return math.inf
    h, w = shape[:2]
    c = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)
    return float(np.linalg.norm(_project(H_est, c) - _project(H_true, c), axis=1).mean())


def estimate_homography(pts_a, pts_b, method: str = "ransac", threshold: float = 3.0, seed: int = 0):
    """OpenCV homography from point matches (``None`` with fewer than 4 or on failure)."""
    if len(pts_a) < 4:
        return None
    cv2.setRNGSeed(int(seed))
    H, _ = cv2.findHomography(np.asarray(pts_a, np.float64), np.asarray(pts_b, np.float64), METHODS[method],
                              threshold, maxIters=10000, confidence=0.999)
    return H


def pair_accuracy(kp_a, kp_b, desc_a, desc_b, H, shape_a, thresholds=THRESHOLDS, method: str = "ransac",
                  seed: int = 0) -> dict:
    """Match one image pair and score it.

    Args:
        kp_a, kp_b: ``(N, >=2)`` keypoints (x, y, ...) of the reference and target image.
        desc_a, desc_b: their ``(N, D)`` descriptors.
        H: ground-truth homography reference -> target.
        shape_a: reference image shape (for the corner error).
        thresholds: pixel thresholds of the matching accuracy.
        method: ``ransac`` or ``usac``.

    Returns:
        ``{"matches": M, "accuracy": [fraction of matches within t px, per t], "corner_error": px}``.
    """
    m = mutual_nn(desc_a, desc_b)
    err = match_errors(kp_a, kp_b, m, H)
    acc = [float(np.mean(err <= t)) if len(err) else 0.0 for t in thresholds]
    H_est = estimate_homography(np.asarray(kp_a)[m[:, 0], :2], np.asarray(kp_b)[m[:, 1], :2], method, seed=seed) \
        if len(m) else None
    return {"matches": int(len(m)), "accuracy": acc, "corner_error": corner_error(H_est, H, shape_a)}


def _summary(pairs, thresholds) -> dict:
    if not pairs:
        return {"pairs": 0, "mma": None, "homography": None, "mean_matches": None}
    acc = np.array([p["accuracy"] for p in pairs])
    ce = np.array([p["corner_error"] for p in pairs])
    return {"pairs": len(pairs), "mma": acc.mean(0).tolist(),
            "homography": {str(t): float(np.mean(ce <= t)) for t in CORNER_THRESHOLDS},
            "mean_matches": float(np.mean([p["matches"] for p in pairs])),
            "mean_features": float(np.mean([p["features"] for p in pairs]))}


def evaluate_sequences(sequences, describer, detector: str = "dog", max_keypoints: int = 2000,
                       patch_size: int = 65, method: str = "ransac", thresholds=THRESHOLDS, seed: int = 0,
                       progress: bool = True) -> dict:
    """Run the full-image matching benchmark (see the module docstring).

    Args:
        sequences: a folder (``hpatches-sequences-release`` or Oxford layout, or one sequence) or the list
            :func:`read_sequences` returns.
        describer: ``(N, P, P) uint8 -> (N, D)``, or ``{name: describer}`` to compare several descriptors on
            the same keypoints and patches (detection and sampling run once).
        detector: see :func:`detect_keypoints`.
        max_keypoints: keypoints per image.
        patch_size: patch size handed to the describer.
        method: homography estimator, ``ransac`` or ``usac``.
        thresholds: MMA thresholds in px.

    Returns:
        ``{"meta", "overall", "illumination", "viewpoint", "pairs"}``; each summary holds ``mma`` (one value
        per threshold), ``homography`` (accuracy at 1/3/5 px), ``pairs``, ``mean_matches``, ``mean_features``;
        for a dict of describers, a list of such results (``meta["descriptor"]`` = the name), in its order.

    Example:
        >>> from hpatches_kit.evaluation import get_baseline
        >>> res = evaluate_sequences("../shared/real-sequences", get_baseline("sift"))  # doctest: +SKIP
        >>> res["overall"]["mma"][2]  # MMA at 3 px  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    named = dict(describer) if isinstance(describer, dict) else {"descriptor": describer}
    seqs = read_sequences(sequences) if not isinstance(sequences, (list, tuple)) else sequences
    thresholds = tuple(thresholds)
    pairs = {n: [] for n in named}
    for name, images, Hs in tqdm(seqs, desc="sequences", unit="seq", disable=not progress, leave=False):
        kps = [detect_keypoints(img, detector, max_keypoints) for img in images]
        patches = [keypoint_patches(img, kp, patch_size) for img, kp in zip(images, kps)]
        for dname, fn in named.items():  # every descriptor sees the same keypoints and patches
            descs = []
            for kp, pt in zip(kps, patches):
                d = np.asarray(fn(pt), np.float32) if len(kp) else np.zeros((0, 1), np.float32)
                if d.shape[0] != len(kp) or not np.isfinite(d).all():
                    raise ValueError(f"{name}: {dname} returned shape {d.shape} or non-finite values for "
                                     f"{len(kp)} patches")
                descs.append(d)
            for k in range(1, len(images)):
                r = pair_accuracy(kps[0], kps[k], descs[0], descs[k], Hs[k - 1], images[0].shape, thresholds,
                                  method, seed)
                r.update(sequence=name, target=k + 1, kind="illumination" if name.startswith("i_") else "viewpoint",
                         features=0.5 * (len(kps[0]) + len(kps[k])))
                pairs[dname].append(r)
    results = []
    for dname, ps in pairs.items():
        out = {"meta": {"detector": detector, "max_keypoints": int(max_keypoints), "patch_size": int(patch_size),
                        "method": method, "thresholds": list(thresholds), "corner_thresholds": list(CORNER_THRESHOLDS),
                        "sequences": [s[0] for s in seqs]},
               "overall": _summary(ps, thresholds)}
        if isinstance(describer, dict):
            out["meta"]["descriptor"] = dname
        for kind in ("illumination", "viewpoint"):
            out[kind] = _summary([p for p in ps if p["kind"] == kind], thresholds)
        out["pairs"] = [{**p, "corner_error": p["corner_error"] if math.isfinite(p["corner_error"]) else None}
                        for p in ps]
        results.append(out)
    return results if isinstance(describer, dict) else results[0]


def format_sequences(results: dict | list[dict]) -> str:
    """Table: descriptor, split, MMA at 1/3/5/10 px, homography accuracy at 1/3/5 px, mean matches."""
    rows = results if isinstance(results, list) else [results]
    head = f"{'descriptor':<22} {'split':<13} {'MMA@1':>6} {'MMA@3':>6} {'MMA@5':>6} {'MMA@10':>6}  " \
           f"{'H@1':>5} {'H@3':>5} {'H@5':>5} {'matches':>8}"
    lines = [head]
    for r in rows:
        th = r["meta"]["thresholds"]
        for split in ("overall", "illumination", "viewpoint"):
            s = r[split]
            if not s["pairs"]:
                continue
            mma = [s["mma"][th.index(t)] if t in th else float("nan") for t in (1, 3, 5, 10)]
            hh = [s["homography"][str(t)] for t in CORNER_THRESHOLDS]
            lines.append(f"{r['meta'].get('descriptor', '?'):<22} {split:<13} " + " ".join(f"{v:>6.3f}" for v in mma)
                         + "  " + " ".join(f"{v:>5.2f}" for v in hh) + f" {s['mean_matches']:>8.1f}")
    return "\n".join(lines)
