"""How wrong is a detected keypoint's orientation and scale? Measured on synthetic sequences, per kind of change,
compared with the training tracks' own view-to-view rotation and checked on the real validation scenes.

    python benchmarks/orientation_error.py                                # table + figure (docs/figures)
    python benchmarks/orientation_error.py --write-preset                 # also (re)write the 'dog' preset table
    python benchmarks/orientation_error.py --sequences 8 --no-real        # quicker

Synthetic sequences are made exactly as ``hpatches-data synth`` makes them (the photos the dependencies ship,
``--rescale`` views; lighting, viewpoint, zoom + rotation, blur), with seeds that the embedded default does not
use. In every pair (image 1, image k) DoG keypoints (2000, strongest first, as the image-matching benchmark) are
detected independently, matched to the mutual nearest reprojection within 2 px and an octave of the expected
scale, and the error of the dominant orientation and of the scale is read off
(:func:`hpatches_kit.data.keypoints.measure_keypoint_errors`).

"Training tracks today" is the relative rotation and scale between two views of a track that ``synth`` cuts
(HPatches jitter of two random image types of 16, jitter scale U(0.25, 1) per sequence as the embedded default):
what the descriptor has been taught to tolerate. The real scenes (``../shared/real-sequences`` and
``../shared/real-pairs``) are a check only: the preset table is measured on synthetic sequences alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
KIND_NAMES = {"i": "illumination", "v": "viewpoint", "z": "zoom + rotation", "b": "blur"}


def synthetic_errors(n_per_kind: int, seed: int, max_keypoints: int) -> dict:
    from hpatches_kit.data.keypoints import measure_sequences
    from hpatches_kit.data.synth import _BUILDERS, _random_view, load_photos

    photos = load_photos()
    out = {}
    for kind in ("i", "v", "z", "b"):
        seqs = []
        for j in range(n_per_kind):
            rng = np.random.default_rng([seed, ord(kind), j])
            photo = photos[int(rng.integers(0, len(photos)))][1]
            images, Hs = _BUILDERS[kind](_random_view(photo, rng, rescale=True), rng)
            seqs.append((f"{kind}{j}", images, Hs))
        m = measure_sequences(seqs, max_keypoints=max_keypoints)
        out[KIND_NAMES[kind]] = {
            "angle": np.concatenate([v["angle"] for v in m.values()]),
            "log2_scale": np.concatenate([v["log2_scale"] for v in m.values()]),
            "pairs": sum(v["pairs"] for v in m.values()),
        }
    return out


def training_track_errors(n: int, seed: int) -> dict:
    """Relative rotation (degrees) and log2 scale between two random views of a synth track (HPatches jitter)."""
    from hpatches_kit.data import geometry as G
    from hpatches_kit.data.extract import resolve_jitter
    from hpatches_kit.data.synth import DEFAULT_JITTER_SCALE

    rng = np.random.default_rng(seed)
    lo, hi = DEFAULT_JITTER_SCALE
    spec = resolve_jitter("hpatches")
    types = ["ref"] + [v for v in ("e", "h", "t") for _ in range(5)]
    ang, sc = [], []
    for _ in range(n // 100):
        js = rng.uniform(lo, hi)
        views = [rng.choice(16, 2, replace=False) for _ in range(100)]
        for a, b in views:
            mats = []
            for t in (types[a], types[b]):
                mats.append(np.eye(3) if t == "ref" else G.sample_jitter(rng, js * spec["magnitudes"][t], 1)[0])
            rel = np.linalg.inv(mats[0]) @ mats[1]
            A = rel[:2, :2]
            ang.append(np.degrees(np.arctan2(A[1, 0] - A[0, 1], A[0, 0] + A[1, 1])))
            sc.append(0.5 * np.log2(abs(np.linalg.det(A))))
    return {"angle": np.array(ang), "log2_scale": np.array(sc), "pairs": 0}


def real_errors(max_keypoints: int) -> dict:
    from hpatches_kit.data.keypoints import measure_sequences
    from hpatches_kit.evaluation.image_matching import read_sequences

    roots = [SHARED / "real-sequences", SHARED / "real-pairs"]
    if not all(r.is_dir() for r in roots):
        return {}
    m = measure_sequences(read_sequences(roots), max_keypoints=max_keypoints)
    return {
        "real validation (17 pairs)": {
            "angle": np.concatenate([v["angle"] for v in m.values()]),
            "log2_scale": np.concatenate([v["log2_scale"] for v in m.values()]),
            "pairs": sum(v["pairs"] for v in m.values()),
        }
    }


def summary(a: np.ndarray, s: np.ndarray) -> dict:
    aa = np.abs(a)
    return {
        "n": int(len(a)),
        "abs_angle_q50": float(np.quantile(aa, 0.5)),
        "abs_angle_q75": float(np.quantile(aa, 0.75)),
        "abs_angle_q90": float(np.quantile(aa, 0.9)),
        "abs_angle_q95": float(np.quantile(aa, 0.95)),
        "over_30deg": float(np.mean(aa > 30)),
        "over_90deg": float(np.mean(aa > 90)),
        "abs_log2_scale_q50": float(np.quantile(np.abs(s), 0.5)),
        "abs_log2_scale_q90": float(np.quantile(np.abs(s), 0.9)),
    }


def plot(groups: dict, path: Path) -> Path:
    import matplotlib.pyplot as plt

    from hpatches_kit.plots._figure import save

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    bins = np.linspace(-180, 180, 73)
    sbins = np.linspace(-1, 1, 41)
    for name, g in groups.items():
        style = dict(histtype="step", density=True, linewidth=1.6 if "pooled" in name or "real" in name else 1.0)
        if name.startswith("training"):
            style.update(linestyle="--", color="k")
        axes[0].hist(g["angle"], bins=bins, label=f"{name} (n={len(g['angle'])})", **style)
        axes[1].hist(g["log2_scale"], bins=sbins, label=name, **style)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("orientation error (degrees): detected minus true")
    axes[0].set_ylabel("density (log)")
    axes[0].set_xticks(range(-180, 181, 45))
    axes[1].set_xlabel("scale error (log2): detected / true")
    axes[1].set_ylabel("density")
    axes[0].set_title("DoG dominant orientation error")
    axes[1].set_title("DoG scale error")
    axes[0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.18), ncol=2, frameon=False)
    fig.suptitle("What a detector does to a patch: DoG keypoints found again under a known homography", fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sequences", type=int, default=20, help="synthetic sequences per kind (default 20)")
    ap.add_argument("--seed", type=int, default=1000, help="seed of the synthetic sequences (default 1000)")
    ap.add_argument("--max-keypoints", type=int, default=2000)
    ap.add_argument("--no-real", action="store_true", help="skip the real-scene check")
    ap.add_argument("--figure", type=Path, default=REPO / "docs" / "figures" / "orientation_error.png")
    ap.add_argument("--json", type=Path, help="write the summaries here")
    ap.add_argument(
        "--write-preset", action="store_true", help="write the pooled synthetic table as the 'dog' view-noise preset"
    )
    a = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    import cv2

    cv2.setNumThreads(1)
    from hpatches_kit.data.view_noise import _PRESET_DIR, ViewNoise, error_quantiles

    t0 = time.time()
    groups = synthetic_errors(a.sequences, a.seed, a.max_keypoints)
    pooled = {
        "angle": np.concatenate([g["angle"] for g in groups.values()]),
        "log2_scale": np.concatenate([g["log2_scale"] for g in groups.values()]),
        "pairs": sum(g["pairs"] for g in groups.values()),
    }
    groups["synthetic, pooled"] = pooled
    groups["training tracks today (2 views)"] = training_track_errors(20000, a.seed)
    if not a.no_real:
        groups.update(real_errors(a.max_keypoints))
    print(
        f"DoG keypoints found again under the true homography ({a.sequences} synthetic sequences per kind, "
        f"seed {a.seed}; {time.time() - t0:.0f} s)\n"
    )
    head = ("group", "pairs", "n", "|a| q50", "q75", "q90", "q95", ">30 deg", ">90 deg", "|log2 s| q50", "q90")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    table = {}
    for name, g in groups.items():
        s = summary(g["angle"], g["log2_scale"])
        table[name] = {**s, "pairs": g["pairs"]}
        print(
            f"| {name} | {g['pairs'] or '-'} | {s['n']} | {s['abs_angle_q50']:.1f} | {s['abs_angle_q75']:.1f} | "
            f"{s['abs_angle_q90']:.1f} | {s['abs_angle_q95']:.1f} | {100 * s['over_30deg']:.1f}% | "
            f"{100 * s['over_90deg']:.1f}% | {s['abs_log2_scale_q50']:.3f} | {s['abs_log2_scale_q90']:.3f} |"
        )
    print(f"\nfigure: {plot(groups, a.figure)}")
    if a.json:
        from hpatches_kit.io import atomic_write_json

        atomic_write_json(a.json, table)
    if a.write_preset:
        vn = ViewNoise(
            name="dog",
            angle_quantiles=tuple(error_quantiles(pooled["angle"])),
            log2_scale_quantiles=tuple(error_quantiles(pooled["log2_scale"])),
            source={
                "measured_with": f"python benchmarks/orientation_error.py --sequences {a.sequences} --seed {a.seed} "
                "--write-preset",
                "measured_on": time.strftime("%Y-%m-%d"),
                "keypoints": int(len(pooled["angle"])),
                "pairs": int(pooled["pairs"]),
                "data": "synthetic sequences only (lighting, viewpoint, zoom + rotation, blur); no real image",
            },
        )
        _PRESET_DIR.mkdir(exist_ok=True)
        path = _PRESET_DIR / "dog.json"
        path.write_text(json.dumps(vn.to_json(), indent=1) + "\n")
        print(f"preset: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
