"""``brown``: Brown/UBC PhotoTour FPR at 95% recall on the standard pairs and the revisited SNN mAP."""

from __future__ import annotations

import logging
from pathlib import Path

from .describe import add_describer_arguments, describer_from_options
from .registry import Benchmark

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    p.add_argument("--data", required=True, help="Brown folder (with the subset folders)")
    add_describer_arguments(p, descriptors_help=".npy or CSV, one row per patch (info.txt order)")
    p.add_argument("--subset", default="liberty", help="subset(s), comma-separated (default: liberty)")
    p.add_argument("--pairs", default="m50_100000_100000_0.txt", help="match file (default: the 100k test pairs)")
    p.add_argument("--distance", default="L2", choices=("L2", "L1"), help="FPR95 distance (default: L2)")
    p.add_argument("--no-revisited", action="store_true", help="skip the revisited mAP (describes only paired patches)")
    p.add_argument(
        "--exact-mining",
        action="store_true",
        help="revisited mAP: mine a hardest negative for every anchor (not the reference code's quirks)",
    )


def run(o) -> dict:
    """``{"benchmark": "brown", "data", "descriptor", "results": [one dict per subset]}`` (+ ``_curves`` for
    the ROC plot when ``o.plots``)."""
    from ..data.brown import open_brown
    from ..evaluation.brown import evaluate_brown
    from ..evaluation.descriptor_csv import read_descriptor_rows

    if o.descriptors:
        describer, label, rows = None, Path(o.descriptors).stem, read_descriptor_rows(o.descriptors)
    else:
        (describer, label), rows = describer_from_options(o), None
    results, curves = [], {}
    for name in [s.strip() for s in o.subset.split(",") if s.strip()]:
        sub = open_brown(o.data, name)
        r = evaluate_brown(
            sub,
            describer=describer,
            descriptors=rows,
            pairs=o.pairs,
            revisited=not o.no_revisited,
            reference_quirks=not o.exact_mining,
            distance=o.distance,
            progress=o.progress,
            keep_distances=bool(o.plots),
        )
        r["descriptor"] = label
        if r.get("revisited_note"):
            log.warning("[note] %s", r["revisited_note"])
        if "pair_distances" in r:
            from sklearn.metrics import roc_curve

            d, y = r.pop("pair_distances"), r.pop("pair_labels")
            fpr, tpr, _ = roc_curve(y, -d)
            curves[f"{label} {name}"] = (fpr, tpr, r["fpr95"])
        results.append(r)
    return {"benchmark": "brown", "data": str(o.data), "descriptor": label, "results": results, "_curves": curves}


def format_results(res: dict) -> str:
    from ..evaluation.brown import format_brown

    return format_brown(res["results"])


def plots(res: dict, out_dir) -> list:
    if not res.get("_curves"):
        return []
    from ..plots.benchmarks import plot_brown_roc

    return [plot_brown_roc(res["_curves"], Path(out_dir) / "brown_roc.png")]


BENCHMARK = Benchmark(
    name="brown",
    run=run,
    add_arguments=add_arguments,
    format=format_results,
    plots=plots,
    help="Brown/UBC PhotoTour: FPR95 and revisited mAP",
    description="Brown/UBC PhotoTour: FPR at 95% recall on the standard 100k pairs (--pairs for another m50_* "
    "file) and the revisited SNN mAP (needs interest.txt); descriptors from --model, --baseline or "
    "--descriptors FILE (.npy or CSV, one row per patch in info.txt order).",
    aliases=(("benchmark", "brown"),),
)
