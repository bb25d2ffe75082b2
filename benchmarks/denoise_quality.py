"""Denoising quality bars on the embedded N-HPatches default (held-out split-``a`` test sequences):

1. the deep U-Net reaches a lower held-out MAE than the shallow U-Net at equal epochs;
2. a descriptor trained and evaluated on denoised patches beats one trained and evaluated on noisy patches
   (official HPatches protocol on the held-out sequences).

Every step is a real ``hpatches-train`` run (so this also exercises the commands end to end); results are
read back from each run's ``metrics.json``. Prints a table and the ratios. On 2 CPU cores the two U-Nets
take about 30 minutes and each descriptor arm about 12; ``--quick`` shrinks every budget for a smoke run.

    python benchmarks/denoise_quality.py --out runs/bench-denoise
    python benchmarks/denoise_quality.py --out runs/bench-ft --denoiser models/unet-shallow-embedded.keras \
        --init models/l2net-embedded.keras      # bar 2 only, both arms fine-tuned from the clean default

Measured results and what they mean: README.md ("Denoising").
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def train(cmd: list[str], out: Path, resume: bool) -> dict:
    metrics = out / "metrics.json"
    if resume and metrics.is_file():
        print(f"[reuse] {out}", flush=True)
        return json.loads(metrics.read_text())
    full = [sys.executable, "-m", "hpatches_kit.cli.train", *cmd, "--out", str(out), "--verbose", "2"]
    print("$ " + " ".join(full[2:]), flush=True)
    t0 = time.time()
    subprocess.run(full, check=True)
    m = json.loads(metrics.read_text())
    m["_wall_s"] = time.time() - t0
    return m


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench-denoise")
    ap.add_argument("--epochs", type=int, default=None, help="denoiser epochs, equal for both U-Nets "
                    "(default: the command's default, so the shallow run is exactly `hpatches-train denoise`)")
    ap.add_argument("--steps", type=int, default=None, help="denoiser steps per epoch (default: one pass)")
    ap.add_argument("--desc-epochs", type=int, default=None, help="descriptor epochs, equal for noisy/denoised "
                    "(default: the command's default, so each arm is exactly `hpatches-train descriptor --noisy "
                    "[--denoiser ...]`)")
    ap.add_argument("--denoiser", default=None, help="use this trained denoiser .keras for bar 2 and skip training "
                    "the two U-Nets (bar 1), e.g. models/unet-shallow-embedded.keras")
    ap.add_argument("--init", default=None, help="both descriptor arms start from this trained descriptor "
                    "(`hpatches-train descriptor --init`), e.g. models/l2net-embedded.keras: pretrained on clean "
                    "patches of the same training sequences, fine-tuned on noisy vs denoised ones")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="tiny budgets (smoke test, numbers meaningless)")
    ap.add_argument("--reuse", action="store_true", help="reuse finished runs found under --out")
    a = ap.parse_args(argv)
    if a.quick:
        a.epochs, a.steps, a.desc_epochs = 1, 20, 1
    out = Path(a.out)
    from hpatches_kit.data import ensure_default

    nh = str(ensure_default("n-hpatches"))
    common = ["--seed", str(a.seed)]
    den = {}
    if a.denoiser is None:
        for name in ("shallow_unet", "deep_unet"):
            budget = ((["--epochs", str(a.epochs)] if a.epochs else [])
                      + (["--steps-per-epoch", str(a.steps)] if a.steps else []))
            den[name] = train(["denoise", "--model", name, *budget, *common], out / name, a.reuse)
        best = min(den, key=lambda k: den[k]["heldout"]["mae_denoised"])
        denoiser = out / best / "model.keras"
    else:
        denoiser = Path(a.denoiser)
        if not denoiser.is_file():
            ap.error(f"--denoiser {denoiser}: no such file")
    desc_args = (["--epochs", str(a.desc_epochs)] if a.desc_epochs else []) + (["--init", a.init] if a.init else [])
    desc = {
        "noisy": train(["descriptor", "--data", nh, "--noisy", *desc_args, *common], out / "desc-noisy", a.reuse),
        "denoised": train(["descriptor", "--data", nh, "--noisy", "--denoiser", str(denoiser), *desc_args, *common],
                          out / "desc-denoised", a.reuse),
    }
    if den:
        compare_denoisers(den, out)
    compare_descriptors(desc)
    if a.init:
        untuned_reference(a.init, denoiser, nh)
    return 0


def _headline(res: dict) -> dict:
    """``{"headline": {task: mAP in %}}`` of an :func:`hpatches_kit.evaluation.evaluate` result."""
    return {"headline": {t: res[t]["headline"]["value"] for t in ("verification", "matching", "retrieval")
                         if t in res}}


def untuned_reference(init: str, denoiser: Path, nh: str) -> None:
    """The ``--init`` model itself, not fine-tuned, on the same held-out noisy and denoised patches."""
    from hpatches_kit.data import load_dataset
    from hpatches_kit.training.evaluate import evaluate_saved

    test = load_dataset(nh, split="a", subset="test", noise=True, progress=False)
    print(f"\nreference: {Path(init).name} not fine-tuned, evaluated on the same {len(test)} held-out sequences")
    for name, den in (("noisy", None), ("denoised", denoiser)):
        res, text = evaluate_saved(init, test, _headline, denoiser=den, noisy=True)
        if "headline" not in res:
            print(f"{name:<10}{text}")
            continue
        h = res["headline"]
        print(f"{name:<10}{h['verification']:>14.2f}{h['matching']:>10.2f}{h['retrieval']:>11.2f}")


def compare_denoisers(den: dict, out: Path) -> None:
    ep = den["shallow_unet"]["args"]["epochs"]
    print(f"\nDenoisers (held-out N-HPatches patches, grey levels; equal budgets: {ep} epochs, batch 128)")
    print(f"{'model':<14}{'params':>10}{'MAE noisy':>11}{'MAE out':>9}{'PSNR noisy':>12}{'PSNR out':>10}")
    import keras

    import hpatches_kit.models  # noqa: F401  (registers the custom layers)

    for name, m in den.items():
        h = m["heldout"]
        params = keras.models.load_model(out / name / "model.keras", compile=False).count_params()
        print(f"{name:<14}{params:>10}{h['mae_noisy']:>11.2f}{h['mae_denoised']:>9.2f}"
              f"{h['psnr_noisy']:>12.2f}{h['psnr_denoised']:>10.2f}")
    r = den["shallow_unet"]["heldout"]["mae_denoised"] / den["deep_unet"]["heldout"]["mae_denoised"]
    print(f"deep U-Net MAE is {r:.2f}x lower than shallow: {'PASS' if r > 1 else 'FAIL'}")


def compare_descriptors(desc: dict) -> None:
    used = Path(desc["denoised"]["args"]["denoiser"])
    used = used.parent.name if used.name == "model.keras" else used.name
    ep, init = desc["noisy"]["args"]["epochs"], desc["noisy"]["args"].get("init")
    start = f"fine-tuned from {Path(init).name}" if init else "from scratch"
    print(f"\nDescriptor on noisy vs denoised ({used}) input, {ep} epochs each {start}, official protocol on "
          "held-out sequences, mAP %")
    print(f"{'input':<10}{'verification':>14}{'matching':>10}{'retrieval':>11}")
    wins = []
    for name, m in desc.items():
        h = m["evaluation"]["headline"]
        print(f"{name:<10}{h['verification']:>14.2f}{h['matching']:>10.2f}{h['retrieval']:>11.2f}")
    for task in ("verification", "matching", "retrieval"):
        n, d = desc["noisy"]["evaluation"]["headline"][task], desc["denoised"]["evaluation"]["headline"][task]
        wins.append(d > n)
        print(f"  {task:<13} denoised/noisy = {d / n:.3f}")
    print(f"descriptor on denoised beats noisy on all three tasks: {'PASS' if all(wins) else 'FAIL'}")


if __name__ == "__main__":
    sys.exit(main())
