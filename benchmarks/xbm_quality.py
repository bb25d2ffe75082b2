"""Does a cross-batch memory recover the large batch's quality? (issue 28 §1)

    nice -n 10 python benchmarks/xbm_quality.py --steps 40 --xbm-start 5   # the measurement in docs/losses.md
    python benchmarks/xbm_quality.py --steps 40 --xbm-start 5              # again: finished runs are reused

Three ``hpatches-train descriptor`` runs on the embedded data, everything default except the batch and the
memory, each for the same number of steps (``--epochs 1 --steps-per-epoch N``, ``--no-eval``):

* ``b128``       -- batch 128 (64 tracks x 2 views), batch-hard mined in the batch;
* ``b128+xbm``   -- batch 128 + a cross-batch memory of ``--xbm`` entries (default 896: each query sees
  128 + 896 = 1024 candidates, as in a batch of 1024), used from step ``--xbm-start``;
* ``b1024``      -- batch 1024 (the default recipe's batch), no memory.

Then real validation (``benchmarks/real_validation.py``'s :func:`compare_on_real`: the two real scenes at both
geometric-noise regimes, official protocol, mAP %) next to SIFT and RootSIFT. The verdict line says which share
of the b128 -> b1024 gap the memory closes (mean over the three tasks and two regimes): ``YES`` for at least
half, ``NO`` below, ``INCONCLUSIVE`` when batch 1024 is not better than batch 128 by more than ``--noise``
points (then there is no gap to recover at this budget). Training costs O(batch) per step, so ``b1024`` costs
about 8x ``b128`` per step; the XBM step costs b128's plus a 128 x 1024 distance matrix.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "real-sequences"


def train(name, out: Path, steps: int, batch: int, xbm: int = 0, xbm_start: int = 0, seed: int = 0) -> dict:
    """One run (reused when ``out/model.keras`` exists); returns its metrics plus wall seconds."""
    from hpatches_kit.training.descriptor import DescriptorOptions, train_descriptor

    if (out / "model.keras").is_file() and (out / "metrics.json").is_file():
        m = json.loads((out / "metrics.json").read_text())
        return {**m, "reused": True}
    t0 = time.time()
    o = DescriptorOptions(
        batch_size=batch,
        epochs=1,
        steps_per_epoch=steps,
        xbm=xbm,
        xbm_start=xbm_start,
        out=str(out),
        evaluate=False,
        verbose=0,
        seed=seed,
    )
    m = train_descriptor(o)
    m["wall_seconds"] = time.time() - t0
    (out / "bench.json").write_text(json.dumps({"wall_seconds": m["wall_seconds"]}))
    return m


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=150, help="training steps of every run (default: 150)")
    ap.add_argument("--xbm", type=int, default=896, help="memory entries of the XBM run (default: 896)")
    ap.add_argument("--xbm-start", type=int, default=10, help="steps before the memory is used (default: 10)")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "xbm-quality", help="run folders")
    ap.add_argument("--src", type=Path, default=SHARED, help="real validation scenes")
    ap.add_argument("--noise", type=float, default=0.5, help="smallest b1024 - b128 gap (mAP points) to judge")
    ap.add_argument("--json", type=Path, help="write the results here")
    a = ap.parse_args(argv)
    if not a.src.is_dir():
        print(f"{a.src}: real sequences not found (see ../shared/real-sequences/README.md)", file=sys.stderr)
        return 2
    from hpatches_kit.evaluation.real import REGIMES, TASKS, compare_on_real

    runs = {
        "b128": dict(batch=128),
        "b128+xbm": dict(batch=128, xbm=a.xbm, xbm_start=a.xbm_start),
        "b1024": dict(batch=1024),
    }
    info = {}
    for name, kw in runs.items():
        print(f"[train] {name}: {a.steps} steps, {kw}", file=sys.stderr, flush=True)
        m = train(name, a.out / name.replace("+", "-"), a.steps, **kw)
        bench = a.out / name.replace("+", "-") / "bench.json"
        wall = json.loads(bench.read_text())["wall_seconds"] if bench.is_file() else m.get("wall_seconds")
        info[name] = {
            "train_seconds": m.get("train_seconds"),
            "wall_seconds": wall,
            "heldout": m.get("heldout_nn_matching", {}).get("mean"),
            "loss": m["history"]["loss"][-1],
        }
    t0 = time.time()
    res = compare_on_real(a.src, {n: str(a.out / n.replace("+", "-") / "model.keras") for n in runs})
    print(
        f"XBM vs batch size, {a.steps} training steps each (embedded data, defaults otherwise); real validation "
        f"on {a.src.name} ({time.time() - t0:.0f} s), official protocol, mAP %"
    )
    print(f"\n{'run':<12}{'train s':>9}{'last loss':>11}{'held-out NN':>13}")
    for n, i in info.items():
        ts = f"{i['train_seconds']:.0f}" if i["train_seconds"] is not None else "?"
        print(f"{n:<12}{ts:>9}{i['loss']:>11.4f}{i['heldout'] or float('nan'):>13.3f}")
    means = {}
    for regime, r in res.items():
        print(
            f"\n## {regime} geometric noise (jitter x {REGIMES[regime]:.3f}): {len(r['sequences'])} scenes, "
            f"{r['tracks']} tracks"
        )
        print(f"{'descriptor':<12}" + "".join(f"{t:>14}" for t in TASKS) + f"{'mean':>10}")
        for name, row in r["rows"].items():
            mean = sum(row[t] for t in TASKS) / len(TASKS)
            means.setdefault(name, []).append(mean)
            print(f"{name:<12}" + "".join(f"{row[t]:>14.2f}" for t in TASKS) + f"{mean:>10.2f}")
    avg = {n: sum(v) / len(v) for n, v in means.items()}
    gap = avg["b1024"] - avg["b128"]
    closed = (avg["b128+xbm"] - avg["b128"]) / gap if gap else float("nan")
    print(
        f"\nmean mAP over tasks and regimes: b128 {avg['b128']:.2f}, b128+xbm {avg['b128+xbm']:.2f}, "
        f"b1024 {avg['b1024']:.2f}"
    )
    if gap <= a.noise:
        verdict = (
            f"INCONCLUSIVE: batch 1024 is not better than batch 128 by more than {a.noise:g} points "
            f"({gap:+.2f}) at {a.steps} steps; XBM vs batch 128: {avg['b128+xbm'] - avg['b128']:+.2f}"
        )
    else:
        verdict = (
            f"{'YES' if closed >= 0.5 else 'NO'}: XBM closes {100 * closed:.0f}% of the batch 128 -> 1024 "
            f"gap ({avg['b128+xbm'] - avg['b128']:+.2f} of {gap:+.2f} points) at {a.steps} steps"
        )
    print(f"does XBM recover the large batch's quality? {verdict}")
    if a.json:
        from hpatches_kit.io import atomic_write_json

        atomic_write_json(
            a.json,
            {
                "steps": a.steps,
                "xbm": a.xbm,
                "xbm_start": a.xbm_start,
                "runs": info,
                "results": res,
                "mean": avg,
                "verdict": verdict,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
