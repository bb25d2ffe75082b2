"""``real``: real validation -- HPatches-format patches cut from real photographed sequences, the official
protocol, every descriptor next to SIFT and RootSIFT on the same patches (:mod:`hpatches_kit.evaluation.real`).

Never train on these sequences or tune to them: they measure generalisation.
"""

from __future__ import annotations

from pathlib import Path

from .describe import model_label
from .registry import Benchmark


def add_arguments(p) -> None:
    from ..evaluation.describers import BASELINES
    from ..evaluation.real import REGIMES

    p.add_argument("--data", required=True, help="folder of real homography sequences (e.g. ../shared/real-sequences)")
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="FILE.keras",
        help="a descriptor model (repeatable; named after the file, or its folder for model.keras)",
    )
    p.add_argument(
        "--baseline",
        action="append",
        default=None,
        choices=BASELINES.choices(),
        help="baselines next to the models (repeatable; default: sift and rootsift)",
    )
    p.add_argument(
        "--regime",
        action="append",
        default=None,
        choices=tuple(REGIMES),
        help="geometric-noise regime(s) (repeatable; default: all: " + ", ".join(REGIMES) + ")",
    )
    p.add_argument("--max-patches", type=int, default=None, help="patches per sequence (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-sequence", action="store_true", help="also report matching mAP per scene")


def run(o) -> dict:
    """``{"benchmark": "real", "data", "regimes": {regime: {data, tracks, sequences, rows}}}``: the result of
    :func:`hpatches_kit.evaluation.real.compare_on_real` (headline mAP %, per task)."""
    from ..evaluation.real import REGIMES, compare_on_real

    models = {}
    for m in o.model:
        name = model_label(m)
        models[name if name not in models else m] = m
    regimes = tuple(o.regime or REGIMES)
    res = compare_on_real(
        o.data,
        models,
        baselines=tuple(o.baseline or ("sift", "rootsift")),
        regimes=regimes,
        seed=o.seed,
        max_patches=o.max_patches,
        progress=o.progress,
        per_sequence=o.per_sequence,
    )
    return {"benchmark": "real", "data": str(o.data), "regimes": res}


def format_results(res: dict) -> str:
    from ..evaluation.real import REGIMES
    from ..evaluation.registry import TASKS

    lines = [f"real validation on {res['data']} (official protocol, mAP %, never trained on)"]
    for regime, r in res["regimes"].items():
        lines += [
            "",
            f"## {regime} geometric noise (jitter x {REGIMES[regime]:.3f}): {len(r['sequences'])} scenes, "
            f"{r['tracks']} tracks",
            f"{'descriptor':<26}" + "".join(f"{t:>14}" for t in TASKS),
        ]
        lines += [f"{name:<26}" + "".join(f"{row[t]:>14.2f}" for t in TASKS) for name, row in r["rows"].items()]
        if any("matching_per_sequence" in row for row in r["rows"].values()):
            seqs = r["sequences"]
            lines += ["", f"{'matching per scene':<26}" + "".join(f"{s:>14}" for s in seqs)]
            lines += [
                f"{name:<26}" + "".join(f"{row['matching_per_sequence'][s]:>14.2f}" for s in seqs)
                for name, row in r["rows"].items()
            ]
    return "\n".join(lines)


def plots(res: dict, out_dir) -> list:
    from ..plots.benchmarks import plot_real

    return [plot_real(res["regimes"], Path(out_dir) / "real_validation.png")]


BENCHMARK = Benchmark(
    name="real",
    run=run,
    add_arguments=add_arguments,
    format=format_results,
    plots=plots,
    help="real validation: descriptors next to SIFT and RootSIFT on real photographs",
    description="Real validation: HPatches-format patches cut from real photographed sequences (cached per "
    "source, regime and seed), the official protocol (all sequences, task files generated, L2), every "
    "--model next to SIFT and RootSIFT on the same patches. Never train on these sequences or tune to "
    "them: they measure generalisation.",
)
