"""Image matching (official semantics, vectorised): exact first-index nearest neighbours and matching AP.

See ``docs/evaluation.md`` for the exact definitions.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq

import numpy as np

from ..layout import VARIANTS, sequence_kind
from . import metrics
from .descriptor_set import DescriptorSet
from .distances import FastDistances, check_distance, exact_pair_distances
from .metrics import subsample_curve
from .task_interface import VARIANT_NAMES, TaskContext, compact_summary, fmt, pct
from .threads import blas_limit

__all__ = [
    "eval_matching",
    "nearest_neighbours",
    "nearest_neighbours_multi",
    "matching_ap",
    "summarise_matching",
    "MatchingTask",
    "TASK",
]


def nearest_neighbours(A: np.ndarray, B: np.ndarray, distance: str, chunk: int = 2048, fd: FastDistances | None = None):
    """Exact first-index nearest neighbour in ``B`` of every row of ``A`` (as ``np.argmin`` over exact
    distances) and its exact distance: fast matrix, then every column within the error margin of the row
    minimum is re-ranked on exact distances."""
    fd = fd or FastDistances(B, distance)
    B64 = np.asarray(B, np.float64)
    A64 = np.asarray(A, np.float64)
    nn = np.empty(A.shape[0], np.int64)
    for s in range(0, A.shape[0], chunk):
        K, tol, _ = fd.key(A[s : s + chunk], row_offset=False)  # the row constant |a|^2 cannot change an argmin
        first = np.argmin(K, axis=1)
        kmin = K[np.arange(K.shape[0]), first].astype(np.float64)
        cand = K <= (kmin + tol).astype(K.dtype)[:, None]
        nn[s : s + K.shape[0]] = first
        multi = np.flatnonzero(np.count_nonzero(cand, axis=1) > 1)
        if multi.size:
            r, cc = np.divmod(np.flatnonzero(cand[multi]), K.shape[1])
            rr = multi[r]
            ex = exact_pair_distances(A64[s + rr], B64[cc], distance)
            order = np.lexsort((cc, ex, rr))  # per row: smallest exact distance, then first index
            firsts = order[np.r_[0, np.nonzero(np.diff(rr[order]))[0] + 1]]
            nn[s + rr[firsts]] = cc[firsts]
    return nn, exact_pair_distances(A64, B64[nn], distance)


def eval_matching(
    ds: DescriptorSet,
    sequences: Seq[str] | None = None,
    distance: str = "L2",
    curves: bool = False,
    progress: bool = False,
) -> dict:
    """Official matching: per sequence, variant and target k: NN of each ref descriptor among target k's;
    AP of the matches ranked by distance with ``numpos`` = number of ref patches; success rate."""
    with blas_limit():
        return _eval_matching(ds, sequences, distance, curves, progress)


def _match_sequence(st: np.ndarray, distance: str, curves: bool) -> dict:
    """One sequence's ``{v: {k: {"ap", "sr"[, "rc", "pr"]}}}`` from its ``(16, n, D)`` stack."""
    n = st.shape[1]
    # all 15 targets of the sequence at once: one matrix product, one exact pass, one AP pass
    nn, md = nearest_neighbours_multi(st[0], st[1:], distance)  # (15, n) each
    ok = nn == np.arange(n)[None, :]
    ap = matching_ap(md, ok)
    sr = np.count_nonzero(ok, axis=1)
    out = {}
    for vi, v in enumerate(VARIANTS):
        out[v] = {}
        for k in range(1, 6):
            row = 5 * vi + k - 1
            e = {"ap": float(ap[row]), "sr": float(sr[row]) / float(n)}
            if curves:
                prec, rec, _ = metrics.pr(-md[row], ok[row], numpos=n)
                e["rc"], e["pr"] = subsample_curve(rec, prec)
            out[v][k] = e
    return out


def _eval_matching(ds, sequences, distance, curves, progress) -> dict:
    distance = check_distance(distance)
    from tqdm.auto import tqdm

    from . import kernels

    names = list(sequences or ds.names)
    bar = tqdm(total=len(names), desc="matching", unit="seq", disable=not progress, leave=False)
    threads = min(kernels.kernel_threads(), len(names))
    if kernels.use_numba() and distance == "L2" and threads > 1:
        # the compiled NN kernel runs on the calling thread and releases the GIL, and BLAS is held to one
        # thread: one sequence per thread, in parallel (nothing shared but the read-only descriptor block)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="hpatches-match") as ex:
            futs = [ex.submit(_match_sequence, ds.stacks[s], distance, curves) for s in names]
            out = {}
            for s, f in zip(names, futs):
                out[s] = f.result()
                bar.update(1)
    else:
        out = {}
        for s in names:
            out[s] = _match_sequence(ds.stacks[s], distance, curves)
            bar.update(1)
    bar.close()
    return out


def nearest_neighbours_multi(A: np.ndarray, T: np.ndarray, distance: str, max_entries: int = 1 << 22):
    """:func:`nearest_neighbours` of the rows of ``A`` ``(n, D)`` in each of the ``m`` sets ``T`` ``(m, n_t, D)``
    at once: ``(m, n)`` first-index NN and its exact distance. One fast matrix against all the sets (rows
    chunked to ``max_entries`` keys), every entry within the error margin of its set's row minimum
    re-ranked on exact distances. L2 with numba (float32): :func:`.kernels.nn_sets_l2`, which scans each
    block of keys once in compiled code; otherwise NumPy, all exact distances in one call each."""
    from . import kernels

    m, nt, dim = T.shape
    n = A.shape[0]
    B = np.ascontiguousarray(T).reshape(m * nt, dim)
    if kernels.use_numba() and distance == "L2" and A.dtype == np.float32 and B.dtype == np.float32:
        return kernels.nn_sets_l2(A, B, nt, block=max_entries)
    fd = FastDistances(B, distance)
    B64 = B.astype(np.float64)
    A64 = np.asarray(A, np.float64)
    nn = np.empty((m, n), np.int64)
    chunk = max(1, min(n, max_entries // max(1, m * nt)))
    ex_r, ex_k, ex_c = [], [], []
    for s in range(0, n, chunk):
        K, tol, _ = fd.key(A[s : s + chunk], row_offset=False)  # the row constant |a|^2 cannot change an argmin
        c = K.shape[0]
        K3 = K.reshape(c, m, nt)
        first = np.argmin(K3, axis=2)  # (c, m)
        kmin = np.take_along_axis(K3, first[:, :, None], axis=2)[:, :, 0].astype(np.float64)
        cand = K3 <= (kmin + tol[:, None]).astype(K.dtype)[:, :, None]
        nn[:, s : s + c] = first.T
        multi = np.count_nonzero(cand, axis=2) > 1
        if multi.any():
            r, k, cc = np.nonzero(cand & multi[:, :, None])
            ex_r.append(s + r)
            ex_k.append(k)
            ex_c.append(cc)
    if ex_r:
        rr, kk, cc = np.concatenate(ex_r), np.concatenate(ex_k), np.concatenate(ex_c)
        ex = exact_pair_distances(A64[rr], B64[kk * nt + cc], distance)
        g = rr * m + kk
        order = np.lexsort((cc, ex, g))  # per (row, set): smallest exact distance, then first index
        firsts = order[np.r_[0, np.nonzero(np.diff(g[order]))[0] + 1]]
        nn[kk[firsts], rr[firsts]] = cc[firsts]
    rows_b = (np.arange(m)[:, None] * nt + nn).ravel()
    md = exact_pair_distances(np.tile(A64, (m, 1)), B64[rows_b], distance).reshape(m, n)
    return nn, md


def matching_ap(md: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Official matching AP (``pr(-md, ok, numpos=n)``) of every row of ``md``/``ok`` ``(m, n)`` at once.

    With ``numpos = n`` every item is retrieved (the padded missing positives have score -inf and are cut
    off), so each row's curve has the same ``n + 1`` points: rank by ascending distance with a stable sort
    (ties keep the input order, as the official mergesort of ``-md``), cumulative tp/fp with a leading 0,
    recall ``tp / n``, precision ``max(tp, 1e-10) / max(tp + fp, 1e-10)``, trapezoid area, the same
    operations as :func:`.metrics.pr` applied row-wise (the same per-row sums, so the same floats)."""
    m, n = md.shape
    if np.isnan(md).any():
        raise ValueError("scores contain NaN")
    order = np.argsort(md, axis=1, kind="stable")
    lab = np.take_along_axis(np.asarray(ok, bool), order, axis=1)
    tp = np.zeros((m, n + 1), np.int64)
    fp = np.zeros((m, n + 1), np.int64)
    np.cumsum(lab, axis=1, out=tp[:, 1:])
    np.cumsum(~lab, axis=1, out=fp[:, 1:])
    recall = tp / float(max(n, metrics.SMALL))
    precision = np.maximum(tp, metrics.SMALL) / np.maximum(tp + fp, metrics.SMALL)
    return np.sum(np.diff(recall, axis=1) * (precision[:, 1:] + precision[:, :-1]) / 2.0, axis=1)


def summarise_matching(raw: dict) -> dict:
    """The JSON-ready summary (numbers in %) of :func:`eval_matching`'s ``raw`` result."""
    seqs = list(raw)
    per_seq = {s: {v: float(np.mean([raw[s][v][k]["ap"] for k in range(1, 6)])) for v in VARIANTS} for s in seqs}
    table = {}
    for v in VARIANTS:
        row = {
            "all": pct(np.mean([per_seq[s][v] for s in seqs])),
            "sr": pct(np.mean([raw[s][v][k]["sr"] for s in seqs for k in range(1, 6)])),
        }
        for kind in ("illum", "view"):
            ks = [s for s in seqs if sequence_kind(s) == kind]
            row[kind] = pct(np.mean([per_seq[s][v] for s in ks])) if ks else None
        table[v] = row
    mean_all = float(np.mean([table[v]["all"] for v in VARIANTS]))
    out = {"table": table, "mean_over_variants": mean_all}
    if all(table[v]["illum"] is not None and table[v]["view"] is not None for v in VARIANTS):
        avg_i = float(np.mean([table[v]["illum"] for v in VARIANTS]))
        avg_v = float(np.mean([table[v]["view"] for v in VARIANTS]))
        out.update(avg_illum=avg_i, avg_view=avg_v, avg=(avg_i + avg_v) / 2.0)
        head = out["avg"]
    else:
        head = mean_all
    out["headline"] = {"name": TASK.headline_name, "value": head, "definition": TASK.headline_definition}
    out["per_sequence"] = {s: {v: pct(per_seq[s][v]) for v in VARIANTS} for s in seqs}
    return out


class MatchingTask:
    """Image matching as a registry task (:class:`~.registry.Task`); it needs no task files."""

    name = "matching"
    files = ()
    headline_name = "matching mAP"
    headline_definition = (
        "official avg: mean of the illumination and viewpoint averages, each the mean over e/h/t of "
        "the mean over sequences of the mean AP over targets 1..5 (if the split has only one kind: "
        "mean over e/h/t of the mean over all sequences and targets), %"
    )
    plot_label = "Image Matching mAP [%]"

    def run(self, ds: DescriptorSet, ctx: TaskContext) -> dict:
        return summarise_matching(eval_matching(ds, ctx.sequences, ctx.distance, progress=ctx.progress))

    def compact(self, summary: dict) -> dict:
        return compact_summary(summary, drop=("per_sequence",))

    def format(self, r: dict) -> list:
        lines = ["", "Matching            mAP illum  mAP view   mAP all    success rate"]
        for v in VARIANTS:
            t = r["table"][v]
            lines.append(
                f"  {VARIANT_NAMES[v]:<16}  {fmt(t['illum'])}    {fmt(t['view'])}    {fmt(t['all'])}     {fmt(t['sr'])}"
            )
        lines.append(f"  matching mAP {r['headline']['value']:.2f}")
        return lines

    def variant_points(self, summary: dict) -> dict:
        t = summary["table"]
        return {v: [x for x in (t[v]["illum"], t[v]["view"]) if x is not None] or [t[v]["all"]] for v in VARIANTS}


TASK = MatchingTask()
