"""Distances between descriptors, fast *and* exact in the sense that matters for rankings.

Every distance that enters a metric is computed by :func:`exact_pair_distances` (float64, difference form:
``sqrt(sum((a-b)^2))`` or ``sum(|a-b|)``), a deterministic function of the two vectors, so identical
descriptors give bit-identical distances and the official stable ranking of ties is reproduced. Large
query x database matrices are first computed fast (L2: BLAS ``|a|^2 + |b|^2 - 2ab`` in float64; L1: scipy
``cdist``) and every entry that is within a safety margin of a decision threshold (a nearest-neighbour
minimum, a positive's distance) is recomputed exactly before deciding.
"""

from __future__ import annotations

import numpy as np

DISTANCES = ("L2", "L1")
#: relative safety margin for the fast matrix (its rounding error is ~D * 1e-16 relative).
REL_TOL = 1e-9
#: squared norms above this (2^100) could overflow float32 BLAS keys (float32 ends at 2^128): such descriptors
#: (finite in float32, up to 3.4e38) get float64 keys, which cannot overflow for any finite float32 input
WIDE_NORM2 = 2.0**100

__all__ = ["DISTANCES", "check_distance", "exact_pair_distances", "FastDistances"]


def check_distance(distance: str) -> str:
    d = str(distance).upper()
    if d not in DISTANCES:
        raise ValueError(f"unknown distance {distance!r}; expected one of {', '.join(DISTANCES)}")
    return d


def exact_pair_distances(a: np.ndarray, b: np.ndarray, distance: str = "L2", chunk: int = 65536) -> np.ndarray:
    """Row-wise distances ``d(a[i], b[i])`` in float64 (difference form), chunked. With numba, the compiled
    kernel of :mod:`.kernels` (one arithmetic for every exact distance of a task, so ties stay ties)."""
    a = np.asarray(a)
    b = np.asarray(b)
    from . import kernels

    floats = (np.float32, np.float64)
    if kernels.use_numba() and a.ndim == 2 and a.shape == b.shape and a.dtype in floats and b.dtype in floats:
        return kernels.array_distances(a, b, distance)
    out = np.empty(a.shape[0], np.float64)
    for s in range(0, a.shape[0], chunk):
        diff = a[s : s + chunk].astype(np.float64)
        diff -= b[s : s + chunk]
        if distance == "L2":
            diff *= diff
            out[s : s + chunk] = np.sqrt(np.sum(diff, axis=-1))
        else:
            np.abs(diff, out=diff)
            out[s : s + chunk] = np.sum(diff, axis=-1)
    return out


class FastDistances:
    """Approximate distance matrices against a fixed database ``B`` with a rigorous error margin.

    ``key(A)`` returns ``(K, tol)``: ``K[i, j]`` approximates the squared L2 distance (float32 BLAS
    ``|a|^2 + |b|^2 - 2ab``; float64 for descriptors so large that float32 keys could overflow) or the L1 distance
    (float64 ``cdist``) with an absolute error below
    ``tol[i] / 4``; ``to_key(d)`` maps an exact distance to the same scale. Decisions closer than ``tol``
    to a threshold are re-made on exact distances by the callers.
    """

    def __init__(self, B: np.ndarray, distance: str = "L2"):
        self.distance = check_distance(distance)
        if self.distance == "L2":
            self.B = np.ascontiguousarray(B, dtype=np.float32)
            b64 = self.B.astype(np.float64)
            self.bn64 = np.einsum("ij,ij->i", b64, b64)
            self.bmax = float(self.bn64.max()) if self.bn64.size else 0.0
            self._set_precision(np.float64 if self.bmax > WIDE_NORM2 else np.float32)
        else:
            self.B = np.ascontiguousarray(B, dtype=np.float64)
            self.bmax = float(np.abs(self.B).sum(axis=1).max()) if self.B.size else 0.0
            self.rel = REL_TOL

    def _set_precision(self, dtype) -> None:
        """Keys in ``dtype``: float32 (fast BLAS) or float64 (descriptors whose squared norms pass
        :data:`WIDE_NORM2`, where float32 keys could overflow)."""
        self.dtype = np.dtype(dtype)
        self.Bk = self.B.astype(self.dtype, copy=False)
        self.Bm2 = self.Bk * self.dtype.type(-2.0)
        self.bn = self.bn64.astype(self.dtype)
        # dot products of length D err by at most ~D * eps * |a||b| (a 4x margin on top)
        eps = 2.0**-24 if self.dtype == np.float32 else 2.0**-53
        self.rel = 4.0 * (self.B.shape[1] + 4) * eps

    def key(self, A: np.ndarray, cols=None, row_offset: bool = True):
        """``row_offset=False`` (L2) leaves out the per-row constant ``|a|^2``: ``K = |b|^2 - 2ab``; then
        compare it with ``to_key(d) - offset`` where ``offset`` is the returned third value. Keys are float64
        when the descriptors are large enough to overflow float32 ones (:data:`WIDE_NORM2`)."""
        if self.distance == "L2":
            a64 = np.asarray(A, dtype=np.float32).astype(np.float64)
            an64 = np.einsum("ij,ij->i", a64, a64)
            if self.dtype == np.float32 and an64.size and float(an64.max()) > WIDE_NORM2:
                self._set_precision(np.float64)
            A32 = np.ascontiguousarray(A, dtype=np.float32).astype(self.dtype, copy=False)
            bn = self.bn if cols is None else self.bn[cols]
            # A (-2B)^T: the floats of -2 (A B^T) (a power-of-two scale commutes with rounding, outside the
            # subnormal range, which the margin's 1e-30 floor covers), one pass over K less
            K = A32 @ (self.Bm2 if cols is None else self.Bm2[cols]).T
            if row_offset:
                K += an64.astype(self.dtype)[:, None]
            K += bn[None, :]
            tol = self.rel * (an64 + self.bmax) + 1e-30
            if not row_offset:
                return K, tol, an64
        else:
            from scipy.spatial.distance import cdist  # L1 only: scipy.spatial costs ~0.4 s to import

            A64 = np.ascontiguousarray(A, dtype=np.float64)
            K = cdist(A64, self.B if cols is None else self.B[cols], "cityblock")
            tol = self.rel * (np.abs(A64).sum(axis=1) + self.bmax) + 1e-300
        return (K, tol) if row_offset else (K, tol, np.zeros(K.shape[0]))

    def to_key(self, d: np.ndarray) -> np.ndarray:
        d = np.asarray(d, np.float64)
        return d * d if self.distance == "L2" else d
