"""Per-view orientation/scale noise (issue 34): the measurement on a known homography, the quantile tables, the
TensorFlow draws against their NumPy reference, the patch warp against OpenCV, and the S x K pipelines (same
batches for the same seed, static shapes, the first view untouched, the drawn angles in the batch)."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from hpatches_kit.data.keypoints import measure_keypoint_errors
from hpatches_kit.data.view_noise import PRESETS, QUANTILE_PROBS, ViewNoise, error_quantiles, resolve_view_noise


def _textured(h=240, w=240, seed=0):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 3.0)
    img = (img - img.min()) / (img.max() - img.min())
    return (img * 255).astype(np.uint8)


def test_measurement_on_an_exact_rotation_reads_the_errors_of_the_detector_not_of_the_rotation():
    # rotate an image by 30 degrees about its centre: every re-detected keypoint's expected orientation is its
    # reference orientation + 30 (hand-worked), and an exact rotation leaves the dominant orientation nearly
    # unchanged relative to the content, so most errors are small.
    ref = _textured()
    c = (119.5, 119.5)
    A = cv2.getRotationMatrix2D(c, -30.0, 1.0)  # OpenCV: positive = counter-clockwise on screen; -30 turns y-down +30
    img = cv2.warpAffine(ref, A, (240, 240), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    H = np.vstack([A, [0, 0, 1]])
    m = measure_keypoint_errors(ref, img, H)
    assert len(m["angle"]) >= 30
    assert np.median(np.abs(m["angle"])) < 5.0
    assert np.median(np.abs(m["log2_scale"])) < 0.1
    # expected angle = reference orientation turned by H's local rotation (hand-worked: +30 degrees mod 360)
    from hpatches_kit.data.keypoints import keypoint_orientations

    a_ref = np.degrees(keypoint_orientations(ref, m["ref_keypoints"]))
    d = (m["expected_angle"] - a_ref + 180) % 360 - 180
    np.testing.assert_allclose(d, 30.0, atol=1e-6)


def test_quantile_table_sampling_reproduces_the_distribution():
    rng = np.random.default_rng(0)
    heavy = np.concatenate([rng.laplace(0, 5, 9000), rng.uniform(-180, 180, 1000)])  # a core and 10% outliers
    vn = ViewNoise(
        "t", angle_quantiles=tuple(error_quantiles(heavy)), log2_scale_quantiles=tuple(error_quantiles(heavy / 100))
    )
    a, s = vn.sample_numpy(200_000, np.random.default_rng(1))
    for q in (0.05, 0.25, 0.5, 0.75, 0.95, 0.99):
        assert abs(np.quantile(a, q) - np.quantile(heavy, q)) < 1.0 + 0.02 * abs(np.quantile(heavy, q))
    assert abs(np.mean(np.abs(a) > 90) - np.mean(np.abs(heavy) > 90)) < 0.01  # the heavy tail is kept
    half = resolve_view_noise(vn, strength=0.5)
    a2, _ = half.sample_numpy(200_000, np.random.default_rng(1))
    np.testing.assert_allclose(a2, 0.5 * a)


def test_tf_draws_equal_the_numpy_interpolation_of_the_same_uniforms():
    import tensorflow as tf

    vn = resolve_view_noise("dog")
    seed = tf.constant([3, 4], tf.int64)
    angle, scale = vn.sample_tf([64, 2], seed)
    assert angle.shape == (64, 2) and scale.shape == (64, 2)
    u = tf.random.stateless_uniform([64, 2], tf.random.experimental.stateless_fold_in(seed, 11)).numpy()
    ref = np.interp(u, vn.probs, vn.angle_quantiles)
    np.testing.assert_allclose(np.degrees(angle.numpy()), ref, rtol=1e-4, atol=1e-3)
    u2 = tf.random.stateless_uniform([64, 2], tf.random.experimental.stateless_fold_in(seed, 12)).numpy()
    np.testing.assert_allclose(np.log2(scale.numpy()), np.interp(u2, vn.probs, vn.log2_scale_quantiles), atol=1e-4)
    a2, _ = vn.sample_tf([64, 2], seed)
    np.testing.assert_array_equal(angle.numpy(), a2.numpy())  # stateless: same seed, same draws


def test_dog_preset_is_a_measured_heavy_tailed_table():
    assert "dog" in PRESETS and "none" in PRESETS
    vn = resolve_view_noise("dog")
    assert vn.active and len(vn.angle_quantiles) == len(QUANTILE_PROBS)
    assert vn.source["data"].startswith("synthetic")  # never fitted on the real validation images
    q = np.asarray(vn.angle_quantiles)
    assert q[0] < -90 and q[-1] > 90  # tails: gross orientation mistakes are part of the table
    assert not resolve_view_noise("none").active


def test_resolve_view_noise_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="one of"):
        resolve_view_noise("sift-ish")
    with pytest.raises(ValueError, match="not found"):
        resolve_view_noise(str(tmp_path / "x.json"))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"probs": [0, 1], "angle_quantiles": [5, 1]}))
    with pytest.raises(ValueError, match="non-decreasing"):
        resolve_view_noise(str(bad))
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps(resolve_view_noise("dog").to_json()))
    assert resolve_view_noise(str(ok)).angle_quantiles == resolve_view_noise("dog").angle_quantiles


@pytest.mark.parametrize("angle_deg,mag", [(20.0, 1.0), (-75.0, 1.0), (0.0, 1.3), (35.0, 0.8)])
def test_perturb_views_matches_opencv(angle_deg, mag):
    import tensorflow as tf

    from hpatches_kit.training.pipelines import perturb_views

    p = 32
    x = _textured(p, p, 1).astype(np.float32)
    out = perturb_views(tf.constant(x[None]), tf.constant([math.radians(angle_deg)]), tf.constant([mag])).numpy()[0]
    # reference: output q samples input at c + R(angle) (q - c) / mag  (R the y-down image-coordinate rotation)
    c = (p - 1) / 2.0
    a = math.radians(angle_deg)
    M = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) / mag
    inv = np.hstack([M, (np.array([c, c]) - M @ np.array([c, c]))[:, None]])
    ref = cv2.warpAffine(x, inv, (p, p), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
    inner = np.s_[10:22, 10:22]  # away from the borders, where the two fills differ
    np.testing.assert_allclose(out[inner], ref[inner], atol=0.6)


def _tracks(t=16, p=32, seed=0):
    base = np.stack([_textured(p, p, seed + 10 + i) for i in range(t)])
    return np.repeat(base[:, None], 16, axis=1)  # every view identical: any difference is the noise


def test_pipeline_view_noise_first_view_untouched_others_rotated_by_the_drawn_angle():
    import tensorflow as tf

    from hpatches_kit.training.pipelines import make_sk_batch, perturb_views

    tracks = _tracks()
    table = ViewNoise("rot", angle_quantiles=tuple(np.linspace(-40, 40, len(QUANTILE_PROBS))))
    x, y = make_sk_batch(tf.constant(tracks[:8]), 0, 5, 2, augment=True, gain=0.0, offset=0.0, view_noise=table)
    x = x.numpy()[..., 0].reshape(8, 2, 32, 32)
    np.testing.assert_array_equal(y.numpy(), np.repeat(np.arange(8), 2))
    # the views drawn are identical, so view 0 == the track's patch and view 1 == it rotated by the draw
    np.testing.assert_allclose(x[:, 0], tracks[:8, 0].astype(np.float32), atol=1e-3)
    key = tf.stack([tf.constant(5, tf.int64), tf.constant(0, tf.int64)])
    angle, _ = table.sample_tf([8, 2], tf.random.experimental.stateless_fold_in(key, 5))
    want = perturb_views(tf.constant(tracks[:8, 0].astype(np.float32)), angle[:, 1], tf.ones([8])).numpy()
    np.testing.assert_allclose(x[:, 1], want, atol=1e-3)
    assert np.abs(x[:, 1] - x[:, 0]).mean() > 1.0  # it did rotate


def test_descriptor_dataset_with_view_noise_is_deterministic_and_static():
    from hpatches_kit.training.pipelines import descriptor_dataset

    tracks = _tracks()
    ds1 = descriptor_dataset(tracks, 8, 2, seed=3, view_noise="dog")
    ds2 = descriptor_dataset(tracks, 8, 2, seed=3, view_noise="dog")
    assert ds1.element_spec[0].shape == (16, 32, 32, 1)  # static: TPU-ready
    a = [b[0].numpy() for b in ds1.take(3)]
    b = [b[0].numpy() for b in ds2.take(3)]
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    c = next(iter(descriptor_dataset(tracks, 8, 2, seed=4, view_noise="dog")))[0].numpy()
    assert not np.array_equal(a[0], c)


def test_extraction_view_noise_turns_each_target_frame_by_the_drawn_angle():
    # an identity "sequence" without jitter: every target view is the reference patch, except for the view
    # noise; a table that always draws +90 degrees (y down) must give exactly np.rot90(ref, 1) (hand-worked:
    # P_t(u, v) = P_r(-v, u))
    from hpatches_kit.data.extract import extract_sequence, resolve_jitter

    img = _textured(200, 200, 3)
    quarter = ViewNoise(
        "q", angle_quantiles=(90.0,) * len(QUANTILE_PROBS), log2_scale_quantiles=(0.0,) * len(QUANTILE_PROBS)
    )
    spec = resolve_jitter("none", 1.0, quarter)
    tracks, _, _ = extract_sequence(
        [img, img], [np.eye(3)], np.random.default_rng(0), max_patches=5, jitter=spec, patch_size=33
    )
    assert len(tracks) >= 3
    for t in tracks:
        ref = t[0].astype(np.float32)
        for view in t[1:]:
            assert np.abs(view.astype(np.float32) - np.rot90(ref, 1)).mean() < 2.0
            assert np.abs(view.astype(np.float32) - ref).mean() > 5.0
    plain, _, _ = extract_sequence(
        [img, img], [np.eye(3)], np.random.default_rng(0), max_patches=5, jitter=resolve_jitter("none"), patch_size=33
    )
    assert np.abs(plain[:, 1:].astype(np.float32) - plain[:, :1]).mean() < 1.0  # without it: the same patch
