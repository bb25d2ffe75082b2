"""Embedding losses vs brute-force NumPy loops (independent references) and hand-worked values."""

import math

import keras
import numpy as np
import pytest
from conftest import assert_loss_round_trip

from hpatches_kit.losses import embedding as E


def np_cos(a, b, eps=1e-12):
    return float(np.dot(a, b) / math.sqrt((np.dot(a, a) + eps) * (np.dot(b, b) + eps)))


def ref_cosine_embedding(x1, x2, y, margin):
    out = []
    for a, b, t in zip(x1, x2, y):
        c = np_cos(a, b)
        out.append(1 - c if t == 1 else max(0.0, c - margin) if t == -1 else 0.0)
    return float(np.mean(out))


def unit(v):
    return v / np.linalg.norm(v)


def ref_symmetric(left, right, margin, wp, wn):
    b = len(left)
    pos = sum(1 - np.dot(unit(left[i]), unit(right[i])) for i in range(b)) / b
    negs = []
    for i in range(b):
        for j in range(b):
            if i != j:
                negs.append(max(0.0, np.dot(unit(left[i]), unit(right[j])) - margin))  # l_i vs r_j
                negs.append(max(0.0, np.dot(unit(right[i]), unit(left[j])) - margin))  # r_i vs l_j
    return wp * pos + wn * float(np.mean(negs))


def ref_irt(labels, emb, beta, lam):
    z = [unit(e) for e in emb]
    n = len(z)
    total = 0.0
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            s = float(np.dot(z[i], z[j]))
            total += (1 - s) if labels[i] == labels[j] else max(0.0, s - beta)
    contr = total / n
    ko = 0.0
    for i in range(n):
        ko += -math.log(min(np.linalg.norm(z[i] - z[j]) for j in range(n) if j != i) + 1e-8)
    return contr + lam * ko / n, contr, ko / n


@pytest.fixture
def rng():
    return np.random.default_rng(3)


def test_cosine_embedding_matches_torch_semantics(rng):
    x1, x2 = rng.normal(size=(9, 5)).astype("float32"), rng.normal(size=(9, 5)).astype("float32")
    y = np.array([1, -1, 1, -1, -1, 1, 1, -1, -1], "float32")
    for margin in (0.0, 0.3, -0.2):
        got = float(E.cosine_embedding_loss(x1, x2, y, margin))
        assert got == pytest.approx(ref_cosine_embedding(x1, x2, y, margin), abs=1e-5)
    # hand-worked: identical vectors, +1 -> 0; opposite, +1 -> 2; orthogonal, -1 with margin -0.5 -> 0.5
    a = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]], "float32")
    b = np.array([[2.0, 0.0], [-1.0, 0.0], [0.0, 3.0]], "float32")
    assert float(E.cosine_embedding_loss(a, b, [1, 1, -1], margin=-0.5)) == pytest.approx((0 + 2 + 0.5) / 3, abs=1e-6)
    lossobj = E.CosineEmbeddingLoss(margin=0.3)
    got = float(lossobj(y, np.stack([x1, x2], axis=1)))
    assert got == pytest.approx(ref_cosine_embedding(x1, x2, y, 0.3), abs=1e-5)


def test_symmetric_contrastive_matches_loop(rng):
    left, right = rng.normal(size=(6, 7)), rng.normal(size=(6, 7))
    left[:, 0] += 2.0  # make some cosines positive so hinges are active
    right[:, 0] += 2.0
    for margin, wp, wn in [(0.0, 2 / 3, 1 / 3), (0.4, 0.5, 0.5)]:
        got = float(E.symmetric_contrastive_loss(left.astype("f4"), right.astype("f4"), margin, wp, wn))
        assert got == pytest.approx(ref_symmetric(left, right, margin, wp, wn), abs=1e-5)
    obj = E.SymmetricContrastiveLoss()
    assert float(obj(np.zeros(6), np.stack([left, right], 1).astype("f4"))) == pytest.approx(
        ref_symmetric(left, right, 0.0, 2 / 3, 1 / 3), abs=1e-5
    )
    # perfect embeddings (orthogonal pairs, left == right) give zero loss
    eye = np.eye(4, dtype="f4")
    assert float(E.symmetric_contrastive_loss(eye, eye)) == pytest.approx(0.0, abs=1e-6)


def test_irt_and_koleo_match_loops(rng):
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 0])
    emb = rng.normal(size=(8, 5)).astype("f4")
    want, contr, ko = ref_irt(labels, emb, 0.5, 0.7)
    assert float(E.irt_contrastive_loss(labels, emb, 0.5)) == pytest.approx(contr, abs=1e-5)
    assert float(E.koleo_loss(emb)) == pytest.approx(ko, abs=1e-4)
    assert float(E.irt_loss(labels, emb)) == pytest.approx(want, abs=1e-4)
    assert float(E.IRTLoss()(labels, emb)) == pytest.approx(want, abs=1e-4)
    assert float(E.KoLeoRegularizer(weight=0.25)(labels, emb)) == pytest.approx(0.25 * ko, abs=1e-4)
    # pair-stacked form: pair i is class i
    left, right = emb[:4], rng.normal(size=(4, 5)).astype("f4")
    w2, _, _ = ref_irt(np.r_[np.arange(4), np.arange(4)], np.concatenate([left, right]), 0.5, 0.7)
    assert float(E.IRTLoss()(np.zeros(4), np.stack([left, right], 1))) == pytest.approx(w2, abs=1e-4)


def ref_info_nce(left, right, t):
    b = len(left)
    s = [[np.dot(unit(left[i]), unit(right[j])) / t for j in range(b)] for i in range(b)]
    l2r = [-s[i][i] + math.log(sum(math.exp(s[i][j]) for j in range(b))) for i in range(b)]
    r2l = [-s[j][j] + math.log(sum(math.exp(s[i][j]) for i in range(b))) for j in range(b)]
    return 0.5 * (sum(l2r) / b + sum(r2l) / b)


def test_info_nce_matches_loop(rng):
    left, right = rng.normal(size=(7, 5)), rng.normal(size=(7, 5))
    for t in (0.05, 0.5, 2.0):
        got = float(E.info_nce_loss(left.astype("f4"), right.astype("f4"), t))
        assert got == pytest.approx(ref_info_nce(left, right, t), rel=1e-4)
    obj = E.InfoNCELoss(temperature=0.1)
    assert float(obj(np.zeros(7), np.stack([left, right], 1).astype("f4"))) == pytest.approx(
        ref_info_nce(left, right, 0.1), rel=1e-4
    )
    # separable pairs with a small temperature: the loss goes to 0, and it is finite for huge logits
    eye = np.eye(4, dtype="f4")
    assert float(E.info_nce_loss(eye, eye, 0.01)) == pytest.approx(0.0, abs=1e-6)
    assert np.isfinite(float(E.info_nce_loss(eye, eye[::-1].copy(), 1e-4)))
    with pytest.raises(ValueError, match="temperature"):
        E.InfoNCELoss(temperature=0.0)


def test_koleo_hand_worked():
    # four points on the unit circle at 90 degrees: nearest-neighbour distance sqrt(2) for all
    z = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], "f4")
    assert float(E.koleo_loss(z)) == pytest.approx(-math.log(math.sqrt(2)), abs=1e-5)


def test_losses_get_config_round_trip():
    pairs = np.random.default_rng(0).normal(size=(4, 2, 5)).astype("f4")
    targets = np.array([1, -1, 1, -1])
    for obj in (
        E.CosineEmbeddingLoss(margin=0.2),
        E.SymmetricContrastiveLoss(margin=0.1, pos_weight=0.6),
        E.IRTLoss(beta=0.4, koleo_weight=0.3),
        E.KoLeoRegularizer(weight=2.0),
        E.InfoNCELoss(0.2),
    ):
        clone = keras.losses.deserialize(keras.losses.serialize(obj))
        assert type(clone) is type(obj) and clone.get_config() == obj.get_config()
        assert_loss_round_trip(obj, targets, pairs)  # config and keras.saving copies, same value on a batch


def test_public_names_exported():
    import hpatches_kit.losses as L

    for n in E.__all__:
        assert hasattr(L, n)


def test_pair_loss_shape_error():
    with pytest.raises(ValueError, match=r"\(B, 2, D\)"):
        E.SymmetricContrastiveLoss()(np.zeros(4), np.zeros((4, 3), "f4"))
