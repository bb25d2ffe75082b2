"""Compare descriptors from their results: the HPatches paper's figure, a Markdown table and a CSV.

Every results file the toolkit writes is accepted: ``hpatches-eval --json`` output, a training run's
``metrics.json`` (its ``"evaluation"``), and the dict :func:`hpatches_kit.evaluation.evaluate` returns (or its JSON
dump, or :func:`~hpatches_kit.evaluation.summary.summarise_evaluation`'s).

Results are comparable only when they were computed on the same sequences with the same task files:
:func:`load_results` compares the **sequences evaluated** (``meta.sequence_names``; the split *label* does not
matter: a Python-API result labelled ``full`` compares with a CLI result labelled ``a`` on the same sequences),
and refuses (``DataError`` naming both files) other sequences, another number of tracks or other task files
(compared by their content, ``meta.tasks_digest``: the same pairs and queries generated into another folder or
under another split label are the same tasks).
Results written before sequence names were recorded are compared by their split label and their numbers of
sequences and tracks, as before.

Whole-image matching results (``hpatches-eval sequences --json``) compare with each other -- the same images,
keypoints and matcher (:data:`_SEQUENCES_KEYS`) -- as papers draw them: the MMA curves of every descriptor on one
figure and a table of MMA at 1/3/5/10 px and homography accuracy at 1/3/5 px (:func:`sequences_rows`).

Per task, a descriptor's numbers are its headline mAP (``results[task]["headline"]``, as
:func:`hpatches_kit.evaluation.evaluate` defines it) and one number per variant Easy / Hard / Tough: the
mean of the sub-cases the paper's markers show (verification: intra and inter AP; matching: illumination
and viewpoint mAP, or the all-sequence mAP when the split has one kind; retrieval: the per-variant mean over
pool sizes). The table's ``mean`` is the mean of the headlines over the tasks present in every result.

Example::

    from hpatches_kit.evaluation.compare import load_results, write_comparison
    entries = load_results(["sift.json", "l2net.json"])
    from hpatches_kit.plots.eval import plot_comparison
    write_comparison(entries, "report/", figure=plot_comparison)   # comparison.png/.pdf, .md, .csv
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence as Seq
from pathlib import Path

import numpy as np

from ..data.errors import DataError
from . import registry

__all__ = [
    "Entry",
    "load_results",
    "variant_scores",
    "comparison_rows",
    "sequences_rows",
    "is_sequences_result",
    "diagnostics_rows",
    "format_markdown",
    "format_csv",
    "write_comparison",
]

log = logging.getLogger(__name__)

Entry = tuple  # (name, results dict, path)
# compared when a result does not name its sequences (written before ``meta.sequence_names``); with the names on
# both sides only the tracks are (the sequences themselves are compared, the split label is not)
_MATCH_KEYS = (("split", "split"), ("sequences", "number of test sequences"), ("tracks", "number of tracks"))


def variant_scores(task: str, res: dict) -> dict:
    """``{"e", "h", "t"}`` -> the per-variant number of ``res`` (one task's result dict), in %: the mean of
    the task's per-variant markers (:meth:`~.registry.Task.variant_points`)."""
    return {v: float(np.mean(vals)) for v, vals in registry.get(task).variant_points(res).items()}


#: what makes two whole-image matching (``sequences``) results comparable: the same images, keypoints and matcher
_SEQUENCES_KEYS = (
    "sequences",
    "thresholds",
    "detector",
    "max_keypoints",
    "patch_size",
    "method",
    "orientation",
    "magnification",
    "mutual",
    "ratio",
)


def is_sequences_result(r) -> bool:
    """Whether ``r`` is a whole-image matching result (``hpatches-eval sequences --json``,
    :func:`~hpatches_kit.evaluation.image_matching.evaluate_sequences`): MMA curves, not the HPatches tasks."""
    return (
        isinstance(r, dict)
        and isinstance(r.get("meta"), dict)
        and "thresholds" in r["meta"]
        and isinstance(r.get("overall"), dict)
        and "mma" in r["overall"]
    )


def _results_of(r, where) -> dict:
    """The results dict inside what a file holds: itself, or a run's ``metrics.json`` ``"evaluation"``."""
    if is_sequences_result(r):
        if not r["overall"].get("pairs"):
            raise DataError(where, "the whole-image matching result holds no image pairs")
        return r
    if isinstance(r, dict) and r.get("benchmark") == "real" and isinstance(r.get("regimes"), dict):
        raise DataError(
            where,
            "a real-validation result (headline mAP per regime, no per-variant scores): compare descriptors on real "
            "scenes in one run, 'hpatches-eval real --model A.keras --model B.keras ...', whose table and figure "
            "hold every model next to SIFT and RootSIFT on the same patches",
        )
    if isinstance(r, dict) and "meta" not in r and isinstance(r.get("evaluation"), dict):
        ev = r["evaluation"]
        if "error" in ev or "skipped" in ev:
            raise DataError(where, f"the run's evaluation did not complete: {ev.get('error') or ev.get('skipped')}")
        r = ev
    if not isinstance(r, dict) or not isinstance(r.get("meta"), dict):
        raise DataError(
            where, "not a results file (hpatches-eval --json, a run's metrics.json or an evaluate() result): no 'meta'"
        )
    names = r["meta"].get("sequence_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise DataError(
            where,
            f"meta.sequence_names must be a list of sequence names, got {type(names).__name__} {str(names)[:40]!r}",
        )
    tasks = [t for t in registry.names() if t in r]
    if not tasks:
        raise DataError(where, f"holds none of the tasks {', '.join(registry.names())}")
    for t in tasks:
        if not isinstance(r[t], dict) or "headline" not in r[t]:
            raise DataError(where, f"task {t!r} has no headline result")
        head = r[t]["headline"]
        value = head.get("value") if isinstance(head, dict) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DataError(
                where, f"task {t!r}: 'headline' must be an object with a numeric 'value', got {json.dumps(head)[:60]}"
            )
        check_percent(value, where, f"{t}.headline.value")
        try:
            variant_scores(t, r[t])
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            raise DataError(where, f"task {t!r}: malformed per-variant results ({type(e).__name__}: {e})") from None
    return r


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_percent(value, where, field: str) -> float:
    """The one finite-values check of results: ``value`` is a finite number in [0, 100] (a score in %).

    Raises:
        DataError: naming ``where`` (the file) and ``field``, e.g. a hand-edited NaN or 1e9 headline.

    Example:
        >>> check_percent(55.2, "r.json", "matching.headline.value")
        55.2
    """
    x = float(value)
    if not np.isfinite(x) or not 0.0 <= x <= 100.0:
        raise DataError(where, f"{field} is {value!r}; a score must be a finite percentage in [0, 100]")
    return x


def _label(source, r: dict, raw) -> str:
    """The default name of a result: its ``meta.descriptor``, a run's folder name (``metrics.json``) or the stem."""
    if r["meta"].get("descriptor"):
        return str(r["meta"]["descriptor"])
    p = Path(source)
    if isinstance(raw, dict) and "evaluation" in raw and p.name == "metrics.json":
        return p.parent.name or p.stem
    return p.stem


def _sequences_problem(m: dict, m0: dict) -> str | None:
    a, b = m.get("sequence_names"), m0.get("sequence_names")
    if a is not None and b is not None:
        a, b = set(a), set(b)
        if a == b:
            return None
        only, missing = sorted(a - b), sorted(b - a)
        parts = []
        if only:
            parts.append(
                f"has {len(only)} sequence(s) the other lacks ({', '.join(only[:3])}{', ...' if len(only) > 3 else ''})"
            )
        if missing:
            parts.append(
                f"lacks {len(missing)} of its sequences ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})"
            )
        return " and ".join(parts)
    return None


def load_results(paths: Seq, names: Seq[str] | None = None) -> list[Entry]:
    """Read results and check they are comparable.

    Args:
        paths: results (at least one): files written by ``hpatches-eval --json``, runs' ``metrics.json``, JSON
            dumps of :func:`~hpatches_kit.evaluation.evaluate` results, or such result dicts themselves.
        names: one label per result (default: its ``meta.descriptor``, else a run's folder name, else the file
            stem, ``result<i>`` for a dict; repeated labels get the file stem appended).

    Returns:
        ``[(name, results, path)]`` in the order given (``path`` is ``None`` for a dict).

    Raises:
        DataError: a file that does not read as results, or results of other sequences, another number of
            tracks or other task files than the first one's (the message names both files and the difference).

    Example:
        >>> entries = load_results(["sift.json", "runs/l2net/metrics.json"])  # doctest: +SKIP
    """
    paths = list(paths)
    if not paths:
        raise ValueError("load_results: no results files given")
    if names is not None and len(names) != len(paths):
        raise ValueError(f"load_results: {len(names)} names for {len(paths)} files")
    results, raws, sources = [], [], []
    for p in paths:
        if isinstance(p, dict):
            raws.append(p)
            results.append(_results_of(p, None))
            sources.append(None)
        else:
            p = Path(p)
            try:
                raw = json.loads(p.read_text())
            except OSError as e:
                raise DataError(p, f"cannot read results: {e.strerror or e}") from None
            except json.JSONDecodeError as e:
                raise DataError(p, f"not a results JSON (hpatches-eval --json or a run's metrics.json): {e}") from None
            raws.append(raw)
            results.append(_results_of(raw, p))
            sources.append(p)
    first, m0 = sources[0] or "the first result", results[0]["meta"]
    for i, (p, r) in enumerate(zip(sources[1:], results[1:]), 1):
        m = r["meta"]
        where = p if p is not None else f"result {i}"
        if is_sequences_result(r) != is_sequences_result(results[0]):
            kinds = ("whole-image matching (sequences)", "HPatches tasks")
            a, b = (kinds[0], kinds[1]) if is_sequences_result(r) else (kinds[1], kinds[0])
            raise DataError(where, f"holds {a} results but {first} holds {b}: they cannot be compared")
        if is_sequences_result(r):
            for key in _SEQUENCES_KEYS:
                if m.get(key) != m0.get(key):
                    raise DataError(
                        where,
                        f"{key} is {_short(m.get(key))} but {first} has {_short(m0.get(key))}: whole-image "
                        "matching results of other images, keypoints or matchers cannot be compared",
                    )
            continue
        problem = _sequences_problem(m, m0)
        if problem:
            label = (
                f"split is {m.get('split')!r} but {first} has {m0.get('split')!r}: "
                if m.get("split") != m0.get("split")
                else ""
            )
            raise DataError(
                where,
                f"{label}evaluated other sequences than {first}: {problem}; results on different "
                "sequences cannot be compared",
            )
        both_named = m.get("sequence_names") is not None and m0.get("sequence_names") is not None
        for key, what in _MATCH_KEYS:
            if key in ("split", "sequences") and both_named:
                continue
            if m.get(key) != m0.get(key):
                raise DataError(
                    where,
                    f"{what} is {m.get(key)!r} but {first} has {m0.get(key)!r}: results of "
                    "different splits or datasets cannot be compared",
                )
        needs_files = any(t in r and t in results[0] and registry.get(t).files for t in registry.names())
        # the task set's identity is its content (meta.tasks_digest); results written before it was recorded
        # are compared by where their task files came from
        key = "tasks_digest" if m.get("tasks_digest") and m0.get("tasks_digest") else "tasks_source"
        if needs_files and m.get(key) != m0.get(key):
            raise DataError(
                where,
                f"task files {m.get('tasks_source')!r} differ from {first}'s "
                f"{m0.get('tasks_source')!r}: verification/retrieval results on different task "
                "files cannot be compared",
            )
    labels = (
        list(names)
        if names is not None
        else [
            _label(src, r, raw) if src is not None else str(r["meta"].get("descriptor") or f"result{i}")
            for i, (src, r, raw) in enumerate(zip(sources, results, raws))
        ]
    )
    for t in registry.names():  # a task some results lack leaves every row and the mean: said, not silent
        lacking = [str(p or f"result {i}") for i, (p, r) in enumerate(zip(sources, results)) if t not in r]
        if lacking and len(lacking) < len(results):
            log.warning(
                "task %s is left out of the comparison (its column and the mean): %s lack%s it",
                t,
                ", ".join(lacking),
                "s" if len(lacking) == 1 else "",
            )
    counts = {n: labels.count(n) for n in labels}
    labels = [f"{n} ({Path(p).stem})" if counts[n] > 1 and p is not None else n for n, p in zip(labels, sources)]
    return [(n, r, p) for n, r, p in zip(labels, results, sources)]


def _common_tasks(entries) -> list[str]:
    return [t for t in registry.names() if all(t in r for _, r, _ in entries)]


#: the MMA thresholds (px) of the whole-image matching table
MMA_COLUMNS = (1, 3, 5, 10)


def sequences_rows(entries: Seq[Entry]) -> list[dict]:
    """Whole-image matching: one dict per descriptor, best first (by ``mma_mean``, the MMA averaged over every
    threshold, then name): ``name``, ``file``, ``mma@T`` (T in :data:`MMA_COLUMNS` that were measured), ``h@T``
    (homography accuracy at each corner threshold), ``mean_matches`` -- all over every pair (``overall``), MMA
    and homography accuracy as fractions."""
    rows = []
    for name, r, path in entries:
        s, th = r["overall"], list(r["meta"]["thresholds"])
        row = {"name": name, "file": "" if path is None else str(path)}
        row.update({f"mma@{t}": float(s["mma"][th.index(t)]) for t in MMA_COLUMNS if t in th})
        row.update({f"h@{t}": float(v) for t, v in (s.get("homography") or {}).items()})
        row["mean_matches"] = float(s.get("mean_matches") or 0.0)
        row["mma_mean"] = float(np.mean(s["mma"]))
        rows.append(row)
    return sorted(rows, key=lambda row: (-row["mma_mean"], row["name"]))


def comparison_rows(entries: Seq[Entry]) -> list[dict]:
    """One dict per descriptor, best first (by ``mean``, then name): ``name``, ``file``, ``mean`` and per task
    present in every result ``<task>`` (headline) and ``<task>_e/_h/_t``. Whole-image matching results:
    :func:`sequences_rows`."""
    if entries and is_sequences_result(entries[0][1]):
        return sequences_rows(entries)
    tasks = _common_tasks(entries)
    rows = []
    for name, r, path in entries:
        row = {"name": name, "file": "" if path is None else str(path)}
        for t in tasks:
            row[t] = float(r[t]["headline"]["value"])
            for v, x in variant_scores(t, r[t]).items():
                row[f"{t}_{v}"] = x
        row["mean"] = float(np.mean([row[t] for t in tasks])) if tasks else float("nan")
        rows.append(row)
    return sorted(rows, key=lambda row: (-row["mean"], row["name"]))


def diagnostics_rows(entries: Seq[Entry]) -> list[dict]:
    """The descriptor-space numbers of the results that carry a ``meta.diagnostics`` block (written by
    :func:`~hpatches_kit.evaluation.evaluate` since 0.2), in :func:`comparison_rows` order: ``name``, ``dim``,
    ``pca_dims_90``, ``pca_dims_99`` (principal components holding 90% / 99% of the energy) and
    ``relative_spread`` (``meta.descriptor_spread``, or None).

    Args:
        entries: :func:`load_results` entries.

    Returns:
        One dict per entry with diagnostics (an empty list when none has them).
    """
    by_name = {n: r for n, r, _ in entries}
    out = []
    for row in comparison_rows(entries):
        r = by_name[row["name"]]
        d = r.get("meta", {}).get("diagnostics")
        if not isinstance(d, dict) or "pca_dims_90" not in d:
            continue
        spread = (r.get("meta", {}).get("descriptor_spread") or {}).get("relative_spread")
        out.append(
            {
                "name": row["name"],
                "dim": d.get("dim"),
                "pca_dims_90": d["pca_dims_90"],
                "pca_dims_99": d["pca_dims_99"],
                "relative_spread": spread,
            }
        )
    return out


def _columns(rows) -> list[str]:
    return [k for k in rows[0] if k not in ("name", "file")] if rows else []


def format_markdown(entries: Seq[Entry]) -> str:
    """Markdown table (mAP %, 2 decimals), best mean first, with the split and task-file source above it."""
    rows = comparison_rows(entries)
    m = entries[0][1]["meta"]
    if is_sequences_result(entries[0][1]):
        return _sequences_markdown(rows, entries[0][1])
    tasks = _common_tasks(entries)
    head = ["descriptor"] + [h for t in tasks for h in (t, f"{t[:5]}. E", f"{t[:5]}. H", f"{t[:5]}. T")] + ["mean"]
    lines = [
        f"HPatches results, split `{m.get('split')}`, {m.get('sequences')} sequences, {m.get('tracks')} tracks "
        f"(mAP %; headline per task, then Easy / Hard / Tough)",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|",
    ]
    by_name = {n: r for n, r, _ in entries}
    for row in rows:
        vals = [f"{row[k]:.2f}" for t in tasks for k in (t, f"{t}_e", f"{t}_h", f"{t}_t")] + [f"{row['mean']:.2f}"]
        lines.append("| " + " | ".join([row["name"].replace("|", "\\|")] + vals) + " |")
    notes = _notes(entries, by_name, tasks)
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    diag = diagnostics_rows(entries)
    if diag:
        lines += [
            "",
            "Descriptor space (PCA of the test descriptors: components holding 90% / 99% of the variance; "
            "relative spread as in `meta.descriptor_spread`)",
            "",
            "| descriptor | dim | PCA dims 90% | PCA dims 99% | relative spread |",
            "|---|---:|---:|---:|---:|",
        ]
        for d in diag:
            sp = "" if d["relative_spread"] is None else f"{d['relative_spread']:.3f}"
            name = d["name"].replace("|", "\\|")
            lines.append(f"| {name} | {d['dim']} | {d['pca_dims_90']} | {d['pca_dims_99']} | {sp} |")
    return "\n".join(lines) + "\n"


def _notes(entries, by_name, tasks) -> list[str]:
    """The table's footnotes: retrieval pools capped on a small test set, descriptors trained on the test photos."""
    from .retrieval import capped_pools_note

    notes = []
    if "retrieval" in tasks:
        note = capped_pools_note(entries[0][1]["retrieval"])
        if note:
            notes.append(f"retrieval mAP on this test set: {note}")
    for n, r in by_name.items():
        why = r["meta"].get("not_held_out")
        if why:
            notes.append(f"{n}: trained on the photos of this test set, not held out ({why})")
    return notes


def _sequences_markdown(rows, r0) -> str:
    m, s = r0["meta"], r0["overall"]
    mma = [k for k in rows[0] if k.startswith("mma@")]
    hom = [k for k in rows[0] if k.startswith("h@")]
    head = ["descriptor"] + [f"MMA@{k[4:]}px" for k in mma] + [f"H@{k[2:]}px" for k in hom] + ["matches"]
    lines = [
        f"Whole-image matching, {len(m.get('sequences') or [])} sequences, {s['pairs']} image pairs, "
        f"{m.get('detector')} keypoints (at most {m.get('max_keypoints')} per image), "
        f"{'mutual ' if m.get('mutual') else ''}nearest neighbours, {m.get('method')} homography "
        "(MMA: mean matching accuracy, H: homography accuracy, fractions)",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|",
    ]
    for row in rows:
        vals = [f"{row[k]:.3f}" for k in mma] + [f"{row[k]:.2f}" for k in hom] + [f"{row['mean_matches']:.1f}"]
        lines.append("| " + " | ".join([row["name"].replace("|", "\\|")] + vals) + " |")
    return "\n".join(lines) + "\n"


def format_csv(entries: Seq[Entry]) -> str:
    """CSV (full precision), one row per descriptor in :func:`comparison_rows` order."""
    import csv
    import io

    rows = comparison_rows(entries)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = ["descriptor", "file"] + _columns(rows)
    diag = {} if is_sequences_result(entries[0][1]) else {d["name"]: d for d in diagnostics_rows(entries)}
    extra = ["pca_dims_90", "pca_dims_99"] if diag and len(diag) == len(rows) else []
    w.writerow(cols + extra)
    for row in rows:
        w.writerow(
            [row["name"], row["file"]] + [repr(row[k]) for k in cols[2:]] + [diag[row["name"]][k] for k in extra]
        )
    return buf.getvalue()


def write_comparison(entries: Seq[Entry], out_dir, figure=None) -> list[Path]:
    """Write ``comparison.md`` and ``comparison.csv`` into ``out_dir`` (each atomically) and, with ``figure``, the
    figures it draws.

    Args:
        entries: ``[(name, results, path)]`` from :func:`load_results`.
        out_dir: the folder (created if needed).
        figure: ``figure([(name, results)], out_dir) -> [paths]`` draws the figures, e.g.
            :func:`hpatches_kit.plots.eval.plot_comparison` (``comparison.png``/``.pdf``: the paper's three-panel
            figure, and ``comparison_pca_energy.png``/``.pdf`` when the results carry ``meta.diagnostics``; for
            whole-image matching results the MMA curves of every descriptor on one figure).
            Passed in, not imported, so that ``evaluation`` does not depend on ``plots``.

    Returns:
        The written paths: the figures, then ``md``, ``csv``.
    """
    from ..io import atomic_write_text

    out = Path(out_dir)
    md, csv_path = out / "comparison.md", out / "comparison.csv"
    figs = list(figure([(n, r) for n, r, _ in entries], out)) if figure is not None else []
    atomic_write_text(md, format_markdown(entries))
    atomic_write_text(csv_path, format_csv(entries))
    return figs + [md, csv_path]
