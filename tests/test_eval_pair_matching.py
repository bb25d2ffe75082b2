"""Stereo pair reading (Sintel + generic layouts, errors), embedded default pairs, pair-matching scores vs
brute-force loops, and the ``hpatches-eval --task pair-matching`` CLI end to end."""

import itertools
import json

import cv2
import numpy as np
import pytest

from hpatches_kit.data import DataError, stereo
from hpatches_kit.evaluation import pair_matching as pm


def _img(rng, h=20, w=30):
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _write(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def test_sintel_layout_pairs_and_preprocessing(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "sintel"
    imgs = {}
    for p in ("clean", "final"):
        for seq in ("alley_1", "bamboo_2"):
            for f in (1, 2):
                for side in ("left", "right"):
                    im = _img(rng)
                    imgs[(p, seq, f, side)] = im
                    _write(root / "training" / f"{p}_{side}" / seq / f"frame_{f:04d}.png", im)
    pairs = stereo.load_stereo_pairs(root, size=16)
    assert pairs.names == [
        "alley_1/frame_0001.png",
        "alley_1/frame_0002.png",
        "bamboo_2/frame_0001.png",
        "bamboo_2/frame_0002.png",
    ]
    assert pairs.groups == ["alley_1", "alley_1", "bamboo_2", "bamboo_2"]
    # independent reference: bilinear resize, then x/127.5 - 1
    want = cv2.resize(imgs[("clean", "bamboo_2", 1, "right")], (16, 16), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(pairs.right[2], want.astype(np.float32) / 127.5 - 1, atol=1e-6)
    assert pairs.left.shape == (4, 16, 16, 3) and pairs.left.min() >= -1 and pairs.left.max() <= 1
    both = stereo.load_stereo_pairs(root / "training", size=16, passes="both")
    assert len(both) == 8 and both.names[0] == "clean/alley_1/frame_0001.png" and both.names[4].startswith("final/")


def test_generic_layout_and_errors(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "gen"
    for n in ("a.png", "b.jpg"):
        _write(root / "left" / n, _img(rng))
        _write(root / "right" / n, _img(rng))
    assert stereo.load_stereo_pairs(root, size=8).names == ["a.png", "b.jpg"]
    _write(root / "left" / "c.png", _img(rng))
    with pytest.raises(DataError, match=r"left/c\.png: unpaired: no matching right image"):
        stereo.load_stereo_pairs(root, size=8)
    (root / "left" / "c.png").unlink()
    (root / "right" / "b.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"right/b\.jpg: cannot decode image"):
        stereo.load_stereo_pairs(root, size=8)
    with pytest.raises(DataError, match="no stereo layout found"):
        stereo.load_stereo_pairs(tmp_path, size=8)
    with pytest.raises(DataError, match="pair folder not found"):
        stereo.load_stereo_pairs(tmp_path / "nope", size=8)
    only = tmp_path / "only"
    _write(only / "training" / "clean_left" / "s" / "frame_0001.png", _img(rng))
    with pytest.raises(DataError, match="clean_right: missing folder"):
        stereo.load_stereo_pairs(only, size=8)


def test_default_pairs_deterministic_and_split():
    a = stereo.default_pairs(size=32, seed=0)
    b = stereo.default_pairs(size=32, seed=0)
    c = stereo.default_pairs(size=32, seed=1)
    np.testing.assert_array_equal(a.left, b.left)
    np.testing.assert_array_equal(a.right, b.right)
    assert not np.array_equal(a.right, c.right)
    assert len(a) == 3 * (len(stereo.PHOTOS) + 1) and "motorcycle_0.png" in a.names
    # right views are related to their left view: matched pairs correlate better than mismatched ones
    flat_l, flat_r = a.left.reshape(len(a), -1), a.right.reshape(len(a), -1)
    corr = np.corrcoef(flat_l, flat_r)[: len(a), len(a) :]
    assert np.mean(np.diag(corr)) > np.mean(corr[~np.eye(len(a), dtype=bool)]) + 0.2
    tr, te = stereo.split_pairs(a, 0.3, seed=0)
    assert len(tr) + len(te) == len(a) and not set(tr.groups) & set(te.groups)
    assert len(set(te.groups)) == round(0.3 * 20)


def brute_force_scores(L, R, t):
    n = len(L)
    S = np.array([[np.dot(l, r) / np.linalg.norm(l) / np.linalg.norm(r) for r in R] for l in L])
    row = [max(range(n), key=lambda j: S[i, j]) for i in range(n)]
    both = []
    for i in range(n):

        def score(j):
            rs = np.exp(S[i, j] / t) / sum(np.exp(S[i, k] / t) for k in range(n))
            cs = np.exp(S[i, j] / t) / sum(np.exp(S[k, j] / t) for k in range(n))
            return rs + cs

        both.append(max(range(n), key=score))
    best = max(itertools.permutations(range(n)), key=lambda p: sum(S[i, p[i]] for i in range(n)))
    return S, {
        "row": np.mean(np.array(row) == np.arange(n)),
        "both_axes": np.mean(np.array(both) == np.arange(n)),
        "assignment": np.mean(np.array(best) == np.arange(n)),
    }


def test_embedded_split_holds_out_photos():
    train, test = stereo.embedded_split(
        size=32, seed=1, test_fraction=0.3, train_pairs_per_photo=5, eval_pairs_per_photo=2
    )
    held = set(test.groups)
    assert held and not held & set(train.groups)  # no held-out photo in training
    assert len(test) == 2 * len(held) and len(train) == 5 * len(set(train.groups))
    assert len(held) + len(set(train.groups)) == len(set(stereo.default_pairs(32, 0, 1).groups))
    # the held-out pairs are the fixed evaluation draw: the same for any training seed
    _, test2 = stereo.embedded_split(
        size=32, seed=1, test_fraction=0.3, train_pairs_per_photo=1, eval_pairs_per_photo=2
    )
    assert np.array_equal(test.left, test2.left) and test.names == test2.names


def test_pair_matching_vs_brute_force():
    rng = np.random.default_rng(5)
    for trial in range(4):
        L = rng.normal(size=(6, 4))
        R = L + rng.normal(scale=1.2, size=(6, 4))
        S, want = brute_force_scores(L, R, 0.1)
        res = pm.pair_matching_scores(L, R, temperature=0.1)
        np.testing.assert_allclose(res["similarity"], S, atol=1e-12)
        for m in pm.METHODS:
            assert res["accuracy"][m] == pytest.approx(want[m]), (trial, m)
        assert res["chance"] == pytest.approx(1 / 6)


def test_both_axes_and_assignment_fix_a_hub():
    # hand-worked: right 0 is the best match of every left image (a "hub"); columns and 1:1 assignment fix it
    S = np.array([[0.9, 0.1, 0.0], [0.8, 0.7, 0.1], [0.8, 0.1, 0.6]])
    assert list(pm.match(S, "row")) == [0, 0, 0]
    assert list(pm.match(S, "assignment")) == [0, 1, 2]
    assert list(pm.match(S, "both_axes", temperature=0.1)) == [0, 1, 2]


def test_eval_pairs_cli(tmp_path):
    from hpatches_kit.cli import eval as eval_cli

    rng = np.random.default_rng(2)
    root = tmp_path / "pairs"
    base = [_img(rng, 40, 40) for _ in range(5)]
    for k, im in enumerate(base):
        _write(root / "left" / f"{k}.png", im)
        _write(root / "right" / f"{k}.png", np.clip(im.astype(int) + 10, 0, 255).astype(np.uint8))
    out = tmp_path / "res.json"
    rc = eval_cli.main(
        [
            "--task",
            "pair-matching",
            "--data",
            str(root),
            "--preset",
            "vit-tiny",
            "--json",
            str(out),
            "--plots",
            str(tmp_path / "plots"),
        ]
    )
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["n_pairs"] == 5 and res["chance"] == pytest.approx(0.2) and set(res["accuracy"]) == set(pm.METHODS)
    assert np.array(res["similarity"]).shape == (5, 5)
    assert (tmp_path / "plots" / "pair_matching_confusion.png").stat().st_size > 1000
    assert not list(tmp_path.glob(".*tmp*"))
