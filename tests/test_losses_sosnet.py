"""SOSNet's loss (first-order squared hinge + second-order similarity regulariser) vs NumPy loops written from
the paper's formulas (Tian et al. 2019, eqs. 2-4) and from the authors' code's neighbourhood."""

from __future__ import annotations

import math

import numpy as np
import pytest

import hpatches_kit.losses as L
from hpatches_kit.losses.sosnet import EPS_SQRT, FN_THRESHOLD

TOL = dict(rel=1e-4, abs=1e-5)


def d(a, b):
    return math.sqrt(float(np.sum((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)) + EPS_SQRT)


def knn(D, i, k, skip):
    """The k nearest j != i of row i of D (false negatives <= threshold skipped)."""
    cand = sorted((D[i][j], j) for j in range(len(D)) if j != i and not skip(D[i][j]))
    return {j for _, j in cand[:k]}


def ref_pair(a, p, margin=1.0, k=8, w=1.0, neighbourhood="paper", th=FN_THRESHOLD):
    n = len(a)
    Ld = [[d(a[i], a[j]) for j in range(n)] for i in range(n)]
    Rd = [[d(p[i], p[j]) for j in range(n)] for i in range(n)]
    LR = [[d(a[i], p[j]) for j in range(n)] for i in range(n)]
    skip = lambda v: v <= th  # noqa: E731
    fos = 0.0
    for i in range(n):
        negs = [v for j in range(n) if j != i for v in (Ld[i][j], LR[i][j], LR[j][i], Rd[i][j]) if not skip(v)]
        fos += max(0.0, margin + LR[i][i] - min(negs)) ** 2
    fos /= n
    k = min(k, n - 1)
    if neighbourhood == "paper":
        c = [knn(Ld, i, k, skip) | knn(Rd, i, k, skip) for i in range(n)]
    else:  # authors' code: symmetrised kNN graphs of L, R, LR (rows) and LR (columns)
        A = np.zeros((n, n), bool)
        LRt = [list(col) for col in zip(*LR)]
        for i in range(n):
            for j in knn(Ld, i, k, skip) | knn(Rd, i, k, skip):
                A[i, j] = A[j, i] = True
            for j in knn(LR, i, k, skip):
                A[i, j] = A[j, i] = True
            for j in knn(LRt, i, k, skip):  # positive i's nearest anchors j: entry LR[j][i]
                A[j, i] = A[i, j] = True
        c = [{j for j in range(n) if A[i, j] and j != i} for i in range(n)]
    sos = sum(math.sqrt(sum((Ld[i][j] - Rd[i][j]) ** 2 for j in c[i]) + EPS_SQRT) for i in range(n)) / n
    return fos, sos, fos + w * sos


def ref_sk(x, S, K, **kw):
    """Mean over the view pairs u < v of the pair loss (anchors view u, positives view v)."""
    parts = [ref_pair(x[u::K], x[v::K], **kw) for u in range(K) for v in range(u + 1, K)]
    return tuple(float(np.mean([p[t] for p in parts])) for t in range(3))


def batch(seed, S, K, D=16):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(S * K, D))
    x[K : 2 * K] += x[:K] * 3  # some structure: track 1 near track 0
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x[2 * K] = x[0]  # a false negative (distance 0 <= 8e-3): never mined, never a neighbour
    return np.repeat(np.arange(S), K).astype(np.int32), x.astype(np.float32)


@pytest.mark.parametrize("S,K,k", [(12, 2, 8), (10, 3, 4), (5, 2, 8)])
@pytest.mark.parametrize("neighbourhood", ["paper", "official"])
def test_sosnet_matches_numpy_loop(S, K, k, neighbourhood):
    y, x = batch(S * 7 + K, S, K)
    fos, sos, total = ref_sk(x.astype(np.float64), S, K, k=k, neighbourhood=neighbourhood)
    got = float(L.sosnet_loss(y, x, knn=k, views_per_track=K, neighbourhood=neighbourhood))
    assert got == pytest.approx(total, **TOL)
    reg = float(L.sos_regularizer(y, x, knn=k, views_per_track=K, neighbourhood=neighbourhood))
    assert reg == pytest.approx(sos, **TOL)
    first = float(L.sosnet_loss(y, x, knn=k, sos_weight=0.0, views_per_track=K))
    assert first == pytest.approx(fos, **TOL)
    assert sos > 0.01 and fos > 0.01  # both terms are really exercised


def test_paper_and_official_neighbourhoods_differ():
    y, x = batch(3, 16, 2)
    a = float(L.sos_regularizer(y, x, knn=2, neighbourhood="paper"))
    b = float(L.sos_regularizer(y, x, knn=2, neighbourhood="official"))
    assert a < b  # the official set is a superset: more squared differences under each root


def test_sosr_zero_for_identical_structure_and_regularized_composes():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(8, 6))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    x = np.stack([a, a], 1).reshape(16, 6).astype(np.float32)  # both views equal: d(x_i,x_j) = d(x_i+,x_j+)
    y = np.repeat(np.arange(8), 2)
    assert float(L.sos_regularizer(y, x, knn=3)) == pytest.approx(math.sqrt(EPS_SQRT), abs=1e-6)
    y2, x2 = batch(5, 12, 2)
    hard = L.HardNetLoss(views_per_track=2)
    comp = L.SOSRegularized(hard, weight=0.5, knn=4)
    want = float(hard(y2, x2)) + 0.5 * float(L.sos_regularizer(y2, x2, knn=4))
    assert float(comp(y2, x2)) == pytest.approx(want, **TOL)
    assert float(L.SOSRegularizer(weight=2.0, knn=4)(y2, x2)) == pytest.approx(
        2 * float(L.sos_regularizer(y2, x2, knn=4)), **TOL
    )


def test_gradient_finite_and_layout_checked():
    import tensorflow as tf

    y, x = batch(1, 8, 2)
    xv = tf.Variable(x)
    with tf.GradientTape() as t:
        v = L.sosnet_loss(y, xv, knn=4)
    g = t.gradient(v, xv).numpy()
    assert np.all(np.isfinite(g)) and np.abs(g).sum() > 0
    with pytest.raises(ValueError, match="track-major"):
        L.sosnet_loss(np.arange(16), x)
    with pytest.raises(ValueError, match="neighbourhood"):
        L.SOSNetLoss(neighbourhood="mine")


def test_registry_round_trip_and_fit(tmp_path):
    import keras
    from conftest import assert_loss_round_trip

    loss = L.get("sosr", margin=1.0, views_per_track=2)
    assert isinstance(loss, L.SOSNetLoss) and loss.knn == 8 and loss.sos_weight == 1.0 and loss.margin == 1.0
    y, x = batch(2, 16, 2)
    assert_loss_round_trip(loss, y, x)
    for extra in (L.SOSRegularized(L.HardNetLoss(views_per_track=2), knn=4), L.SOSRegularizer(knn=4)):
        assert_loss_round_trip(extra, y, x)
    inp = keras.Input((16,))
    out = keras.layers.UnitNormalization()(keras.layers.Dense(8)(inp))
    model = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(32, 16)).astype(np.float32)
    labels = np.repeat(np.arange(16), 2).astype(np.int32)
    res = assert_loss_round_trip(loss, labels, feats, tmp_path=tmp_path, model=model)
    w0 = [w.copy() for w in model.get_weights()]
    hist = model.fit(feats, labels, batch_size=32, epochs=1, shuffle=False, verbose=0)
    assert np.isfinite(hist.history["loss"][0]) and res["value"] > 0
    assert any(np.abs(a - b).max() > 0 for a, b in zip(w0, model.get_weights()))
