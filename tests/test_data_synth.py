"""Synthesised sequences, N-HPatches noise twins and the (small-config) default build."""

import json
import math

import cv2
import numpy as np
import pytest

from hpatches_kit.data import DataError, load_dataset, load_splits
from hpatches_kit.data import geometry as G
from hpatches_kit.data import synth as S
from hpatches_kit.data.extract import extract_sequence
from hpatches_kit.data.noise import NOISE_LEVELS, noise_level


@pytest.fixture(scope="module")
def photo_files(tmp_path_factory):
    import skimage.data as skd

    d = tmp_path_factory.mktemp("photos")
    paths = []
    for name in ("coffee", "brick"):
        img = getattr(skd, name)()
        img = img if img.ndim == 3 else np.repeat(img[..., None], 3, 2)
        img = cv2.resize(img, (300, 240), interpolation=cv2.INTER_AREA)
        p = d / f"{name}.png"
        cv2.imwrite(str(p), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        paths.append(p)
    return paths


def ncc(a, b):
    a = a.astype(np.float64) - a.mean()
    b = b.astype(np.float64) - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum() + 1e-9))


def test_viewpoint_homography_hand_worked():
    w, h, f = 101, 81, 120.0
    assert np.allclose(S.viewpoint_homography(w, h, f, 0, 0, 0, 1.0), np.eye(3), atol=1e-12)
    c = np.array([[50.0, 40.0]])
    # roll 90 degrees: rotation about the image centre; (60, 40) -> (50, 50)
    H = S.viewpoint_homography(w, h, f, 0, 0, 90, 1.0)
    np.testing.assert_allclose(G.apply_homography(H, [[60.0, 40.0]]), [[50.0, 50.0]], atol=1e-9)
    # camera twice as far: scale 1/2 about the centre
    H = S.viewpoint_homography(w, h, f, 0, 0, 0, 2.0)
    np.testing.assert_allclose(G.apply_homography(H, [[70.0, 40.0]]), [[60.0, 40.0]], atol=1e-9)
    # tilt about the x axis: the centre stays, points on the tilt axis stay on it, and the image of a
    # plane tilted by t shrinks along y by ~cos(t) near the centre (pinhole foreshortening)
    H = S.viewpoint_homography(w, h, f, 30, 0.0, 0, 1.0)
    np.testing.assert_allclose(G.apply_homography(H, c), c, atol=1e-9)
    y = G.apply_homography(H, [[50.0, 40.5], [50.0, 39.5]])
    assert abs(y[0, 1] - y[1, 1]) == pytest.approx(math.cos(math.radians(30)), rel=1e-3)
    assert abs(G.apply_homography(H, [[80.0, 40.0]])[0, 1] - 40.0) < 1e-9


def test_illumination_sequence_is_photometric_and_grows(photo_files):
    photo = S.load_photos(photo_files)[0][1]
    diffs = []
    for seed in range(3):
        images, Hs = S.illumination_sequence(photo, np.random.default_rng(seed))
        assert all(np.array_equal(H, np.eye(3)) for H in Hs) and len(images) == 6
        assert all(im.shape == photo.shape[:2] and im.dtype == np.uint8 for im in images)
        diffs.append([np.abs(im.astype(float) - images[0]).mean() for im in images[1:]])
    d = np.mean(diffs, axis=0)
    assert d[4] > d[0] > 0.5  # changes exist and grow with the index
    # structure is kept: edges stay where they are (gradient-magnitude correlation with the ref)
    g = [cv2.Laplacian(cv2.GaussianBlur(im, (0, 0), 2).astype(np.float32), cv2.CV_32F) for im in images]
    assert min(ncc(g[0], gi) for gi in g[1:]) > 0.3


def test_viewpoint_zero_jitter_patches_agree(photo_files):
    photo = S.load_photos(photo_files)[0][1]
    images, Hs = S.viewpoint_sequence(photo, np.random.default_rng(4))
    assert not np.allclose(Hs[4], np.eye(3), atol=1e-3)
    tracks, ov, _ = extract_sequence(images, Hs, np.random.default_rng(0), max_patches=40, jitter="none")
    assert len(tracks) >= 15
    nccs = np.array([[ncc(t[0], t[j]) for j in range(1, 16)] for t in tracks])
    assert np.median(nccs) > 0.9


def test_synthesize_small_and_deterministic(tmp_path, photo_files):
    kw = dict(photos=photo_files, num_illum=1, num_view=2, max_patches=12, progress=False)
    a = S.synthesize(tmp_path / "a", seed=1, **kw)
    b = S.synthesize(tmp_path / "b", seed=1, **kw)
    c = S.synthesize(tmp_path / "c", seed=2, **kw)
    ds = load_dataset(a, progress=False)
    assert ds.names == ["i_coffee", "v_brick", "v_coffee"] and ds.patch_size == 65
    meta = json.loads((a / "dataset.json").read_text())
    assert meta["generator"] == "hpatches_kit.data.synth" and meta["counts"]["tracks"] == ds.num_tracks
    assert load_splits(a / "splits.json")["a"]["test"]

    def files(o):
        return {str(p.relative_to(o)): p.read_bytes() for p in sorted(o.rglob("*")) if p.is_file()}

    assert files(a) == files(b)
    assert files(a)["v_brick/h3.png"] != files(c)["v_brick/h3.png"]


def test_noise_twins_levels(tmp_path, photo_files):
    out = S.synthesize(
        tmp_path / "n", photos=photo_files[:1], num_illum=1, num_view=1, max_patches=30, noise=True, progress=False
    )
    ds = load_dataset(out, noise=True, progress=False)
    assert ds.patch_size == 32 and ds.has_noise
    tr, _ = ds.all_tracks()
    nz, _ = ds.all_tracks(noisy=True)
    resid = nz.astype(float) - tr
    mid = (tr > 60) & (tr < 195)  # away from clipping
    from hpatches_kit.data import type_index

    for t in ["ref", "e1", "h1", "t1", "t5"]:
        j = type_index(t)
        std = resid[:, j][mid[:, j]].std()
        assert std == pytest.approx(noise_level(t), rel=0.1), t
    assert noise_level("ref") == NOISE_LEVELS["easy"]


def test_make_nhpatches_and_default_build(tmp_path, photo_files, monkeypatch):
    root = S.build_default_dataset(
        tmp_path / "emb", seed=0, progress=False, num_illum=1, num_view=1, max_patches=10, photos=photo_files[:1]
    )
    assert (root / "COMPLETE").is_file()
    hp = load_dataset(root / "hpatches", progress=False)
    nh = load_dataset(root / "n-hpatches", noise=True, progress=False)
    assert hp.patch_size == 65 and nh.patch_size == 32 and hp.names == nh.names
    from hpatches_kit.data import resize_patches

    np.testing.assert_array_equal(nh[hp.names[0]].tracks, resize_patches(hp[hp.names[0]].tracks, 32))
    assert (root / "n-hpatches" / "splits.json").read_bytes() == (root / "hpatches" / "splits.json").read_bytes()

    # an interrupted build leaves nothing half-made (and keeps the older complete build)
    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(S, "make_nhpatches", boom)
    with pytest.raises(KeyboardInterrupt):
        S.build_default_dataset(
            tmp_path / "emb2", progress=False, num_illum=1, num_view=1, max_patches=5, photos=photo_files[:1]
        )
    assert not (tmp_path / "emb2").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb"]
    with pytest.raises(KeyboardInterrupt):
        S.build_default_dataset(root, progress=False, num_illum=1, num_view=1, max_patches=5, photos=photo_files[:1])
    assert (root / "COMPLETE").is_file() and load_dataset(root / "hpatches", progress=False).num_tracks == hp.num_tracks


def test_bad_photo_names_the_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 nope")
    with pytest.raises(DataError, match="broken.jpg.*decode"):
        S.synthesize(tmp_path / "o", photos=[bad], progress=False)
    with pytest.raises(DataError, match="missing.png.*missing"):
        S.load_photos([tmp_path / "missing.png"])
    assert not (tmp_path / "o").exists()


def test_default_photos_load_offline():
    photos = S.load_photos(None)
    assert len(photos) >= 14  # 11 from scikit-image, 2 from scikit-learn, 1 from matplotlib
    assert all(p.dtype == np.float32 and p.ndim == 3 and max(p.shape[:2]) <= S.MAX_SIDE for _, p in photos)
    plan = S._plan(photos, S.DEFAULT_NUM_ILLUM, S.DEFAULT_NUM_VIEW, S.DEFAULT_NUM_ZOOM, S.DEFAULT_NUM_BLUR)
    assert len({n for n, _, _ in plan}) == len(plan) == 40


def test_noisy_tracks_scale_multiplies_every_level():
    """On mid-grey tracks (no clipping) the noise std of each image type is scale x its N-HPatches level."""
    from hpatches_kit.data.noise import noisy_tracks
    from hpatches_kit.layout import TYPES

    clean = np.full((400, len(TYPES), 8, 8), 128, np.uint8)
    for scale in (0.5, 1.5):  # up to sigma 45: clipping at 0 / 255 (2.8 sigma from 128) stays negligible
        n = noisy_tracks(clean, np.random.default_rng(0), scale=scale).astype(np.float64) - 128
        for j, t in enumerate(TYPES):
            assert abs(n[:, j].std() - scale * noise_level(t)) < 0.03 * scale * noise_level(t), (t, scale)
    np.testing.assert_array_equal(noisy_tracks(clean, np.random.default_rng(0), scale=0.0), clean)
    with pytest.raises(ValueError, match="scale"):
        noisy_tracks(clean, np.random.default_rng(0), scale=-1.0)
