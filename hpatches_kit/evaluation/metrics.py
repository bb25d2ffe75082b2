"""Ranking metrics with the exact semantics of the official HPatches benchmark (``utils/metrics.py``).

* scores are ``-distance``; items are ranked by descending score with a *stable* mergesort, so among tied
  scores the item that comes first in the input comes first in the ranking;
* ``numpos`` pads the labels with missing positives that get score ``-inf`` and are never retrieved (the
  curve stops at the last finite score), so they only lower the recall;
* precision = ``max(tp, 1e-10) / max(tp + fp, 1e-10)``, recall/tpr = ``tp / max(p, 1e-10)``,
  fpr = ``fp / max(n, 1e-10)``; the area is the trapezoid rule over the curve points, the first point
  being ``(tp, fp) = (0, 0)``.
"""

from __future__ import annotations

import numpy as np

SMALL = 1e-10
#: number of points kept per curve in the results (curves are subsampled for plots/JSON)
CURVE_POINTS = 200

__all__ = ["tpfp", "pr", "roc", "ap_from_ranks", "subsample_curve"]


def _trapezoid(y, x) -> float:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.size < 2:
        return 0.0
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def tpfp(scores, labels, numpos: int | None = None):
    """Cumulative true/false positives along the ranking (official ``tpfp``).

    Returns ``tp, fp, p, n, perm`` with ``tp``/``fp`` of length ``retrieved + 1`` (leading 0).
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"scores ({scores.shape}) and labels ({labels.shape}) differ in length")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    labels = labels.astype(np.int64)
    p = int(np.sum(labels))
    n = int(labels.size - p)
    if numpos is not None:
        if numpos < p:
            raise ValueError(f"numpos={numpos} is smaller than the number of positives in labels ({p})")
        extra = int(numpos) - p
        p = int(numpos)
        scores = np.concatenate([scores, np.full(extra, -np.inf)])
        labels = np.concatenate([labels, np.ones(extra, np.int64)])
    perm = np.argsort(-scores, kind="mergesort")
    finite = np.nonzero(scores[perm] > -np.inf)[0]
    if finite.size == 0:
        raise ValueError("no item has a finite score")
    perm = perm[: finite[-1] + 1]
    lab = labels[perm]
    tp = np.concatenate([[0], np.cumsum(lab == 1)])
    fp = np.concatenate([[0], np.cumsum(lab == 0)])
    return tp, fp, p, n, perm


def pr(scores, labels, numpos: int | None = None):
    """Precision, recall and average precision (area under the PR curve, trapezoid rule)."""
    tp, fp, p, n, _ = tpfp(scores, labels, numpos)
    recall = tp / float(max(p, SMALL))
    precision = np.maximum(tp, SMALL) / np.maximum(tp + fp, SMALL)
    return precision, recall, _trapezoid(precision, recall)


def roc(scores, labels, numpos: int | None = None):
    """False/true positive rates and the ROC AUC (trapezoid rule)."""
    tp, fp, p, n, _ = tpfp(scores, labels, numpos)
    tpr = tp / float(max(p, SMALL))
    fpr = fp / float(max(n, SMALL))
    return fpr, tpr, _trapezoid(tpr, fpr)


def ap_from_ranks(ranks: np.ndarray, numpos: int) -> np.ndarray:
    """Official-``pr`` average precision from the ranks of the positives, vectorised over rows.

    ``ranks``: ``(..., K)`` 1-based positions of the K positives in the ranking, sorted ascending along the
    last axis (the j-th positive, j = 1..K, sits at ``ranks[..., j-1]``); ``numpos`` is ``p`` (>= K). Equal to
    ``pr(scores, labels)[2]`` for the same ranking: only the curve segments where recall increases have
    non-zero area, and those go from the point just before the j-th positive to the point at it.
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    k = ranks.shape[-1]
    j = np.arange(1, k + 1, dtype=np.float64)
    prec_at = np.maximum(j, SMALL) / np.maximum(ranks, SMALL)
    prec_before = np.maximum(j - 1, SMALL) / np.maximum(ranks - 1, SMALL)
    p = float(max(numpos, SMALL))
    drec = j / p - (j - 1) / p
    return np.sum(drec * (prec_at + prec_before) / 2.0, axis=-1)


def subsample_curve(x, y, n=CURVE_POINTS):
    """At most ``n`` evenly spaced points of the curve ``(x, y)`` as two lists (for plots and JSON)."""
    x = np.asarray(x)
    if x.size <= n:
        return x.tolist(), np.asarray(y).tolist()
    keep = np.unique(np.linspace(0, x.size - 1, n).round().astype(int))
    return x[keep].tolist(), np.asarray(y)[keep].tolist()
