"""The compiled verification kernels against plain loops over scipy distances (the official arithmetic),
the tie property the official stable ranking relies on, and the NumPy fallback."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.spatial import distance as spd

from hpatches_kit.data import TYPES
from hpatches_kit.evaluation import kernels
from hpatches_kit.evaluation.descriptor_set import DescriptorSet
from hpatches_kit.evaluation.distances import exact_pair_distances
from hpatches_kit.evaluation.tasks import generate_verification
from hpatches_kit.evaluation.verification import verification_distances

needs_numba = pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="numba not importable")


def _loop(X, r1, r2, distance):
    f = spd.euclidean if distance == "L2" else spd.cityblock
    return np.array([f(X[a].astype(np.float64), X[b].astype(np.float64)) for a, b in zip(r1, r2)])


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dim", [128, 13, 1])
@pytest.mark.parametrize("distance", ["L2", "L1"])
def test_exact_distances_equal_scipy_loop(distance, dim, dtype):
    rng = np.random.default_rng(dim)
    X = (rng.normal(size=(300, dim)) * rng.uniform(0.01, 100)).astype(dtype)
    r1, r2 = rng.integers(0, 300, 2000), rng.integers(0, 300, 2000)
    ref = _loop(X, r1, r2, distance)
    for backend in ("numba", "numpy"):
        os.environ["HPATCHES_KIT_EVAL_BACKEND"] = backend
        try:
            got = exact_pair_distances(X[r1], X[r2], distance)
        finally:
            del os.environ["HPATCHES_KIT_EVAL_BACKEND"]
        assert got.dtype == np.float64
        # a few ulps: only the order of the float64 sum over coordinates may differ
        np.testing.assert_allclose(got, ref, rtol=8 * dim * 2.0**-53, atol=0)
    np.testing.assert_array_equal(
        kernels.array_distances(X[r1], X[r2], distance), exact_pair_distances(X[r1], X[r2], distance)
    )
    assert np.all(kernels.array_distances(X[r1], X[r1], distance) == 0.0)


@needs_numba
@pytest.mark.parametrize("distance", ["L2", "L1"])
def test_identical_vectors_give_bit_identical_distances(distance):
    """The official ranking breaks ties by input order (stable sort), which only works if the same two
    vectors always give the same float: copies of one vector at many rows, paired with copies of another."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5000, 128)).astype(np.float32)
    u, w = X[7].copy(), X[11].copy()
    rows = rng.choice(np.r_[0:7, 8:11, 12:5000], 600, replace=False)
    ru, rw = rows[:300], rows[300:]
    X[ru], X[rw] = u, w
    d = kernels.array_distances(X[ru], X[rw], distance)
    assert np.unique(d).size == 1
    total = 5000 // 16 * 16 // 16
    pa = rng.integers(0, total, 400)
    vd = kernels.variant_pair_distances(X[: 16 * total], total, pa, np.zeros(400, int), pa, np.ones(400, int), distance)
    same = kernels.array_distances(X[pa], X[1 * total + pa], distance)
    assert np.array_equal(vd[0], same)


@needs_numba
@pytest.mark.parametrize("distance", ["L2", "L1"])
def test_variant_kernel_maps_image_ids_to_types(distance):
    rng = np.random.default_rng(3)
    total, n = 50, 3000
    X = rng.normal(size=(16 * total, 24)).astype(np.float32)
    pa, pb = rng.integers(0, total, n), rng.integers(0, total, n)
    ta, tb = rng.integers(0, 6, n), rng.integers(0, 6, n)
    got = kernels.variant_pair_distances(X, total, pa, ta, pb, tb, distance)
    for v, name in enumerate("eht"):

        def row(p, t):
            typ = "ref" if t == 0 else f"{name}{t}"
            return TYPES.index(typ) * total + p

        ref = _loop(X, [row(p, t) for p, t in zip(pa, ta)], [row(p, t) for p, t in zip(pb, tb)], distance)
        np.testing.assert_allclose(got[v], ref, rtol=8 * 24 * 2.0**-53, atol=0)


def test_backends_agree_on_verification_distances():
    rng = np.random.default_rng(5)
    lengths = {"i_a": 40, "v_b": 31, "i_c": 25}
    descs = {s: {t: rng.normal(size=(n, 32)).astype(np.float32) for t in TYPES} for s, n in lengths.items()}
    ds = DescriptorSet(descs)
    pairs = generate_verification(lengths, list(lengths), n_pairs=2000)
    a = verification_distances(ds, pairs, "L2", backend="numpy")
    if kernels.HAVE_NUMBA:
        b = verification_distances(ds, pairs, "L2", backend="numba")
        for k in a:
            for v in a[k]:
                np.testing.assert_allclose(b[k][v], a[k][v], rtol=1e-14, atol=0)
    # each backend against the independent loop: image id 0 is "ref", id t >= 1 of variant v is "<v><t>"
    backends = ["numpy"] + (["numba"] if kernels.HAVE_NUMBA else [])
    for distance in ("L2", "L1"):
        got = {be: verification_distances(ds, pairs, distance, backend=be) for be in backends}
        for k in ("pos", "neg_intra", "neg_inter"):
            t = pairs.table(k)
            for v in "eht":
                typ = lambda i: "ref" if i == 0 else f"{v}{i}"  # noqa: E731
                A = np.array([descs[s][typ(i)][j] for s, i, j in zip(t["s1"], t["t1"], t["idx1"])])
                B = np.array([descs[s][typ(i)][j] for s, i, j in zip(t["s2"], t["t2"], t["idx2"])])
                ref = _loop(np.concatenate([A, B]), range(len(A)), range(len(A), 2 * len(A)), distance)
                for be in backends:
                    np.testing.assert_allclose(
                        got[be][k][v], ref, rtol=8 * 32 * 2.0**-53, atol=0, err_msg=f"{be} {k} {v}"
                    )
    assert len(set(pairs.table("neg_inter")["s2"])) == 3  # inter negatives really cross sequences here
    with pytest.raises(ValueError, match="backend"):
        verification_distances(ds, pairs, "L2", backend="cuda")


def test_numpy_fallback_without_numba():
    code = (
        "from hpatches_kit.evaluation import kernels; import numpy as np; assert not kernels.HAVE_NUMBA; "
        "assert not kernels.use_numba('numba'); "
        "from hpatches_kit.evaluation.distances import exact_pair_distances; "
        "X = np.arange(12, dtype=np.float32).reshape(4, 3); "
        "print(exact_pair_distances(X[[0, 1]], X[[3, 1]]).tolist())"
    )
    env = dict(os.environ, HPATCHES_KIT_NO_NUMBA="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str([float(np.sqrt(3 * 81)), 0.0])


@needs_numba
def test_kernels_reject_out_of_range_input():
    """The compiled loops do not check bounds: the wrappers must, and say what is wrong."""
    X = np.zeros((16 * 4, 3), np.float32)
    ok = np.zeros(2, int)
    with pytest.raises(ValueError, match="pb out of range"):
        kernels.variant_pair_distances(X, 4, ok, ok, np.array([0, 4]), ok)
    with pytest.raises(ValueError, match="ta out of range"):
        kernels.variant_pair_distances(X, 4, ok, np.array([0, 6]), ok, ok)
    with pytest.raises(ValueError, match="16 x 5"):
        kernels.variant_pair_distances(X, 5, ok, ok, ok, ok)
    with pytest.raises(ValueError, match="permutation"):
        kernels.variant_pair_distances(X, 4, ok, ok, ok, ok, order=np.array([0, 0]))
    K = np.zeros((2, 3), np.float32)
    lo = np.zeros((2, 1), np.float32)
    with pytest.raises(ValueError, match="seg_of_col out of range"):
        kernels.retrieval_counts(K, lo, lo, lo, np.array([0, 1, 2]), 2, np.zeros((2, 4)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="Dd"):
        kernels.retrieval_counts(K, lo, lo, lo, np.zeros(3, int), 1, np.zeros((2, 4)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="backend"):
        kernels.use_numba("cuda")


@needs_numba
def test_thread_count_does_not_change_distances(monkeypatch):
    """Small calls run on one thread, large ones on all: the per-item code is the same, so are the bits."""
    rng = np.random.default_rng(3)
    A, B = rng.normal(size=(20000, 128)).astype(np.float32), rng.normal(size=(20000, 128)).astype(np.float32)
    outs = []
    for threads in ("1", "2"):
        monkeypatch.setenv("HPATCHES_KIT_EVAL_THREADS", threads)
        outs.append(kernels.array_distances(A, B, "L2"))
    monkeypatch.setattr(kernels, "SERIAL_WORK", 10**12)
    outs.append(kernels.array_distances(A, B, "L2"))
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])
