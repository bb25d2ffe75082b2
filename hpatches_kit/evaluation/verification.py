"""Patch verification (official semantics, vectorised): pair distances, balanced ROC AUC, imbalanced AP.

See ``docs/evaluation.md`` for the exact definitions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.errors import DataError
from ..layout import VARIANTS, variant_type_index
from . import metrics
from .descriptor_set import DescriptorSet
from .distances import check_distance
from .metrics import CURVE_POINTS
from .task_interface import VARIANT_NAMES, TaskContext, compact_summary, fmt, pct
from .tasks import VerificationPairs, verif_file
from .threads import compute_threads

__all__ = ["eval_verification", "verification_distances", "summarise_verification", "VerificationTask", "TASK"]

KINDS = ("pos", "neg_intra", "neg_inter")


def verification_distances(
    ds: DescriptorSet,
    pairs: VerificationPairs,
    distance: str,
    where: dict | None = None,
    threads: int | None = None,
    backend: str | None = None,
) -> dict:
    """Distances of the three pair tables for each variant: ``{kind: {v: (M,) float64}}``.

    ``backend``: ``"numba"`` (default where numba loads; ``$HPATCHES_KIT_EVAL_BACKEND`` overrides) runs the
    compiled kernel of :mod:`.kernels` over all three variants in one pass; ``"numpy"`` gathers chunks and
    reduces them on a small thread pool. Both are float64 difference-form distances, deterministic per pair
    of vectors; they agree to a few ulps (their summation orders differ), and both reproduce the official
    numbers (tested against the loop reference)."""
    from . import kernels

    if kernels.use_numba(backend):
        return _verification_distances_numba(ds, pairs, distance, where)
    return _verification_distances_numpy(ds, pairs, distance, where, threads)


def _verification_tables(ds: DescriptorSet, pairs: VerificationPairs, where: dict | None):
    """Validated ``{kind: (s1_ids, s2_ids, table)}``; sequence-name columns shared between tables are
    converted once."""
    where = where or {}
    cols = {}
    cache: list = []

    def ids(arr, w):
        for prev, val in cache:
            if prev is arr or (len(prev) == len(arr) and np.array_equal(prev, arr)):
                return val
        val = ds.seq_ids(arr, w)
        cache.append((arr, val))
        return val

    for k in KINDS:
        t, w = pairs.table(k), where.get(k, f"verif_{k}")
        s1, s2 = ids(t["s1"], w), ids(t["s2"], w)
        ds.check_idx(s1, t["idx1"], w)
        ds.check_idx(s2, t["idx2"], w)
        for c in ("t1", "t2"):
            tt = np.asarray(t[c])
            bad = np.nonzero((tt < 0) | (tt > 5))[0]
            if bad.size:
                raise DataError(w, f"row {bad[0] + 1}: image id {c}={tt[bad[0]]} out of range 0..5")
        cols[k] = (s1, s2, t)
    return cols


def _verification_distances_numba(ds, pairs, distance, where) -> dict:
    from .kernels import variant_pair_distances

    cols = _verification_tables(ds, pairs, where)
    out = {}
    orders: list = []  # tables with the same first patches (the official files) share one sort
    for k, (s1, s2, t) in cols.items():
        pa = ds.offsets[s1] + np.asarray(t["idx1"], np.int64)
        order = next((o for p, o in orders if p.shape == pa.shape and np.array_equal(p, pa)), None)
        if order is None:
            order = np.argsort(pa)
            orders.append((pa, order))
        pb = ds.offsets[s2] + np.asarray(t["idx2"], np.int64)
        d = variant_pair_distances(ds.rows2d, ds.total, pa, t["t1"], pb, t["t2"], distance, order=order)
        out[k] = {v: d[i] for i, v in enumerate(VARIANTS)}
    return out


def _verification_distances_numpy(ds, pairs, distance, where, threads) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    cols = _verification_tables(ds, pairs, where)
    kinds = list(cols)
    X = ds.rows2d
    out = {k: {} for k in kinds}
    threads = threads or compute_threads()
    chunk = 2048
    for v in VARIANTS:
        r1 = {k: ds.rows(cols[k][0], variant_type_index(v, cols[k][2]["t1"]), cols[k][2]["idx1"]) for k in kinds}
        r2 = {k: ds.rows(cols[k][1], variant_type_index(v, cols[k][2]["t2"]), cols[k][2]["idx2"]) for k in kinds}
        groups: list[list[str]] = []  # kinds sharing identical first-patch rows
        for k in kinds:
            for g in groups:
                if np.array_equal(r1[g[0]], r1[k]):
                    g.append(k)
                    break
            else:
                groups.append([k])
        for g in groups:
            n = len(r1[g[0]])
            # visit pairs in (sequence, patch) order of their first patch: gathers stay within one
            # sequence's descriptors (cache-friendly), results are scattered back to file order
            lead = cols[g[0]]
            order = np.argsort(ds.offsets[lead[0]] + np.asarray(lead[2]["idx1"], np.int64), kind="stable")
            a_rows = r1[g[0]][order]
            b_rows = {k: r2[k][order] for k in g}
            for k in g:
                out[k][v] = np.empty(n, np.float64)

            def work(s, g=g, order=order, a_rows=a_rows, b_rows=b_rows):
                sel = order[s : s + chunk]
                a = np.take(X, a_rows[s : s + chunk], axis=0).astype(np.float64)
                for k in g:
                    diff = a - np.take(X, b_rows[k][s : s + chunk], axis=0)
                    if distance == "L2":
                        diff *= diff
                        out[k][v][sel] = np.sqrt(np.sum(diff, axis=-1))
                    else:
                        np.abs(diff, out=diff)
                        out[k][v][sel] = np.sum(diff, axis=-1)

            if threads > 1 and n > chunk:
                with ThreadPoolExecutor(threads) as ex:
                    list(ex.map(work, range(0, n, chunk)))
            else:
                for s0 in range(0, n, chunk):
                    work(s0)
    return out


def _neg_first_auc_ap(neg_sorted: np.ndarray, pos_sorted: np.ndarray, pos_imb_sorted: np.ndarray):
    """Official ROC AUC of ``[negatives; positives]`` and official AP of ``[negatives; first positives]``
    (scores = -distance, stable sort) from the *sorted* distances, in closed form: with negatives listed
    first, a negative tied with a positive ranks before it, so every negative step of the ROC curve adds
    ``tpr / N`` with ``tpr = #{pos: d_pos < d_neg} / P``, and the j-th positive (ascending) of the
    imbalanced list sits at rank ``j + #{neg: d_neg <= d_pos}``."""
    n, p = neg_sorted.size, pos_sorted.size
    below = np.searchsorted(pos_sorted, neg_sorted, side="left")
    auc = float(np.sum(below / float(max(p, metrics.SMALL))) / float(max(n, metrics.SMALL))) if n else 0.0
    if pos_imb_sorted.size:
        ranks = np.arange(1, pos_imb_sorted.size + 1) + np.searchsorted(neg_sorted, pos_imb_sorted, side="right")
        ap = float(metrics.ap_from_ranks(ranks.astype(np.float64), pos_imb_sorted.size))
    else:
        ap = 0.0
    return auc, ap


def _threshold_curves(neg_sorted, pos_sorted, n_imb_pos_sorted, n=CURVE_POINTS):
    # thresholds: evenly spaced order statistics of both (already sorted) samples
    picks = [a[np.linspace(0, a.size - 1, n // 2).astype(np.int64)] for a in (neg_sorted, pos_sorted) if a.size]
    thr = np.unique(np.concatenate(picks)) if picks else np.zeros(0)
    tp = np.searchsorted(pos_sorted, thr, side="right")
    fp = np.searchsorted(neg_sorted, thr, side="right")
    tpr = np.concatenate([[0.0], tp / max(pos_sorted.size, 1)])
    fpr = np.concatenate([[0.0], fp / max(neg_sorted.size, 1)])
    tpi = np.searchsorted(n_imb_pos_sorted, thr, side="right")
    rec = np.concatenate([[0.0], tpi / max(n_imb_pos_sorted.size, 1)])
    prec = np.concatenate([[1.0], np.maximum(tpi, metrics.SMALL) / np.maximum(tpi + fp, metrics.SMALL)])
    return fpr.tolist(), tpr.tolist(), rec.tolist(), prec.tolist()


def eval_verification(
    ds: DescriptorSet,
    pairs: VerificationPairs,
    distance: str = "L2",
    curves: bool = True,
    progress: bool = False,
    where: dict | None = None,
) -> dict:
    """Official verification: per variant, negatives stacked before positives; balanced = ROC AUC over all
    of them; imbalanced = AP over the first ``P + int(0.2 P)`` rows (all negatives + 20% of the positives
    when there are as many negatives as positives). Curves (for plots) are sampled at distance quantiles."""
    distance = check_distance(distance)
    d = verification_distances(ds, pairs, distance, where)
    npos = d["pos"]["e"].shape[0]
    res = {}
    n_imb = npos + int(npos * 0.2)
    for v in VARIANTS:
        res[v] = {}
        ps = np.sort(d["pos"][v])
        imb_cache: dict = {}
        for neg in ("intra", "inter"):
            dn = d[f"neg_{neg}"][v]
            # the official imbalanced list is the first n_imb rows of [negatives; positives]
            n_imb_neg = min(n_imb, dn.shape[0])
            n_imb_pos = n_imb - n_imb_neg
            if n_imb_pos not in imb_cache:
                imb_cache[n_imb_pos] = np.sort(d["pos"][v][:n_imb_pos])
            pis = imb_cache[n_imb_pos]
            ns = np.sort(dn)
            auc, _ = _neg_first_auc_ap(ns, ps, pis[:0])
            nsi = ns if n_imb_neg == dn.shape[0] else np.sort(dn[:n_imb_neg])
            _, ap = _neg_first_auc_ap(nsi, ps[:0], pis)
            entry = {"balanced": {"auc": auc}, "imbalanced": {"ap": ap}}
            if curves:
                fpr, tpr, rec, prec = _threshold_curves(ns, ps, pis)
                entry["balanced"].update(fpr=fpr, tpr=tpr)
                entry["imbalanced"].update(rc=rec, pr=prec)
            res[v][neg] = entry
    return res


def summarise_verification(raw: dict, num_pairs: dict) -> dict:
    """The JSON-ready summary (numbers in %) of :func:`eval_verification`'s ``raw`` result."""
    table = {
        v: {
            neg: {"auc": pct(raw[v][neg]["balanced"]["auc"]), "ap": pct(raw[v][neg]["imbalanced"]["ap"])}
            for neg in ("intra", "inter")
        }
        for v in VARIANTS
    }
    bal = float(np.mean([table[v][n]["auc"] for v in VARIANTS for n in ("intra", "inter")]))
    imb = float(np.mean([table[v][n]["ap"] for v in VARIANTS for n in ("intra", "inter")]))
    curves = {
        v: {
            n: {
                "fpr": raw[v][n]["balanced"].get("fpr"),
                "tpr": raw[v][n]["balanced"].get("tpr"),
                "recall": raw[v][n]["imbalanced"].get("rc"),
                "precision": raw[v][n]["imbalanced"].get("pr"),
            }
            for n in ("intra", "inter")
        }
        for v in VARIANTS
    }
    return {
        "table": table,
        "avg_balanced_auc": bal,
        "avg_imbalanced_ap": imb,
        "headline": {"name": TASK.headline_name, "value": imb, "definition": TASK.headline_definition},
        "num_pairs": num_pairs,
        "curves": curves,
    }


class VerificationTask:
    """Patch verification as a registry task (:class:`~.registry.Task`)."""

    name = "verification"
    files = ("verification",)
    headline_name = "verification mAP"
    headline_definition = "mean over e/h/t x intra/inter of the imbalanced-protocol AP (official avg_imbalanced), %"
    plot_label = "Patch Verification mAP [%]"

    def run(self, ds: DescriptorSet, ctx: TaskContext) -> dict:
        pairs = ctx.files.verification
        where = {k: str(Path(ctx.files.source) / verif_file(k, ctx.split)) for k in KINDS}
        raw = eval_verification(ds, pairs, ctx.distance, progress=ctx.progress, where=where)
        return summarise_verification(raw, {k: int(len(pairs.table(k)["s1"])) for k in KINDS})

    def compact(self, summary: dict) -> dict:
        return compact_summary(summary, ("headline", "table", "avg_balanced_auc", "avg_imbalanced_ap", "num_pairs"))

    def format(self, r: dict) -> list:
        lines = [
            "",
            "Verification        AUC (balanced)      AP (imbalanced)",
            "                    intra    inter      intra    inter",
        ]
        for v in VARIANTS:
            t = r["table"][v]
            lines.append(
                f"  {VARIANT_NAMES[v]:<16}{fmt(t['intra']['auc'])}   {fmt(t['inter']['auc'])}     "
                f"{fmt(t['intra']['ap'])}   {fmt(t['inter']['ap'])}"
            )
        lines.append(
            f"  mean AUC {r['avg_balanced_auc']:.2f}   verification mAP (imbalanced) {r['avg_imbalanced_ap']:.2f}"
        )
        return lines

    def variant_points(self, summary: dict) -> dict:
        return {v: [summary["table"][v][n]["ap"] for n in ("intra", "inter")] for v in VARIANTS}


TASK = VerificationTask()
