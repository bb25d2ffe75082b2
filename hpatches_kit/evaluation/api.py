"""``evaluate``: run the HPatches tasks on descriptors and summarise them as the official results printer."""

from __future__ import annotations

import time
from collections.abc import Mapping
from collections.abc import Sequence as Seq

import numpy as np

from ..data.errors import DataError
from ..data.hpatches import TYPES
from ..data.splits import split_sequences
from . import registry
from .descriptor_set import DescriptorSet
from .matching import summarise_matching
from .registry import TASKS
from .retrieval import summarise_retrieval
from .task_interface import VARIANT_NAMES, TaskContext  # noqa: F401  (VARIANT_NAMES re-exported)
from .tasks import load_tasks, ref_summaries, task_cache_dir, tasks_for_dataset
from .verification import summarise_verification

#: the headline definitions of the official tasks (each task's ``headline_definition``)
HEADLINES = {t: registry.get(t).headline_definition for t in TASKS}

__all__ = [
    "evaluate",
    "format_summary",
    "DegenerateDescriptorWarning",
    "descriptor_spread_check",
    "summarise_verification",
    "summarise_matching",
    "summarise_retrieval",
]


class DegenerateDescriptorWarning(UserWarning):
    """The descriptors are constant, or nearly: the official numbers are computed but mean nothing."""


SPREAD_TOL = 1e-3  # kept for compatibility; the check is :func:`degenerate_spread`
#: descriptors whose spread about their centroid is under this many float32 rounding steps of their own
#: magnitude are "nearly constant": their distances are mostly rounding, and ties decide the scores
RESOLVABLE_STEPS = 256.0


def descriptor_spread_check(descs: Mapping, sequences, max_rows: int = 20000) -> dict:
    """``{"spread", "rms_norm", "relative_spread"}`` of the descriptors of ``sequences`` (every patch type;
    at most ``max_rows`` evenly spaced rows): spread = ``sqrt(sum_d var_d)`` (RMS distance to the centroid),
    relative to the RMS descriptor norm. 0 for constant descriptors, about 1 for well-spread unit vectors."""
    rows = [np.asarray(a) for s in sequences for a in descs[s].values()]
    rows = [r.reshape(len(r), -1) for r in rows]
    total = sum(len(r) for r in rows)
    if total > max_rows:  # the evenly spaced rows of the concatenation, gathered without concatenating it
        pick = np.linspace(0, total - 1, max_rows).astype(int)
        starts = np.cumsum([0] + [len(r) for r in rows])
        which = np.searchsorted(starts, pick, side="right") - 1
        x = np.concatenate([rows[k][pick[which == k] - starts[k]] for k in np.unique(which)])
    else:
        x = np.concatenate(rows) if rows else np.zeros((0, 1))
    x = x.astype(np.float64)
    spread = float(np.sqrt(x.var(axis=0).sum())) if len(x) else 0.0
    rms = float(np.sqrt((x**2).sum(1).mean())) if len(x) else 0.0
    rel = spread / rms if rms > 0 else 0.0
    # the spread in float32 rounding steps (2^-23 relative) of the values' magnitude: a common offset moves rms
    # and the rounding step together, so an offset that leaves the differences resolvable is not flagged
    return {"spread": spread, "rms_norm": rms, "relative_spread": rel, "float32_steps": rel / 2.0**-23}


def degenerate_spread(spread: dict) -> str | None:
    """What is wrong with descriptors of ``spread`` (:func:`descriptor_spread_check`): ``"constant"``,
    ``"nearly constant (...)"`` when their spread about the centroid is under :data:`RESOLVABLE_STEPS` float32
    rounding steps of their magnitude (their distances are rounding noise), else ``None``. Based on the
    centred descriptors, so a large common offset (``+1e5``) whose differences stay exact is not flagged.

    Example:
        >>> degenerate_spread({"spread": 0.0, "relative_spread": 0.0, "float32_steps": 0.0})
        'constant'
        >>> degenerate_spread({"spread": 30.0, "relative_spread": 3e-4, "float32_steps": 2516.6}) is None
        True
    """
    if spread["spread"] == 0:
        return "constant"
    steps = spread.get("float32_steps", spread["relative_spread"] / 2.0**-23)
    if not np.isfinite(steps) or steps < RESOLVABLE_STEPS:
        return (
            f"nearly constant (their spread is {steps:.3g} float32 rounding steps of their magnitude, relative "
            f"spread {spread['relative_spread']:.3g})"
        )
    return None


def _check_counts(dataset, ds: DescriptorSet, test) -> None:
    """Descriptor counts against the dataset's patch counts (a :class:`DatasetIndex` reads them from the
    PNG headers, nothing decoded)."""
    for s in test:
        n = (
            dataset.num_patches(s)
            if hasattr(dataset, "num_patches") and callable(dataset.num_patches)
            else dataset[s].num_patches
        )
        if n != ds.lengths[s]:
            raise DataError(s, f"descriptors hold {ds.lengths[s]} patches but the dataset sequence holds {n}")


def evaluate(
    descs: Mapping,
    dataset=None,
    tasks: Seq[str] = TASKS,
    split: str = "full",
    splits_file=None,
    tasks_dir=None,
    distance: str = "L2",
    progress: bool = True,
    cache_dir=None,
    counts=None,
    diagnostics: bool = True,
) -> dict:
    """Run the official HPatches tasks (verification, matching, retrieval) on ``descs`` over the test
    sequences of ``split``.

    ``dataset`` (an :class:`HPatchesDataset`, or a :class:`~hpatches_kit.data.DatasetIndex` when the
    descriptors are precomputed: nothing but the ``ref`` images is then decoded, and only to generate
    retrieval task files) is needed to generate task files (when ``tasks_dir`` is None)
    and names the available sequences; with ``tasks_dir`` the official files ``verif_*_split-<split>.csv``
    and ``retr_*_split-<split>.csv`` are read from it.

    Args:
        descs: ``{sequence: {type: (N, D) array}}`` (types ``ref, e1..e5, h1..h5, t1..t5``) or a
            :class:`DescriptorSet`; e.g. :func:`~hpatches_kit.evaluation.compute_descriptors`' output.
        dataset: the dataset the descriptors describe (``None``: only with ``tasks_dir``, or for matching alone).
        tasks: tasks to run, in any order (results come in the registry's order).
        split: ``"a"``, ``"b"``, ``"c"`` (official splits), ``"illum"``, ``"view"`` or ``"full"``.
        splits_file: ``splits.json`` for ``a``/``b``/``c`` when the dataset carries none.
        tasks_dir: folder of the official task CSVs (``None``: generated by the official rules, seed 42, cached).
        distance: ``"L2"`` or ``"L1"``.
        progress: show progress bars.
        cache_dir: where generated task files are cached (default: the toolkit's cache).
        counts: pair / query counts for generated task files (default: scaled to the dataset).
        diagnostics: add ``meta["diagnostics"]``
            (:func:`~hpatches_kit.evaluation.diagnostics.descriptor_diagnostics`: PCA dimensions holding 90% / 99%
            of the energy, mean pair distances).

    Returns:
        A JSON-ready dict: one entry per task (``table`` with per-variant numbers in %, ``headline`` with
        ``value`` in %) plus ``meta`` (split, sequences, tracks, dim, distance, task-file source, timings,
        ``descriptor_spread``, ``diagnostics``, ``warnings`` for degenerate descriptors).

    Raises:
        DataError: descriptors that do not match the dataset, or a split without test sequences.
        ValueError: unknown task names, or task files needed without a dataset.

    Shape:
        - ``descs[seq][type]``: :math:`(N_{seq}, D)`, the same ``N`` for every type of a sequence.

    Examples:
        >>> import numpy as np
        >>> from hpatches_kit.layout import TYPES
        >>> rng = np.random.default_rng(0)
        >>> descs = {}
        >>> for seq in ("i_demo", "v_demo"):
        ...     ref = rng.normal(size=(20, 8)).astype(np.float32)
        ...     descs[seq] = {t: ref + 0.01 * rng.normal(size=ref.shape).astype(np.float32) for t in TYPES}
        >>> res = evaluate(descs, None, tasks=("matching",), progress=False)
        >>> res["meta"]["sequences"], round(res["matching"]["headline"]["value"], 2)
        (2, 100.0)
    """
    tasks = tuple(tasks)
    known = registry.names()
    bad = [t for t in tasks if t not in known]
    if bad:
        raise ValueError(f"unknown tasks {bad}; expected some of {known}")
    have = descs.names if isinstance(descs, DescriptorSet) else list(descs)
    available = dataset.names if dataset is not None else have
    root = dataset.root if dataset is not None else None
    test = split_sequences(split, available, subset="test", splits_file=splits_file, root=root)
    if not test:
        raise DataError(splits_file or root, f"split {split!r} has no test sequences in this dataset")
    ds = descs.subset(test) if isinstance(descs, DescriptorSet) else DescriptorSet(descs, test)
    if dataset is not None and tasks_dir is not None:
        _check_counts(dataset, ds, test)
    need_files = [f for f in ("verification", "retrieval") if any(f in registry.get(t).files for t in tasks)]
    if tasks_dir is not None:
        ts = load_tasks(
            tasks_dir, split, need_files, lengths={s: ds.lengths[s] for s in test}, test=test, cache_dir=cache_dir
        )
    elif need_files:
        if dataset is None:
            raise ValueError("evaluate needs the dataset (to generate task files) or tasks_dir")
        # the native ref patches, one sequence at a time, summarised (count, digest, pixel std): the task files
        # are those of the native patches whatever size the descriptors were computed at
        refs = ref_summaries(dataset, test, cache_dir=task_cache_dir(cache_dir))
        for s in test:
            if len(refs[s]) != ds.lengths[s]:
                raise DataError(
                    s, f"descriptors hold {ds.lengths[s]} patches but the dataset sequence holds {len(refs[s])}"
                )
        ts = tasks_for_dataset(refs, test, split, need_files, cache_dir=cache_dir, counts=counts, progress=progress)
    else:
        ts = None
    results = {
        "meta": {
            "split": split,
            "sequences": len(test),
            "tracks": int(sum(ds.lengths.values())),
            "dim": ds.dim,
            "distance": distance,
            "tasks_source": ts.source if ts else None,
            "tasks_digest": ts.digest() if ts else None,
            "sequence_names": sorted(test),
        }
    }
    timings = results["meta"]["seconds"] = {}
    cpu = results["meta"]["cpu_seconds"] = {}  # all threads of the process
    spread = descriptor_spread_check({q: dict(zip(TYPES, ds.stacks[q])) for q in test}, test)
    results["meta"]["descriptor_spread"] = spread
    what = degenerate_spread(spread)
    if what:
        msg = (
            f"the descriptors are {what}: every distance ties, and the official tie rules then score "
            f"retrieval near 100% and verification near 0 -- these numbers say nothing about the descriptor"
        )
        results["meta"]["warnings"] = [msg]
        import warnings

        warnings.warn(msg, DegenerateDescriptorWarning, stacklevel=2)
    if diagnostics:
        from .diagnostics import descriptor_diagnostics

        t0 = time.perf_counter()
        results["meta"]["diagnostics"] = descriptor_diagnostics(ds, test, distance=distance)
        results["meta"]["diagnostics"]["seconds"] = time.perf_counter() - t0  # not a task: not in meta.seconds
    ctx = TaskContext(sequences=test, split=split, distance=distance, progress=progress, files=ts)
    for name in known:  # registry order: the results' order does not depend on the order of ``tasks``
        if name not in tasks:
            continue
        t0, c0 = time.perf_counter(), time.process_time()
        results[name] = registry.get(name).run(ds, ctx)
        timings[name] = time.perf_counter() - t0
        cpu[name] = time.process_time() - c0
    return results


def format_summary(results: dict) -> str:
    """Plain-text tables (numbers in %) in the layout of the official results printer.

    Args:
        results: the dict :func:`evaluate` returns (or a results JSON read back).

    Returns:
        The tables, one line per row, warnings first.
    """
    lines = []
    m = results.get("meta", {})
    for w in m.get("warnings", []):
        lines.append(f"WARNING: {w}")
    if m:
        lines.append(
            f"HPatches evaluation: split {m.get('split')}, {m.get('sequences')} sequences, "
            f"{m.get('tracks')} tracks, dim {m.get('dim')}, distance {m.get('distance')}"
        )
    for name in registry.names():
        if name in results:
            lines += registry.get(name).format(results[name])
    return "\n".join(lines)
