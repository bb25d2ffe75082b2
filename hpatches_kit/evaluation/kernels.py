"""Compiled distance kernels for the evaluation tasks (numba); :func:`use_numba` picks them or NumPy.

Verification needs ``d(X[r1[i]], X[r2[i]])`` for millions of row pairs (3 tables x 3 variants x 10^6 at the
official size). In NumPy that means gathering both rows, casting them to float64 and reducing: several
passes over memory per pair, about 0.4 us per pair. The numba kernel reads the two rows in place, converts
and accumulates in float64 in one vectorised pass, in parallel over pairs, and visits the pairs in the order
of their first patch so that the rows of one track are read together.

Exactness: every distance is float64 in difference form (``sqrt(sum((a - b)^2))`` / ``sum(|a - b|)``), as
``scipy.spatial.distance`` computes it in the official code. The kernel lets LLVM reassociate the sum over
the D coordinates (that is what vectorises it) and nothing else; the resulting order is the same for every
pair (it depends only on D and the CPU's vector width), so identical descriptors give bit-identical
distances and the official stable ranking of ties is reproduced. Versus a sequential sum the difference is a
few ulps, the same latitude the official code has (its BLAS ``ddot`` summation order depends on the BLAS
build). Square roots are IEEE (correctly rounded) in NumPy and numba alike.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

__all__ = [
    "HAVE_NUMBA",
    "use_numba",
    "array_distances",
    "variant_pair_distances",
    "retrieval_counts",
    "nn_sets_l2",
    "kernel_threads",
]

try:  # numba is a dependency; the NumPy path keeps the toolkit working where it cannot load
    if os.environ.get("HPATCHES_KIT_NO_NUMBA"):
        raise ImportError("disabled by HPATCHES_KIT_NO_NUMBA")
    import numba

    HAVE_NUMBA = True
except Exception:  # pragma: no cover - exercised with HPATCHES_KIT_NO_NUMBA in the tests
    numba = None
    HAVE_NUMBA = False

#: reassociation (vectorised sum) and FMA contraction only: no assumptions about NaN, Inf or signed zeros
FASTMATH = {"reassoc", "contract"}


BACKENDS = ("numba", "numpy")
#: kernel calls with less work than this (coordinates read) run on one thread
SERIAL_WORK = 1 << 21


def use_numba(backend: str | None = None) -> bool:
    """Whether evaluation runs the compiled kernels: ``backend`` (``"numba"`` or ``"numpy"``), else
    ``$HPATCHES_KIT_EVAL_BACKEND``, else numba wherever it loads. The one switch every task consults."""
    backend = backend or os.environ.get("HPATCHES_KIT_EVAL_BACKEND") or "numba"
    if backend not in BACKENDS:
        raise ValueError(f"unknown evaluation backend {backend!r}; expected numba or numpy")
    return backend == "numba" and HAVE_NUMBA


def kernel_threads() -> int:
    """Threads of the compiled kernels: ``$HPATCHES_KIT_EVAL_THREADS`` if set, else every core (numba's
    work queue does not busy-wait, unlike a multi-threaded BLAS on a shared machine)."""
    env = os.environ.get("HPATCHES_KIT_EVAL_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    return max(1, os.cpu_count() or 1)


if HAVE_NUMBA:
    _jit = dict(fastmath=FASTMATH, cache=True, nogil=True)

    @numba.njit(inline="always", **_jit)
    def _dist(xa, xb, l1):
        # squared L2 (the caller takes the square root) or L1 of two rows, accumulated in float64
        s = 0.0
        if l1:
            for j in range(xa.shape[0]):
                s += abs(np.float64(xa[j]) - np.float64(xb[j]))
        else:
            for j in range(xa.shape[0]):
                d = np.float64(xa[j]) - np.float64(xb[j])
                s += d * d
        return s

    @numba.njit(inline="always", **_jit)
    def _variant_pair(X, total, i, pa, ta, pb, tb, out, l1):
        # out[v, i] = d(X[row(v, ta[i], pa[i])], X[row(v, tb[i], pb[i])]) for the variants v = e, h, t (image
        # id 0 = ref = type 0; id k = type 1 + 5 v + k - 1 = 5 v + k)
        for v in range(3):
            a = (0 if ta[i] == 0 else 5 * v + ta[i]) * total + pa[i]
            b = (0 if tb[i] == 0 else 5 * v + tb[i]) * total + pb[i]
            out[v, i] = _dist(X[a], X[b], l1)

    @numba.njit(inline="always", **_jit)
    def _count_row(r, K, lo, hi, thr, perm, seg_of_col, Q, Dd, counts, l1):
        # dense retrieval count of one query row (see retrieval_counts)
        nj = lo.shape[1]
        nseg = counts.shape[2]
        hist = np.zeros((nj + 1, nseg), np.int64)
        top = hi[r, nj - 1]
        for c in range(K.shape[1]):
            k = K[r, c]
            if not k <= top:  # farther than every positive (or masked with inf): changes no rank
                continue
            p = 0
            for j in range(nj):  # branch-free count of lo_j <= k (lo is sorted): vectorises
                p += lo[r, j] <= k
            sg = seg_of_col[c]
            hist[p, sg] += 1  # definitely closer than the positives p.. (K < lo there)
            if p > 0 and hi[r, p - 1] >= k:  # inside the error band of some positive: decide exactly
                ex = _dist(Q[r], Dd[c], l1)
                if not l1:
                    ex = np.sqrt(ex)
                for j in range(p):
                    if hi[r, j] >= k and ex < thr[r, j]:
                        counts[r, perm[r, j], sg] += 1
        for sg in range(nseg):
            run = 0
            for j in range(nj):
                run += hist[j, sg]
                counts[r, perm[r, j], sg] += run

    # numba's on-disk cache keys functions by name and line: one module-level entry point per distance
    # (closures made by a factory would evict each other); the parallel loop stays here, the per-item
    # bodies above are shared and inlined
    @numba.njit(parallel=True, **_jit)
    def _variant_l2(X, total, order, pa, ta, pb, tb, out):
        for q in numba.prange(order.shape[0]):
            _variant_pair(X, total, order[q], pa, ta, pb, tb, out, False)

    @numba.njit(parallel=True, **_jit)
    def _variant_l1(X, total, order, pa, ta, pb, tb, out):
        for q in numba.prange(order.shape[0]):
            _variant_pair(X, total, order[q], pa, ta, pb, tb, out, True)

    @numba.njit(parallel=True, **_jit)
    def _arrays_l2(A, B, out):
        for i in numba.prange(A.shape[0]):
            out[i] = _dist(A[i], B[i], False)

    @numba.njit(parallel=True, **_jit)
    def _arrays_l1(A, B, out):
        for i in numba.prange(A.shape[0]):
            out[i] = _dist(A[i], B[i], True)

    @numba.njit(parallel=True, **_jit)
    def _retr_counts_l2(K, lo, hi, thr, perm, seg_of_col, Q, Dd, counts):
        for r in numba.prange(K.shape[0]):
            _count_row(r, K, lo, hi, thr, perm, seg_of_col, Q, Dd, counts, False)

    @numba.njit(parallel=True, **_jit)
    def _retr_counts_l1(K, lo, hi, thr, perm, seg_of_col, Q, Dd, counts):
        for r in numba.prange(K.shape[0]):
            _count_row(r, K, lo, hi, thr, perm, seg_of_col, Q, Dd, counts, True)

    @numba.njit(**_jit)
    def _sq_norms(X, out):
        # float64 squared norms of float32 rows (the error margin of the fast keys needs them)
        for i in range(X.shape[0]):
            s = 0.0
            for j in range(X.shape[1]):
                x = np.float64(X[i, j])
                s += x * x
            out[i] = s

    @numba.njit(**_jit)
    def _nn_block(G, r0, k0, A, B, bn, tol, nt, nn, md, keys, keys_i, one_i, one_f):
        # first-index exact L2 nearest neighbours of the rows r0.. of A in the sets k0.. (nt rows each) of B,
        # from G = A[r0:r0+c] @ B[k0 nt:(k0+m) nt].T (float32 BLAS): key = |b|^2 - 2ab (float32) with the error margin tol[r].
        # The keys within the margin of the smallest are the candidates; one candidate is the NN, several are
        # re-ranked on exact distances (first index on ties, as np.argmin over cdist); md = the exact
        # distance of the NN. Serial: the caller runs one call per thread. keys (nt,) float32 and its int32
        # view keys_i are scratch; the minimum is taken on the keys' bits mapped to order-preserving ints
        # (x ^ ((x >> 31) & 0x7fffffff): a float min reduction does not vectorise, an int one does).
        m = G.shape[1] // nt
        two = np.float32(2.0)
        flip = np.int32(0x7FFFFFFF)
        for i in range(G.shape[0]):
            r = r0 + i
            g = G[i]
            for k in range(m):
                gs = g[k * nt : (k + 1) * nt]
                base = (k0 + k) * nt
                bs = bn[base : base + nt]
                for j in range(nt):
                    keys[j] = bs[j] - two * gs[j]
                kmin = flip
                for j in range(nt):
                    x = keys_i[j]
                    x = x ^ ((x >> 31) & flip)
                    kmin = x if x < kmin else kmin
                one_i[0] = kmin ^ ((kmin >> 31) & flip)
                thr = np.float32(np.float64(one_f[0]) + tol[r])
                cnt = 0
                first = 0
                for j in range(nt):  # count and index sum of the candidates
                    c = keys[j] <= thr
                    cnt += c
                    first += j * c
                if cnt > 1:
                    bestd = np.inf
                    for j in range(nt):
                        if keys[j] <= thr:
                            d = np.sqrt(_dist(A[r], B[base + j], False))
                            if d < bestd:
                                bestd = d
                                first = j
                    md[k0 + k, r] = bestd
                else:
                    md[k0 + k, r] = np.sqrt(_dist(A[r], B[base + first], False))
                nn[k0 + k, r] = first

    _KERNELS = {
        "L2": {"variant": _variant_l2, "arrays": _arrays_l2, "counts": _retr_counts_l2},
        "L1": {"variant": _variant_l1, "arrays": _arrays_l1, "counts": _retr_counts_l1},
    }


class _Threads:
    """Run numba kernels on :func:`kernel_threads` threads (restoring the previous count); a read-only
    cache folder only costs a recompile, so its warning is silenced."""

    def __init__(self, work: float | None = None):
        self.work = work

    def __enter__(self):
        self.prev = numba.get_num_threads()
        # a small call runs on the calling thread alone: on a busy machine waking the pool can wait a
        # scheduler quantum (ms) for an item that takes microseconds. The per-item code is the same
        # compiled loop body whatever the thread count, so the numbers do not depend on it.
        n = 1 if self.work is not None and self.work < SERIAL_WORK else kernel_threads()
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
        self.w = warnings.catch_warnings()
        self.w.__enter__()
        warnings.simplefilter("ignore", numba.NumbaWarning)
        return self

    def __exit__(self, *exc):
        self.w.__exit__(*exc)
        numba.set_num_threads(self.prev)


def _check(distance):
    d = str(distance).upper()
    if d not in ("L2", "L1"):
        raise ValueError(f"unknown distance {distance!r}; expected L2 or L1")
    return d


def variant_pair_distances(
    X: np.ndarray, total: int, pa, ta, pb, tb, distance: str = "L2", order: np.ndarray | None = None
) -> np.ndarray:
    """Distances of HPatches pairs for the three variants at once, ``(3, n)`` float64 (rows e, h, t).

    ``X``: the ``(16 * total, D)`` type-major descriptor rows (type ``k`` of patch ``p`` at row
    ``k * total + p``, types ordered ``ref, e1..e5, h1..h5, t1..t5``); ``pa, pb``: global patch numbers of
    both sides; ``ta, tb``: image ids 0..5 (0 = ``ref``, k = target k of the variant). ``order``: the order
    to visit the pairs in (default ``argsort(pa)``, which reads a track's rows together; the result does
    not depend on it). Needs numba."""
    if not HAVE_NUMBA:
        raise RuntimeError("variant_pair_distances needs numba")
    distance = _check(distance)
    pa, pb, ta, tb = (np.ascontiguousarray(x, np.int64) for x in (pa, pb, ta, tb))
    n = pa.shape[0]
    if not (pb.shape[0] == ta.shape[0] == tb.shape[0] == n):
        raise ValueError("pair columns differ in length")
    out = np.empty((3, n), np.float64)
    if n:
        # the kernel does not check bounds: reject anything that would read or write outside the arrays
        if X.ndim != 2 or X.shape[0] != 16 * int(total):
            raise ValueError(f"X must hold 16 x {total} descriptor rows, got shape {X.shape}")
        for name, arr, top in (("pa", pa, total), ("pb", pb, total), ("ta", ta, 6), ("tb", tb, 6)):
            if arr.min() < 0 or arr.max() >= top:
                raise ValueError(f"{name} out of range 0..{int(top) - 1}")
        order = np.argsort(pa) if order is None else np.ascontiguousarray(order, np.int64)
        if order.shape != (n,) or order.min() < 0 or order.max() >= n or np.bincount(order, minlength=n).max() != 1:
            raise ValueError("order must be a permutation of the pairs")
        with _Threads(3 * 2 * n * X.shape[1]):
            _KERNELS[distance]["variant"](np.ascontiguousarray(X), np.int64(total), order, pa, ta, pb, tb, out)
    if distance == "L2":
        np.sqrt(out, out=out)
    return out


def array_distances(A: np.ndarray, B: np.ndarray, distance: str = "L2") -> np.ndarray:
    """Row-wise ``d(A[i], B[i])``, float64, with the kernels' arithmetic (needs numba)."""
    distance = _check(distance)
    A, B = np.ascontiguousarray(A), np.ascontiguousarray(B)
    if A.shape != B.shape or A.ndim != 2:
        raise ValueError(f"row-wise distances need two (N, D) arrays of one shape, got {A.shape} and {B.shape}")
    out = np.empty(A.shape[0], np.float64)
    if A.shape[0]:
        if A.dtype != B.dtype:
            A, B = A.astype(np.float64), B.astype(np.float64)
        with _Threads(A.size):
            _KERNELS[distance]["arrays"](A, B, out)
    if distance == "L2":
        np.sqrt(out, out=out)
    return out


def retrieval_counts(K, lo, hi, thr, seg_of_col, nseg, Q, Dd, distance: str = "L2") -> np.ndarray:
    """Dense retrieval counting: for every query row ``r`` and positive ``j``, the number of distractors
    in each pool segment that rank before that positive (strictly closer: a tie ranks after it).

    ``K`` ``(R, L)``: fast keys of the distractors (columns in file order, ``inf`` for masked ones);
    ``lo``/``hi`` ``(R, J)``: the positives' keys minus/plus the keys' error margin; ``thr`` ``(R, J)``: the
    positives' exact distances; ``seg_of_col`` ``(L,)``: pool segment of each column; ``Q`` ``(R, D)``,
    ``Dd`` ``(L, D)``: descriptors for the exact decisions inside an error band (with the arithmetic of
    :func:`array_distances`). Keys below ``lo`` count as closer, above ``hi`` as farther; the band between
    is decided on exact distances. Returns ``(R, J, nseg)`` int64."""
    distance = _check(distance)
    R, L = np.shape(K)
    seg_of_col = np.asarray(seg_of_col)
    if not (
        np.shape(lo) == np.shape(hi) == np.shape(thr)
        and np.shape(lo)[0] == R
        and np.shape(Q)[0] == R
        and seg_of_col.shape == (L,)
        and np.shape(Dd)[0] == L
        and np.shape(Q)[1:] == np.shape(Dd)[1:]
    ):
        raise ValueError("retrieval_counts: K (R, L), lo/hi/thr (R, J), seg_of_col (L,), Q (R, D), Dd (L, D)")
    if L and (seg_of_col.min() < 0 or seg_of_col.max() >= nseg):
        raise ValueError(f"seg_of_col out of range 0..{nseg - 1}")
    perm = np.lexsort((hi, lo), axis=-1)  # by lo, then hi: both ascending along every row
    lo_s = np.ascontiguousarray(np.take_along_axis(lo, perm, 1))
    hi_s = np.ascontiguousarray(np.take_along_axis(hi, perm, 1))
    if np.any(np.diff(hi_s, axis=1) < 0):  # lo and hi come from one threshold and a per-row margin
        raise ValueError("lo and hi must be ordered alike in every row")
    thr_s = np.ascontiguousarray(np.take_along_axis(thr, perm, 1), np.float64)
    counts = np.zeros((K.shape[0], lo.shape[1], int(nseg)), np.int64)
    if K.size:
        Q, Dd = np.ascontiguousarray(Q), np.ascontiguousarray(Dd)
        if Q.dtype != Dd.dtype:
            Q, Dd = Q.astype(np.float64), Dd.astype(np.float64)
        with _Threads(K.size):
            _KERNELS[distance]["counts"](
                np.ascontiguousarray(K),
                lo_s,
                hi_s,
                thr_s,
                np.ascontiguousarray(perm, np.int64),
                np.ascontiguousarray(seg_of_col, np.int64),
                Q,
                Dd,
                counts,
            )
    return counts


def nn_sets_l2(A: np.ndarray, B: np.ndarray, nt: int, block: int = 1 << 22) -> tuple[np.ndarray, np.ndarray]:
    """Exact first-index L2 nearest neighbour of every row of ``A`` ``(n, D)`` in each of the ``m`` sets of
    ``nt`` consecutive rows of ``B`` ``(m * nt, D)`` (float32): ``nn`` ``(m, n)`` int64 (index within the set)
    and its exact distance ``md`` ``(m, n)`` float64 (the arithmetic of :func:`array_distances`).

    Keys ``|b|^2 - 2ab`` come from float32 BLAS products, one set (at most ``block`` entries) at a time,
    scanned by a compiled serial loop: the smallest key, then every key within the margin of
    :class:`~.distances.FastDistances` (``4 (D + 4) 2^-24 (|a|^2 + max |b|^2)``) re-ranked on exact
    distances. Runs on the calling thread and releases the GIL: callers parallelise over independent
    calls (one sequence per thread), each with single-threaded BLAS."""
    A = np.ascontiguousarray(A, np.float32)
    B = np.ascontiguousarray(B, np.float32)
    n, dim = A.shape
    if B.ndim != 2 or B.shape[1] != dim or nt < 1 or B.shape[0] % nt:
        raise ValueError(f"B must hold m x {nt} rows of dimension {dim}, got shape {B.shape}")
    bn64 = np.empty(B.shape[0])
    an64 = np.empty(n)
    _sq_norms(B, bn64)
    _sq_norms(A, an64)
    # the float32 keys are computed on copies scaled by a power of two (exact, rankings unchanged) whose squared
    # norms stay far below float32's 2^128: large finite descriptors cannot overflow them; the exact distances
    # (float64, difference form) are taken on the unscaled rows
    top = max(float(bn64.max()) if bn64.size else 0.0, float(an64.max()) if an64.size else 0.0)
    Ak, Bk = A, B
    if top > 2.0**100:
        s = 2.0 ** -(int(np.ceil(np.log2(top) / 2)) - 50)  # max squared norm -> ~2^100
        Ak, Bk = A * np.float32(s), B * np.float32(s)
        an64, bn64 = an64 * (s * s), bn64 * (s * s)
    bn = bn64.astype(np.float32)
    rel = 4.0 * (dim + 4) * 2.0**-24  # as FastDistances
    tol = rel * (an64 + (float(bn64.max()) if bn64.size else 0.0)) + 1e-30
    m = B.shape[0] // nt
    nn = np.empty((m, n), np.int64)
    md = np.empty((m, n), np.float64)
    keys = np.empty(nt, np.float32)
    one = np.empty(1, np.int32)
    # one set at a time (BLAS runs a square-ish n x nt product faster than a few rows against all sets),
    # rows chunked so that a block holds at most ``block`` keys
    chunk = max(1, min(n, block // nt))
    for k in range(m):
        BkT = Bk[k * nt : (k + 1) * nt].T
        for r0 in range(0, n, chunk):
            G = Ak[r0 : r0 + chunk] @ BkT
            _nn_block(G, r0, k, A, B, bn, tol, nt, nn, md, keys, keys.view(np.int32), one, one.view(np.float32))
    return nn, md
