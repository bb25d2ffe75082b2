"""The three HPatches tasks (verification, matching, retrieval), vectorised, with the official semantics.

Descriptors are ``{sequence: {type: (N, D) float32}}`` (types ``ref, e1..e5, h1..h5, t1..t5``).
See ``docs/evaluation.md`` for the exact definitions and the summaries.
"""

from __future__ import annotations

from typing import Mapping, Sequence as Seq

import numpy as np

from ..data.errors import DataError
from ..data.hpatches import TYPES, VARIANTS
from . import metrics
from .distances import FastDistances, check_distance, exact_pair_distances
from .tasks import RetrievalTask, VerificationPairs

POOL_SIZES = (100, 500, 1000, 5000, 10000, 15000, 20000)
TASKS = ("verification", "matching", "retrieval")
#: number of points kept per curve in the results (curves are subsampled for plots/JSON)
CURVE_POINTS = 200

__all__ = [
    "POOL_SIZES", "TASKS", "DescriptorSet", "validate_descriptors", "eval_verification", "eval_matching",
    "eval_retrieval",
]


def _variant_type_index(variant: str, t: np.ndarray) -> np.ndarray:
    """Image id 0..5 of a task file -> index into TYPES for a variant (0 -> ref, k -> <variant>k)."""
    v = VARIANTS.index(variant)
    t = np.asarray(t, np.int64)
    return np.where(t == 0, 0, 1 + 5 * v + (t - 1))


class DescriptorSet:
    """Validated descriptors of some sequences, stacked as ``(16, N_s, D)`` float32 per sequence."""

    def __init__(self, descs: Mapping[str, Mapping[str, np.ndarray]], sequences: Seq[str] | None = None,
                 types: Seq[str] = TYPES, source: str | None = None):
        names = list(descs) if sequences is None else list(sequences)
        missing = [s for s in names if s not in descs]
        if missing:
            raise DataError(source or missing[0], f"no descriptors for sequences: {', '.join(missing[:10])}")
        if not names:
            raise DataError(source, "no sequences to evaluate")
        self.names = names
        self.index = {s: i for i, s in enumerate(names)}
        self.stacks: dict[str, np.ndarray] = {}
        dim = None
        for s in names:
            entry = descs[s]
            miss = [t for t in TYPES if t not in entry]
            if miss:
                raise DataError(s, f"descriptors missing for types: {', '.join(miss)}")
            arrs = []
            n = None
            for t in TYPES:
                a = np.asarray(entry[t])
                where = f"{s}/{t}"
                if a.ndim != 2:
                    raise DataError(where, f"descriptors must be a 2-D (N, D) array, got shape {a.shape}")
                if n is None:
                    n = a.shape[0]
                elif a.shape[0] != n:
                    raise DataError(where, f"{a.shape[0]} descriptors but ref has {n}: all types of a sequence need the same count")
                if dim is None:
                    dim = a.shape[1]
                elif a.shape[1] != dim:
                    raise DataError(where, f"descriptor dimension {a.shape[1]} differs from {dim} of the other sequences")
                if not np.issubdtype(a.dtype, np.number):
                    raise DataError(where, f"descriptors have non-numeric dtype {a.dtype}")
                a = a.astype(np.float32, copy=False)
                if not np.isfinite(a).all():
                    bad = int(np.nonzero(~np.isfinite(a).all(axis=1))[0][0])
                    raise DataError(where, f"descriptor {bad} contains NaN or Inf")
                arrs.append(a)
            if n == 0:
                raise DataError(s, "sequence has no descriptors")
            self.stacks[s] = np.stack(arrs)
        self.dim = int(dim)
        self.lengths = {s: int(self.stacks[s].shape[1]) for s in names}

    def seq_ids(self, names: np.ndarray, where: str) -> np.ndarray:
        uniq, inv = np.unique(np.asarray(names, dtype=object).astype(str), return_inverse=True)
        ids = np.empty(len(uniq), np.int64)
        for k, u in enumerate(uniq):
            if u not in self.index:
                raise DataError(where, f"unknown sequence {u!r} (not among the evaluated sequences)")
            ids[k] = self.index[u]
        return ids[inv]

    def check_idx(self, seq_ids: np.ndarray, idx: np.ndarray, where: str) -> None:
        lens = np.array([self.lengths[s] for s in self.names], np.int64)[seq_ids]
        bad = np.nonzero((idx < 0) | (idx >= lens))[0]
        if bad.size:
            b = bad[0]
            raise DataError(where, f"row {b + 1}: patch index {idx[b]} out of range for {self.names[seq_ids[b]]} ({lens[b]} patches)")

    def gather(self, seq_ids: np.ndarray, type_idx: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Descriptors of (sequence, type, patch) triples, ``(M, D)`` float32."""
        out = np.empty((len(seq_ids), self.dim), np.float32)
        order = np.argsort(seq_ids, kind="stable")
        sid_sorted = seq_ids[order]
        bounds = np.searchsorted(sid_sorted, np.arange(len(self.names) + 1))
        for k, s in enumerate(self.names):
            sel = order[bounds[k] : bounds[k + 1]]
            if sel.size:
                out[sel] = self.stacks[s][type_idx[sel], idx[sel]]
        return out


def _subsample_curve(x, y, n=CURVE_POINTS):
    x = np.asarray(x)
    if x.size <= n:
        return x.tolist(), np.asarray(y).tolist()
    keep = np.unique(np.linspace(0, x.size - 1, n).round().astype(int))
    return x[keep].tolist(), np.asarray(y)[keep].tolist()


# -- verification ------------------------------------------------------------------------------------
def verification_distances(ds: DescriptorSet, table: dict, distance: str, where: str) -> dict:
    """Distances of one pair table for each variant: ``{v: (M,) float64}``."""
    s1 = ds.seq_ids(table["s1"], where)
    s2 = ds.seq_ids(table["s2"], where)
    ds.check_idx(s1, table["idx1"], where)
    ds.check_idx(s2, table["idx2"], where)
    out = {}
    for v in VARIANTS:
        a = ds.gather(s1, _variant_type_index(v, table["t1"]), table["idx1"])
        b = ds.gather(s2, _variant_type_index(v, table["t2"]), table["idx2"])
        out[v] = exact_pair_distances(a, b, distance)
    return out


def eval_verification(ds: DescriptorSet, pairs: VerificationPairs, distance: str = "L2", curves: bool = True,
                      progress: bool = False) -> dict:
    """Official verification: per variant, negatives stacked before positives; balanced = ROC AUC over all
    of them; imbalanced = AP over the first ``P + int(0.2 P)`` rows (all negatives + 20% of the positives
    when there are as many negatives as positives)."""
    distance = check_distance(distance)
    from tqdm.auto import tqdm

    d = {}
    for k in tqdm(("pos", "neg_intra", "neg_inter"), desc="verification", disable=not progress, leave=False):
        d[k] = verification_distances(ds, pairs.table(k), distance, f"verif_{k}")
    npos = d["pos"]["e"].shape[0]
    res = {}
    for v in VARIANTS:
        res[v] = {}
        for neg in ("intra", "inter"):
            dn = d[f"neg_{neg}"][v]
            dist = np.concatenate([dn, d["pos"][v]])
            lab = np.concatenate([np.zeros(dn.shape[0]), np.ones(npos)])
            fpr, tpr, auc = metrics.roc(-dist, lab)
            n_imb = npos + int(npos * 0.2)
            prec, rec, ap = metrics.pr(-dist[:n_imb], lab[:n_imb])
            entry = {"balanced": {"auc": auc}, "imbalanced": {"ap": ap}}
            if curves:
                entry["balanced"]["fpr"], entry["balanced"]["tpr"] = _subsample_curve(fpr, tpr)
                entry["imbalanced"]["rc"], entry["imbalanced"]["pr"] = _subsample_curve(rec, prec)
            res[v][neg] = entry
    return res


# -- matching ----------------------------------------------------------------------------------------
def nearest_neighbours(A: np.ndarray, B: np.ndarray, distance: str, chunk: int = 2048):
    """Exact first-index nearest neighbour in ``B`` of every row of ``A`` and its exact distance."""
    fd = FastDistances(B, distance)
    nn = np.empty(A.shape[0], np.int64)
    for s in range(0, A.shape[0], chunk):
        K, tol = fd.key(A[s : s + chunk])
        kmin = K.min(axis=1)
        cand = K <= (kmin + tol)[:, None]
        first = np.argmax(cand, axis=1)
        multi = np.nonzero(cand.sum(axis=1) > 1)[0]
        for r in multi:  # near-ties (rare): decide on exact distances, first index wins like np.argmin
            cols = np.nonzero(cand[r])[0]
            ex = exact_pair_distances(np.repeat(A[s + r][None], cols.size, 0), B[cols], distance)
            first[r] = cols[np.argmin(ex)]
        nn[s : s + chunk] = first
    return nn, exact_pair_distances(A, B[nn], distance)


def eval_matching(ds: DescriptorSet, sequences: Seq[str] | None = None, distance: str = "L2", curves: bool = False,
                  progress: bool = False) -> dict:
    """Official matching: per sequence, variant and target k: NN of each ref descriptor among target k's;
    AP of the matches ranked by distance with ``numpos`` = number of ref patches; success rate."""
    distance = check_distance(distance)
    from tqdm.auto import tqdm

    out = {}
    for s in tqdm(sequences or ds.names, desc="matching", unit="seq", disable=not progress, leave=False):
        st = ds.stacks[s]
        ref = st[0].astype(np.float64)
        n = ref.shape[0]
        out[s] = {}
        for vi, v in enumerate(VARIANTS):
            out[s][v] = {}
            for k in range(1, 6):
                nn, md = nearest_neighbours(ref, st[1 + 5 * vi + k - 1].astype(np.float64), distance)
                ok = nn == np.arange(n)
                prec, rec, ap = metrics.pr(-md, ok, numpos=n)
                e = {"ap": ap, "sr": float(np.count_nonzero(ok)) / float(n)}
                if curves:
                    e["rc"], e["pr"] = _subsample_curve(rec, prec)
                out[s][v][k] = e
    return out


# -- retrieval ---------------------------------------------------------------------------------------
def eval_retrieval(ds: DescriptorSet, task: RetrievalTask, distance: str = "L2", pool_sizes=POOL_SIZES,
                   chunk: int = 256, progress: bool = False) -> dict:
    """Official retrieval. Query = a ``ref`` patch; its ranked list is ``[5 positives (same index in the
    variant's 5 targets), distractors of other sequences in file order]`` truncated to the pool size;
    AP by the official ``pr`` (stable ranking: a distractor tied with a positive ranks after it).

    Returns ``{"ap": {v: (Q, len(pool_sizes)) array}, "pool_sizes": [...], ...}``.
    """
    distance = check_distance(distance)
    from tqdm.auto import tqdm

    q, dtab = task.queries, task.distractors
    qs = ds.seq_ids(q["s"], "retr_queries")
    ds.check_idx(qs, q["idx"], "retr_queries")
    dsid = ds.seq_ids(dtab["s"], "retr_distractors")
    ds.check_idx(dsid, dtab["idx"], "retr_distractors")
    nq = len(qs)
    zeros = np.zeros(nq, np.int64)
    desc_q = ds.gather(qs, zeros, q["idx"]).astype(np.float64)
    desc_d = ds.gather(dsid, np.zeros(len(dsid), np.int64), dtab["idx"]).astype(np.float64)
    # exact distances to the 5 positives of every variant: (V, Q, 5)
    pos = np.empty((len(VARIANTS), nq, 5))
    for vi in range(len(VARIANTS)):
        for k in range(5):
            b = ds.gather(qs, np.full(nq, 1 + 5 * vi + k), q["idx"])
            pos[vi, :, k] = exact_pair_distances(desc_q, b, distance)
    pos_order = np.argsort(pos, axis=2, kind="mergesort")
    pos_sorted = np.take_along_axis(pos, pos_order, axis=2)
    fd = FastDistances(desc_d, distance)
    pool_sizes = tuple(int(p) for p in pool_sizes)
    npool = len(pool_sizes)
    ap = np.empty((len(VARIANTS), nq, npool))
    n_distr = np.empty(nq, np.int64)
    groups = [(g, np.nonzero(qs == g)[0]) for g in np.unique(qs)]
    bar = tqdm(total=nq, desc="retrieval", unit="query", disable=not progress, leave=False)
    for g, rows_all in groups:
        cols = np.nonzero(dsid != g)[0]
        m = cols.size
        n_distr[rows_all] = m
        bounds = [0] + [max(0, min(p - 5, m)) for p in pool_sizes]
        for c0 in range(0, rows_all.size, chunk):
            rows = rows_all[c0 : c0 + chunk]
            K, tol = fd.key(desc_q[rows], cols)
            for vi in range(len(VARIANTS)):
                thr = pos_sorted[vi, rows]  # (R, 5) exact
                tk = fd.to_key(thr)
                counts = np.zeros((rows.size, 5, npool), np.int64)
                lo_k = (tk - tol[:, None])[:, :, None]
                for si in range(npool):
                    a, b = bounds[si], bounds[si + 1]
                    if b > a:
                        counts[:, :, si] = np.count_nonzero(K[:, None, a:b] < lo_k, axis=2)
                # entries within the margin of a threshold: decide on exact distances
                lo = (tk.min(axis=1) - tol)[:, None]
                hi = (tk.max(axis=1) + tol)[:, None]
                rr, cc = np.nonzero((K[:, : bounds[-1]] >= lo) & (K[:, : bounds[-1]] <= hi))
                if rr.size:
                    near = np.abs(K[rr, cc][:, None] - tk[rr]) <= tol[rr, None]  # (E, 5)
                    e_idx, j_idx = np.nonzero(near)
                    if e_idx.size:
                        r_e, c_e = rr[e_idx], cc[e_idx]
                        ex = exact_pair_distances(desc_q[rows[r_e]], desc_d[cols[c_e]], distance)
                        less = ex < thr[r_e, j_idx]
                        seg = np.searchsorted(np.asarray(bounds[1:]), c_e, side="right")
                        np.add.at(counts, (r_e[less], j_idx[less], seg[less]), 1)
                cum = np.cumsum(counts, axis=2)  # (R, 5, npool): distractors strictly closer, within pool
                ranks = np.arange(1, 6)[None, :, None] + cum
                ap[vi, rows] = metrics.ap_from_ranks(np.moveaxis(ranks, 1, 2), 5)
            bar.update(rows.size)
    bar.close()
    return {"ap": {v: ap[vi] for vi, v in enumerate(VARIANTS)}, "pool_sizes": list(pool_sizes),
            "num_queries": nq, "num_distractors": int(len(dsid)), "distractors_per_query": n_distr}
