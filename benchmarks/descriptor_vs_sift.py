"""Quality bar: a descriptor trained by ``hpatches-train descriptor`` (defaults, embedded data) beats SIFT on
all three HPatches tasks, on the held-out test sequences of split ``a`` of the embedded default.

    python benchmarks/descriptor_vs_sift.py                          # evaluates models/l2net-embedded.keras
    python benchmarks/descriptor_vs_sift.py --train runs/desc-bench  # first runs the default training, timed
    python benchmarks/descriptor_vs_sift.py --train runs/desc-30 --train-args "--epochs 30"   # another budget

Prints the official headline mAPs of the model, SIFT, RootSIFT and raw pixels, and the model/SIFT ratios.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(REPO / "models" / "l2net-embedded.keras"))
    ap.add_argument(
        "--train",
        metavar="OUT",
        default=None,
        help="run `hpatches-train descriptor --out OUT` (all defaults) first and evaluate its model",
    )
    ap.add_argument(
        "--train-args",
        default="",
        metavar="FLAGS",
        help='extra `hpatches-train descriptor` flags for --train, e.g. "--epochs 20 --lr-schedule cosine"',
    )
    ap.add_argument("--split", default="a")
    a = ap.parse_args(argv)

    model = a.model
    if a.train:
        t0 = time.time()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "hpatches_kit.cli.train",
                "descriptor",
                "--out",
                a.train,
                "--verbose",
                "2",
                "--no-eval",
                *shlex.split(a.train_args),
            ],
            check=True,
        )
        what = f"training with {a.train_args!r}" if a.train_args else "default training"
        print(
            f"{what}: {(time.time() - t0) / 60:.1f} min wall (dataset build included when it was not cached; "
            "the evaluation below is timed separately)",
            flush=True,
        )
        model = str(Path(a.train) / "model.keras")

    from hpatches_kit.data import load_dataset
    from hpatches_kit.evaluation import compute_descriptors, evaluate, get_baseline, keras_describer

    ds = load_dataset(split=a.split, subset="test", progress=False)
    print(f"embedded default, split {a.split} test: {len(ds)} sequences, {ds.num_tracks} tracks (unseen in training)")
    rows = {}
    for name, describer in (
        ("L2-Net (ours)", keras_describer(model)),
        ("SIFT", get_baseline("sift")),
        ("RootSIFT", get_baseline("rootsift")),
        ("raw pixels", get_baseline("raw")),
    ):
        t0 = time.time()
        res = evaluate(compute_descriptors(ds, describer), dataset=ds, progress=False)
        rows[name] = {t: res[t]["headline"]["value"] for t in ("verification", "matching", "retrieval")}
        print(f"  evaluated {name} in {time.time() - t0:.1f} s", flush=True)

    tasks = ("verification", "matching", "retrieval")
    print(f"\n{'descriptor':<16}" + "".join(f"{t:>14}" for t in tasks) + "   (headline mAP %)")
    for name, r in rows.items():
        print(f"{name:<16}" + "".join(f"{r[t]:>14.2f}" for t in tasks))
    ours, sift = rows["L2-Net (ours)"], rows["SIFT"]
    print(f"{'ours / SIFT':<16}" + "".join(f"{ours[t] / sift[t]:>13.3f}x" for t in tasks))
    ok = all(ours[t] > sift[t] for t in tasks)
    print(f"beats SIFT on all three tasks: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
