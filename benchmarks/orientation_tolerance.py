"""Where does a descriptor lose on whole images? Matching rate of true correspondences by the size of their
orientation and scale error, and the mutual matches that come from keypoints without a correspondence.

    python benchmarks/orientation_tolerance.py --model runs/x/model.keras [--model ...]

On the 17 real pairs of ``../shared/real-sequences`` + ``../shared/real-pairs`` (never trained on), with the
image-matching benchmark's keypoints and patches (DoG, 2000 per image, dominant orientation, 65x65 patches):
a reference keypoint has a true correspondence when its reprojection lies within 2 px of a target keypoint
whose scale is within an octave of the expected one. Its orientation error (target dominant orientation minus
the reference orientation carried through H) and scale error (log2) are those of
:func:`hpatches_kit.data.keypoints.measure_keypoint_errors`. For each descriptor (RootSIFT and the models) the
table gives, per error bucket, the share of true correspondences whose descriptor nearest neighbour is the
true keypoint (``NN``) and whose mutual nearest neighbour is (``mutual``, what the MMA counts), and how many
of all mutual matches start at a keypoint that has no true correspondence (always wrong).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
ANGLE_BINS = (0, 5, 15, 30, 90, 181)
SCALE_BINS = (0.0, 0.1, 0.25, 0.5, 1.01)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, help="a .keras descriptor (repeatable)")
    ap.add_argument("--max-keypoints", type=int, default=2000)
    a = ap.parse_args(argv)
    roots = [SHARED / "real-sequences", SHARED / "real-pairs"]
    if not all(r.is_dir() for r in roots):
        print(f"{roots[0]}: real scenes not found (see ../shared/real-sequences/README.md)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO))
    import cv2
    from scipy.spatial import cKDTree

    cv2.setNumThreads(1)
    from hpatches_kit.data.geometry import apply_homography
    from hpatches_kit.data.keypoints import (
        _local_affine,
        _wrap_deg,
        detect_keypoints,
        keypoint_orientations,
        keypoint_patches,
    )
    from hpatches_kit.evaluation import get_baseline, keras_describer
    from hpatches_kit.evaluation.image_matching import mutual_nn, read_sequences

    descs = {"rootsift": get_baseline("rootsift")}
    for m in a.model:
        p = Path(m)
        descs[p.parent.name if p.name == "model.keras" else p.stem] = keras_describer(m)
    na, ns = len(ANGLE_BINS) - 1, len(SCALE_BINS) - 1
    by_angle = {d: np.zeros((na, 3)) for d in descs}
    by_scale = {d: np.zeros((ns, 3)) for d in descs}  # among |angle error| < 15 degrees
    spurious = {d: [0, 0] for d in descs}
    seqs = read_sequences(roots)
    for _, ims, Hs in seqs:
        k0 = detect_keypoints(ims[0], "dog", a.max_keypoints, "dominant")
        a0 = keypoint_orientations(ims[0], k0)
        d0 = {n: f(keypoint_patches(ims[0], k0)) for n, f in descs.items()}
        for im, H in zip(ims[1:], Hs):
            k1 = detect_keypoints(im, "dog", a.max_keypoints, "dominant")
            a1 = keypoint_orientations(im, k1)
            p1 = keypoint_patches(im, k1)
            dist, j = cKDTree(k1[:, :2]).query(apply_homography(H, k0[:, :2]))
            J = _local_affine(H, k0[:, :2])
            v = np.einsum("nij,nj->ni", J, np.stack([np.cos(a0), np.sin(a0)], 1))
            err = np.abs(_wrap_deg(np.degrees(a1[j]) - np.degrees(np.arctan2(v[:, 1], v[:, 0]))))
            ls = np.abs(np.log2(k1[j, 2] / (k0[:, 2] * np.sqrt(np.abs(np.linalg.det(J))))))
            gt = (dist <= 2.0) & (ls <= 1.0)
            ba, bs = np.digitize(err, ANGLE_BINS) - 1, np.digitize(ls, SCALE_BINS) - 1
            for n, f in descs.items():
                d1 = f(p1)
                nn = cKDTree(d1).query(d0[n])[1]
                m = mutual_nn(d0[n], d1)
                mut = np.full(len(k0), -1)
                mut[m[:, 0]] = m[:, 1]
                for bi in range(na):
                    s = gt & (ba == bi)
                    by_angle[n][bi] += [s.sum(), (nn[s] == j[s]).sum(), (mut[s] == j[s]).sum()]
                for bi in range(ns):
                    s = gt & (bs == bi) & (err < 15)
                    by_scale[n][bi] += [s.sum(), (nn[s] == j[s]).sum(), (mut[s] == j[s]).sum()]
                spurious[n][0] += int((~gt[m[:, 0]]).sum())
                spurious[n][1] += len(m)
    names = list(descs)
    pairs = sum(len(s[1]) - 1 for s in seqs)
    print(f"True correspondences matched, by error bucket ({pairs} real pairs, DoG, dominant orientation)\n")
    print("| orientation error | true pairs | " + " | ".join(f"{n} NN / mutual" for n in names) + " |")
    print("|---|---|" + "---|" * len(names))
    for bi in range(na):
        n0 = by_angle[names[0]][bi][0]
        cells = [f"{by_angle[n][bi][1] / n0:.3f} / {by_angle[n][bi][2] / n0:.3f}" for n in names]
        print(f"| {ANGLE_BINS[bi]}-{min(ANGLE_BINS[bi + 1], 180)} deg | {int(n0)} | " + " | ".join(cells) + " |")
    print("\n| \\|log2 scale error\\| (orientation error < 15 deg) | true pairs | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for bi in range(ns):
        n0 = by_scale[names[0]][bi][0]
        cells = [f"{by_scale[n][bi][1] / n0:.3f} / {by_scale[n][bi][2] / n0:.3f}" for n in names]
        print(f"| {SCALE_BINS[bi]:g}-{min(SCALE_BINS[bi + 1], 1):g} | {int(n0)} | " + " | ".join(cells) + " |")
    print("\nmutual matches from keypoints without a true correspondence (always wrong):")
    for n in names:
        w, t = spurious[n]
        print(f"  {n}: {w} of {t} ({100 * w / max(t, 1):.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
