"""HardNet and pair (contrastive / cosine) losses vs NumPy loops written from the papers' definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest

import hpatches_kit.losses as L

TOL = dict(rtol=1e-5, atol=1e-5)


def d_l2(u, v, squared=False):
    s = float(np.sum((np.asarray(u, np.float64) - np.asarray(v, np.float64)) ** 2))
    return s if squared else math.sqrt(s)


def cos(u, v):
    u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
    return float(u @ v) / (max(math.sqrt(u @ u), 1e-6) * max(math.sqrt(v @ v), 1e-6))


def ref_hardnet_pairs(anchors, positives, margin=1.0, swap=True):
    """Original HardNet: D[i, j] = d(a_i, p_j); hardest negative over row i and column i without the diagonal."""
    n = len(anchors)
    D = np.array([[d_l2(anchors[i], positives[j]) for j in range(n)] for i in range(n)])
    total = 0.0
    for i in range(n):
        row = min(D[i, j] for j in range(n) if j != i)
        col = min(D[j, i] for j in range(n) if j != i)
        neg = min(row, col) if swap else row
        total += max(0.0, margin + D[i, i] - neg)
    return total / n


def ref_hardnet_labels(lab, x, margin=1.0, swap=True):
    n = len(lab)
    vals = []
    for i in range(n):
        for j in range(n):
            if i == j or lab[i] != lab[j]:
                continue
            ni = [d_l2(x[i], x[k]) for k in range(n) if lab[k] != lab[i]]
            nj = [d_l2(x[j], x[k]) for k in range(n) if lab[k] != lab[j]]
            if not ni:
                continue
            neg = min(min(ni), min(nj)) if swap else min(ni)
            vals.append(max(0.0, margin + d_l2(x[i], x[j]) - neg))
    return float(np.mean(vals)) if vals else 0.0


def batch(seed, S, K, D=8):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(S * K, D)).astype(np.float32) * 0.4
    x[1] = x[0]  # zero positive distance
    x[K + 1] = x[0]  # a negative at zero distance
    return L.sk_labels(S, K), x


@pytest.mark.parametrize("swap", [True, False])
@pytest.mark.parametrize("margin", [1.0, 0.5])
def test_hardnet_k2_equals_original(swap, margin):
    lab, x = batch(0, S=7, K=2)
    want = ref_hardnet_pairs(x[0::2], x[1::2], margin, swap)
    got = float(L.hardnet_loss(lab, x, margin=margin, views_per_track=2, anchor_swap=swap))
    np.testing.assert_allclose(got, want, **TOL)


def test_hardnet_hand_worked():
    # 1-D, margin 2: a = [0, 3], p = [1, 3.5]; D[i, j] = |a_i - p_j| = [[1, 3.5], [2, .5]]
    # i=0: negative min(row 3.5, col 2) = 2 -> 2 + 1 - 2 = 1 ; i=1: min(row 2, col 3.5) = 2 -> 2 + .5 - 2 = .5
    # mean .75
    x = np.array([[0.0], [1.0], [3.0], [3.5]], np.float32)
    assert float(L.hardnet_loss([0, 0, 1, 1], x, margin=2.0, views_per_track=2)) == pytest.approx(0.75, abs=1e-6)


@pytest.mark.parametrize("swap", [True, False])
def test_hardnet_k_views_is_mean_over_view_pairs(swap):
    S, K = 5, 4
    lab, x = batch(1, S, K)
    xs = x.reshape(S, K, -1)
    want = np.mean([ref_hardnet_pairs(xs[:, u], xs[:, v], 1.0, swap) for u in range(K) for v in range(u + 1, K)])
    got = float(L.hardnet_loss(lab, x, views_per_track=K, anchor_swap=swap))
    np.testing.assert_allclose(got, want, **TOL)


@pytest.mark.parametrize("swap", [True, False])
def test_hardnet_arbitrary_labels(swap):
    lab, x = batch(2, S=4, K=3)
    lab = np.concatenate([lab, [42]])
    x = np.concatenate([x, x[2:3]])
    perm = np.random.default_rng(0).permutation(len(lab))
    lab, x = lab[perm], x[perm]
    got = float(L.hardnet_loss(lab, x, anchor_swap=swap))
    np.testing.assert_allclose(got, ref_hardnet_labels(lab, x, 1.0, swap), **TOL)


def test_hardnet_views_must_divide_batch():
    with pytest.raises(ValueError, match="multiple of views_per_track"):
        L.hardnet_loss(np.zeros(5), np.zeros((5, 3), np.float32), views_per_track=2)


def ref_pairs(lab, x, term_pos, term_neg, balance):
    P, N = [], []
    for i in range(len(lab)):
        for j in range(i + 1, len(lab)):
            (P if lab[i] == lab[j] else N).append(term_pos(x[i], x[j]) if lab[i] == lab[j] else term_neg(x[i], x[j]))
    if balance:
        return (np.mean(P) if P else 0.0) + (np.mean(N) if N else 0.0)
    return float(np.mean(P + N))


@pytest.mark.parametrize("balance", [True, False])
@pytest.mark.parametrize("metric", ["L2", "squared-L2"])
@pytest.mark.parametrize("margin", [0.5, 2.0])
def test_pair_contrastive(balance, metric, margin):
    lab, x = batch(3, S=4, K=3)
    sq = metric == "squared-L2"
    want = ref_pairs(
        lab, x, lambda u, v: d_l2(u, v, sq) ** 2, lambda u, v: max(0.0, margin - d_l2(u, v, sq)) ** 2, balance
    )
    got = float(L.pair_contrastive_loss(lab, x, margin=margin, distance_metric=metric, balance=balance))
    np.testing.assert_allclose(got, want, **TOL)


@pytest.mark.parametrize("balance", [True, False])
@pytest.mark.parametrize("margin", [0.0, 0.3])
def test_pair_cosine(balance, margin):
    lab, x = batch(4, S=4, K=3)
    want = ref_pairs(lab, x, lambda u, v: 1 - cos(u, v), lambda u, v: max(0.0, cos(u, v) - margin), balance)
    got = float(L.pair_cosine_loss(lab, x, margin=margin, balance=balance))
    np.testing.assert_allclose(got, want, **TOL)


def test_explicit_pair_losses():
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(2, 9, 4)).astype(np.float32)
    b[0] = a[0]
    same = np.array([1, 0, 1, 0, 0, 1, 1, 0, 1])
    want_c = np.mean([d_l2(a[i], b[i]) ** 2 if same[i] else max(0, 1.5 - d_l2(a[i], b[i])) ** 2 for i in range(9)])
    np.testing.assert_allclose(float(L.contrastive_pair_loss(a, b, same, margin=1.5)), want_c, **TOL)
    want_s = np.mean([1 - cos(a[i], b[i]) if same[i] else max(0, cos(a[i], b[i]) - 0.1) for i in range(9)])
    np.testing.assert_allclose(float(L.cosine_pair_loss(a, b, same, margin=0.1)), want_s, **TOL)


@pytest.mark.parametrize("fn", [L.pair_contrastive_loss, L.pair_cosine_loss])
def test_pair_losses_single_kind_batches(fn):
    x = np.random.default_rng(7).normal(size=(5, 3)).astype(np.float32)
    # all one label: only matching pairs -> equals the matching mean; all distinct: only non-matching
    one = float(fn(np.zeros(5), x))
    distinct = float(fn(np.arange(5), x))
    assert np.isfinite(one) and np.isfinite(distinct)
    np.testing.assert_allclose(float(fn(np.zeros(5), x, balance=False)), one, **TOL)
    np.testing.assert_allclose(float(fn(np.arange(5), x, balance=False)), distinct, **TOL)
    # and both equal the brute-force loop (a missing kind contributes 0): not only each other
    if fn is L.pair_contrastive_loss:
        pos, neg = (lambda u, v: d_l2(u, v) ** 2), (lambda u, v: max(0.0, 1.0 - d_l2(u, v)) ** 2)
    else:
        pos, neg = (lambda u, v: 1 - cos(u, v)), (lambda u, v: max(0.0, cos(u, v)))
    for lab in (np.zeros(5), np.arange(5), np.array([3, 3, 1, 2, 0])):
        for balance in (True, False):
            want = ref_pairs(lab, x, pos, neg, balance)
            np.testing.assert_allclose(float(fn(lab, x, balance=balance)), want, **TOL)
    assert one > 0 and distinct > 0  # neither kind's terms vanish on this batch, so a dropped kind shows


@pytest.mark.parametrize("S,K", [(1, 4), (5, 1)])
def test_hardnet_structured_degenerate_is_zero_with_zero_gradient(S, K):
    import tensorflow as tf

    x = tf.Variable(np.random.default_rng(8).normal(size=(S * K, 3)).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = L.hardnet_loss(L.sk_labels(S, K), x, views_per_track=K)
    g = tape.gradient(loss, x)
    assert float(loss) == 0.0
    assert g is None or np.all(np.asarray(g) == 0.0)
