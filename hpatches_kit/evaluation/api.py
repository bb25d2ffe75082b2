"""``evaluate``: run the HPatches tasks on descriptors and summarise them as the official results printer."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Mapping, Sequence as Seq

import numpy as np

from ..data.errors import DataError
from ..data.hpatches import TYPES, VARIANTS, sequence_kind
from ..data.splits import split_sequences
from .protocol import POOL_SIZES, TASKS, DescriptorSet, eval_matching, eval_retrieval, eval_verification
from .tasks import load_tasks, retr_file, tasks_for_dataset, verif_file

VARIANT_NAMES = {"e": "Easy", "h": "Hard", "t": "Tough"}
HEADLINES = {
    "verification": "mean over e/h/t x intra/inter of the imbalanced-protocol AP (official avg_imbalanced), %",
    "matching": "official avg: mean of the illumination and viewpoint averages, each the mean over e/h/t of "
                "the mean over sequences of the mean AP over targets 1..5 (if the split has only one kind: "
                "mean over e/h/t of the mean over all sequences and targets), %",
    "retrieval": "mean over e/h/t of the mean over pool sizes 100..20000 of the mean AP over queries "
                 "(official avg), %",
}

__all__ = ["evaluate", "format_summary", "DegenerateDescriptorWarning", "descriptor_spread_check", "summarise_verification", "summarise_matching", "summarise_retrieval"]


class DegenerateDescriptorWarning(UserWarning):
    """The descriptors are constant, or nearly: the official numbers are computed but mean nothing."""


SPREAD_TOL = 1e-3


def descriptor_spread_check(descs: Mapping, sequences, max_rows: int = 20000) -> dict:
    """``{"spread", "rms_norm", "relative_spread"}`` of the descriptors of ``sequences`` (every patch type;
    at most ``max_rows`` evenly spaced rows): spread = ``sqrt(sum_d var_d)`` (RMS distance to the centroid),
    relative to the RMS descriptor norm. 0 for constant descriptors, about 1 for well-spread unit vectors."""
    rows = [np.asarray(a) for s in sequences for a in descs[s].values()]
    x = np.concatenate([r.reshape(len(r), -1) for r in rows]) if rows else np.zeros((0, 1))
    if len(x) > max_rows:
        x = x[np.linspace(0, len(x) - 1, max_rows).astype(int)]
    x = x.astype(np.float64)
    spread = float(np.sqrt(x.var(axis=0).sum())) if len(x) else 0.0
    rms = float(np.sqrt((x ** 2).sum(1).mean())) if len(x) else 0.0
    rel = spread / rms if rms > 0 else 0.0
    return {"spread": spread, "rms_norm": rms, "relative_spread": rel}


def _pct(x) -> float:
    return float(100.0 * x)


def summarise_verification(raw: dict, num_pairs: dict) -> dict:
    table = {v: {neg: {"auc": _pct(raw[v][neg]["balanced"]["auc"]), "ap": _pct(raw[v][neg]["imbalanced"]["ap"])}
                 for neg in ("intra", "inter")} for v in VARIANTS}
    bal = float(np.mean([table[v][n]["auc"] for v in VARIANTS for n in ("intra", "inter")]))
    imb = float(np.mean([table[v][n]["ap"] for v in VARIANTS for n in ("intra", "inter")]))
    curves = {v: {n: {"fpr": raw[v][n]["balanced"].get("fpr"), "tpr": raw[v][n]["balanced"].get("tpr"),
                      "recall": raw[v][n]["imbalanced"].get("rc"), "precision": raw[v][n]["imbalanced"].get("pr")}
                  for n in ("intra", "inter")} for v in VARIANTS}
    return {"table": table, "avg_balanced_auc": bal, "avg_imbalanced_ap": imb,
            "headline": {"name": "verification mAP", "value": imb, "definition": HEADLINES["verification"]},
            "num_pairs": num_pairs, "curves": curves}


def summarise_matching(raw: dict) -> dict:
    seqs = list(raw)
    per_seq = {s: {v: float(np.mean([raw[s][v][k]["ap"] for k in range(1, 6)])) for v in VARIANTS} for s in seqs}
    table = {}
    for v in VARIANTS:
        row = {"all": _pct(np.mean([per_seq[s][v] for s in seqs])),
               "sr": _pct(np.mean([raw[s][v][k]["sr"] for s in seqs for k in range(1, 6)]))}
        for kind in ("illum", "view"):
            ks = [s for s in seqs if sequence_kind(s) == kind]
            row[kind] = _pct(np.mean([per_seq[s][v] for s in ks])) if ks else None
        table[v] = row
    mean_all = float(np.mean([table[v]["all"] for v in VARIANTS]))
    out = {"table": table, "mean_over_variants": mean_all}
    if all(table[v]["illum"] is not None and table[v]["view"] is not None for v in VARIANTS):
        avg_i = float(np.mean([table[v]["illum"] for v in VARIANTS]))
        avg_v = float(np.mean([table[v]["view"] for v in VARIANTS]))
        out.update(avg_illum=avg_i, avg_view=avg_v, avg=(avg_i + avg_v) / 2.0)
        head = out["avg"]
    else:
        head = mean_all
    out["headline"] = {"name": "matching mAP", "value": head, "definition": HEADLINES["matching"]}
    out["per_sequence"] = {s: {v: _pct(per_seq[s][v]) for v in VARIANTS} for s in seqs}
    return out


def summarise_retrieval(raw: dict) -> dict:
    pools = raw["pool_sizes"]
    table = {v: {str(p): _pct(raw["ap"][v][:, i].mean()) for i, p in enumerate(pools)} for v in VARIANTS}
    per_v = {v: float(np.mean(list(table[v].values()))) for v in VARIANTS}
    avg = float(np.mean(list(per_v.values())))
    return {"table": table, "per_variant": per_v, "avg": avg,
            "headline": {"name": "retrieval mAP", "value": avg, "definition": HEADLINES["retrieval"]},
            "pool_sizes": pools, "num_queries": raw["num_queries"], "num_distractors": raw["num_distractors"],
            "effective_pool_max": int(5 + np.max(raw["distractors_per_query"])) if raw["num_queries"] else 0}


def _check_counts(dataset, ds: DescriptorSet, test) -> None:
    """Descriptor counts against the dataset's patch counts (a :class:`DatasetIndex` reads them from the
    PNG headers, nothing decoded)."""
    for s in test:
        n = dataset.num_patches(s) if hasattr(dataset, "num_patches") and callable(dataset.num_patches) \
            else dataset[s].num_patches
        if n != ds.lengths[s]:
            raise DataError(s, f"descriptors hold {ds.lengths[s]} patches but the dataset sequence holds {n}")


def evaluate(descs: Mapping, dataset=None, tasks: Seq[str] = TASKS, split: str = "full", splits_file=None,
             tasks_dir=None, distance: str = "L2", progress: bool = True, cache_dir=None, counts=None) -> dict:
    """Run the HPatches tasks on ``descs`` (``{seq: {type: (N, D)}}`` or a :class:`DescriptorSet`) over the
    test sequences of ``split``.

    ``dataset`` (an :class:`HPatchesDataset`, or a :class:`~hpatches_kit.data.DatasetIndex` when the
    descriptors are precomputed: nothing but the ``ref`` images is then decoded, and only to generate
    retrieval task files) is needed to generate task files (when ``tasks_dir`` is None)
    and names the available sequences; with ``tasks_dir`` the official files ``verif_*_split-<split>.csv``
    and ``retr_*_split-<split>.csv`` are read from it. Returns a JSON-ready dict with one entry per task
    (``table`` with per-variant numbers in %, ``headline``) plus ``meta``.
    """
    tasks = tuple(tasks)
    bad = [t for t in tasks if t not in TASKS]
    if bad:
        raise ValueError(f"unknown tasks {bad}; expected some of {TASKS}")
    have = descs.names if isinstance(descs, DescriptorSet) else list(descs)
    available = dataset.names if dataset is not None else have
    root = dataset.root if dataset is not None else None
    test = split_sequences(split, available, subset="test", splits_file=splits_file, root=root)
    if not test:
        raise DataError(splits_file or root, f"split {split!r} has no test sequences in this dataset")
    ds = descs.subset(test) if isinstance(descs, DescriptorSet) else DescriptorSet(descs, test)
    if dataset is not None and tasks_dir is not None:
        _check_counts(dataset, ds, test)
    need_files = [t for t in tasks if t in ("verification", "retrieval")]
    if tasks_dir is not None:
        ts = load_tasks(tasks_dir, split, need_files)
    elif need_files:
        if dataset is None:
            raise ValueError("evaluate needs the dataset (to generate task files) or tasks_dir")
        refs = dataset.ref_patches(test)  # a DatasetIndex decodes only the ref images, once
        for s in test:
            if refs[s].shape[0] != ds.lengths[s]:
                raise DataError(s, f"descriptors hold {ds.lengths[s]} patches but the dataset sequence holds {refs[s].shape[0]}")
        ts = tasks_for_dataset(refs, test, split, need_files, cache_dir=cache_dir, counts=counts, progress=progress)
    else:
        ts = None
    results = {"meta": {"split": split, "sequences": len(test), "tracks": int(sum(ds.lengths.values())),
                        "dim": ds.dim, "distance": distance, "tasks_source": ts.source if ts else None}}
    timings = results["meta"]["seconds"] = {}
    cpu = results["meta"]["cpu_seconds"] = {}  # all threads of the process
    spread = descriptor_spread_check({q: dict(zip(TYPES, ds.stacks[q])) for q in test}, test)
    results["meta"]["descriptor_spread"] = spread
    if not np.isfinite(spread["relative_spread"]) or spread["relative_spread"] < SPREAD_TOL:
        what = "constant" if spread["spread"] == 0 else f"nearly constant (relative spread {spread['relative_spread']:.3g})"
        msg = (f"the descriptors are {what}: every distance ties, and the official tie rules then score "
               f"retrieval near 100% and verification near 0 -- these numbers say nothing about the descriptor")
        results["meta"]["warnings"] = [msg]
        import warnings

        warnings.warn(msg, DegenerateDescriptorWarning, stacklevel=2)
    if "verification" in tasks:
        t0, c0 = time.perf_counter(), time.process_time()
        where = {k: str(Path(ts.source) / verif_file(k, split)) for k in ("pos", "neg_intra", "neg_inter")}
        raw = eval_verification(ds, ts.verification, distance, progress=progress, where=where)
        n = {k: int(len(ts.verification.table(k)["s1"])) for k in ("pos", "neg_intra", "neg_inter")}
        results["verification"] = summarise_verification(raw, n)
        timings["verification"] = time.perf_counter() - t0
        cpu["verification"] = time.process_time() - c0
    if "matching" in tasks:
        t0, c0 = time.perf_counter(), time.process_time()
        results["matching"] = summarise_matching(eval_matching(ds, test, distance, progress=progress))
        timings["matching"] = time.perf_counter() - t0
        cpu["matching"] = time.process_time() - c0
    if "retrieval" in tasks:
        t0, c0 = time.perf_counter(), time.process_time()
        where = {k: str(Path(ts.source) / retr_file(k, split)) for k in ("queries", "distractors")}
        results["retrieval"] = summarise_retrieval(eval_retrieval(ds, ts.retrieval, distance, progress=progress, where=where))
        timings["retrieval"] = time.perf_counter() - t0
        cpu["retrieval"] = time.process_time() - c0
    return results


def _f(x) -> str:
    return "   -  " if x is None else f"{x:6.2f}"


def format_summary(results: dict) -> str:
    """Plain-text tables (numbers in %) in the layout of the official results printer."""
    lines = []
    m = results.get("meta", {})
    for w in m.get("warnings", []):
        lines.append(f"WARNING: {w}")
    if m:
        lines.append(f"HPatches evaluation: split {m.get('split')}, {m.get('sequences')} sequences, "
                     f"{m.get('tracks')} tracks, dim {m.get('dim')}, distance {m.get('distance')}")
    if "verification" in results:
        r = results["verification"]
        lines += ["", "Verification        AUC (balanced)      AP (imbalanced)",
                  "                    intra    inter      intra    inter"]
        for v in VARIANTS:
            t = r["table"][v]
            lines.append(f"  {VARIANT_NAMES[v]:<16}{_f(t['intra']['auc'])}   {_f(t['inter']['auc'])}     "
                         f"{_f(t['intra']['ap'])}   {_f(t['inter']['ap'])}")
        lines.append(f"  mean AUC {r['avg_balanced_auc']:.2f}   verification mAP (imbalanced) {r['avg_imbalanced_ap']:.2f}")
    if "matching" in results:
        r = results["matching"]
        lines += ["", "Matching            mAP illum  mAP view   mAP all    success rate"]
        for v in VARIANTS:
            t = r["table"][v]
            lines.append(f"  {VARIANT_NAMES[v]:<16}  {_f(t['illum'])}    {_f(t['view'])}    {_f(t['all'])}     {_f(t['sr'])}")
        lines.append(f"  matching mAP {r['headline']['value']:.2f}")
    if "retrieval" in results:
        r = results["retrieval"]
        pools = r["pool_sizes"]
        lines += ["", "Retrieval mAP  pool " + " ".join(f"{p:>6d}" for p in pools) + "    mean"]
        for v in VARIANTS:
            vals = " ".join(_f(r["table"][v][str(p)]) for p in pools)
            lines.append(f"  {VARIANT_NAMES[v]:<18} {vals}  {_f(r['per_variant'][v])}")
        lines.append(f"  retrieval mAP {r['avg']:.2f}  ({r['num_queries']} queries, {r['num_distractors']} distractors)")
    return "\n".join(lines)
