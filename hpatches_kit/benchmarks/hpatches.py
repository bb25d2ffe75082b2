"""``hpatches``: the official HPatches tasks (verification, matching, retrieval and any task registered in
:mod:`hpatches_kit.evaluation.registry`) on a dataset folder or the embedded default."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from .describe import add_describer_arguments, describer_from_options, not_held_out
from .registry import Benchmark

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    from ..evaluation import registry

    p.add_argument(
        "--task", default="all", choices=registry.names() + ("all",), help="task to run (default: all registered tasks)"
    )
    p.add_argument("--data", default=None, help="dataset folder (default: the embedded default dataset)")
    p.add_argument("--split", default="full", help="split: a, b, c (need a splits file), illum, view, full (default)")
    p.add_argument("--splits-file", default=None, help="splits.json (official format)")
    add_describer_arguments(p, descriptors_help="descriptor folder <name>/<sequence>/<type>.csv")
    p.add_argument("--denoiser", metavar="FILE.keras", help="Keras denoiser applied before --model")
    p.add_argument("--noisy", action="store_true", help="describe the noisy (*_noise.png) patches (N-HPatches)")
    p.add_argument("--tasks-dir", default=None, help="folder with the official task CSVs of the split")
    p.add_argument("--distance", default="L2", choices=("L2", "L1"))
    p.add_argument("--export-csv", default=None, metavar="DIR", help="export the descriptors as CSVs (official layout)")
    p.add_argument(
        "--cache",
        default="auto",
        choices=("auto", "off"),
        help="auto (default): read HPatches folders through their packed cache, built on first use beside the data "
        "(or in the cache folder) at the size the describer takes (a --model's input size: the cache training "
        "built is reused) and memory-mapped afterwards, so a second evaluation starts in seconds and memory does "
        "not grow with the data; off: decode every PNG into memory",
    )


def run(o) -> dict:
    """Describe (or read) the patches and run the tasks asked for; the results dict of
    :func:`hpatches_kit.evaluation.evaluate` with ``meta.descriptor`` and the describing time added."""
    from ..data import index_dataset, load_dataset
    from ..evaluation import compute_descriptors, evaluate, registry
    from ..evaluation.describers import read_descriptor_set, write_descriptor_dir

    progress = o.progress
    tasks = registry.names() if o.task == "all" else (o.task,)
    if o.denoiser and not o.model:
        raise ValueError("--denoiser needs --model")
    dataset = describer = None
    t0, c0 = time.perf_counter(), time.process_time()
    if o.descriptors:
        # precomputed descriptors: no image is decoded. The dataset (if given, or needed to generate task
        # files) is only indexed: sequence names, patch counts from the PNG headers, and the ref images
        # decoded only if retrieval task files must be generated
        if o.data is not None or (o.tasks_dir is None and any(t != "matching" for t in tasks)):
            dataset = index_dataset(o.data, split=o.split, splits_file=o.splits_file, progress=progress)
        names = dataset.names if dataset is not None else None
        descs = read_descriptor_set(o.descriptors, names, progress=progress)
        label = Path(o.descriptors).name
    else:
        from ..data.cache import cache_mode
        from ..data.splits import split_sequences

        describer, label = describer_from_options(o)
        cache = getattr(o, "cache", None)
        dataset = load_dataset(
            o.data,
            split=o.split,
            splits_file=o.splits_file,
            noise=True if o.noisy else None,
            progress=progress,
            cache=cache,
            # through the cache, the patches are packed at the size the describer takes (resized once, by the
            # same function the describer would use on every run); a packed folder or another format is read
            # as it is and resized batch by batch
            size=_packable_size(o.data, describer) if cache_mode(cache) == "auto" else None,
        )
        test = split_sequences(o.split, dataset.names, splits_file=o.splits_file, root=dataset.root)
        descs = compute_descriptors(dataset, describer, noisy=o.noisy, progress=progress, sequences=test)
    t_desc, c_desc = time.perf_counter() - t0, time.process_time() - c0  # reading (or computing) the descriptors
    if o.export_csv:
        write_descriptor_dir(o.export_csv, descs.as_dict() if hasattr(descs, "as_dict") else descs)
        log.info("descriptors exported to %s", o.export_csv)
    results = evaluate(
        descs,
        dataset,
        tasks=tasks,
        split=o.split,
        splits_file=o.splits_file,
        tasks_dir=o.tasks_dir,
        distance=o.distance,
        progress=progress,
    )
    results["meta"]["descriptor"] = label
    if dataset is not None and getattr(dataset, "root", None) is not None:
        results["meta"]["data"] = str(dataset.root)  # the comparison figure's caption names it
        why = not_held_out(o.model, dataset.root) if getattr(o, "model", None) else None
        if why:
            results["meta"]["not_held_out"] = why
            msg = f"{label} was trained on the photos of this test set (not held out): {why}"
            results["meta"].setdefault("warnings", []).append(msg)
            log.warning(msg)
    # the dtype policy a model described in (bf16 and float32 descriptors of one model score differently);
    # None for CSV descriptors and the NumPy baselines
    results["meta"]["precision"] = getattr(describer, "precision", None)
    results["meta"]["seconds"] = {"descriptors": t_desc, **results["meta"]["seconds"]}
    results["meta"]["cpu_seconds"] = {"descriptors": c_desc, **results["meta"]["cpu_seconds"]}
    # in memory only (never in the JSON): what the descriptor-space plots and the failure galleries draw from
    results["_descriptors"] = descs
    results["_dataset"] = None if o.descriptors else dataset
    results["_options"] = {"distance": o.distance, "noisy": o.noisy, "from_csv": bool(o.descriptors)}
    return results


def _packable_size(data, describer) -> int | None:
    """The patch size to read ``data`` at through its packed cache: the describer's input size when ``data``
    is an HPatches folder (or the embedded default), else ``None`` (as it is)."""
    size = getattr(describer, "input_size", None)
    if size is None or data is None:
        return size
    from ..data.formats import detect_format

    return size if detect_format(data) in ("hpatches", "n-hpatches") else None


def format_results(results: dict) -> str:
    from ..evaluation import format_summary

    return format_summary(results)


def plots(results: dict, out_dir) -> list:
    """The task plots, then the descriptor-space plots (t-SNE, PCA energy, distance histograms) and the failure
    galleries (these need the patches: skipped, with a warning, for descriptors read from CSVs)."""
    from ..plots.diagnostics import plot_diagnostics
    from ..plots.eval import plot_results

    name = results["meta"].get("descriptor", "descriptor")
    written = list(plot_results(results, out_dir, name=name) or [])
    if "_descriptors" not in results:  # results read back from JSON: no descriptors in memory
        return written
    from ..evaluation.api import degenerate_spread

    what = degenerate_spread(results["meta"].get("descriptor_spread") or {"spread": 1.0, "relative_spread": 1.0})
    if what:  # t-SNE and PCA of (nearly) constant descriptors are meaningless (scikit-learn's t-SNE crashes on them)
        log.warning("descriptor-space diagnostics skipped: the descriptors are %s", what)
        return written
    opts = results["_options"]
    if opts["from_csv"]:
        log.warning("failure galleries skipped: --descriptors gives no patches to show (use --model or --baseline)")
    written += plot_diagnostics(
        results["_descriptors"],
        out_dir,
        dataset=results["_dataset"],
        sequences=results["meta"]["sequence_names"],  # the sequences evaluate() scored
        distance=opts["distance"],
        name=name,
        noisy=opts["noisy"],
    )
    return written


BENCHMARK = Benchmark(
    name="hpatches",
    run=run,
    add_arguments=add_arguments,
    format=format_results,
    plots=plots,
    help="the HPatches tasks: verification, matching, retrieval (the default command)",
    description="Benchmark a descriptor on the HPatches tasks (verification, matching, retrieval). Descriptors "
    "come from a CSV folder in the official layout (--descriptors), a Keras model (--model, optional "
    "--denoiser) or a baseline (--baseline, default sift). Task files are read from --tasks-dir by "
    "their official names, otherwise generated for the dataset by the official rules (cached).",
    outputs={"export_csv": "descriptors"},
    aliases=(("benchmark", "hpatches"),),
)
