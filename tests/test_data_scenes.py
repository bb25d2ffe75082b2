"""Zoom and blur sequences (hpatches_kit.data.scenes), parallel and jitter-scaled synthesis, extraction's
--jitter-scale and the Oxford ``H1toNp.txt`` variant: checked against brute-force warps and hand-worked values."""

import json
import math
import shutil

import cv2
import numpy as np
import pytest

from hpatches_kit.data import geometry as G
from hpatches_kit.data import load_dataset
from hpatches_kit.data import scenes as Z
from hpatches_kit.data import synth as S
from hpatches_kit.data.extract import extract_dataset, extract_sequence, read_source_sequence


def _photo(h=200, w=260, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (h // 8, w // 8, 3)).astype(np.float32)
    x = cv2.resize(x, (w, h), interpolation=cv2.INTER_CUBIC)
    x += rng.normal(0, 0.08, (h, w, 3)).astype(np.float32)
    return np.clip(cv2.GaussianBlur(x, (0, 0), 1.0), 0, 1)


def _bilinear(img, xs, ys):
    """Brute-force bilinear sample with reflect-101 borders (the independent reference)."""
    h, w = img.shape
    out = np.empty(xs.shape)
    for i, (x, y) in enumerate(zip(xs.ravel(), ys.ravel())):
        x0, y0 = int(math.floor(x)), int(math.floor(y))
        ax, ay = x - x0, y - y0
        acc = 0.0
        for dy, wy in ((0, 1 - ay), (1, ay)):
            for dx, wx in ((0, 1 - ax), (1, ax)):
                xx, yy = x0 + dx, y0 + dy
                xx = -xx if xx < 0 else (2 * (w - 1) - xx if xx > w - 1 else xx)
                yy = -yy if yy < 0 else (2 * (h - 1) - yy if yy > h - 1 else yy)
                acc += wx * wy * img[yy, xx]
        out.ravel()[i] = acc
    return out


def ncc(a, b):
    a = a.astype(np.float64) - a.mean()
    b = b.astype(np.float64) - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum() + 1e-12))


def test_zoom_homography_hand_worked():
    w, h = 101, 81
    c = np.array([50.0, 40.0])
    assert np.allclose(Z.zoom_homography(w, h, 1.0, 0.0), np.eye(3), atol=1e-12)
    # zoom out 2x: a point 10 px right of the centre lands 5 px right of it
    np.testing.assert_allclose(
        G.apply_homography(Z.zoom_homography(w, h, 2.0, 0.0), [c + [10, 0]]), [c + [5, 0]], atol=1e-9
    )
    # roll 90 degrees (x right, y down): (10, 0) -> (0, 10) about the centre
    np.testing.assert_allclose(
        G.apply_homography(Z.zoom_homography(w, h, 1.0, 90.0), [c + [10, 0]]), [c + [0, 10]], atol=1e-9
    )
    H = Z.zoom_homography(w, h, 3.0, 30.0)
    assert math.sqrt(abs(np.linalg.det(H[:2, :2]))) == pytest.approx(1 / 3.0, rel=1e-9)


def test_render_view_equals_brute_force_prefiltered_warp():
    grey = _photo()[..., 0]
    h, w = grey.shape
    zoom = 2.5
    H = Z.zoom_homography(w, h, zoom, 37.0, shift=(3.0, -2.0))
    out = Z.render_view(grey, H, (w, h))
    # independent reference: blur by the camera footprint (psf * zoom, minus the scene's own psf), then
    # sample src = H^-1 x bilinearly for every output pixel
    sigma = math.sqrt((Z.CAMERA_PSF * zoom) ** 2 - Z.CAMERA_PSF**2)
    pre = cv2.GaussianBlur(grey, (0, 0), sigma)
    rng = np.random.default_rng(1)
    xi, yi = rng.integers(0, w, 3000), rng.integers(0, h, 3000)
    src = G.apply_homography(np.linalg.inv(H), np.stack([xi, yi], 1).astype(float))
    keep = (src[:, 0] > 1) & (src[:, 0] < w - 2) & (src[:, 1] > 1) & (src[:, 1] < h - 2)
    xi, yi, src = xi[keep][:300], yi[keep][:300], src[keep][:300]
    assert len(xi) == 300
    ref = _bilinear(pre.astype(np.float64), src[:, 0], src[:, 1])
    np.testing.assert_allclose(out[yi, xi], ref, atol=2e-3)  # OpenCV's fixed-point bilinear weights: ~1/32 px
    assert np.std(ref) > 0.02  # the test content is not flat
    # no anti-aliasing needed when the view magnifies: the warp alone
    Hm = Z.zoom_homography(w, h, 0.5, 0.0)
    np.testing.assert_array_equal(
        Z.render_view(grey, Hm, (w, h)),
        cv2.warpPerspective(grey, Hm, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101),
    )


def test_zoom_sequence_shapes_growth_and_determinism():
    photo = _photo(240, 320, seed=2)
    images, Hs = Z.zoom_sequence(photo, np.random.default_rng(5))
    again, Hs2 = Z.zoom_sequence(photo, np.random.default_rng(5))
    assert len(images) == 6 and len(Hs) == 5
    assert all(im.shape == (240, 320) and im.dtype == np.uint8 for im in images)
    assert all(np.array_equal(a, b) for a, b in zip(images, again)) and all(
        np.array_equal(a, b) for a, b in zip(Hs, Hs2)
    )
    scales = [math.sqrt(abs(np.linalg.det(H[:2, :2]))) for H in Hs]
    assert all(a > b for a, b in zip(scales, scales[1:])) and 1 / 4.1 < scales[-1] < 1 / 1.55


def test_zoom_sequence_images_follow_their_homographies():
    """Each target image equals the reference scene warped by its homography (brute-force sampling of the
    photo's grey image), up to camera noise, lighting and the target's blur."""
    photo = _photo(240, 320, seed=3)
    grey = photo @ np.array([0.299, 0.587, 0.114], np.float32)  # BT.601 luma, as the camera pipeline
    images, Hs = Z.zoom_sequence(photo, np.random.default_rng(7))
    rng = np.random.default_rng(0)
    for k in (0, 2, 4):
        H = Hs[k]
        m = 1 / math.sqrt(abs(np.linalg.det(H[:2, :2])))
        pre = cv2.GaussianBlur(grey, (0, 0), math.sqrt(max((0.5 * m) ** 2 - 0.25, 0.01)))
        # sample target pixels whose source lies well inside the photo
        pts = []
        while len(pts) < 400:
            x, y = rng.uniform(0, 320), rng.uniform(0, 240)
            s = G.apply_homography(np.linalg.inv(H), [[x, y]])[0]
            if 4 < s[0] < 316 and 4 < s[1] < 236:
                pts.append((int(x), int(y), s[0], s[1]))
        pts = np.array(pts)
        ref = _bilinear(pre.astype(np.float64), pts[:, 2], pts[:, 3])
        got = images[k + 1][pts[:, 1].astype(int), pts[:, 0].astype(int)]
        assert ncc(ref, got) > 0.85, k
        # and a wrong homography does not explain the image
        wrong = _bilinear(pre.astype(np.float64), pts[:, 2] + 7, pts[:, 3] - 5)
        assert ncc(wrong, got) < ncc(ref, got) - 0.1


def test_zoom_tracks_without_jitter_agree():
    photo = _photo(240, 320, seed=4)
    images, Hs = Z.zoom_sequence(photo, np.random.default_rng(2))
    tracks, ov, _ = extract_sequence(images, Hs, np.random.default_rng(0), max_patches=30, jitter="none")
    assert len(tracks) >= 10 and tracks.shape[1:] == (16, 65, 65)
    blurred = [cv2.GaussianBlur(t.astype(np.float32), (0, 0), 2.5) for t in tracks[:, [0, 5]].reshape(-1, 65, 65)]
    pairs = np.array(blurred).reshape(-1, 2, 65, 65)
    assert np.median([ncc(a, b) for a, b in pairs]) > 0.8  # ref vs the most zoomed-out view
    shuffled = [ncc(pairs[i, 0], pairs[(i + 1) % len(pairs), 1]) for i in range(len(pairs))]
    assert np.median(shuffled) < 0.5


def test_blur_kernels_hand_worked():
    d = Z.blur_kernel("defocus", 4.0)
    assert d.sum() == pytest.approx(1.0, abs=1e-6)
    support = (d > 0).sum()
    assert abs(support - math.pi * 4.5**2) < 0.25 * math.pi * 4.5**2  # a disk of radius ~4 (+ the soft edge)
    g = Z.blur_kernel("gaussian", 1.5)
    k1 = cv2.getGaussianKernel(g.shape[0], 1.5).astype(np.float64)
    np.testing.assert_allclose(g, k1 @ k1.T, atol=1e-6)
    m = Z.blur_kernel("motion", 9.0, angle=0.0)
    rows = np.nonzero(m.sum(1) > 1e-6)[0]
    assert list(rows) == [m.shape[0] // 2]  # a horizontal line, one row thick
    assert (m[m.shape[0] // 2] > 0).sum() == pytest.approx(9, abs=1)
    mv = Z.blur_kernel("motion", 9.0, angle=math.pi / 2)
    np.testing.assert_allclose(mv, m.T, atol=1e-6)
    with pytest.raises(ValueError, match="unknown blur kind"):
        Z.blur_kernel("bokeh", 2.0)


def test_blur_sequence_identity_and_growing_blur():
    import skimage.data as skd

    photo = np.repeat(skd.camera()[::2, ::2, None], 3, 2).astype(np.float32) / 255.0

    def detail(im):  # band-pass (DoG 1 - 2 px) energy: edges, not pixel noise
        f = im.astype(np.float32)
        return float((cv2.GaussianBlur(f, (0, 0), 1.0) - cv2.GaussianBlur(f, (0, 0), 2.0)).var())

    for seed in range(3):
        images, Hs = Z.blur_sequence(photo, np.random.default_rng(seed))
        assert all(np.array_equal(H, np.eye(3)) for H in Hs)
        sharp = [detail(im) for im in images]
        assert sharp[5] < 0.8 * sharp[1] and sharp[3] < sharp[1] and sharp[5] < 1.05 * sharp[3], sharp


@pytest.fixture(scope="module")
def photo_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    paths = []
    for i in range(2):
        p = d / f"p{i}.png"
        cv2.imwrite(str(p), (255 * _photo(240, 300, seed=10 + i)).astype(np.uint8))
        paths.append(p)
    return paths


def test_synthesize_new_kinds_parallel_equals_serial(tmp_path, photo_files):
    kw = dict(
        photos=photo_files,
        num_illum=1,
        num_view=0,
        num_zoom=1,
        num_blur=1,
        max_patches=8,
        progress=False,
        jitter_scale=(0.25, 1.0),
        seed=3,
        size=32,
    )
    a = S.synthesize(tmp_path / "a", workers=1, **kw)
    b = S.synthesize(tmp_path / "b", workers=2, **kw)

    def files(o):
        return {str(p.relative_to(o)): p.read_bytes() for p in sorted(o.rglob("*")) if p.is_file()}

    assert files(a) == files(b)
    ds = load_dataset(a, progress=False)
    assert sorted(ds.names) == ["i_blur-p1", "i_p0", "v_zoom-p0"] and ds.patch_size == 32
    meta = json.loads((a / "dataset.json").read_text())
    scales = meta["parameters"]["jitter_scale_per_sequence"]
    assert sorted(scales) == sorted(ds.names) and all(0.25 <= v <= 1.0 for v in scales.values())
    assert len(set(scales.values())) == 3
    with pytest.raises(ValueError, match="jitter_scale range"):
        S.synthesize(
            tmp_path / "c", photos=photo_files, num_illum=1, num_view=0, jitter_scale=(1.0, 0.5), progress=False
        )
    assert not (tmp_path / "c").exists()


def test_default_photos_are_natural_and_offline():
    names = [n for n, _ in S.load_photos(None)]
    assert {"china", "flower", "grace_hopper", "astronaut"} <= set(names)
    assert not {"text", "page", "moon", "hubble_deep_field", "cell", "retina"} & set(names)


def _oxford_folder(tmp_path, txt: bool):
    d = tmp_path / ("oxtxt" if txt else "ox")
    d.mkdir()
    photo = (255 * _photo(240, 320, seed=6)[..., 0]).astype(np.uint8)
    for i in range(1, 7):
        H = Z.zoom_homography(320, 240, 1.0 + 0.1 * (i - 1), 5.0 * (i - 1))
        cv2.imwrite(
            str(d / f"img{i}.png"), cv2.warpPerspective(photo, H, (320, 240), borderMode=cv2.BORDER_REFLECT_101)
        )
        if i > 1:
            np.savetxt(d / (f"H1to{i}p.txt" if txt else f"H1to{i}p"), H)
    return d


def test_oxford_txt_homographies_and_jitter_scale(tmp_path):
    plain, txt = _oxford_folder(tmp_path, False), _oxford_folder(tmp_path, True)
    n1, im1, H1 = read_source_sequence(plain)
    n2, im2, H2 = read_source_sequence(txt)
    assert n1 == "v_ox" and n2 == "v_oxtxt"
    assert all(np.allclose(a, b) for a, b in zip(H1, H2))
    src = tmp_path / "src"
    src.mkdir()
    shutil.move(str(txt), src / "oxtxt")
    full = extract_dataset(src, tmp_path / "full", progress=False, max_patches=40)
    small = extract_dataset(src, tmp_path / "small", progress=False, max_patches=40, jitter_scale=1 / 3)
    mf = json.loads((full / "dataset.json").read_text())
    ms = json.loads((small / "dataset.json").read_text())
    assert ms["parameters"]["jitter_scale"] == pytest.approx(1 / 3)
    for v in "eht":
        assert ms["parameters"]["jitter_magnitude"][v] == pytest.approx(mf["parameters"]["jitter_magnitude"][v] / 3)
        assert ms["overlap_median"][v] > mf["overlap_median"][v]
    assert mf["overlap_median"]["t"] == pytest.approx(0.60, abs=0.06)
    with pytest.raises(ValueError, match="jitter scale"):
        extract_dataset(src, tmp_path / "bad", progress=False, jitter_scale=-1)
