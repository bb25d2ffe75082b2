"""Every registered architecture trained by the same recipe on the embedded data, on real validation next to SIFT
and RootSIFT.

    python benchmarks/architectures.py                                  # the default recipe (15-minute budget each)
    python benchmarks/architectures.py --epochs 1 --steps-per-epoch 20  # a short budget (say so when quoting it)
    python benchmarks/architectures.py --model l2net --model sosnet --json arch.json

Each descriptor of the model registry (``hpatches_kit.models.registry.names("descriptor")``, or the ``--model``
names given, ``MODULE:FUNCTION`` included) is trained with ``hpatches-train descriptor``'s defaults (embedded
HPatches data, batch-hard, Adam 1e-3, 512 tracks x 2 views, the precision's default epochs) unless the budget is
shortened, then evaluated on the real photographs of ``../shared/real-sequences`` exactly as
``benchmarks/real_validation.py`` does (:func:`hpatches_kit.evaluation.real.compare_on_real`: both noise regimes,
official protocol, never trained on), with SIFT and RootSIFT on the same patches. The table also gives each
architecture's parameters (trainable / all) and training time on this machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "real-sequences"
#: Each architecture's own loss where its paper trains it with another one than batch-hard triplets.
DEFAULT_LOSSES = {"sosnet": "sosr"}


def train_one(
    name: str, out: Path, epochs, steps, batch_size: int, precision: str, seed: int, loss: str = "batch-hard"
) -> dict:
    """Train ``name`` with the default recipe (shortened by ``epochs`` / ``steps``) into ``out``; returns the
    run's metrics plus ``params``."""
    import keras

    from hpatches_kit.training.descriptor import DescriptorOptions, train_descriptor

    o = DescriptorOptions(
        model=name,
        loss=loss,
        epochs=epochs,
        steps_per_epoch=steps,
        batch_size=batch_size,
        mixed_precision=precision,
        out=str(out),
        evaluate=False,
        verbose=0,
        seed=seed,
        resume=(out / "checkpoints").is_dir() and not (out / "model.keras").is_file(),
    )
    if (out / "model.keras").is_file():  # already trained (a rerun of the benchmark): reuse it
        m = json.loads((out / "metrics.json").read_text())
        m["model"] = out / "model.keras"
    else:
        m = train_descriptor(o)
    net = keras.models.load_model(m["model"])
    m["params"] = (
        int(sum(int(w.numpy().size) for w in net.trainable_weights)),
        int(sum(int(w.numpy().size) for w in net.weights)),
    )
    return m


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model", action="append", default=None, help="architecture (repeatable; default: every registered descriptor)"
    )
    ap.add_argument("--epochs", type=int, default=None, help="epochs (default: the recipe's, by precision)")
    ap.add_argument("--steps-per-epoch", type=int, default=None, help="batches per epoch (default: one pass)")
    ap.add_argument("--batch-size", type=int, default=1024, help="patches per batch (default: 1024)")
    ap.add_argument("--mixed-precision", default="auto", help="dtype policy (default: auto)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--loss",
        action="append",
        default=None,
        metavar="MODEL=LOSS",
        help="the loss of one architecture (repeatable; default: sosnet=sosr, SOSNet's own; others batch-hard)",
    )
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "architectures", help="run folders go here")
    ap.add_argument("--src", type=Path, default=SHARED, help="folder of real homography sequences")
    ap.add_argument("--max-patches", type=int, default=None, help="cap the real patches per sequence (speed)")
    ap.add_argument("--json", type=Path, help="write the results here")
    a = ap.parse_args(argv)
    if not a.src.is_dir():
        print(f"{a.src}: real sequences not found (see ../shared/real-sequences/README.md)", file=sys.stderr)
        return 2

    from hpatches_kit.evaluation.real import REGIMES, TASKS, compare_on_real
    from hpatches_kit.models import registry

    names = a.model or list(registry.names("descriptor"))
    losses = dict(DEFAULT_LOSSES)
    for item in a.loss or []:
        model, sep, loss = item.partition("=")
        if not sep or not model or not loss:
            print(f"--loss: expected MODEL=LOSS, got {item!r}", file=sys.stderr)
            return 2
        losses[model] = loss
    runs, t_all = {}, time.time()
    for name in names:
        t0 = time.time()
        m = train_one(
            name,
            a.out / name.replace(":", "_"),
            a.epochs,
            a.steps_per_epoch,
            a.batch_size,
            a.mixed_precision,
            a.seed,
            losses.get(name, "batch-hard"),
        )
        runs[name] = {
            "model": str(m["model"]),
            "loss": losses.get(name, "batch-hard"),
            "epochs": m.get("epochs"),
            "steps_per_epoch": m.get("steps_per_epoch"),
            "train_seconds": m.get("train_seconds"),
            "wall_seconds": time.time() - t0,
            "params": m["params"],
        }
        print(
            f"[{name}] {m.get('epochs')} epochs x {m.get('steps_per_epoch')} steps, "
            f"{m.get('train_seconds', 0):.0f} s of fit",
            file=sys.stderr,
        )
    res = compare_on_real(a.src, {n: r["model"] for n, r in runs.items()}, max_patches=a.max_patches, progress=True)
    budget = (
        "the default recipe"
        if a.epochs is None and a.steps_per_epoch is None
        else f"a SHORT budget: {a.epochs or 'default'} epoch(s) x {a.steps_per_epoch or 'all'} steps of "
        f"{a.batch_size} patches"
    )
    print(
        f"\nArchitectures trained on the embedded data with {budget}; real validation on {a.src} "
        f"(official protocol, mAP %, never trained on); {time.time() - t_all:.0f} s in all"
    )
    for regime, r in res.items():
        print(
            f"\n## {regime} geometric noise (jitter x {REGIMES[regime]:.3f}): {len(r['sequences'])} scenes, "
            f"{r['tracks']} tracks"
        )
        print(
            f"{'descriptor':<12}{'params (train/all)':>22}{'fit s':>8}"
            + "".join(f"{t:>14}" for t in TASKS)
            + f"{'mean':>10}"
        )
        for name, row in r["rows"].items():
            run = runs.get(name)
            p = f"{run['params'][0] / 1e6:.2f}M / {run['params'][1] / 1e6:.2f}M" if run else "-"
            fit = f"{run['train_seconds']:.0f}" if run and run.get("train_seconds") is not None else "-"
            mean = sum(row[t] for t in TASKS) / len(TASKS)
            print(f"{name:<12}{p:>22}{fit:>8}" + "".join(f"{row[t]:>14.2f}" for t in TASKS) + f"{mean:>10.2f}")
    if a.json:
        from hpatches_kit.io import atomic_write_json

        atomic_write_json(a.json, {"budget": budget, "runs": runs, "results": res})
    return 0


if __name__ == "__main__":
    sys.exit(main())
