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

from ..data.keypoints import ORIENTATIONS, detect_keypoints, keypoint_patches  # noqa: F401 (moved there; re-exported)

__all__ = [
    "DETECTORS",
    "ORIENTATIONS",
    "KINDS_FILE",
    "read_scene_kinds",
    "read_sequences",
    "detect_keypoints",
    "keypoint_patches",
    "mutual_nn",
    "match_descriptors",
    "covisible",
    "match_errors",
    "corner_error",
    "estimate_homography",
    "pair_accuracy",
    "evaluate_sequences",
    "format_sequences",
    "beats",
]

DETECTORS = ("dog", "harris", "hessian")
THRESHOLDS = tuple(range(1, 11))
CORNER_THRESHOLDS = (1, 3, 5)
METHODS = {"ransac": cv2.RANSAC, "usac": cv2.USAC_MAGSAC}


KINDS = ("illumination", "viewpoint")
#: Name of the optional scene-kinds file beside the data (see :func:`read_scene_kinds`).
KINDS_FILE = "scene-kinds.txt"


def read_scene_kinds(spec) -> dict[str, str]:
    """Scene kinds named by the user: ``{scene: "illumination" | "viewpoint"}``.

    Args:
        spec: a file (one ``scene kind`` per line, ``#`` comments, kind ``illumination``/``i`` or
            ``viewpoint``/``v``), a string ``"leuven=i,bikes=v"``, a dict, or ``None`` (no kinds).

    Returns:
        ``{scene: kind}``; scenes are folder names (an ``i_``/``v_`` prefix may be given or not).

    Raises:
        ValueError: a line or entry that is not ``scene kind`` with a known kind (naming the file and line).

    Example:
        >>> read_scene_kinds("leuven=i,bikes=viewpoint")
        {'leuven': 'illumination', 'bikes': 'viewpoint'}
    """
    from pathlib import Path

    if spec is None:
        return {}
    if isinstance(spec, dict):
        items, where = list(spec.items()), "kinds"
    elif isinstance(spec, Path) or (isinstance(spec, str) and "=" not in spec):
        path = Path(spec)
        if not path.is_file():
            raise ValueError(f"{path}: scene-kinds file not found")
        items, where = [], str(path)
        for n, line in enumerate(path.read_text().splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.replace("=", " ").split()
            if len(parts) != 2:
                raise ValueError(f"{path}:{n}: expected 'scene kind', got {line!r}")
            items.append((parts[0], parts[1]))
    else:
        items, where = [], "kinds"
        for e in str(spec).split(","):
            if e.strip():
                if "=" not in e:
                    raise ValueError(f"kinds: expected scene=kind, got {e.strip()!r}")
                k, v = e.split("=", 1)
                items.append((k.strip(), v.strip()))
    out = {}
    for scene, kind in items:
        k = {"i": "illumination", "v": "viewpoint"}.get(str(kind).lower(), str(kind).lower())
        if k not in KINDS:
            raise ValueError(f"{where}: scene {scene!r} has unknown kind {kind!r} (expected illumination or viewpoint)")
        out[str(scene)] = k
    return out


def _kind_of(name: str, kinds: dict) -> str:
    base = name[2:] if name.startswith(("i_", "v_")) else name
    for key in (name, base):
        if key in kinds:
            return kinds[key]
    return "illumination" if name.startswith("i_") else "viewpoint"


def read_sequences(root, kinds=None) -> list[tuple[str, list[np.ndarray], list[np.ndarray]]]:
    """``[(name, [2..6 grey images], [homographies 1 -> k])]`` of every sequence under ``root`` (sorted).

    ``root`` may be one folder or a list of folders. Names keep the ``i_``/``v_`` prefix guessed from the
    homographies (:func:`hpatches_kit.data.extract.read_source_sequence`) unless ``kinds`` (see
    :func:`read_scene_kinds`) or a ``scene-kinds.txt`` file in ``root`` names the scene's kind: then the prefix
    follows the named kind.
    """
    from pathlib import Path

    from ..data.extract import find_source_sequences, read_source_sequence

    roots = list(root) if isinstance(root, (list, tuple)) else [root]
    out, used, seen = [], set(), []
    given = read_scene_kinds(kinds)
    for r in roots:
        named = dict(read_scene_kinds(Path(r) / KINDS_FILE)) if (Path(r) / KINDS_FILE).is_file() else {}
        named.update(given)
        for p in find_source_sequences(r):
            name, ims, Hs = read_source_sequence(p)
            seen.append(p.name)
            base = p.name[2:] if p.name.startswith(("i_", "v_")) else p.name
            keys = [k for k in (p.name, name[2:]) if k in named] or [
                k for k in named if (k[2:] if k.startswith(("i_", "v_")) else k) == base
            ]  # the scene named with or without its i_/v_ prefix
            if keys:
                key = keys[0]
                used.add(key)
                kind = named[key]
                name = ("i_" if kind == "illumination" else "v_") + base
            out.append((name, ims, Hs))
    unused = [k for k in given if k not in used]
    if unused:  # a misspelt scene would otherwise keep its guessed kind, silently
        raise ValueError(
            f"--kinds names {', '.join(unused)}, which is no scene of the data (scenes: "
            f"{', '.join(sorted(seen)[:8])}{', ...' if len(seen) > 8 else ''})"
        )
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


def match_descriptors(desc_a: np.ndarray, desc_b: np.ndarray, mutual: bool = True, ratio: float | None = None):
    """Nearest-neighbour matching (L2) with the usual filters: ``(M, 2) int64`` index pairs (a, b), sorted by a.

    Args:
        desc_a, desc_b: ``(N, D)`` and ``(M, D)`` descriptors.
        mutual: keep a -> b only when a is also b's nearest neighbour (cross check).
        ratio: Lowe's ratio test: keep a -> b only when ``d(a, b) < ratio * d(a, b')`` with b' a's second
            nearest neighbour (``None``: off; with one candidate the test passes).

    Example:
        >>> a = np.array([[0.0, 0], [1, 0]], np.float32); b = np.array([[0.1, 0], [0.9, 0], [0.5, 0]], np.float32)
        >>> match_descriptors(a, b, ratio=0.5).tolist()
        [[0, 0], [1, 1]]
    """
    a, b = np.ascontiguousarray(desc_a, np.float32), np.ascontiguousarray(desc_b, np.float32)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((0, 2), np.int64)
    if ratio is None and mutual:
        return mutual_nn(a, b)
    k = 2 if len(b) > 1 else 1
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(a, b, k=k)
    nn = np.array([m[0].trainIdx for m in knn], np.int64)
    keep = np.ones(len(a), bool)
    if ratio is not None and k == 2:
        d = np.array([[m[0].distance, m[1].distance] for m in knn], np.float64)
        keep &= d[:, 0] < float(ratio) * d[:, 1]
    if mutual:
        back = np.array([m.trainIdx for m in cv2.BFMatcher(cv2.NORM_L2).match(b, a)], np.int64)
        keep &= back[nn] == np.arange(len(a))
    idx = np.nonzero(keep)[0]
    return np.column_stack([idx, nn[idx]]).astype(np.int64).reshape(-1, 2)


def covisible(kp, H, shape_other) -> np.ndarray:
    """Which keypoints ``(N, >=2)`` map through ``H`` inside an image of ``shape_other``: ``(N,) bool``."""
    if len(kp) == 0:
        return np.zeros(0, bool)
    q = _project(H, np.asarray(kp, np.float64)[:, :2])
    h, w = shape_other[:2]
    return np.isfinite(q).all(1) & (q[:, 0] >= 0) & (q[:, 1] >= 0) & (q[:, 0] <= w - 1) & (q[:, 1] <= h - 1)


def _project(H, pts):
    q = np.column_stack([pts, np.ones(len(pts))]) @ np.asarray(H, np.float64).T
    return q[:, :2] / q[:, 2:]


def match_errors(kp_a, kp_b, matches, H) -> np.ndarray:
    """Reprojection error (px) of each match: ``|H(kp_a[i]) - kp_b[j]|`` for ``(i, j)`` in ``matches``."""
    if len(matches) == 0:
        return np.zeros(0)
    return np.linalg.norm(
        _project(H, np.asarray(kp_a)[matches[:, 0], :2]) - np.asarray(kp_b)[matches[:, 1], :2], axis=1
    )


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
    H, _ = cv2.findHomography(
        np.asarray(pts_a, np.float64),
        np.asarray(pts_b, np.float64),
        METHODS[method],
        threshold,
        maxIters=10000,
        confidence=0.999,
    )
    return H


def pair_accuracy(
    kp_a,
    kp_b,
    desc_a,
    desc_b,
    H,
    shape_a,
    thresholds=THRESHOLDS,
    method: str = "ransac",
    seed: int = 0,
    mutual: bool = True,
    ratio: float | None = None,
    shape_b=None,
) -> dict:
    """Match one image pair and score it.

    Args:
        kp_a, kp_b: ``(N, >=2)`` keypoints (x, y, ...) of the reference and target image.
        desc_a, desc_b: their ``(N, D)`` descriptors.
        H: ground-truth homography reference -> target.
        shape_a: reference image shape (for the corner error).
        thresholds: pixel thresholds of the matching accuracy.
        method: ``ransac`` or ``usac``.
        mutual, ratio: the matcher (:func:`match_descriptors`).
        shape_b: target image shape (for the co-visible keypoints of the matching score; default ``shape_a``).

    Returns:
        ``{"matches": M, "accuracy": [fraction of matches within t px, per t], "correct": [matches within t px,
        per t], "covisible": mean number of keypoints of the two images that the true homography maps inside
        the other image, "matching_score": [correct(t) / covisible, per t], "corner_error": px}``.
    """
    m = match_descriptors(desc_a, desc_b, mutual=mutual, ratio=ratio)
    err = match_errors(kp_a, kp_b, m, H)
    correct = [int(np.sum(err <= t)) for t in thresholds]
    acc = [c / len(err) if len(err) else 0.0 for c in correct]
    shape_b = shape_a if shape_b is None else shape_b
    cov = 0.5 * (covisible(kp_a, H, shape_b).sum() + covisible(kp_b, np.linalg.inv(H), shape_a).sum())
    H_est = (
        estimate_homography(np.asarray(kp_a)[m[:, 0], :2], np.asarray(kp_b)[m[:, 1], :2], method, seed=seed)
        if len(m)
        else None
    )
    return {
        "matches": int(len(m)),
        "accuracy": acc,
        "correct": correct,
        "covisible": float(cov),
        "matching_score": [c / cov if cov else 0.0 for c in correct],
        "corner_error": corner_error(H_est, H, shape_a),
    }


def _summary(pairs, thresholds) -> dict:
    if not pairs:
        return {
            "pairs": 0,
            "mma": None,
            "homography": None,
            "mean_matches": None,
            "mean_correct": None,
            "matching_score": None,
        }
    acc = np.array([p["accuracy"] for p in pairs])
    ce = np.array([p["corner_error"] for p in pairs])
    return {
        "pairs": len(pairs),
        "mma": acc.mean(0).tolist(),
        "homography": {str(t): float(np.mean(ce <= t)) for t in CORNER_THRESHOLDS},
        "mean_matches": float(np.mean([p["matches"] for p in pairs])),
        "mean_correct": np.mean([p["correct"] for p in pairs], axis=0).tolist(),
        "matching_score": np.mean([p["matching_score"] for p in pairs], axis=0).tolist(),
        "mean_features": float(np.mean([p["features"] for p in pairs])),
    }


def evaluate_sequences(
    sequences,
    describer,
    detector: str = "dog",
    max_keypoints: int = 2000,
    patch_size: int = 65,
    method: str = "ransac",
    thresholds=THRESHOLDS,
    seed: int = 0,
    progress: bool = True,
    orientation: str = "dominant",
    magnification: float | None = None,
    mutual: bool = True,
    ratio: float | None = None,
    kinds=None,
) -> dict:
    """Run the full-image matching benchmark (see the module docstring).

    Args:
        sequences: a folder (``hpatches-sequences-release`` or Oxford layout, or one sequence; 2 to 6 images
            each), a list of folders, or the list :func:`read_sequences` returns.
        describer: ``(N, P, P) uint8 -> (N, D)``, or ``{name: describer}`` to compare several descriptors on
            the same keypoints and patches (detection and sampling run once).
        detector: see :func:`detect_keypoints`.
        max_keypoints: keypoints per image.
        patch_size: patch size handed to the describer.
        method: homography estimator, ``ransac`` or ``usac``.
        thresholds: MMA thresholds in px.
        orientation, magnification: patch cutting (:func:`keypoint_patches`).
        mutual, ratio: the matcher (:func:`match_descriptors`).
        kinds: scene kinds (:func:`read_scene_kinds`; also read from ``scene-kinds.txt`` beside the data).

    Returns:
        ``{"meta", "overall", "illumination", "viewpoint", "scenes", "pairs"}``; each summary holds ``mma`` (one
        value per threshold), ``homography`` (accuracy at 1/3/5 px), ``pairs``, ``mean_matches``,
        ``mean_correct`` and ``matching_score`` (per threshold), ``mean_features``; ``scenes`` maps each
        scene to its summary; for a dict of describers, a list of such results (``meta["descriptor"]`` = the
        name), in its order.

    Example:
        >>> from hpatches_kit.evaluation import get_baseline
        >>> res = evaluate_sequences("../shared/real-sequences", get_baseline("sift"))  # doctest: +SKIP
        >>> res["overall"]["mma"][2]  # MMA at 3 px  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    if ratio is not None and not 0 < float(ratio) <= 1:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    named = dict(describer) if isinstance(describer, dict) else {"descriptor": describer}
    if isinstance(sequences, (list, tuple)) and sequences and isinstance(sequences[0], tuple):
        seqs = list(sequences)
        if kinds is not None:
            kd = read_scene_kinds(kinds)
            seqs = [
                (
                    ("i_" if _kind_of(n, kd) == "illumination" else "v_") + (n[2:] if n[:2] in ("i_", "v_") else n),
                    ims,
                    Hs,
                )
                for n, ims, Hs in seqs
            ]
    else:
        seqs = read_sequences(sequences, kinds)
    thresholds = tuple(thresholds)
    pairs = {n: [] for n in named}
    for name, images, Hs in tqdm(seqs, desc="sequences", unit="seq", disable=not progress, leave=False):
        kps = [detect_keypoints(img, detector, max_keypoints, orientation=orientation) for img in images]
        patches = [
            keypoint_patches(img, kp, patch_size, orientation=orientation, magnification=magnification)
            for img, kp in zip(images, kps)
        ]
        for dname, fn in named.items():  # every descriptor sees the same keypoints and patches
            descs = []
            for kp, pt in zip(kps, patches):
                d = np.asarray(fn(pt), np.float32) if len(kp) else np.zeros((0, 1), np.float32)
                if d.shape[0] != len(kp) or not np.isfinite(d).all():
                    raise ValueError(
                        f"{name}: {dname} returned shape {d.shape} or non-finite values for {len(kp)} patches"
                    )
                descs.append(d)
            for k in range(1, len(images)):
                r = pair_accuracy(
                    kps[0],
                    kps[k],
                    descs[0],
                    descs[k],
                    Hs[k - 1],
                    images[0].shape,
                    thresholds,
                    method,
                    seed,
                    mutual=mutual,
                    ratio=ratio,
                    shape_b=images[k].shape,
                )
                r.update(
                    sequence=name,
                    target=k + 1,
                    kind="illumination" if name.startswith("i_") else "viewpoint",
                    features=0.5 * (len(kps[0]) + len(kps[k])),
                )
                pairs[dname].append(r)
    results = []
    for dname, ps in pairs.items():
        out = {
            "meta": {
                "detector": detector,
                "max_keypoints": int(max_keypoints),
                "patch_size": int(patch_size),
                "method": method,
                "thresholds": list(thresholds),
                "corner_thresholds": list(CORNER_THRESHOLDS),
                "orientation": orientation,
                "magnification": magnification,
                "mutual": bool(mutual),
                "ratio": ratio,
                "sequences": [s[0] for s in seqs],
            },
            "overall": _summary(ps, thresholds),
        }
        if isinstance(describer, dict):
            out["meta"]["descriptor"] = dname
        for kind in KINDS:
            out[kind] = _summary([p for p in ps if p["kind"] == kind], thresholds)
        out["scenes"] = {s[0]: _summary([p for p in ps if p["sequence"] == s[0]], thresholds) for s in seqs}
        out["pairs"] = [
            {**p, "corner_error": p["corner_error"] if math.isfinite(p["corner_error"]) else None} for p in ps
        ]
        results.append(out)
    return results if isinstance(describer, dict) else results[0]


def format_sequences(results: dict | list[dict], scenes: bool = False) -> str:
    """Table: descriptor, split, MMA at 1/3/5/10 px, homography accuracy at 1/3/5 px, mean matches, mean correct
    matches at 3 px, matching score at 3 px; ``scenes=True`` adds one row per scene."""
    rows = results if isinstance(results, list) else [results]
    head = (
        f"{'descriptor':<22} {'split':<16} {'MMA@1':>6} {'MMA@3':>6} {'MMA@5':>6} {'MMA@10':>6}  "
        f"{'H@1':>5} {'H@3':>5} {'H@5':>5} {'matches':>8} {'corr@3':>7} {'MS@3':>6}"
    )
    lines = [head]
    for r in rows:
        th = r["meta"]["thresholds"]
        splits = [(k, r[k]) for k in ("overall",) + KINDS]
        if scenes:
            splits += list(r.get("scenes", {}).items())
        for split, s in splits:
            if not s["pairs"]:
                continue
            mma = [s["mma"][th.index(t)] if t in th else float("nan") for t in (1, 3, 5, 10)]
            hh = [s["homography"][str(t)] for t in CORNER_THRESHOLDS]
            c3 = s["mean_correct"][th.index(3)] if 3 in th and s.get("mean_correct") else float("nan")
            ms3 = s["matching_score"][th.index(3)] if 3 in th and s.get("matching_score") else float("nan")
            lines.append(
                f"{r['meta'].get('descriptor', '?'):<22} {split[:16]:<16} "
                + " ".join(f"{v:>6.3f}" for v in mma)
                + "  "
                + " ".join(f"{v:>5.2f}" for v in hh)
                + f" {s['mean_matches']:>8.1f} {c3:>7.1f} {ms3:>6.3f}"
            )
    return "\n".join(lines)


def beats(
    results: list[dict],
    model: str,
    baseline: str = "rootsift",
    split: str = "overall",
    mma_thresholds=(1, 3, 5, 10),
    h_thresholds=(3, 5),
) -> tuple[bool, list[tuple[str, float, float]]]:
    """Does ``model`` beat ``baseline`` on MMA at every ``mma_thresholds`` and on homography accuracy at every
    ``h_thresholds`` (strictly)?

    Returns:
        ``(ok, [(criterion, model value, baseline value)])``.
    """
    by = {r["meta"].get("descriptor"): r for r in results}
    if model not in by or baseline not in by:
        raise ValueError(f"results hold {sorted(by)}; need {model!r} and {baseline!r}")
    m, b = by[model][split], by[baseline][split]
    th = by[model]["meta"]["thresholds"]
    rows = [(f"MMA@{t}", m["mma"][th.index(t)], b["mma"][th.index(t)]) for t in mma_thresholds]
    rows += [(f"H@{t}", m["homography"][str(t)], b["homography"][str(t)]) for t in h_thresholds]
    return all(x > y for _, x, y in rows), rows
