"""Brown / UBC PhotoTour benchmarks: FPR at 95% recall on the standard pairs and the "revisited" SNN mAP.

**FPR95** (:func:`fpr_at_recall`) is the number HardNet, L2-Net and TFeat report: pairs are ranked by
ascending descriptor distance; the threshold is the first rank at which the matching pairs found so far reach
95% of all matching pairs; FPR = non-matching pairs ranked *before* that position / all non-matching pairs
(HardNet's ``ErrorRateAt95Recall``: stable order, the position itself is a match).

**Revisited mAP** (:func:`revisited_map`, ducha-aiki's ``brown_phototour_revisited``, ``evaluate_mAP_snn_based``):
patches are grouped by reference image (first column of ``interest.txt``); inside one image, every patch is
an anchor, its hardest negative is its nearest patch of another 3-D point *of the same image*, and every
ordered (anchor, positive) pair of the same point (anchor excluded) is a query. A query is correct when
``d(a, p) <= d(a, n)``; its score is ``1 - min(d_p, d_n) / max(d_p, d_n)`` (one minus Lowe's second-nearest
ratio; 0/0 counts as ratio 1). The image's AP is scikit-learn's ``average_precision_score(correct, score)``;
the result is the mean AP over images. Two quirks of the reference code are reproduced when
``reference_quirks=True`` (the default, so numbers compare with its published tables): hardest negatives are
mined only for images with more than 1000 patches and only for the first ``128 * (n // 128)`` anchors; the
other anchors take the image's patch 0 as "negative". The reference masks positives by adding 1000 to their
distance; here they are masked with +inf (identical unless descriptor distances exceed 1000).
"""

from __future__ import annotations

import warnings

import numpy as np

from ..data.errors import DataError

__all__ = [
    "fpr_at_recall",
    "pair_distances",
    "same_label_pairs",
    "hardest_negatives",
    "revisited_map",
    "describe_brown",
    "evaluate_brown",
    "format_brown",
]


def fpr_at_recall(distances, labels, recall: float = 0.95) -> float:
    """False positive rate at the given recall (FPR95 for ``recall=0.95``).

    Args:
        distances: ``(M,)`` pair distances (smaller = more similar).
        labels: ``(M,)`` 1 for a matching pair, 0 otherwise.
        recall: the recall level.

    Returns:
        The FPR: non-matching pairs ranked before the first position where recall >= ``recall``, over all
        non-matching pairs.

    Example:
        >>> fpr_at_recall([0.1, 0.2, 0.3, 0.4], [1, 0, 1, 0], recall=1.0)
        0.5
    """
    d = np.asarray(distances, np.float64).ravel()
    y = np.asarray(labels).ravel().astype(np.int64)
    if d.shape != y.shape:
        raise ValueError(f"distances ({d.shape}) and labels ({y.shape}) differ in length")
    npos, nneg = int(y.sum()), int(len(y) - y.sum())
    if npos == 0 or nneg == 0:
        raise ValueError(f"need matching and non-matching pairs, got {npos} and {nneg}")
    lab = y[np.argsort(d, kind="mergesort")]
    k = int(np.argmax(np.cumsum(lab) >= recall * npos))
    return float(np.sum(lab[:k] == 0)) / nneg


def pair_distances(desc: np.ndarray, a, b, distance: str = "L2") -> np.ndarray:
    """Distances between rows ``a`` and ``b`` of ``desc`` (``L2`` or ``L1``), chunked to bound memory."""
    out = np.empty(len(a), np.float64)
    for s in range(0, len(a), 65536):
        diff = desc[a[s : s + 65536]].astype(np.float64) - desc[b[s : s + 65536]]
        out[s : s + 65536] = np.abs(diff).sum(1) if distance == "L1" else np.sqrt((diff * diff).sum(1))
    return out


def hardest_negatives(desc: np.ndarray, labels: np.ndarray, chunk: int | None = None) -> np.ndarray:
    """For every row: the index of its nearest row (L2) with a different label.

    Shape:
        - desc: :math:`(N, D)`; labels: :math:`(N,)`; returns :math:`(N,)` int64 (``-1`` when all labels agree).
    """
    from sklearn.metrics import pairwise_distances

    x = np.asarray(desc, np.float32)
    out = np.full(len(x), -1, np.int64)
    chunk = chunk or max(16, min(1024, 2**24 // max(len(x), 1)))  # <= 64 MB of distances at a time
    for s in range(0, len(x), chunk):
        d = pairwise_distances(x[s : s + chunk], x, metric="euclidean")
        d[labels[s : s + chunk, None] == labels[None]] = np.inf
        j = d.argmin(1)
        ok = np.isfinite(d[np.arange(len(j)), j])
        out[s : s + chunk] = np.where(ok, j, -1)
    return out


def same_label_pairs(labels) -> tuple[np.ndarray, np.ndarray]:
    """All ordered pairs ``(i, j)``, ``i != j``, of equal labels, without an N x N mask (memory ~ pairs).

    Returns:
        ``(anchors, positives)`` int64 arrays, sorted by anchor then positive.
    """
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    lab = labels[order]
    longest = int(np.unique(lab, return_counts=True)[1].max()) if len(lab) else 0
    a, b = [], []
    for k in range(1, longest):  # pairs k apart in label order
        m = lab[:-k] == lab[k:]
        a += [order[:-k][m], order[k:][m]]
        b += [order[k:][m], order[:-k][m]]
    if not a:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    a, b = np.concatenate(a), np.concatenate(b)
    o = np.lexsort((b, a))
    return a[o].astype(np.int64), b[o].astype(np.int64)


def _image_ap(desc, labels, reference_quirks: bool) -> float | None:
    from sklearn.metrics import average_precision_score

    n = len(labels)
    anc, pos = same_label_pairs(labels)
    if not len(anc):
        return None
    if reference_quirks:
        neg = np.zeros(n, np.int64)
        if n > 1000:
            m = 128 * (n // 128)
            neg[:m] = hardest_negatives(desc, labels)[:m]
    else:
        neg = hardest_negatives(desc, labels)
        neg[neg < 0] = 0
    dp = pair_distances(desc, anc, pos)
    dn = pair_distances(desc, anc, neg[anc])
    correct = dp <= dn
    with np.errstate(invalid="ignore", divide="ignore"):
        snn = np.minimum(dp, dn) / np.maximum(dp, dn)
    snn[np.isnan(snn)] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(average_precision_score(correct, 1.0 - snn))


def revisited_map(descriptors, point_ids, image_ids, reference_quirks: bool = True) -> float:
    """Mean over reference images of the SNN-ratio AP (see the module docstring).

    Args:
        descriptors: ``(N, D)`` descriptors of all patches.
        point_ids: ``(N,)`` 3-D point ids (``info.txt``).
        image_ids: ``(N,)`` reference-image ids (``interest.txt``).
        reference_quirks: reproduce the negative-mining quirks of the reference code.

    Returns:
        The mAP in [0, 1] (images without any positive pair are skipped).
    """
    desc = np.asarray(descriptors, np.float32)
    pid, iid = np.asarray(point_ids), np.asarray(image_ids)
    if not (len(desc) == len(pid) == len(iid)):
        raise ValueError(f"descriptors ({len(desc)}), point ids ({len(pid)}) and image ids ({len(iid)}) differ")
    aps = []
    for img in np.unique(iid):
        sel = np.nonzero(iid == img)[0]
        ap = _image_ap(desc[sel], pid[sel], reference_quirks)
        if ap is not None:
            aps.append(ap)
    if not aps:
        raise ValueError("no image has two patches of one 3-D point: no revisited queries")
    return float(np.mean(aps))


def describe_brown(subset, describer, indices=None, chunk: int = 8192, progress: bool = True) -> np.ndarray:
    """Describe patches of a :class:`~hpatches_kit.data.brown.BrownSubset` chunk by chunk (memory-bounded).

    Returns:
        ``(len(indices), D) float32`` in the order of ``indices`` (default: all patches).
    """
    from tqdm.auto import tqdm

    idx = np.arange(len(subset)) if indices is None else np.asarray(indices, np.int64)
    out = None
    for s in tqdm(range(0, len(idx), chunk), desc="describing", unit="chunk", disable=not progress, leave=False):
        d = np.asarray(describer(subset.patches(idx[s : s + chunk])), np.float32)
        if out is None:
            out = np.empty((len(idx), d.shape[1]), np.float32)
        out[s : s + chunk] = d
    if out is None or not np.isfinite(out).all():
        raise DataError(subset.root, "describer produced no, NaN or Inf descriptors")
    return out


def evaluate_brown(
    subset,
    describer=None,
    descriptors=None,
    pairs: str = "m50_100000_100000_0.txt",
    revisited: bool = True,
    reference_quirks: bool = True,
    distance: str = "L2",
    progress: bool = True,
    keep_distances: bool = False,
) -> dict:
    """FPR95 on a pair file and (with ``interest.txt``) the revisited mAP of one Brown subset.

    Args:
        subset: a :class:`~hpatches_kit.data.brown.BrownSubset`.
        describer: ``(N, P, P) uint8 -> (N, D)``; or ``descriptors``: ``(len(subset), D)`` precomputed rows.
        pairs: match file name inside the subset folder.
        revisited: also compute the revisited mAP (needs ``interest.txt`` and descriptors of all patches).
        reference_quirks: see :func:`revisited_map`.
        distance: ``L2`` or ``L1`` for FPR95 (the revisited protocol is L2).
        keep_distances: also return ``"pair_distances"`` and ``"pair_labels"`` (numpy arrays, for plots).

    Returns:
        ``{"subset", "pairs", "num_pairs", "fpr95", "revisited_map" (or None), "num_patches"}``.
    """
    pr = subset.pairs(pairs)
    need_all = revisited and subset.image_ids is not None
    if descriptors is not None:
        desc = np.asarray(descriptors, np.float32)
        if desc.ndim != 2 or len(desc) != len(subset):
            raise DataError(subset.root, f"descriptors have shape {desc.shape}, the subset has {len(subset)} patches")
        rows = np.arange(len(subset))
    elif need_all:
        desc, rows = describe_brown(subset, describer, progress=progress), np.arange(len(subset))
    else:
        rows = np.unique(pr[:, :2])
        desc = describe_brown(subset, describer, rows, progress=progress)
    a, b = np.searchsorted(rows, pr[:, 0]), np.searchsorted(rows, pr[:, 1])
    dist = pair_distances(desc, a, b, distance)
    res = {
        "subset": subset.name,
        "pairs": pairs,
        "num_pairs": int(len(pr)),
        "num_patches": int(len(subset)),
        "fpr95": fpr_at_recall(dist, pr[:, 2]),
        "revisited_map": None,
    }
    if keep_distances:
        res.update(pair_distances=dist, pair_labels=pr[:, 2])
    if need_all:
        res["revisited_map"] = revisited_map(desc, subset.point_ids, subset.image_ids, reference_quirks)
    elif revisited:
        res["revisited_note"] = f"{subset.root / 'interest.txt'} not found: revisited mAP skipped"
    return res


def format_brown(results: list[dict]) -> str:
    """A plain-text table: descriptor, subset, FPR95 (%), revisited mAP (%)."""
    lines = [f"{'descriptor':<24} {'subset':<12} {'FPR95 %':>8} {'rev. mAP %':>11}"]
    for r in results:
        m = "-" if r.get("revisited_map") is None else f"{100 * r['revisited_map']:.2f}"
        lines.append(f"{r.get('descriptor', '?'):<24} {r['subset']:<12} {100 * r['fpr95']:>8.2f} {m:>11}")
    return "\n".join(lines)
