"""Training tracks with *detector noise*: keypoints detected independently in every view of a sequence.

HPatches' tracks (:mod:`.extract`) reproject one reference region into every target and perturb it with i.i.d.
affine jitter. In whole-image matching the two regions of a correspondence come from two independent
detections instead, so they differ by the detector's own noise in position, scale and orientation, which is
correlated with the image content. A synthetic sequence knows its homographies, so such correspondences can be
found exactly as HPatches/Mikolajczyk define them:

1. detect keypoints in every image independently (:func:`hpatches_kit.evaluation.image_matching.detect_keypoints`);
2. cluster the reference keypoints (greedy, strongest first) so that no two kept reference regions overlap by
   more than ``max_self_overlap`` IoU (two near-identical reference regions would otherwise be labelled as
   different tracks);
3. map each reference measurement disk (radius ``magnification x scale``) into target k with the true
   homography (centre mapped, radius scaled by ``sqrt |det J|`` of the homography at the centre); the
   target keypoint whose disk overlaps it most is its correspondence when that IoU is at least
   ``min_overlap`` (Mikolajczyk's repeatability criterion: overlap error < 40% means IoU > 0.6);
4. cut every region exactly as the image-matching benchmark does
   (:func:`hpatches_kit.evaluation.image_matching.keypoint_patches`: each view gets *its own* detected
   position, scale and orientation);
5. a track = the reference patch + the patches of its corresponding detections in the targets (at least
   ``min_views - 1`` of them); the 16 slots of the HPatches layout (ref, e1..t5) are filled by cycling through
   the distinct views in image order, so ``e_k``/``h_k``/``t_k`` hold image k+1's detection when it has one.

In-image distractors: every detected reference keypoint that survives clustering becomes a track, including
repeated structures and near neighbours (down to ``max_self_overlap`` IoU), so the set holds the other
keypoints of the same image that a matcher must reject; the descriptor pipeline draws a batch's tracks at
random from all sequences, so they meet in a batch only by chance (no per-image batching yet).
"""

from __future__ import annotations

import numpy as np

from ..layout import TYPES
from . import geometry as G
from .detect import MAGNIFICATION, cluster_regions

__all__ = ["local_scale", "detector_correspondences", "detector_tracks"]


def local_scale(H, pts) -> np.ndarray:
    """``sqrt |det J|`` of homography ``H`` at each point: how much it scales areas' side lengths there.

    Args:
        H: ``(3, 3)`` homography.
        pts: ``(N, 2)`` points.

    Returns:
        ``(N,)`` float64.

    Example:
        >>> float(local_scale(np.diag([2.0, 2.0, 1.0]), np.zeros((1, 2)))[0])
        2.0
    """
    H = np.asarray(H, np.float64)
    p = np.column_stack([np.asarray(pts, np.float64).reshape(-1, 2), np.ones(len(pts))])
    w = p @ H[2]
    # det of the Jacobian of x -> (H p)_{xy} / (H p)_z is det(H) / w^3
    return np.sqrt(np.abs(np.linalg.det(H) / w**3))


def detector_correspondences(kp_ref, kp_tgt, H, min_overlap: float = 0.6, magnification: float = MAGNIFICATION):
    """Ground-truth correspondences between two independent sets of detections.

    Args:
        kp_ref: ``(N, >=3)`` reference keypoints x, y, scale.
        kp_tgt: ``(M, >=3)`` target keypoints.
        H: homography reference -> target.
        min_overlap: minimum IoU of the reprojected reference disk and the target disk.
        magnification: measurement-disk radius / scale.

    Returns:
        ``(index (N,) int64, overlap (N,) float64)``: for each reference keypoint the target keypoint whose disk
        overlaps its reprojected disk most, or -1 when the best IoU is below ``min_overlap``.

    Example:
        >>> ref = np.array([[10.0, 10.0, 2.0]]); tgt = np.array([[50.0, 50.0, 2.0], [20.5, 10.0, 2.0]])
        >>> detector_correspondences(ref, tgt, np.array([[1.0, 0, 10], [0, 1, 0], [0, 0, 1]]))[0].tolist()
        [1]
    """
    kp_ref, kp_tgt = np.asarray(kp_ref, np.float64), np.asarray(kp_tgt, np.float64)
    n = len(kp_ref)
    if n == 0 or len(kp_tgt) == 0:
        return np.full(n, -1, np.int64), np.zeros(n)
    q = G.apply_homography(H, kp_ref[:, :2])
    r = magnification * kp_ref[:, 2] * local_scale(H, kp_ref[:, :2])
    iou = G.circle_iou(q[:, None, :], r[:, None], kp_tgt[None, :, :2], magnification * kp_tgt[None, :, 2])
    best = np.argmax(iou, axis=1)
    ov = iou[np.arange(n), best]
    return np.where(ov >= min_overlap, best, -1).astype(np.int64), ov


def _inside(pts, shape, margin: float = 0.0) -> np.ndarray:
    h, w = shape[:2]
    return (
        np.isfinite(pts).all(1)
        & (pts[:, 0] >= margin)
        & (pts[:, 1] >= margin)
        & (pts[:, 0] <= w - 1 - margin)
        & (pts[:, 1] <= h - 1 - margin)
    )


def detector_tracks(
    images,
    Hs,
    max_tracks: int | None = None,
    detector: str = "dog",
    max_keypoints: int = 1000,
    min_overlap: float = 0.6,
    min_views: int = 3,
    max_self_overlap: float = 0.5,
    patch_size: int = 65,
    orientation: str = "dominant",
    magnification: float = MAGNIFICATION,
):
    """Tracks of independently detected correspondences of one sequence (see the module docstring).

    Args:
        images: ``[(H, W) uint8]``, the reference first (2 to 6 images).
        Hs: homographies reference -> image k, one per target.
        max_tracks: keep at most this many (the strongest reference keypoints first).
        detector: see :func:`hpatches_kit.evaluation.image_matching.detect_keypoints`.
        max_keypoints: keypoints detected per image.
        min_overlap: IoU needed for a correspondence.
        min_views: views a track needs (reference included).
        max_self_overlap: reference keypoints overlapping a stronger one by more IoU are dropped.
        patch_size, orientation, magnification: patch cutting, as in
            :func:`hpatches_kit.evaluation.image_matching.keypoint_patches`.

    Returns:
        ``(tracks (T, 16, P, P) uint8, info)``; ``info`` holds ``overlaps`` ``(T, n_targets)`` (NaN where a
        target has no correspondence), ``ref_index`` ``(T,)`` (row of the reference keypoint),
        ``target_index`` ``(T, n_targets)`` (-1 where none), ``keypoints`` (per image) and ``views`` ``(T,)``.

    Shape:
        - tracks: :math:`(T, 16, P, P)`, slot order ``ref, e1..e5, h1..h5, t1..t5``.
    """
    from .keypoints import detect_keypoints, keypoint_patches

    if len(images) < 2 or len(Hs) != len(images) - 1:
        raise ValueError(f"expected 2 to 6 images and one homography per target, got {len(images)} and {len(Hs)}")
    kps = [detect_keypoints(im, detector, max_keypoints, orientation=orientation) for im in images]
    ref = kps[0]
    keep = cluster_regions(ref[:, :2], magnification * ref[:, 2], max_self_overlap) if len(ref) else np.zeros(0, int)
    ref_idx = np.asarray(keep, np.int64)
    nt = len(Hs)
    tgt = np.full((len(ref_idx), nt), -1, np.int64)
    ovs = np.full((len(ref_idx), nt), np.nan)
    for k, H in enumerate(Hs):
        if len(ref_idx) == 0:
            break
        pts = ref[ref_idx, :2]
        visible = _inside(G.apply_homography(H, pts), images[k + 1].shape)
        idx, ov = detector_correspondences(ref[ref_idx], kps[k + 1], H, min_overlap, magnification)
        idx[~visible] = -1
        tgt[:, k] = idx
        ovs[:, k] = np.where(idx >= 0, ov, np.nan)
    nviews = 1 + (tgt >= 0).sum(1)
    sel = np.nonzero(nviews >= int(min_views))[0]  # ref_idx is strongest-first, so this keeps that order
    if max_tracks is not None:
        sel = sel[: int(max_tracks)]
    P = int(patch_size)
    if len(sel) == 0:
        info = {
            "overlaps": np.zeros((0, nt)),
            "ref_index": np.zeros(0, np.int64),
            "target_index": np.zeros((0, nt), np.int64),
            "keypoints": kps,
            "views": np.zeros(0, np.int64),
        }
        return np.zeros((0, len(TYPES), P, P), np.uint8), info
    # cut only the regions used
    ref_p = keypoint_patches(images[0], ref[ref_idx[sel]], P, orientation=orientation, magnification=magnification)
    tgt_p = []
    for k in range(nt):
        rows = tgt[sel, k]
        used = rows[rows >= 0]
        p = np.zeros((len(rows), P, P), np.uint8)
        if len(used):
            p[rows >= 0] = keypoint_patches(
                images[k + 1], kps[k + 1][used], P, orientation=orientation, magnification=magnification
            )
        tgt_p.append(p)
    tracks = np.empty((len(sel), len(TYPES), P, P), np.uint8)
    for t in range(len(sel)):
        views = [ref_p[t]] + [tgt_p[k][t] for k in range(nt) if tgt[sel[t], k] >= 0]
        order = [k for k in range(nt) if tgt[sel[t], k] >= 0]
        tracks[t, 0] = views[0]
        # slot e/h/t of image k+1 holds that image's detection when it has one; others cycle the views
        cyc = 0
        for j in range(1, len(TYPES)):
            k = (j - 1) % 5
            if k < nt and k in order:
                tracks[t, j] = tgt_p[k][t]
            else:
                tracks[t, j] = views[cyc % len(views)]
                cyc += 1
    info = {
        "overlaps": ovs[sel],
        "ref_index": ref_idx[sel],
        "target_index": tgt[sel],
        "keypoints": kps,
        "views": nviews[sel],
    }
    return tracks, info
