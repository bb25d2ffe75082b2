"""Patch retrieval (official semantics, vectorised): AP of each query's ranked pool, for every pool size.

See ``docs/evaluation.md`` for the exact definitions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..layout import VARIANTS, target_indices
from . import metrics
from .descriptor_set import DescriptorSet
from .distances import FastDistances, check_distance, exact_pair_distances
from .task_interface import VARIANT_NAMES, TaskContext, compact_summary, fmt, pct
from .tasks import RetrievalTask, retr_file
from .threads import blas_limit

POOL_SIZES = (100, 500, 1000, 5000, 10000, 15000, 20000)

__all__ = ["POOL_SIZES", "eval_retrieval", "summarise_retrieval", "RetrievalEvalTask", "TASK"]


def eval_retrieval(
    ds: DescriptorSet,
    task: RetrievalTask,
    distance: str = "L2",
    pool_sizes=POOL_SIZES,
    chunk: int = 256,
    progress: bool = False,
    where: dict | None = None,
    dense_fraction: float = 0.02,
) -> dict:
    """Official retrieval. Query = a ``ref`` patch; its ranked list is ``[5 positives (same index in the
    variant's 5 targets), distractors of other sequences in file order]`` truncated to the pool size;
    AP by the official ``pr`` (stable ranking: a distractor tied with a positive ranks after it).

    Returns ``{"ap": {v: (Q, len(pool_sizes)) array}, "pool_sizes": [...], ...}``.
    """
    with blas_limit():
        return _eval_retrieval(ds, task, distance, pool_sizes, chunk, progress, where, dense_fraction)


def _bsearch(S: np.ndarray, x: np.ndarray, right: bool) -> np.ndarray:
    """Row-wise ``searchsorted``: ``S`` (R, n) sorted rows, ``x`` (R, m) -> (R, m) insertion points."""
    R, n = S.shape
    lo = np.zeros(x.shape, np.int64)
    hi = np.full(x.shape, n, np.int64)
    rows = np.arange(R)[:, None]
    while True:
        active = lo < hi
        if not active.any():
            return lo
        mid = (lo + hi) // 2
        v = S[rows, np.minimum(mid, n - 1)]
        go = (v <= x) if right else (v < x)
        go &= active
        lo = np.where(go, mid + 1, lo)
        hi = np.where(active & ~go, mid, hi)


def _dense_counts(K, lo32, hi32, ends, counts, desc_q, desc_d, rows, pos_sorted, distance, npool):
    """Distractors strictly closer than each positive, per pool, when many distractors are relevant:
    keys below a positive's band ``[lo, hi]`` are definitely closer, keys inside it are decided on exact
    distances. With numba (:func:`.kernels.retrieval_counts`) one compiled pass over each row of keys; with
    NumPy each pool segment of the key matrix is argsorted row-wise and the band edges of the 15 thresholds
    are located by a vectorised binary search."""
    from . import kernels

    nv = lo32.shape[0]
    R = K.shape[0]
    lo = np.moveaxis(lo32, 0, 1).reshape(R, nv * 5)  # (R, 15): (variant, positive) order
    hi = np.moveaxis(hi32, 0, 1).reshape(R, nv * 5)
    thr = np.moveaxis(pos_sorted[:, rows], 0, 1).reshape(R, nv * 5)
    if kernels.use_numba():
        # one pass over the keys per row (compiled): no row-wise sort of the distractors
        seg_of_col = np.searchsorted(ends, np.arange(K.shape[1]), side="right")
        seg_counts = kernels.retrieval_counts(
            K, lo, hi, thr, seg_of_col, npool, desc_q[rows], desc_d[: K.shape[1]], distance
        )
        counts[:] = np.moveaxis(np.cumsum(seg_counts, axis=2).reshape(R, nv, 5, npool), 1, 0)
        return
    seg_counts = np.zeros((R, nv * 5, npool), np.int64)
    starts = np.concatenate([[0], ends[:-1]])
    for si in range(npool):
        a, b = int(starts[si]), int(ends[si])
        if b <= a:
            continue
        order = np.argsort(K[:, a:b], axis=1)
        S = np.take_along_axis(K[:, a:b], order, axis=1)
        n_less = _bsearch(S, lo, right=False)
        n_band = _bsearch(S, hi, right=True) - n_less
        seg_counts[:, :, si] = n_less
        rr, kk = np.nonzero(n_band > 0)
        if rr.size:
            lens = n_band[rr, kk]
            pos = np.repeat(n_less[rr, kk], lens) + (np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens))
            er, ek = np.repeat(rr, lens), np.repeat(kk, lens)
            cols = a + order[er, pos]
            ex = exact_pair_distances(desc_q[rows[er]], desc_d[cols], distance)
            less = ex < thr[er, ek]
            np.add.at(seg_counts, (er[less], ek[less], np.full(int(less.sum()), si)), 1)
    counts[:] = np.moveaxis(np.cumsum(seg_counts, axis=2).reshape(R, nv, 5, npool), 1, 0)


def _eval_retrieval(ds, task, distance, pool_sizes, chunk, progress, where, dense_fraction) -> dict:
    distance = check_distance(distance)
    from tqdm.auto import tqdm

    q, dtab = task.queries, task.distractors
    wq = (where or {}).get("queries", "retr_queries")
    wd = (where or {}).get("distractors", "retr_distractors")
    qs = ds.seq_ids(q["s"], wq)
    ds.check_idx(qs, q["idx"], wq)
    dsid = ds.seq_ids(dtab["s"], wd)
    ds.check_idx(dsid, dtab["idx"], wd)
    nq = len(qs)
    zeros = np.zeros(nq, np.int64)
    desc_q = ds.gather(qs, zeros, q["idx"])
    desc_d = ds.gather(dsid, np.zeros(len(dsid), np.int64), dtab["idx"])
    # exact distances to the 5 positives of every variant: (V, Q, 5)
    pos = np.empty((len(VARIANTS), nq, 5))
    for vi, var in enumerate(VARIANTS):
        for k, j in enumerate(target_indices(var)):
            b = ds.gather(qs, np.full(nq, j), q["idx"])
            pos[vi, :, k] = exact_pair_distances(desc_q, b, distance)
    pos_order = np.argsort(pos, axis=2, kind="mergesort")
    pos_sorted = np.take_along_axis(pos, pos_order, axis=2)
    fd = FastDistances(desc_d, distance)
    pool_sizes = tuple(int(p) for p in pool_sizes)
    npool = len(pool_sizes)
    nv = len(VARIANTS)
    ap = np.empty((nv, nq, npool))
    n_distr = np.empty(nq, np.int64)
    groups = [(g, np.nonzero(qs == g)[0]) for g in np.unique(qs)]
    bar = tqdm(total=nq, desc="retrieval", unit="query", disable=not progress, leave=False)
    for g, rows_all in groups:
        own = np.nonzero(dsid == g)[0]
        cols = np.nonzero(dsid != g)[0]
        m = cols.size
        n_distr[rows_all] = m
        # pool p holds the 5 positives and the first p-5 distractors of other sequences; as positions in
        # the full distractor list (own-sequence distractors are excluded by an infinite key)
        nk = [max(0, min(p - 5, m)) for p in pool_sizes]
        ends = np.array([cols[n - 1] + 1 if n > 0 else 0 for n in nk], np.int64)
        last = int(ends.max()) if ends.size else 0
        for c0 in range(0, rows_all.size, chunk):
            rows = rows_all[c0 : c0 + chunk]
            K, tol, off = fd.key(desc_q[rows], row_offset=False)
            K = K[:, :last]
            K[:, own[own < last]] = np.inf
            # thresholds on the key scale (exact positive distances), (V, R, 5), and their error bands
            tk = fd.to_key(pos_sorted[:, rows]) - off[None, :, None]
            lo32 = (tk - tol[None, :, None]).astype(K.dtype)
            hi32 = (tk + tol[None, :, None]).astype(K.dtype)
            counts = np.zeros((nv, rows.size, 5, npool), np.int64)
            # only distractors not farther than the farthest positive of some variant can change a rank
            relevant = K <= hi32.max(axis=(0, 2))[:, None]
            n_rel = int(np.count_nonzero(relevant))
            if n_rel > dense_fraction * relevant.size:
                _dense_counts(K, lo32, hi32, ends, counts, desc_q, desc_d, rows, pos_sorted, distance, npool)
            elif n_rel:
                rr, cc = np.divmod(np.flatnonzero(relevant), K.shape[1])
                kv = K[rr, cc]
                seg = np.searchsorted(ends, cc, side="right")  # first pool that contains this distractor
                for vi in range(nv):
                    less = kv[:, None] < lo32[vi, rr]  # (E, 5) definitely closer than the positive
                    near = ~less & (kv[:, None] <= hi32[vi, rr])
                    e_idx, j_idx = np.nonzero(near)
                    if e_idx.size:  # within the error margin: decide on exact distances
                        ex = exact_pair_distances(desc_q[rows[rr[e_idx]]], desc_d[cc[e_idx]], distance)
                        less[e_idx, j_idx] = ex < pos_sorted[vi, rows[rr[e_idx]], j_idx]
                    e_idx, j_idx = np.nonzero(less)
                    flat = (rr[e_idx] * 5 + j_idx) * (npool + 1) + seg[e_idx]
                    hist = np.bincount(flat, minlength=rows.size * 5 * (npool + 1)).reshape(rows.size, 5, npool + 1)
                    counts[vi] = np.cumsum(hist[:, :, :npool], axis=2)  # closer distractors within each pool
            ranks = np.arange(1, 6)[None, None, :, None] + counts  # (V, R, 5, npool)
            ap[:, rows] = metrics.ap_from_ranks(np.moveaxis(ranks, 2, 3), 5)
            bar.update(rows.size)
    bar.close()
    return {
        "ap": {v: ap[vi] for vi, v in enumerate(VARIANTS)},
        "pool_sizes": list(pool_sizes),
        "num_queries": nq,
        "num_distractors": int(len(dsid)),
        "distractors_per_query": n_distr,
    }


def summarise_retrieval(raw: dict) -> dict:
    """The JSON-ready summary (numbers in %) of :func:`eval_retrieval`'s ``raw`` result."""
    pools = raw["pool_sizes"]
    table = {v: {str(p): pct(raw["ap"][v][:, i].mean()) for i, p in enumerate(pools)} for v in VARIANTS}
    per_v = {v: float(np.mean(list(table[v].values()))) for v in VARIANTS}
    avg = float(np.mean(list(per_v.values())))
    return {
        "table": table,
        "per_variant": per_v,
        "avg": avg,
        "headline": {"name": TASK.headline_name, "value": avg, "definition": TASK.headline_definition},
        "pool_sizes": pools,
        "num_queries": raw["num_queries"],
        "num_distractors": raw["num_distractors"],
        "effective_pool_max": int(5 + np.max(raw["distractors_per_query"])) if raw["num_queries"] else 0,
    }


def capped_pools_note(r: dict) -> str | None:
    """What a retrieval headline averages on a small test set: pool sizes larger than the largest pool a query
    can have (its 5 positives + every distractor, ``effective_pool_max``) repeat that pool's mAP; ``None`` when
    every pool is real (the official sizes).

    Example:
        >>> capped_pools_note({"pool_sizes": [100, 500, 1000], "effective_pool_max": 305})
        'pools 500, 1,000 capped at 305 (300 distractors): they repeat its mAP in the mean'
    """
    cap = r.get("effective_pool_max")
    capped = [int(p) for p in r.get("pool_sizes", ()) if cap and int(p) > cap]
    if not capped:
        return None
    return (
        f"pools {', '.join(f'{p:,}' for p in capped)} capped at {cap:,} ({cap - 5:,} distractors): they repeat its "
        "mAP in the mean"
    )


class RetrievalEvalTask:
    """Patch retrieval as a registry task (:class:`~.registry.Task`; :class:`~.tasks.RetrievalTask` is
    its task file)."""

    name = "retrieval"
    files = ("retrieval",)
    headline_name = "retrieval mAP"
    headline_definition = (
        "mean over e/h/t of the mean over pool sizes 100..20000 of the mean AP over queries (official avg), %"
    )
    plot_label = "Patch Retrieval mAP [%]"

    def run(self, ds: DescriptorSet, ctx: TaskContext) -> dict:
        where = {k: str(Path(ctx.files.source) / retr_file(k, ctx.split)) for k in ("queries", "distractors")}
        return summarise_retrieval(
            eval_retrieval(ds, ctx.files.retrieval, ctx.distance, progress=ctx.progress, where=where)
        )

    def compact(self, summary: dict) -> dict:
        return compact_summary(
            summary,
            (
                "headline",
                "table",
                "per_variant",
                "avg",
                "pool_sizes",
                "num_queries",
                "num_distractors",
                "effective_pool_max",
            ),
        )

    def format(self, r: dict) -> list:
        pools = r["pool_sizes"]
        lines = ["", "Retrieval mAP  pool " + " ".join(f"{p:>6d}" for p in pools) + "    mean"]
        for v in VARIANTS:
            vals = " ".join(fmt(r["table"][v][str(p)]) for p in pools)
            lines.append(f"  {VARIANT_NAMES[v]:<18} {vals}  {fmt(r['per_variant'][v])}")
        note = capped_pools_note(r)
        lines.append(
            f"  retrieval mAP {r['avg']:.2f}  ({r['num_queries']} queries, {r['num_distractors']} distractors"
            + (f"; {note})" if note else ")")
        )
        return lines

    def variant_points(self, summary: dict) -> dict:
        return {v: [summary["per_variant"][v]] for v in VARIANTS}


TASK = RetrievalEvalTask()
