"""``hpatches-eval``: benchmark a descriptor on the HPatches tasks (verification, matching, retrieval).

Descriptors come from a CSV folder in the official layout (``--descriptors``), a Keras model
(``--model``, optional ``--denoiser``) or a baseline (``--baseline``, default sift). Task files are read
from ``--tasks-dir`` by their official names, otherwise generated for the dataset by the official rules
(cached). ``--task pair-matching`` hands the whole command line to ``hpatches_kit.cli.eval_pairs``;
``hpatches-eval compare RESULTS.json... --out DIR`` (``hpatches_kit.cli.eval_compare``) compares results;
``--benchmark brown|sequences`` (Brown PhotoTour FPR95 + revisited mAP, full-image matching) hands off to
``hpatches_kit.cli.eval_benchmarks``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

from ..data.fsio import check_output_dir, check_output_file

TASK_CHOICES = ("verification", "matching", "retrieval", "all", "pair-matching")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hpatches-eval", description=__doc__.splitlines()[0],
                                epilog="hpatches-eval compare RESULTS.json... --out DIR: the multi-descriptor figure, "
                                       "Markdown table and CSV from --json results (hpatches-eval compare --help)")
    p.add_argument("--task", default="all", choices=TASK_CHOICES, help="task to run (default: all three)")
    p.add_argument("--data", default=None, help="dataset folder (default: the embedded default dataset)")
    p.add_argument("--split", default="full", help="split: a, b, c (need a splits file), illum, view, full (default)")
    p.add_argument("--splits-file", default=None, help="splits.json (official format)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--descriptors", metavar="CSV_DIR", help="descriptor folder <name>/<sequence>/<type>.csv")
    src.add_argument("--model", metavar="FILE.keras", help="Keras descriptor model")
    src.add_argument("--baseline", choices=("sift", "rootsift", "raw"), help="baseline descriptor (default: sift)")
    p.add_argument("--denoiser", metavar="FILE.keras", help="Keras denoiser applied before --model")
    p.add_argument("--noisy", action="store_true", help="describe the noisy (*_noise.png) patches (N-HPatches)")
    p.add_argument("--tasks-dir", default=None, help="folder with the official task CSVs of the split")
    p.add_argument("--distance", default="L2", choices=("L2", "L1"))
    p.add_argument("--json", default=None, metavar="OUT", help="write the results JSON here")
    p.add_argument("--plots", default=None, metavar="DIR", help="write plots into this folder")
    p.add_argument("--export-csv", default=None, metavar="DIR", help="export the descriptors as CSVs (official layout)")
    p.add_argument("--batch-size", type=int, default=1024, help="batch size for --model (every batch has this size)")
    p.add_argument("--precision", default="auto", choices=("auto", "float32", "mixed_bfloat16", "mixed_float16"),
                   help="precision --model runs in (default auto: the device's best, bf16 on AMX CPUs/GPUs/TPUs, "
                        "as training resolves it; float32 forces full precision)")
    p.add_argument("--cache", default=None, choices=("auto", "off"),
                   help="read HPatches folders through their packed cache, built on first use (default: "
                        "$HPATCHES_KIT_CACHE or auto)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--benchmark", default="hpatches", choices=("hpatches", "brown", "sequences"),
                   help="brown / sequences: see hpatches-eval --benchmark brown --help (default: hpatches)")
    return p


def _wants_pair_matching(argv) -> bool:
    argv = list(argv)
    for i, a in enumerate(argv):
        if a == "--task" and i + 1 < len(argv) and argv[i + 1] == "pair-matching":
            return True
        if a == "--task=pair-matching":
            return True
    return False


def _wants_benchmark(argv) -> bool:
    argv = list(argv)
    for i, a in enumerate(argv):
        if a == "--benchmark" and i + 1 < len(argv) and argv[i + 1] in ("brown", "sequences"):
            return True
        if a in ("--benchmark=brown", "--benchmark=sequences"):
            return True
    return False


def run(args) -> int:
    from ..data import index_dataset, load_dataset
    from ..evaluation import compute_descriptors, evaluate, format_summary, get_baseline, keras_describer
    from ..evaluation.describers import read_descriptor_set, write_descriptor_dir
    from ..io import atomic_write_json

    progress = not args.no_progress
    tasks = ("verification", "matching", "retrieval") if args.task == "all" else (args.task,)
    if args.denoiser and not args.model:
        raise SystemExit("hpatches-eval: --denoiser needs --model")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    # output paths are checked before the (long) evaluation, not after it
    if args.json:
        check_output_file(args.json, "--json")
    for flag, d in (("--plots", args.plots), ("--export-csv", args.export_csv)):
        if d:
            check_output_dir(d, flag)
    dataset = None
    t0, c0 = time.perf_counter(), time.process_time()
    if args.descriptors:
        # precomputed descriptors: no image is decoded. The dataset (if given, or needed to generate task
        # files) is only indexed: sequence names, patch counts from the PNG headers, and the ref images
        # decoded only if retrieval task files must be generated
        if args.data is not None or (args.tasks_dir is None and any(t != "matching" for t in tasks)):
            dataset = index_dataset(args.data, split=args.split, splits_file=args.splits_file, progress=progress)
        names = dataset.names if dataset is not None else None
        descs = read_descriptor_set(args.descriptors, names, progress=progress)
        label = Path(args.descriptors).name
    else:
        dataset = load_dataset(args.data, split=args.split, splits_file=args.splits_file,
                               noise=True if args.noisy else None, progress=progress, cache=args.cache)
        if args.model:
            describer = keras_describer(args.model, denoiser=args.denoiser, batch_size=args.batch_size,
                                        precision=args.precision)
            label = Path(args.model).stem
        else:
            label = args.baseline or "sift"
            describer = get_baseline(label)
        descs = compute_descriptors(dataset, describer, noisy=args.noisy, progress=progress)
    t_desc, c_desc = time.perf_counter() - t0, time.process_time() - c0  # reading (or computing) the descriptors
    if args.export_csv:
        write_descriptor_dir(args.export_csv, descs.as_dict() if hasattr(descs, "as_dict") else descs)
        print(f"descriptors exported to {args.export_csv}")
    results = evaluate(descs, dataset, tasks=tasks, split=args.split, splits_file=args.splits_file,
                       tasks_dir=args.tasks_dir, distance=args.distance, progress=progress)
    results["meta"]["descriptor"] = label
    results["meta"]["seconds"] = {"descriptors": t_desc, **results["meta"]["seconds"]}
    results["meta"]["cpu_seconds"] = {"descriptors": c_desc, **results["meta"]["cpu_seconds"]}
    print(format_summary(results))
    if args.json:
        atomic_write_json(args.json, results)
        print(f"results written to {args.json}")
    if args.plots:
        from ..plots.eval import plot_results

        for p in plot_results(results, args.plots, name=label):
            print(f"plot written: {p}")
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["compare"]:
        return int(importlib.import_module("hpatches_kit.cli.eval_compare").main(argv[1:]) or 0)
    if _wants_pair_matching(argv):
        return int(importlib.import_module("hpatches_kit.cli.eval_pairs").main(argv) or 0)
    if _wants_benchmark(argv):
        return int(importlib.import_module("hpatches_kit.cli.eval_benchmarks").main(argv) or 0)
    args = build_parser().parse_args(argv)
    from ._errors import run_command

    return run_command("hpatches-eval", run, args)

if __name__ == "__main__":
    sys.exit(main())
