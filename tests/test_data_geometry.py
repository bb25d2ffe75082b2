"""Ellipse overlap and jitter calibration against hand-worked cases and a dense-raster reference."""

import math

import numpy as np
import pytest

from hpatches_kit.data import geometry as G


def lens_iou(r, d):
    """Hand-worked IoU of two circles of radius r at distance d (textbook lens area)."""
    inter = 2 * r * r * math.acos(d / (2 * r)) - (d / 2) * math.sqrt(4 * r * r - d * d)
    return inter / (2 * math.pi * r * r - inter)


def ellipse_iou_raster(frame_a, frame_b, res: int = 512) -> float:
    """Dense-raster IoU of two ellipses (the independent reference of :func:`G.ellipse_iou`)."""
    fa, fb = G._as3(frame_a), G._as3(frame_b)
    rel = np.linalg.inv(fa) @ fb
    pts = G.ellipse_polygon(rel, 64)
    lo = np.minimum(pts.min(0), -1.0) - 0.05
    hi = np.maximum(pts.max(0), 1.0) + 0.05
    xs = np.linspace(lo[0], hi[0], res)
    ys = np.linspace(lo[1], hi[1], res)
    X, Y = np.meshgrid(xs, ys)
    in_a = X**2 + Y**2 <= 1
    inv = np.linalg.inv(rel)
    U = inv[0, 0] * X + inv[0, 1] * Y + inv[0, 2]
    V = inv[1, 0] * X + inv[1, 1] * Y + inv[1, 2]
    in_b = U**2 + V**2 <= 1
    union = np.count_nonzero(in_a | in_b)
    return float(np.count_nonzero(in_a & in_b) / union) if union else 0.0


def jitter_frame(rot, sx, sy, axis, tx, ty) -> np.ndarray:
    """One jitter affine, scalar (the reference of :func:`G.sample_jitter`):
    ``T(tx,ty) R(rot) R(axis) diag(sx, sy) R(-axis)``."""
    ca, sa = math.cos(axis), math.sin(axis)
    Ra = np.array([[ca, -sa], [sa, ca]])
    S = Ra @ np.diag([sx, sy]) @ Ra.T
    cr, sr = math.cos(rot), math.sin(rot)
    L = np.array([[cr, -sr], [sr, cr]]) @ S
    return np.array([[L[0, 0], L[0, 1], tx], [L[1, 0], L[1, 1], ty], [0.0, 0.0, 1.0]])


def test_two_equal_circles():
    # r=1, d=1: lens = 2pi/3 - sqrt(3)/2 -> IoU 0.24301
    assert lens_iou(1, 1) == pytest.approx(0.24301, abs=1e-5)
    for r, d in [(1.0, 1.0), (5.0, 3.0), (2.0, 0.5)]:
        a, b = G.region_frame(10, 20, r, 0.3), G.region_frame(10 + d, 20, r, -1.1)
        want = lens_iou(r, d)
        assert G.ellipse_iou(a, b) == pytest.approx(want, abs=2e-4)
        assert ellipse_iou_raster(a, b, 1024) == pytest.approx(want, abs=5e-3)
        assert float(G.circle_iou([10, 20], r, [10 + d, 20], r)) == pytest.approx(want, abs=1e-9)


def test_circle_vs_scaled_copy_and_disjoint():
    for s in (1.2, 1.5, 3.0):
        assert G.ellipse_iou(G.region_frame(0, 0, 1, 0), G.region_frame(0, 0, s, 0.7)) == pytest.approx(
            1 / s**2, abs=2e-4
        )
        assert float(G.circle_iou([0, 0], 1, [0, 0], s)) == pytest.approx(1 / s**2)
    assert G.ellipse_iou(G.region_frame(0, 0, 1, 0), G.region_frame(3, 0, 1, 0)) == 0.0
    assert G.ellipse_iou(np.eye(3), np.eye(3)) == pytest.approx(1.0, abs=1e-6)


def test_perpendicular_ellipses_closed_form():
    # x^2/a^2 + y^2/b^2 <= 1 and the same rotated 90 deg: intersection = 4ab atan(b/a)
    a, b = 3.0, 1.0
    e1 = np.diag([a, b, 1.0])
    e2 = np.array([[0, -b, 0], [a, 0, 0], [0, 0, 1.0]])
    inter = 4 * a * b * math.atan(b / a)
    want = inter / (2 * math.pi * a * b - inter)
    assert G.ellipse_iou(e1, e2) == pytest.approx(want, abs=3e-4)
    assert ellipse_iou_raster(e1, e2, 1500) == pytest.approx(want, abs=5e-3)


def test_random_ellipses_match_raster_and_affine_invariance():
    rng = np.random.default_rng(1)
    for _ in range(10):
        f1 = np.vstack([rng.normal(0, 1, (2, 3)), [0, 0, 1]])
        f2 = f1 @ G.sample_jitter(rng, 1.5, 1)[0]
        iou = G.ellipse_iou(f1, f2)
        assert iou == pytest.approx(ellipse_iou_raster(f1, f2, 1024), abs=6e-3)
        T = np.vstack([rng.normal(0, 2, (2, 3)), [0, 0, 1]])
        assert G.ellipse_iou(T @ f1, T @ f2) == pytest.approx(iou, abs=1e-4)


def test_sample_jitter_matches_scalar_composition():
    rng = np.random.default_rng(3)
    J = G.sample_jitter(rng, 1.0, 5)
    rng = np.random.default_rng(3)
    u, ax = rng.uniform(-1, 1, (5, 5)), rng.uniform(0, np.pi, 5)
    sh = G.JITTER_SHAPE
    for i in range(5):
        want = jitter_frame(
            math.radians(u[i, 0] * sh["rot_deg"]),
            math.exp(u[i, 1] * sh["log_scale"]),
            math.exp(u[i, 2] * sh["log_scale"]),
            ax[i],
            u[i, 3] * sh["trans"],
            u[i, 4] * sh["trans"],
        )
        np.testing.assert_allclose(J[i], want, atol=1e-12)
    assert np.allclose(G.sample_jitter(rng, 0.0, 3), np.eye(3))


def test_sample_jitter_matrix_properties():
    """Each frame is T(t) R(rot) S with S symmetric positive definite of eigenvalues (sx, sy), checked on
    the matrix itself (polar decomposition, SVD) against the documented draw (u ~ U(-1, 1)^5, axis ~ U(0, pi))
    scaled by the magnitude: rotation u0 * rot_deg * m degrees, singular values exp(u1, u2 * log_scale * m),
    translation u3, u4 * trans * m."""
    sh = G.JITTER_SHAPE
    for m in (0.7, 1.0, 2.0):
        rng = np.random.default_rng(11)
        J = G.sample_jitter(rng, m, 400)
        rng = np.random.default_rng(11)
        u, ax = rng.uniform(-1, 1, (400, 5)), rng.uniform(0, np.pi, 400)
        np.testing.assert_array_equal(J[:, 2], np.tile([0.0, 0.0, 1.0], (400, 1)))
        np.testing.assert_allclose(J[:, :2, 2], u[:, 3:5] * sh["trans"] * m, atol=1e-12)
        L = J[:, :2, :2]
        U, sv, Vt = np.linalg.svd(L)
        R = U @ Vt  # polar decomposition L = R S, S = V diag(sv) V^T
        np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-9)  # a rotation, no reflection
        rot = np.degrees(np.arctan2(R[:, 1, 0], R[:, 0, 0]))
        np.testing.assert_allclose(rot, u[:, 0] * sh["rot_deg"] * m, atol=1e-9)
        want_sv = np.sort(np.exp(u[:, 1:3] * sh["log_scale"] * m), axis=1)[:, ::-1]
        np.testing.assert_allclose(sv, want_sv, rtol=1e-9)
        S = np.einsum("nij,nik->njk", R, L)  # R^T L
        np.testing.assert_allclose(S, np.transpose(S, (0, 2, 1)), atol=1e-12)  # symmetric
        # eigenvector of sx lies along the drawn axis: S @ (cos a, sin a) = sx (cos a, sin a)
        e = np.stack([np.cos(ax), np.sin(ax)], 1)
        np.testing.assert_allclose(
            np.einsum("nij,nj->ni", S, e), np.exp(u[:, 1] * sh["log_scale"] * m)[:, None] * e, atol=1e-9
        )
        # and the ranges reach their bounds: |rot| <= 25 m deg, |log sv| <= 0.25 m, |t| <= 0.25 m
        assert np.abs(rot).max() == pytest.approx(sh["rot_deg"] * m, rel=0.02)
        assert np.abs(np.log(sv)).max() == pytest.approx(sh["log_scale"] * m, rel=0.02)
        assert np.abs(J[:, :2, 2]).max() == pytest.approx(sh["trans"] * m, rel=0.02)


def test_calibrated_jitter_hits_targets_on_fresh_samples():
    for v, target in G.JITTER_TARGETS.items():
        m = G.calibrate_jitter(target)
        fresh = G.sample_jitter(np.random.default_rng(99), m, 3000)
        # checked with the independent raster IoU on a subsample too
        med = float(np.median(G.jitter_overlaps(fresh)))
        assert med == pytest.approx(target, abs=0.015), v
        sub = fresh[:150]
        ras = np.median([ellipse_iou_raster(np.eye(3), j, 300) for j in sub])
        assert ras == pytest.approx(float(np.median(G.jitter_overlaps(sub))), abs=0.01)
    assert G.calibrate_jitter(0.85) < G.calibrate_jitter(0.72) < G.calibrate_jitter(0.6)
