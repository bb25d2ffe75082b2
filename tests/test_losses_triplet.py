"""Triplet-family losses vs brute-force NumPy loops (float64) over every (anchor, positive, negative).

The references are written loop-style from the definitions / tfa 0.23's documented algorithm, not from the
vectorised code. Batches contain repeated embeddings (zero distances and exact ties) on purpose.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

import hpatches_kit.losses as L

METRICS = ("L2", "squared-L2", "angular")
TOL = dict(rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------ references


def ref_dist(x, metric):
    x = np.asarray(x, np.float64)
    n = len(x)
    d = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if metric == "angular":
                ni = x[i] / math.sqrt(max(float(x[i] @ x[i]), 1e-12))
                nj = x[j] / math.sqrt(max(float(x[j] @ x[j]), 1e-12))
                d[i, j] = max(1.0 - float(ni @ nj), 1e-16)
            elif i != j:
                s = float(np.sum((x[i] - x[j]) ** 2))
                d[i, j] = s if metric == "squared-L2" else math.sqrt(s)
    return d


def softplus(v):
    return math.log1p(math.exp(-abs(v))) + max(v, 0.0)


def f_hinge(v, margin, soft):
    return softplus(v) if soft else max(margin + v, 0.0)


def has_triplet(lab):
    n = len(lab)
    pos = any(lab[a] == lab[p] for a in range(n) for p in range(n) if a != p)
    return pos and len(set(lab.tolist())) > 1


def ref_tfa_hard(lab, x, margin, soft, metric):
    if not has_triplet(lab):
        return 0.0
    d = ref_dist(x, metric)
    n = len(lab)
    total = 0.0
    for a in range(n):
        posd = [d[a, p] for p in range(n) if p != a and lab[p] == lab[a]]
        negd = [d[a, k] for k in range(n) if lab[k] != lab[a]]
        hp = max(posd) if posd else min(d[a])  # tfa's masked max of an empty row: the row minimum
        hn = min(negd) if negd else max(d[a])
        total += f_hinge(hp - hn, margin, soft)
    return total / n


def ref_tfa_semihard(lab, x, margin, metric, soft=False):
    if not has_triplet(lab):
        return 0.0
    d = ref_dist(x, metric)
    n = len(lab)
    total, npos = 0.0, 0
    for a in range(n):
        negd = [d[a, k] for k in range(n) if lab[k] != lab[a]]
        for p in range(n):
            if p == a or lab[p] != lab[a]:
                continue
            npos += 1
            outside = [v for v in negd if v > d[a, p]]
            if outside:
                sn = min(outside)
            elif negd:
                sn = max(negd)
            else:
                sn = min(d[a])
            total += f_hinge(d[a, p] - sn, margin, soft)
    return total / npos


def ref_batch_all(lab, x, margin, soft, metric, average):
    d = ref_dist(x, metric)
    n = len(lab)
    total, count = 0.0, 0
    for a in range(n):
        for p in range(n):
            if p == a or lab[p] != lab[a]:
                continue
            for k in range(n):
                if lab[k] == lab[a]:
                    continue
                v = f_hinge(d[a, p] - d[a, k], margin, soft)
                if average == "all" or v > 1e-16:
                    total += v
                    count += 1
    return total / count if count else 0.0


def ref_batch_hard(lab, x, margin, soft, metric):
    d = ref_dist(x, metric)
    n = len(lab)
    vals = []
    for a in range(n):
        posd = [d[a, p] for p in range(n) if p != a and lab[p] == lab[a]]
        negd = [d[a, k] for k in range(n) if lab[k] != lab[a]]
        if posd and negd:
            vals.append(f_hinge(max(posd) - min(negd), margin, soft))
    return float(np.mean(vals)) if vals else 0.0


# ------------------------------------------------------------------------------------------ batches


def make_batch(seed, S=5, K=3, D=6, arbitrary=False):
    """S x K track-major batch with duplicated rows: an exact duplicate within a track (zero positive
    distance), a negative that duplicates a positive (tie d(a,n) == d(a,p)), and a zero-vector-free
    layout. ``arbitrary`` shuffles rows and adds a singleton label."""
    rng = np.random.default_rng(seed)
    lab = L.sk_labels(S, K).astype(np.int64)
    x = rng.normal(size=(S * K, D)).astype(np.float32)
    x[1] = x[0]  # zero distance inside track 0
    x[K] = x[2]  # track 1 view 0 == track 0 view 2 (zero negative distance, ties)
    x[2 * K + 1] = x[K + 1]
    if arbitrary:
        lab = np.concatenate([lab, [99]])
        x = np.concatenate([x, x[3:4]])
        perm = rng.permutation(len(lab))
        lab, x = lab[perm], x[perm]
    return lab, x


BATCHES = [make_batch(0), make_batch(1, S=4, K=4, D=8), make_batch(2, arbitrary=True), make_batch(3, S=6, K=2)]


def val(t):
    return float(np.asarray(t))


# ------------------------------------------------------------------------------------------ tests


def test_sk_labels():
    np.testing.assert_array_equal(L.sk_labels(3, 2), [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(L.sk_labels(2, 3, track_ids=[7, 4]), [7, 7, 7, 4, 4, 4])
    with pytest.raises(ValueError):
        L.sk_labels(2, 3, track_ids=[1, 2, 3])


@pytest.mark.parametrize("metric", METRICS)
def test_pairwise_distance_matches_loops_and_zero_for_duplicates(metric):
    lab, x = BATCHES[0]
    d = np.asarray(L.pairwise_distance(x, metric))
    np.testing.assert_allclose(d, ref_dist(x, metric), **TOL)
    if metric != "angular":
        assert d[0, 1] == 0.0 and np.all(np.diag(d) == 0.0)


def test_unknown_metric_is_clear():
    with pytest.raises(ValueError, match="distance_metric"):
        L.triplet_hard_loss([0, 0, 1], np.zeros((3, 2), np.float32), distance_metric="L1")


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("margin", [0.3, 1.0])
def test_tfa_hard_matches_reference(metric, soft, margin):
    for lab, x in BATCHES:
        got = val(L.triplet_hard_loss(lab, x, margin=margin, soft=soft, distance_metric=metric))
        np.testing.assert_allclose(got, ref_tfa_hard(lab, x, margin, soft, metric), **TOL)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("margin", [0.3, 1.0])
def test_tfa_semihard_matches_reference(metric, margin):
    for i, (lab, x) in enumerate(BATCHES):
        want = ref_tfa_semihard(lab, x, margin, metric)
        got = val(L.triplet_semihard_loss(lab, x, margin=margin, distance_metric=metric))
        np.testing.assert_allclose(got, want, **TOL)
        if i != 2:  # S x K fast path (the arbitrary batch is not track-major)
            K = int(np.sum(lab == lab[0]))
            fast = val(L.triplet_semihard_loss(lab, x, margin=margin, distance_metric=metric, views_per_track=K))
            np.testing.assert_allclose(fast, want, **TOL)
    lab, x = BATCHES[0]
    soft = val(L.triplet_semihard_loss(lab, x, margin=margin, distance_metric=metric, soft=True))
    np.testing.assert_allclose(soft, ref_tfa_semihard(lab, x, margin, metric, soft=True), **TOL)


def test_semihard_hand_worked():
    # 1-D points: class 0 at 0 and 1, class 1 at 1.5 and 4. L2, margin 1.
    # (a=0,p=1): d_ap=1, negatives 1.5, 4 -> outside min 1.5 -> 1+1-1.5 = 0.5
    # (a=1,p=0): d_ap=1, negatives 0.5, 3 -> none > 1 except 3 -> 1+1-3 = -1 -> 0
    # (a=1.5,p=4): d_ap=2.5, negatives 1.5, 0.5 -> none > 2.5 -> farthest 1.5 -> 1+2.5-1.5 = 2
    # (a=4,p=1.5): d_ap=2.5, negatives 4, 3 -> outside 3 -> 1+2.5-3 = 0.5 ; mean = 3/4
    x = np.array([[0.0], [1.0], [1.5], [4.0]], np.float32)
    assert val(L.triplet_semihard_loss([0, 0, 1, 1], x)) == pytest.approx(0.75, abs=1e-6)
    # hard: a=0: hp 1, hn 1.5 -> .5 ; a=1: 1, .5 -> 1.5 ; a=1.5: 2.5, .5 -> 3 ; a=4: 2.5, 3 -> .5 ; mean 1.375
    assert val(L.triplet_hard_loss([0, 0, 1, 1], x)) == pytest.approx(1.375, abs=1e-6)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("average", ["positive", "all"])
def test_batch_all_matches_enumeration(metric, soft, average):
    for i, (lab, x) in enumerate(BATCHES):
        for margin in (0.2, 1.0):
            want = ref_batch_all(lab, x, margin, soft, metric, average)
            got = val(L.batch_all_triplet_loss(lab, x, margin, soft, metric, average))
            np.testing.assert_allclose(got, want, **TOL)
            if i != 2:
                K = int(np.sum(lab == lab[0]))
                fast = val(L.batch_all_triplet_loss(lab, x, margin, soft, metric, average, views_per_track=K))
                np.testing.assert_allclose(fast, want, **TOL)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("soft", [False, True])
def test_batch_hard_matches_enumeration(metric, soft):
    for lab, x in BATCHES:
        for margin in (0.2, 1.0):
            got = val(L.batch_hard_triplet_loss(lab, x, margin, soft, metric))
            np.testing.assert_allclose(got, ref_batch_hard(lab, x, margin, soft, metric), **TOL)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("swap", [False, True])
def test_triplet_margin_loss_rows(metric, swap):
    rng = np.random.default_rng(5)
    a, p, n = (rng.normal(size=(7, 5)).astype(np.float32) for _ in range(3))
    p[0] = a[0]
    n[1] = a[1]
    want = []
    for i in range(7):
        trip = np.stack([a[i], p[i], n[i]])
        d = ref_dist(trip, metric)
        dn = min(d[0, 2], d[1, 2]) if swap else d[0, 2]
        want.append(max(0.5 + d[0, 1] - dn, 0.0))
    got = val(L.triplet_margin_loss(a, p, n, margin=0.5, distance_metric=metric, swap=swap))
    np.testing.assert_allclose(got, np.mean(want), **TOL)
    got_cls = val(
        L.RandomTripletLoss(margin=0.5, distance_metric=metric, swap=swap)(np.zeros(7), np.stack([a, p, n], 1))
    )
    np.testing.assert_allclose(got_cls, np.mean(want), **TOL)


ALL_LOSSES = {
    "tfa_hard": lambda y, e, m: L.triplet_hard_loss(y, e, distance_metric=m),
    "tfa_hard_soft": lambda y, e, m: L.triplet_hard_loss(y, e, soft=True, distance_metric=m),
    "tfa_semihard": lambda y, e, m: L.triplet_semihard_loss(y, e, distance_metric=m),
    "batch_all_pos": lambda y, e, m: L.batch_all_triplet_loss(y, e, distance_metric=m),
    "batch_all_all": lambda y, e, m: L.batch_all_triplet_loss(y, e, distance_metric=m, average="all"),
    "batch_hard": lambda y, e, m: L.batch_hard_triplet_loss(y, e, distance_metric=m),
    "hardnet": lambda y, e, m: L.hardnet_loss(y, e, distance_metric=m),
    "contrastive": lambda y, e, m: L.pair_contrastive_loss(y, e, distance_metric="L2" if m == "angular" else m),
    "cosine": lambda y, e, m: L.pair_cosine_loss(y, e),
}


def grad_of(fn, lab, x, metric):
    xv = tf.Variable(x)
    with tf.GradientTape() as tape:
        loss = fn(lab, xv, metric)
    return float(loss), tape.gradient(loss, xv).numpy()


@pytest.mark.parametrize("name", sorted(ALL_LOSSES))
@pytest.mark.parametrize("metric", METRICS)
def test_gradients_finite_at_zero_distance(name, metric):
    lab, x = BATCHES[0]  # contains exact duplicates within and across tracks
    loss, g = grad_of(ALL_LOSSES[name], lab, x, metric)
    assert np.isfinite(loss) and np.all(np.isfinite(g))
    assert np.any(g != 0)
    # a batch in which *every* track collapsed to one point
    xc = np.repeat(np.random.default_rng(1).normal(size=(5, 6)).astype(np.float32), 3, axis=0)
    loss, g = grad_of(ALL_LOSSES[name], L.sk_labels(5, 3), xc, metric)
    assert np.isfinite(loss) and np.all(np.isfinite(g))


@pytest.mark.parametrize("name", sorted(set(ALL_LOSSES) - {"contrastive", "cosine"}))
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("labels", ["one", "distinct"])
def test_no_valid_triplet_gives_zero_and_zero_gradient(name, metric, labels):
    x = np.random.default_rng(2).normal(size=(6, 4)).astype(np.float32)
    x[1] = x[0]
    lab = np.zeros(6, np.int32) if labels == "one" else np.arange(6, dtype=np.int32)
    loss, g = grad_of(ALL_LOSSES[name], lab, x, metric)
    assert loss == 0.0
    assert np.all(g == 0.0)


def test_large_integer_ids_compare_exactly():
    # 2**24 and 2**24 + 1 are the same float32: a float cast would merge the two tracks.
    rng = np.random.default_rng(4)
    x = rng.normal(size=(6, 5)).astype(np.float32)
    big = np.array([2**24, 2**24, 2**24 + 1, 2**24 + 1, 2**40, 2**40], np.int64)
    small = np.array([0, 0, 1, 1, 2, 2])
    assert float(np.float32(big[0])) == float(np.float32(big[2]))
    for cls in (
        L.TripletHardLoss,
        L.TripletSemiHardLoss,
        L.BatchAllTripletLoss,
        L.BatchHardTripletLoss,
        L.HardNetLoss,
        L.PairContrastiveLoss,
        L.PairCosineLoss,
    ):
        loss = cls()
        np.testing.assert_allclose(val(loss(big, x)), val(loss(small, x)), rtol=1e-6)
        merged = np.array([0, 0, 0, 0, 2, 2])
        assert abs(val(loss(big, x)) - val(loss(merged, x))) > 1e-4, cls.__name__
