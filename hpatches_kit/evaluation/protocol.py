"""The three HPatches tasks (verification, matching, retrieval), vectorised, with the official semantics.

Descriptors are ``{sequence: {type: (N, D) float32}}`` (types ``ref, e1..e5, h1..h5, t1..t5``).
See ``docs/evaluation.md`` for the exact definitions and the summaries.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence as Seq

import numpy as np

from ..data.errors import DataError
from ..layout import TYPES, VARIANTS, target_indices, variant_type_index
from . import metrics
from .distances import FastDistances, check_distance, exact_pair_distances, exact_row_distances
from .tasks import RetrievalTask, VerificationPairs

POOL_SIZES = (100, 500, 1000, 5000, 10000, 15000, 20000)
TASKS = ("verification", "matching", "retrieval")
#: number of points kept per curve in the results (curves are subsampled for plots/JSON)
CURVE_POINTS = 200

__all__ = [
    "POOL_SIZES", "TASKS", "DescriptorSet", "validate_descriptors", "eval_verification", "eval_matching",
    "eval_retrieval",
]


def compute_threads() -> int:
    """Threads for BLAS and the verification thread pool: ``$HPATCHES_KIT_EVAL_THREADS``, default 1 (on a
    shared, busy CPU a multi-threaded OpenBLAS busy-waits and was measured ~3x slower than one thread)."""
    try:
        return max(1, int(os.environ.get("HPATCHES_KIT_EVAL_THREADS", "1")))
    except ValueError:
        return 1


def _blas_limit():
    try:
        from threadpoolctl import threadpool_limits

        return threadpool_limits(compute_threads(), user_api="blas")
    except Exception:  # threadpoolctl missing: leave BLAS as configured
        import contextlib

        return contextlib.nullcontext()


_variant_type_index = variant_type_index


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
        dim = None
        lengths = []
        for s in names:
            entry = descs[s]
            miss = [t for t in TYPES if t not in entry]
            if miss:
                raise DataError(s, f"descriptors missing for types: {', '.join(miss)}")
            n = None
            for t in TYPES:
                a = entry[t]
                where = f"{s}/{t}"
                shape = np.shape(a)
                if len(shape) != 2:
                    raise DataError(where, f"descriptors must be a 2-D (N, D) array, got shape {shape}")
                if n is None:
                    n = shape[0]
                elif shape[0] != n:
                    raise DataError(where, f"{shape[0]} descriptors but ref has {n}: all types of a sequence need the same count")
                if dim is None:
                    dim = shape[1]
                elif shape[1] != dim:
                    raise DataError(where, f"descriptor dimension {shape[1]} differs from {dim} of the other sequences")
            if n == 0:
                raise DataError(s, "sequence has no descriptors")
            lengths.append(n)
        self.dim = int(dim)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.total = int(self.offsets[-1])
        # one (16, T, D) float32 block; per-sequence stacks are views into it
        self.flat = np.empty((len(TYPES), self.total, self.dim), np.float32)
        self.stacks: dict[str, np.ndarray] = {}
        for k, s in enumerate(names):
            o0, o1 = self.offsets[k], self.offsets[k + 1]
            for j, t in enumerate(TYPES):
                a = np.asarray(descs[s][t])
                if not np.issubdtype(a.dtype, np.number):
                    raise DataError(f"{s}/{t}", f"descriptors have non-numeric dtype {a.dtype}")
                self.flat[j, o0:o1] = a
                if not np.isfinite(self.flat[j, o0:o1]).all():
                    bad = int(np.nonzero(~np.isfinite(self.flat[j, o0:o1]).all(axis=1))[0][0])
                    raise DataError(f"{s}/{t}", f"descriptor {bad} contains NaN or Inf")
            self.stacks[s] = self.flat[:, o0:o1]
        self.rows2d = self.flat.reshape(len(TYPES) * self.total, self.dim)
        self.lengths = {s: int(n) for s, n in zip(names, lengths)}

    @classmethod
    def from_arrays(cls, arrays: dict, source: str | None = None) -> "DescriptorSet":
        """A set from ``{seq: [16 (N, D) float32 arrays in TYPES order]}`` already checked by the caller
        (equal counts per sequence, one dimension, finite values: :func:`.describers.read_descriptor_set`
        does it naming the files). The lists are emptied while copying, so each sequence's arrays are freed
        as soon as they are in the block."""
        self = cls.__new__(cls)
        names = list(arrays)
        if not names:
            raise DataError(source, "no sequences to evaluate")
        lengths = [int(arrays[s][0].shape[0]) for s in names]
        for s, n in zip(names, lengths):
            if n == 0:
                raise DataError(s, "sequence has no descriptors")
        self.names = names
        self.index = {s: i for i, s in enumerate(names)}
        self.dim = int(arrays[names[0]][0].shape[1])
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.total = int(self.offsets[-1])
        self.flat = np.empty((len(TYPES), self.total, self.dim), np.float32)
        self.stacks = {}
        for k, s in enumerate(names):
            o0, o1 = self.offsets[k], self.offsets[k + 1]
            lst = arrays[s]
            for j in range(len(TYPES)):
                self.flat[j, o0:o1] = lst[j]
                lst[j] = None
            self.stacks[s] = self.flat[:, o0:o1]
        self.rows2d = self.flat.reshape(len(TYPES) * self.total, self.dim)
        self.lengths = {s: int(n) for s, n in zip(names, lengths)}
        return self

    @classmethod
    def from_stream(cls, counts: dict, stream, source: str | None = None) -> "DescriptorSet":
        """A set from ``(seq, [16 arrays])`` items arriving in the order of ``counts`` (``{seq: N}``, known
        beforehand), each copied into the preallocated block as it arrives: the peak memory is the set plus
        the sequences in flight. Checks as :meth:`from_arrays`; an item whose count differs from ``counts``
        raises ``ValueError`` (the caller knows the file)."""
        self = cls.__new__(cls)
        names = list(counts)
        if not names:
            raise DataError(source, "no sequences to evaluate")
        lengths = [int(counts[s]) for s in names]
        self.names = names
        self.index = {s: i for i, s in enumerate(names)}
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.total = int(self.offsets[-1])
        self.stacks = {}
        self.flat = None
        for k, (s, lst) in enumerate(stream):
            if s != names[k] or lst[0].shape[0] != lengths[k]:
                raise ValueError(f"{s}: {lst[0].shape[0]} rows, {lengths[k]} expected")
            if lengths[k] == 0:
                raise DataError(s, "sequence has no descriptors")
            if self.flat is None:
                self.dim = int(lst[0].shape[1])
                self.flat = np.empty((len(TYPES), self.total, self.dim), np.float32)
            o0, o1 = self.offsets[k], self.offsets[k + 1]
            for j in range(len(TYPES)):
                self.flat[j, o0:o1] = lst[j]
            self.stacks[s] = self.flat[:, o0:o1]
        if len(self.stacks) != len(names):
            raise ValueError("stream ended early")
        self.rows2d = self.flat.reshape(len(TYPES) * self.total, self.dim)
        self.lengths = {s: int(n) for s, n in zip(names, lengths)}
        return self

    def as_dict(self) -> dict:
        """``{seq: {type: (N, D)}}`` views into the block (for exporting)."""
        return {s: {t: self.stacks[s][j] for j, t in enumerate(TYPES)} for s in self.names}

    def subset(self, names: Seq[str]) -> "DescriptorSet":
        """The set restricted to ``names`` (itself when they are its sequences, in order)."""
        names = list(names)
        if names == self.names:
            return self
        return DescriptorSet(self.as_dict(), names)

    def seq_ids(self, names: np.ndarray, where: str) -> np.ndarray:
        names = np.asarray(names, dtype=object).ravel()
        values = names.tolist()
        for u in set(values):
            if u not in self.index:
                raise DataError(where, f"unknown sequence {str(u)!r} (not among the evaluated sequences)")
        # map() over the bound dict lookup: no Python frame per row (about 3x faster than a generator)
        return np.fromiter(map(self.index.__getitem__, values), dtype=np.int64, count=len(values))

    def check_idx(self, seq_ids: np.ndarray, idx: np.ndarray, where: str) -> None:
        lens = np.diff(self.offsets)[seq_ids]
        idx = np.asarray(idx, np.int64)
        bad = np.nonzero((idx < 0) | (idx >= lens))[0]
        if bad.size:
            b = bad[0]
            raise DataError(where, f"row {b + 1}: patch index {idx[b]} out of range for {self.names[seq_ids[b]]} ({lens[b]} patches)")

    def rows(self, seq_ids: np.ndarray, type_idx, idx: np.ndarray) -> np.ndarray:
        """Row numbers into :attr:`rows2d` of (sequence, type, patch) triples."""
        return np.asarray(type_idx, np.int64) * self.total + self.offsets[seq_ids] + np.asarray(idx, np.int64)

    def gather(self, seq_ids: np.ndarray, type_idx, idx: np.ndarray) -> np.ndarray:
        """Descriptors of (sequence, type, patch) triples, ``(M, D)`` float32."""
        return np.take(self.rows2d, self.rows(seq_ids, type_idx, idx), axis=0)


def _subsample_curve(x, y, n=CURVE_POINTS):
    x = np.asarray(x)
    if x.size <= n:
        return x.tolist(), np.asarray(y).tolist()
    keep = np.unique(np.linspace(0, x.size - 1, n).round().astype(int))
    return x[keep].tolist(), np.asarray(y)[keep].tolist()


# -- verification ------------------------------------------------------------------------------------
def verification_distances(ds: DescriptorSet, pairs: VerificationPairs, distance: str, where: dict | None = None,
                           threads: int | None = None, backend: str | None = None) -> dict:
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

    for k in ("pos", "neg_intra", "neg_inter"):
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
        r1 = {k: ds.rows(cols[k][0], _variant_type_index(v, cols[k][2]["t1"]), cols[k][2]["idx1"]) for k in kinds}
        r2 = {k: ds.rows(cols[k][1], _variant_type_index(v, cols[k][2]["t2"]), cols[k][2]["idx2"]) for k in kinds}
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


def eval_verification(ds: DescriptorSet, pairs: VerificationPairs, distance: str = "L2", curves: bool = True,
                      progress: bool = False, where: dict | None = None) -> dict:
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


# -- matching ----------------------------------------------------------------------------------------
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


def eval_matching(ds: DescriptorSet, sequences: Seq[str] | None = None, distance: str = "L2", curves: bool = False,
                  progress: bool = False) -> dict:
    """Official matching: per sequence, variant and target k: NN of each ref descriptor among target k's;
    AP of the matches ranked by distance with ``numpos`` = number of ref patches; success rate."""
    with _blas_limit():
        return _eval_matching(ds, sequences, distance, curves, progress)


def _eval_matching(ds, sequences, distance, curves, progress) -> dict:
    distance = check_distance(distance)
    from tqdm.auto import tqdm

    out = {}
    for s in tqdm(sequences or ds.names, desc="matching", unit="seq", disable=not progress, leave=False):
        st = ds.stacks[s]
        n = st.shape[1]
        # all 15 targets of the sequence at once: one matrix product, one exact pass, one AP pass
        nn, md = nearest_neighbours_multi(st[0], st[1:], distance)  # (15, n) each
        ok = nn == np.arange(n)[None, :]
        ap = matching_ap(md, ok)
        out[s] = {}
        for vi, v in enumerate(VARIANTS):
            out[s][v] = {}
            for k in range(1, 6):
                row = 5 * vi + k - 1
                e = {"ap": float(ap[row]), "sr": float(np.count_nonzero(ok[row])) / float(n)}
                if curves:
                    prec, rec, _ = metrics.pr(-md[row], ok[row], numpos=n)
                    e["rc"], e["pr"] = _subsample_curve(rec, prec)
                out[s][v][k] = e
    return out


def nearest_neighbours_multi(A: np.ndarray, T: np.ndarray, distance: str, max_entries: int = 1 << 23):
    """:func:`nearest_neighbours` of the rows of ``A`` ``(n, D)`` in each of the ``m`` sets ``T`` ``(m, n_t, D)``
    at once: ``(m, n)`` first-index NN and its exact distance. One fast matrix against all the sets (rows
    chunked to ``max_entries`` keys), every entry within the error margin of its set's row minimum
    re-ranked on exact distances, all exact distances in one call each."""
    m, nt, dim = T.shape
    n = A.shape[0]
    B = np.ascontiguousarray(T).reshape(m * nt, dim)
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


# -- retrieval ---------------------------------------------------------------------------------------
def eval_retrieval(ds: DescriptorSet, task: RetrievalTask, distance: str = "L2", pool_sizes=POOL_SIZES,
                   chunk: int = 256, progress: bool = False, where: dict | None = None,
                   dense_fraction: float = 0.02) -> dict:
    """Official retrieval. Query = a ``ref`` patch; its ranked list is ``[5 positives (same index in the
    variant's 5 targets), distractors of other sequences in file order]`` truncated to the pool size;
    AP by the official ``pr`` (stable ranking: a distractor tied with a positive ranks after it).

    Returns ``{"ap": {v: (Q, len(pool_sizes)) array}, "pool_sizes": [...], ...}``.
    """
    with _blas_limit():
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
        seg_counts = kernels.retrieval_counts(K, lo, hi, thr, seg_of_col, npool, desc_q[rows],
                                              desc_d[: K.shape[1]], distance)
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
    return {"ap": {v: ap[vi] for vi, v in enumerate(VARIANTS)}, "pool_sizes": list(pool_sizes),
            "num_queries": nq, "num_distractors": int(len(dsid)), "distractors_per_query": n_distr}
