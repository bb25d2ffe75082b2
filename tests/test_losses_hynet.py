"""HyNet's loss (hybrid similarity triplet + L2-norm regulariser) vs a NumPy loop of the paper's formulas
(Tian et al. 2020: s_H = alpha * cos - L2, margin 1.2, alpha 2, gamma 0.1)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import hpatches_kit.losses as L
from hpatches_kit.losses.sosnet import EPS_SQRT, FN_THRESHOLD

TOL = dict(rel=1e-4, abs=1e-5)


def ref_pair(ra, rp, margin=1.2, alpha=2.0, gamma=0.1, th=FN_THRESHOLD):
    ra, rp = np.asarray(ra, np.float64), np.asarray(rp, np.float64)
    n = len(ra)
    a = ra / np.sqrt((ra**2).sum(1, keepdims=True) + 1e-10)
    p = rp / np.sqrt((rp**2).sum(1, keepdims=True) + 1e-10)

    def dist(u, v):
        return math.sqrt(abs(2 - 2 * float(u @ v)) + EPS_SQRT)

    def s_h(u, v):  # hybrid similarity, written as the paper's alpha * cosine - L2 distance
        return alpha * float(u @ v) - dist(u, v)

    total = 0.0
    for i in range(n):
        cands = []
        for j in range(n):
            if j == i:
                continue
            for u, v in ((a[i], a[j]), (a[i], p[j]), (a[j], p[i]), (p[i], p[j])):
                if dist(u, v) > th:
                    cands.append((dist(u, v), u, v))
        _, u, v = min(cands, key=lambda c: c[0])  # the hardest negative is the closest one
        total += max(0.0, margin + s_h(u, v) - s_h(a[i], p[i]))
    norm = lambda r: math.sqrt(float(r @ r) + EPS_SQRT)  # noqa: E731
    reg = sum((norm(ra[i]) - norm(rp[i])) ** 2 for i in range(n)) / n
    return total / n + gamma * reg


def test_hybrid_similarity_equals_code_form():
    # alpha*s - d = -(d + alpha d^2/2) + alpha when d^2 = 2 - 2s: the paper's and the code's forms agree
    s, alpha = 0.3, 2.0
    dd = math.sqrt(2 - 2 * s)
    assert alpha * s - dd == pytest.approx(-(dd + alpha * dd**2 / 2) + alpha)


@pytest.mark.parametrize("S,K", [(10, 2), (6, 3)])
@pytest.mark.parametrize("kw", [{}, {"margin": 0.8, "alpha": 1.0, "gamma": 0.5}])
def test_hynet_matches_numpy_loop(S, K, kw):
    rng = np.random.default_rng(S + K)
    x = (rng.normal(size=(S * K, 12)) * rng.uniform(0.5, 2.0, size=(S * K, 1))).astype(np.float32)
    x[2 * K] = x[0] * 1.5  # a false negative (same direction): not mined; norms differ
    y = np.repeat(np.arange(S), K).astype(np.int32)
    want = np.mean([ref_pair(x[u::K], x[v::K], **kw) for u in range(K) for v in range(u + 1, K)])
    assert float(L.hynet_loss(y, x, views_per_track=K, **kw)) == pytest.approx(want, **TOL)
    assert float(L.HyNetLoss(views_per_track=K, **kw)(y, x)) == pytest.approx(want, **TOL)


def test_norm_term_zero_on_unit_descriptors_and_gradient():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 8)).astype(np.float32)
    y = np.repeat(np.arange(8), 2)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    assert float(L.hynet_loss(y, unit, gamma=0.1)) == pytest.approx(float(L.hynet_loss(y, unit, gamma=0.0)), abs=1e-6)
    assert float(L.hynet_loss(y, x, gamma=0.1)) > float(L.hynet_loss(y, x, gamma=0.0))
    xv = tf.Variable(x)
    with tf.GradientTape() as t:
        v = L.hynet_loss(y, xv)
    g = t.gradient(v, xv).numpy()
    assert np.all(np.isfinite(g)) and np.abs(g).sum() > 0


def test_registry_round_trip_and_fit(tmp_path):
    import keras
    from conftest import assert_loss_round_trip

    loss = L.get("hynet", margin=1.0, views_per_track=2)
    assert isinstance(loss, L.HyNetLoss) and (loss.margin, loss.alpha, loss.gamma) == (1.2, 2.0, 0.1)
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(32, 16)).astype(np.float32)
    labels = np.repeat(np.arange(16), 2).astype(np.int32)
    assert_loss_round_trip(loss, labels, feats)
    inp = keras.Input((16,))
    model = keras.Model(inp, keras.layers.Dense(8)(inp))
    assert_loss_round_trip(loss, labels, feats, tmp_path=tmp_path, model=model)
    w0 = [w.copy() for w in model.get_weights()]
    hist = model.fit(feats, labels, batch_size=32, epochs=1, shuffle=False, verbose=0)
    assert np.isfinite(hist.history["loss"][0])
    assert any(np.abs(a - b).max() > 0 for a, b in zip(w0, model.get_weights()))
