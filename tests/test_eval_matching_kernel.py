"""The compiled matching kernel (kernels.nn_sets_l2) against brute force on near-ties the float32 keys
cannot resolve, and the threaded matching task against the serial NumPy one."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from hpatches_kit.evaluation import kernels

pytestmark = pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="the kernel needs numba")


def _near_ties(rng, n=60, dim=128, sets=3):
    """Rows far from the origin (|b|^2 ~ 1e6: a float32 key is only good to ~0.1) whose two candidates per
    row differ by ~1e-7 in squared distance, in random order, with some exact duplicates."""
    A = (100 + 10 * rng.normal(size=(n, dim))).astype(np.float32)
    T = np.empty((sets, 2 * n, dim), np.float32)
    for k in range(sets):
        for i in range(n):
            u = (0.01 * rng.normal(size=dim)).astype(np.float32)
            b = A[i] + u
            c = b.copy()
            j = int(np.argmax(np.abs(u)))
            c[j] = np.nextafter(c[j], A[i][j])  # one ulp closer to A[i]: slightly nearer
            if rng.random() < 0.2:
                c = b.copy()  # an exact tie: the first index wins
            pair = (b, c) if rng.random() < 0.5 else (c, b)
            T[k, 2 * i], T[k, 2 * i + 1] = pair
        T[k] = T[k][rng.permutation(2 * n)]
    return A, T


@pytest.mark.parametrize("block", [1 << 22, 500])
def test_nn_sets_equal_brute_force_on_near_ties(block):
    rng = np.random.default_rng(11)
    A, T = _near_ties(rng)
    m, nt, dim = T.shape
    nn, md = kernels.nn_sets_l2(A, T.reshape(m * nt, dim), nt, block=block)
    for k in range(m):
        D = cdist(A.astype(np.float64), T[k].astype(np.float64))
        want = np.argmin(D, axis=1)  # first index on ties
        # the pairs differ far above float64 rounding but far below float32 key resolution
        np.testing.assert_array_equal(nn[k], want)
        np.testing.assert_allclose(md[k], D[np.arange(len(A)), want], rtol=1e-13)
        np.testing.assert_array_equal(md[k], kernels.array_distances(A, T[k][nn[k]]))


def test_nn_sets_shape_errors():
    A = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="m x 5 rows"):
        kernels.nn_sets_l2(A, np.zeros((12, 4), np.float32), 5)


def test_threaded_matching_equals_serial_numpy(monkeypatch):
    from hpatches_kit.data import TYPES
    from hpatches_kit.evaluation.descriptor_set import DescriptorSet
    from hpatches_kit.evaluation.matching import eval_matching

    rng = np.random.default_rng(12)
    descs = {}
    for s, n in {"i_a": 30, "i_b": 25, "v_c": 40, "v_d": 20, "v_e": 33}.items():
        base = rng.integers(0, 4, size=(n, 8)).astype(np.float32)  # many exact ties
        descs[s] = {
            t: base + rng.integers(0, 2, size=base.shape).astype(np.float32) * (j > 0) for j, t in enumerate(TYPES)
        }
    ds = DescriptorSet(descs)
    monkeypatch.setenv("HPATCHES_KIT_EVAL_THREADS", "3")
    fast = eval_matching(ds, distance="L2")
    monkeypatch.setenv("HPATCHES_KIT_EVAL_BACKEND", "numpy")
    monkeypatch.setenv("HPATCHES_KIT_EVAL_THREADS", "1")
    slow = eval_matching(ds, distance="L2")
    assert list(fast) == list(slow)
    for s in fast:
        for v in fast[s]:
            for k in fast[s][v]:
                assert abs(fast[s][v][k]["ap"] - slow[s][v][k]["ap"]) <= 1e-12
                assert fast[s][v][k]["sr"] == slow[s][v][k]["sr"]
