"""Detector-noise training tracks (issue 30): correspondences of independent detections against a brute-force
reprojection, track contents, determinism of ``synthesize(tracks="detector")`` under a seed, and the CLI flag."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from hpatches_kit.data.detector_tracks import detector_correspondences, detector_tracks, local_scale
from hpatches_kit.evaluation.image_matching import detect_keypoints, keypoint_patches

H_, W_ = 200, 260


def _texture(rng):
    img = cv2.GaussianBlur(rng.normal(128, 60, (H_, W_)).astype(np.float32), (0, 0), 2.0)
    for _ in range(40):
        x, y = int(rng.integers(10, W_ - 30)), int(rng.integers(10, H_ - 30))
        cv2.rectangle(
            img, (x, y), (x + int(rng.integers(6, 25)), y + int(rng.integers(6, 25))), float(rng.integers(0, 255)), -1
        )
    return np.clip(img, 0, 255).astype(np.uint8)


def _sequence(rng, n=3):
    ref = _texture(rng)
    c = np.array([[1, 0, W_ / 2], [0, 1, H_ / 2], [0, 0, 1.0]])
    Hs = []
    for k in range(1, n):
        a, s = np.deg2rad(6 * k), 1 + 0.08 * k
        A = np.array(
            [[s * np.cos(a), -s * np.sin(a), 2 * k], [s * np.sin(a), s * np.cos(a), -3 * k], [2e-4 * k, -1e-4 * k, 1]]
        )
        Hs.append(c @ A @ np.linalg.inv(c))
    return [ref] + [cv2.warpPerspective(ref, H, (W_, H_), flags=cv2.INTER_LINEAR) for H in Hs], Hs


def _disk_iou_raster(c1, r1, c2, r2, res=0.1):
    """IoU of two disks by counting the points of a fine grid (independent of the closed form)."""
    lo = np.minimum(c1 - r1, c2 - r2)
    hi = np.maximum(c1 + r1, c2 + r2)
    xs, ys = np.arange(lo[0], hi[0], res), np.arange(lo[1], hi[1], res)
    X, Y = np.meshgrid(xs, ys)
    a = (X - c1[0]) ** 2 + (Y - c1[1]) ** 2 <= r1 * r1
    b = (X - c2[0]) ** 2 + (Y - c2[1]) ** 2 <= r2 * r2
    return (a & b).sum() / max((a | b).sum(), 1)


def _project(H, p):
    q = np.array([p[0], p[1], 1.0]) @ H.T
    return q[:2] / q[2]


def test_local_scale_vs_finite_differences():
    rng = np.random.default_rng(0)
    _, Hs = _sequence(rng)
    for p in rng.uniform(0, 200, (5, 2)):
        e = 1e-4
        J = np.column_stack(
            [
                (_project(Hs[1], p + [e, 0]) - _project(Hs[1], p - [e, 0])) / (2 * e),
                (_project(Hs[1], p + [0, e]) - _project(Hs[1], p - [0, e])) / (2 * e),
            ]
        )
        assert local_scale(Hs[1], p[None])[0] == pytest.approx(np.sqrt(abs(np.linalg.det(J))), rel=1e-5)


def test_correspondences_vs_brute_force_reprojection():
    rng = np.random.default_rng(1)
    images, Hs = _sequence(rng)
    kr, kt = detect_keypoints(images[0], "dog", 60), detect_keypoints(images[2], "dog", 60)
    idx, ov = detector_correspondences(kr, kt, Hs[1], min_overlap=0.6)
    e = 1e-4
    found = 0
    for i, (x, y, s) in enumerate(kr):
        q = _project(Hs[1], (x, y))
        J = np.column_stack(
            [
                (_project(Hs[1], (x + e, y)) - _project(Hs[1], (x - e, y))) / (2 * e),
                (_project(Hs[1], (x, y + e)) - _project(Hs[1], (x, y - e))) / (2 * e),
            ]
        )
        r = 5 * s * np.sqrt(abs(np.linalg.det(J)))
        ious = np.array(
            [_disk_iou_raster(q, r, kt[j, :2], 5 * kt[j, 2], res=max(r, 5 * kt[j, 2]) / 60) for j in range(len(kt))]
        )
        j = int(np.argmax(ious))
        if ious[j] >= 0.62:  # clearly above the threshold: must be found, and be this keypoint
            assert idx[i] == j, (i, j, ious[j], idx[i])
            found += 1
        elif ious[j] < 0.58:  # clearly below: no correspondence
            assert idx[i] == -1
        if idx[i] >= 0:
            assert ov[i] == pytest.approx(ious[idx[i]], abs=0.03)
    assert found >= 10


def test_detector_tracks_views_are_the_detected_patches():
    rng = np.random.default_rng(2)
    images, Hs = _sequence(rng, n=4)
    tracks, info = detector_tracks(images, Hs, max_tracks=30, max_keypoints=300, patch_size=33)
    assert tracks.shape[1:] == (16, 33, 33) and 5 <= len(tracks) <= 30
    assert np.all(info["views"] >= 3) and np.all(info["views"] == 1 + (info["target_index"] >= 0).sum(1))
    kps = info["keypoints"]
    for t in range(len(tracks)):
        ref = keypoint_patches(images[0], kps[0][info["ref_index"][t]][None], 33)[0]
        assert np.array_equal(tracks[t, 0], ref)
        for k in range(3):
            j = info["target_index"][t, k]
            if j >= 0:  # slot e_{k+1} holds image k+2's own detection, cut at its own frame
                want = keypoint_patches(images[k + 1], kps[k + 1][j][None], 33)[0]
                assert np.array_equal(tracks[t, 1 + k], want)
                p = np.array([kps[0][info["ref_index"][t], :2]])
                q = cv2.perspectiveTransform(p[None], Hs[k])[0, 0]
                assert np.linalg.norm(q - kps[k + 1][j, :2]) < 5 * kps[k + 1][j, 2]  # near the reprojection
    # ref keypoints of different tracks do not overlap much (no near-duplicate tracks)
    from hpatches_kit.data.geometry import circle_iou

    r = kps[0][info["ref_index"]]
    iou = circle_iou(r[:, None, :2], 5 * r[:, None, 2], r[None, :, :2], 5 * r[None, :, 2])
    assert np.all(iou[~np.eye(len(r), dtype=bool)] <= 0.5 + 1e-9)


def test_synthesize_detector_tracks_deterministic(tmp_path):
    from hpatches_kit.data.fsio import read_json
    from hpatches_kit.data.sequences import find_sequence_dirs, load_sequence
    from hpatches_kit.data.synth import synthesize

    kw = dict(
        num_illum=1,
        num_view=1,
        num_zoom=1,
        num_blur=0,
        max_patches=40,
        seed=3,
        progress=False,
        size=32,
        tracks="detector",
    )
    a = synthesize(tmp_path / "a", **kw)
    b = synthesize(tmp_path / "b", **kw, workers=2)
    c = synthesize(tmp_path / "c", **{**kw, "seed": 4})
    da, db, dc = (find_sequence_dirs(x) for x in (a, b, c))
    assert [d.name for d in da] == [d.name for d in db] and len(da) == 3
    ta = [load_sequence(d).tracks for d in da]
    assert all(np.array_equal(x, load_sequence(d).tracks) for x, d in zip(ta, db))
    assert all(0 < len(x) <= 40 and x.shape[1:] == (16, 32, 32) for x in ta)
    assert not all(
        np.array_equal(x, load_sequence(d).tracks) if len(x) == len(load_sequence(d).tracks) else False
        for x, d in zip(ta, dc)
    )
    assert read_json(a / "dataset.json")["parameters"]["tracks"] == "detector"
    with pytest.raises(ValueError, match="tracks"):
        synthesize(tmp_path / "d", **{**kw, "tracks": "bogus"})
