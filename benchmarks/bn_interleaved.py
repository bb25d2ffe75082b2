"""Keras (fused vs Keras batch-norm) vs PyTorch train step, interleaved: alternate runs so that load from other
processes on a shared machine hits every configuration alike; prints per-round ratios and their medians.

    python benchmarks/bn_interleaved.py [--rounds 2] [--steps 6] [--precisions float32,mixed_bfloat16]

Uses the step scripts of ``benchmarks/train_speed.py`` (``TRAIN_SPEED_BN=keras`` selects the plain layer).
"""

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_speed import KERAS_STEP, TORCH_STEP, _child  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--rounds", type=int, default=2)
ap.add_argument("--steps", type=int, default=6)
ap.add_argument("--batch", type=int, default=1024)
ap.add_argument("--precisions", default="float32,mixed_bfloat16")
a = ap.parse_args()
ratios = {}
for rnd in range(a.rounds):
    for prec in a.precisions.split(","):
        got = {}
        for bn in ("fused", "keras"):
            os.environ["TRAIN_SPEED_BN"] = bn
            r = _child([sys.executable, "-c", KERAS_STEP, prec, "0", str(a.batch), str(a.steps)])
            got[bn] = r and r["patches_per_s"]
        os.environ.pop("TRAIN_SPEED_BN")
        r = _child([sys.executable, "-c", TORCH_STEP, "1" if prec != "float32" else "0", str(a.batch), str(a.steps)])
        got["torch"] = r and r["patches_per_s"]
        line = {
            "fused/keras-bn": got["fused"] / got["keras"],
            "fused/torch": got["fused"] / got["torch"],
            "keras-bn/torch": got["keras"] / got["torch"],
        }
        for k, v in line.items():
            ratios.setdefault((prec, k), []).append(v)
        print(
            f"round {rnd} {prec}: keras+fused {got['fused']:.0f}, keras+BN {got['keras']:.0f}, "
            f"torch {got['torch']:.0f} patches/s; " + ", ".join(f"{k} {v:.2f}x" for k, v in line.items()),
            flush=True,
        )
print("\nmedian ratios over rounds:")
for (prec, k), v in ratios.items():
    print(f"  {prec:<16}{k:<16}{statistics.median(v):.2f}x  ({', '.join(f'{x:.2f}' for x in v)})")
