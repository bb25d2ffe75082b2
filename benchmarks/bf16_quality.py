"""bf16 vs float32 at equal steps: two ``hpatches-train descriptor`` runs on the embedded default that differ
only in ``--mixed-precision``, then real validation of both against SIFT and RootSIFT (docs/training.md,
"bf16 vs float32"). Prints the mean epoch wall time of each run and the real-validation table.

    python benchmarks/bf16_quality.py [--epochs 8] [--out runs/bf16-quality]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRECISIONS = ("float32", "mixed_bfloat16")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bf16-quality")
    args = ap.parse_args(argv)
    models = []
    for prec in PRECISIONS:
        out = args.out / prec
        subprocess.run(
            [
                sys.executable,
                "-m",
                "hpatches_kit.cli.train",
                "descriptor",
                "--epochs",
                str(args.epochs),
                "--val-every",
                str(args.epochs),
                "--lr-schedule",
                "cosine",
                "--no-eval",
                "--verbose",
                "0",
                "--seed",
                str(args.seed),
                "--mixed-precision",
                prec,
                "--out",
                str(out),
            ],
            check=True,
        )
        walls = json.loads((out / "metrics.json").read_text())["history"]["epoch_wall_s"]
        print(f"{prec:<16s} mean epoch wall {sum(walls) / len(walls):6.1f} s over {len(walls)} epochs", flush=True)
        models.append(str(out / "model.keras"))
    cmd = [sys.executable, str(ROOT / "benchmarks" / "real_validation.py")]
    for m in models:
        cmd += ["--model", m]
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    sys.exit(main())
