"""Thread limits of the evaluation: one knob (``$HPATCHES_KIT_EVAL_THREADS``) for BLAS and the thread pools."""

from __future__ import annotations

import contextlib
import os

__all__ = ["compute_threads", "blas_limit"]


def compute_threads() -> int:
    """Threads for BLAS and the verification thread pool: ``$HPATCHES_KIT_EVAL_THREADS``, default 1 (on a
    shared, busy CPU a multi-threaded OpenBLAS busy-waits and was measured ~3x slower than one thread)."""
    try:
        return max(1, int(os.environ.get("HPATCHES_KIT_EVAL_THREADS", "1")))
    except ValueError:
        return 1


def blas_limit():
    """A context limiting BLAS to :func:`compute_threads` threads (a no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits

        return threadpool_limits(compute_threads(), user_api="blas")
    except Exception:  # threadpoolctl missing: leave BLAS as configured
        return contextlib.nullcontext()
