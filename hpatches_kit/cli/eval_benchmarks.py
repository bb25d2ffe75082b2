"""``hpatches-eval --benchmark brown|sequences``: the Brown/UBC PhotoTour and full-image matching benchmarks.

* ``--benchmark brown --data DIR --subset liberty[,notredame,...]``: FPR at 95% recall on the standard 100k
  pairs (``--pairs`` for another ``m50_*`` file) and the revisited SNN mAP (needs ``interest.txt``);
  descriptors from ``--model``, ``--baseline`` or ``--descriptors FILE`` (``.npy`` or CSV, one row per
  patch in ``info.txt`` order).
* ``--benchmark sequences --data DIR``: detect (``--detector``), describe, mutual-NN match; MMA at 1..10 px
  (overall / illumination / viewpoint) and homography accuracy at 1/3/5 px (``--method ransac|usac``).

Both print a table and write ``--json`` and ``--plots`` like the HPatches tasks. Bad input exits with code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path



def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hpatches-eval --benchmark", description=__doc__.splitlines()[0])
    p.add_argument("--benchmark", required=True, choices=("brown", "sequences"))
    p.add_argument("--data", required=True, help="Brown folder (with the subset folders) or sequences folder")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", metavar="FILE.keras", help="Keras descriptor model")
    src.add_argument("--baseline", choices=("sift", "rootsift", "raw"), help="baseline descriptor (default: sift)")
    src.add_argument("--descriptors", metavar="FILE", help="brown: .npy or CSV, one row per patch (info.txt order)")
    p.add_argument("--batch-size", type=int, default=512, help="batch size for --model")
    p.add_argument("--json", default=None, metavar="OUT", help="write the results JSON here")
    p.add_argument("--plots", default=None, metavar="DIR", help="write plots into this folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    b = p.add_argument_group("brown")
    b.add_argument("--subset", default="liberty", help="subset(s), comma-separated (default: liberty)")
    b.add_argument("--pairs", default="m50_100000_100000_0.txt", help="match file (default: the 100k test pairs)")
    b.add_argument("--distance", default="L2", choices=("L2", "L1"), help="FPR95 distance (default: L2)")
    b.add_argument("--no-revisited", action="store_true", help="skip the revisited mAP (describes only paired patches)")
    b.add_argument("--exact-mining", action="store_true",
                   help="revisited mAP: mine a hardest negative for every anchor (not the reference code's quirks)")
    s = p.add_argument_group("sequences")
    s.add_argument("--detector", default="dog", choices=("dog", "harris", "hessian"))
    s.add_argument("--max-keypoints", type=int, default=2000, help="keypoints per image (default: 2000)")
    s.add_argument("--patch-size", type=int, default=65, help="patch size handed to the descriptor (default: 65)")
    s.add_argument("--method", default="ransac", choices=("ransac", "usac"), help="homography estimator")
    s.add_argument("--seed", type=int, default=0)
    return p


def _describer(args):
    from ..evaluation import get_baseline, keras_describer

    if args.model:
        return keras_describer(args.model, batch_size=args.batch_size), Path(args.model).stem
    name = args.baseline or "sift"
    return get_baseline(name), name


def run_brown(args) -> dict:
    from ..data.brown import open_brown
    from ..evaluation.brown import evaluate_brown, format_brown

    progress = not args.no_progress
    describer, label = (None, Path(args.descriptors).stem) if args.descriptors else _describer(args)
    from ..evaluation.descriptor_csv import read_descriptor_rows

    rows = read_descriptor_rows(args.descriptors) if args.descriptors else None
    results, curves = [], {}
    for name in [s.strip() for s in args.subset.split(",") if s.strip()]:
        sub = open_brown(args.data, name)
        r = evaluate_brown(sub, describer=describer, descriptors=rows, pairs=args.pairs,
                           revisited=not args.no_revisited, reference_quirks=not args.exact_mining,
                           distance=args.distance, progress=progress, keep_distances=bool(args.plots))
        r["descriptor"] = label
        if r.get("revisited_note"):
            print(f"[note] {r['revisited_note']}", file=sys.stderr)
        results.append(r)
        if args.plots:
            from sklearn.metrics import roc_curve

            d, y = r.pop("pair_distances"), r.pop("pair_labels")
            fpr, tpr, _ = roc_curve(y, -d)
            curves[f"{label} {name}"] = (fpr, tpr, r["fpr95"])
    print(format_brown(results))
    out = {"benchmark": "brown", "data": str(args.data), "descriptor": label, "results": results}
    if args.plots and curves:
        from ..plots.benchmarks import plot_brown_roc

        print(f"plot written: {plot_brown_roc(curves, Path(args.plots) / 'brown_roc.png')}")
    return out


def run_sequences(args) -> dict:
    from ..evaluation.image_matching import evaluate_sequences, format_sequences

    if args.descriptors:
        raise SystemExit("hpatches-eval: --benchmark sequences describes detected keypoints: use --model or --baseline")
    describer, label = _describer(args)
    res = evaluate_sequences(args.data, describer, detector=args.detector, max_keypoints=args.max_keypoints,
                             patch_size=args.patch_size, method=args.method, seed=args.seed,
                             progress=not args.no_progress)
    res["meta"]["descriptor"] = label
    res["meta"]["data"] = str(args.data)
    print(format_sequences(res))
    if args.plots:
        from ..plots.benchmarks import plot_mma

        print(f"plot written: {plot_mma([res], Path(args.plots) / 'mma_vs_threshold.png')}")
    return res


def run(args) -> int:
    from ..checks import check_options
    from ..data.fsio import check_outputs, input_paths
    from ..io import atomic_write_json

    check_options(args)
    check_outputs(files={"--json": args.json}, folders={"--plots": args.plots}, inputs=input_paths(args))
    res = run_brown(args) if args.benchmark == "brown" else run_sequences(args)
    if args.json:
        atomic_write_json(args.json, res)
        print(f"results written to {args.json}")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from ._errors import run_command

    return run_command("hpatches-eval", run, args)


if __name__ == "__main__":
    sys.exit(main())
