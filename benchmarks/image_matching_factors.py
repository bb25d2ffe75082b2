"""Where does a descriptor's whole-image matching gap to RootSIFT come from? One factor at a time.

    python benchmarks/image_matching_factors.py                                  # the README's model
    python benchmarks/image_matching_factors.py --model models/x.keras --factors orientation matcher

On the real validation scenes and pairs (``../shared/real-sequences`` + ``../shared/real-pairs``; never
trained on), DoG keypoints, the same keypoints and patches for every descriptor, this varies one factor of
:mod:`hpatches_kit.evaluation.image_matching` away from the default (dominant orientation, magnification 5,
mutual NN) and prints MMA@1/3/5/10, homography accuracy @1/3/5 px and matches for SIFT, RootSIFT and the model,
plus the model's lead over RootSIFT. Factors:

- ``orientation``: one dominant orientation (default), upright, or DoG's own orientations (several per
  location, as SIFT uses them);
- ``magnification``: measurement-disk radius / detected scale (3, 5, 7.5, 10);
- ``matcher``: mutual NN, mutual NN + ratio 0.9 / 0.8, plain NN + ratio 0.8 (descriptors computed once).

A measurement, not a tuning loop: the benchmark's defaults are not chosen from these numbers.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FACTORS = {
    "orientation": [dict(orientation=o) for o in ("dominant", "upright", "detector")],
    "magnification": [dict(magnification=m) for m in (3.0, 5.0, 7.5, 10.0)],
    "matcher": [
        dict(mutual=True, ratio=None),
        dict(mutual=True, ratio=0.9),
        dict(mutual=True, ratio=0.8),
        dict(mutual=False, ratio=0.8),
    ],
}


def run_config(
    seqs,
    describers,
    orientation="dominant",
    magnification=None,
    matchers=(dict(mutual=True, ratio=None),),
    max_keypoints=2000,
):
    """``{(matcher label, descriptor): summary}`` for one patch-cutting configuration."""
    from hpatches_kit.evaluation.image_matching import (
        THRESHOLDS,
        _summary,
        detect_keypoints,
        keypoint_patches,
        pair_accuracy,
    )

    pairs = {}
    for _name, images, Hs in seqs:
        kps = [detect_keypoints(im, "dog", max_keypoints, orientation=orientation) for im in images]
        patches = [
            keypoint_patches(im, kp, 65, orientation=orientation, magnification=magnification)
            for im, kp in zip(images, kps)
        ]
        for dname, fn in describers.items():
            descs = [np.asarray(fn(p), np.float32) for p in patches]
            for mt in matchers:
                label = ("mutual NN" if mt["mutual"] else "NN") + (f" + ratio {mt['ratio']}" if mt["ratio"] else "")
                for k in range(1, len(images)):
                    r = pair_accuracy(
                        kps[0],
                        kps[k],
                        descs[0],
                        descs[k],
                        Hs[k - 1],
                        images[0].shape,
                        THRESHOLDS,
                        mutual=mt["mutual"],
                        ratio=mt["ratio"],
                        shape_b=images[k].shape,
                    )
                    r["features"] = 0.5 * (len(kps[0]) + len(kps[k]))
                    pairs.setdefault((label, dname), []).append(r)
    return {k: _summary(v, THRESHOLDS) for k, v in pairs.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, action="append", default=None)
    ap.add_argument("--model", default=str(REPO / "models" / "l2net-synth-v2.keras"))
    ap.add_argument("--factors", nargs="+", default=list(FACTORS), choices=list(FACTORS))
    ap.add_argument("--max-keypoints", type=int, default=2000)
    a = ap.parse_args(argv)
    srcs = a.src or [SHARED / "real-sequences", SHARED / "real-pairs"]
    for s in srcs:
        if not s.is_dir():
            print(f"{s}: not found", file=sys.stderr)
            return 2
    if not Path(a.model).is_file():
        print(f"{a.model}: model file not found", file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO))
    import cv2

    cv2.setNumThreads(1)
    from hpatches_kit.evaluation import get_baseline, keras_describer
    from hpatches_kit.evaluation.image_matching import read_sequences

    seqs = read_sequences(srcs)
    model = Path(a.model).stem
    describers = {"sift": get_baseline("sift"), "rootsift": get_baseline("rootsift"), model: keras_describer(a.model)}
    print(
        f"DoG, {a.max_keypoints} keypoints, {len(seqs)} real scenes/pairs, {sum(len(s[1]) - 1 for s in seqs)} "
        f"image pairs; model: {model}"
    )
    head = (
        f"{'factor':<14} {'setting':<22} {'descriptor':<22} {'MMA@1':>6} {'MMA@3':>6} {'MMA@5':>6} {'MMA@10':>6}"
        f"  {'H@1':>5} {'H@3':>5} {'H@5':>5} {'matches':>8}"
    )
    for factor in a.factors:
        t0 = time.time()
        print(f"\n{head}")
        if factor == "matcher":
            runs = [
                ("matcher", run_config(seqs, describers, matchers=FACTORS["matcher"], max_keypoints=a.max_keypoints))
            ]
        else:
            runs = []
            for cfg in FACTORS[factor]:
                res = run_config(seqs, describers, max_keypoints=a.max_keypoints, **cfg)
                runs.append((f"{factor}={next(iter(cfg.values()))}", res))
        for setting, res in runs:
            for (label, dname), s in res.items():
                tag = setting if factor != "matcher" else label
                mma = [s["mma"][t - 1] for t in (1, 3, 5, 10)]
                hh = [s["homography"][str(t)] for t in (1, 3, 5)]
                print(
                    f"{factor:<14} {tag:<22} {dname:<22} "
                    + " ".join(f"{v:>6.3f}" for v in mma)
                    + "  "
                    + " ".join(f"{v:>5.2f}" for v in hh)
                    + f" {s['mean_matches']:>8.1f}"
                )
            labels = sorted({lab for lab, _ in res}, key=[lab for lab, _ in res].index)
            for label in labels:
                m, r = res[(label, model)], res[(label, "rootsift")]
                tag = setting if factor != "matcher" else label
                d = [m["mma"][t - 1] - r["mma"][t - 1] for t in (1, 3, 5, 10)]
                dh = [m["homography"][str(t)] - r["homography"][str(t)] for t in (1, 3, 5)]
                print(
                    f"{factor:<14} {tag:<22} {'lead vs rootsift':<22} "
                    + " ".join(f"{v:>+6.3f}" for v in d)
                    + "  "
                    + " ".join(f"{v:>+5.2f}" for v in dh)
                )
        print(f"({factor}: {time.time() - t0:.0f} s)")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
