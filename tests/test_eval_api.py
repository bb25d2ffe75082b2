"""``evaluate`` without a dataset (descriptors + official task files) and the summaries computed as the
official results printer (utils/results.py) on hand-made raw results."""

from __future__ import annotations

import numpy as np
import pytest

from hpatches_kit.data import TYPES
from hpatches_kit.evaluation import evaluate, format_summary
from hpatches_kit.evaluation import tasks as T
from hpatches_kit.evaluation.api import summarise_matching, summarise_retrieval, summarise_verification


def test_summaries_follow_the_official_printer():
    rng = np.random.default_rng(0)
    raw = {
        s: {v: {k: {"ap": rng.random(), "sr": rng.random()} for k in range(1, 6)} for v in "eht"}
        for s in ("i_a", "i_b", "v_c")
    }
    m = summarise_matching(raw)

    # official DescriptorMatchingResult: per (variant, kind) mean over sequences of mean over targets
    def kind_mean(v, pre):
        return 100 * np.mean([np.mean([raw[s][v][k]["ap"] for k in range(1, 6)]) for s in raw if s.startswith(pre)])

    avg_i = np.mean([kind_mean(v, "i") for v in "eht"])
    avg_v = np.mean([kind_mean(v, "v") for v in "eht"])
    assert m["headline"]["value"] == pytest.approx((avg_i + avg_v) / 2, abs=1e-9)
    assert m["table"]["h"]["illum"] == pytest.approx(kind_mean("h", "i"), abs=1e-9)
    ap = {v: rng.random((4, 7)) for v in "eht"}
    r = summarise_retrieval(
        {
            "ap": ap,
            "pool_sizes": [100, 500, 1000, 5000, 10000, 15000, 20000],
            "num_queries": 4,
            "num_distractors": 30,
            "distractors_per_query": np.array([20, 25, 30, 30]),
        }
    )
    assert r["headline"]["value"] == pytest.approx(
        100 * np.mean([np.mean(ap[v].mean(axis=0)) for v in "eht"]), abs=1e-9
    )
    vr = {
        v: {n: {"balanced": {"auc": rng.random()}, "imbalanced": {"ap": rng.random()}} for n in ("intra", "inter")}
        for v in "eht"
    }
    s = summarise_verification(vr, {"pos": 1})
    assert s["headline"]["value"] == pytest.approx(
        100 * np.mean([vr[v][n]["imbalanced"]["ap"] for v in "eht" for n in ("intra", "inter")]), abs=1e-9
    )
    assert s["avg_balanced_auc"] == pytest.approx(
        100 * np.mean([vr[v][n]["balanced"]["auc"] for v in "eht" for n in ("intra", "inter")]), abs=1e-9
    )


def random_descriptors_and_task_files(root, seed: int, lengths: dict) -> dict:
    """Random 8-D descriptors of ``lengths`` (``{seq: N}``) and official-format task files of split ``full``
    written to ``root`` (40 verification pairs per table, 5 retrieval queries, 20 distractors)."""
    rng = np.random.default_rng(seed)
    descs = {s: {t: rng.normal(size=(n, 8)).astype(np.float32) for t in TYPES} for s, n in lengths.items()}
    T.write_verification(root, "full", T.generate_verification(lengths, list(lengths), 40))
    refs = {s: rng.integers(0, 255, (n, 5, 5)).astype(np.uint8) for s, n in lengths.items()}
    T.write_retrieval(root, "full", T.generate_retrieval(refs, list(lengths), 5, 20))
    return descs


def test_evaluate_without_dataset_from_task_files(tmp_path):
    descs = random_descriptors_and_task_files(tmp_path, 1, {"i_a": 15, "v_b": 12, "v_c": 10})
    res = evaluate(descs, None, tasks_dir=tmp_path, progress=False)
    assert res["meta"]["sequences"] == 3 and res["retrieval"]["num_distractors"] == 20
    txt = format_summary(res)
    assert "verification mAP" in txt and "matching mAP" in txt and "retrieval mAP" in txt
    with pytest.raises(ValueError, match="needs the dataset"):
        evaluate(descs, None, tasks=("retrieval",), progress=False)
    only_m = evaluate(descs, None, tasks=("matching",), split="view", progress=False)
    assert set(only_m) == {"meta", "matching"} and only_m["meta"]["sequences"] == 2


def test_constant_descriptors_keep_the_official_numbers_and_warn_loudly(tmp_path):
    """All-zero descriptors: every distance ties; the official tie rule scores retrieval 100 and verification
    AUC 0 (kept, as the official code reports them), with a DegenerateDescriptorWarning, a ``meta.warnings``
    entry and a WARNING line atop the summary. Well-spread descriptors raise no warning."""
    from hpatches_kit.evaluation.api import DegenerateDescriptorWarning

    rng = np.random.default_rng(3)
    lengths = {"i_a": 15, "v_b": 12, "v_c": 10}
    T.write_verification(tmp_path, "full", T.generate_verification(lengths, list(lengths), 40))
    refs = {s: rng.integers(0, 255, (n, 5, 5)).astype(np.uint8) for s, n in lengths.items()}
    T.write_retrieval(tmp_path, "full", T.generate_retrieval(refs, list(lengths), 5, 20))
    zero = {s: {t: np.zeros((n, 8), np.float32) for t in TYPES} for s, n in lengths.items()}
    with pytest.warns(DegenerateDescriptorWarning, match="descriptors are constant"):
        res = evaluate(zero, None, tasks_dir=tmp_path, tasks=("verification", "retrieval"), progress=False)
    assert res["retrieval"]["avg"] == pytest.approx(100.0)
    assert res["verification"]["avg_balanced_auc"] == pytest.approx(0.0)
    assert res["meta"]["descriptor_spread"]["spread"] == 0.0 and len(res["meta"]["warnings"]) == 1
    assert format_summary(res).splitlines()[0].startswith("WARNING: the descriptors are constant")
    # nearly constant: a common offset plus tiny noise
    near = {s: {t: 5.0 + 1e-6 * rng.normal(size=(n, 8)).astype(np.float32) for t in TYPES} for s, n in lengths.items()}
    with pytest.warns(DegenerateDescriptorWarning, match="nearly constant"):
        evaluate(near, None, tasks_dir=tmp_path, tasks=("verification",), progress=False)
    good = {s: {t: rng.normal(size=(n, 8)).astype(np.float32) for t in TYPES} for s, n in lengths.items()}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateDescriptorWarning)
        res = evaluate(good, None, tasks_dir=tmp_path, tasks=("verification",), progress=False)
    assert "warnings" not in res["meta"] and res["meta"]["descriptor_spread"]["relative_spread"] > 0.5


def test_spread_check_rows_equal_the_concatenation():
    """The spread check gathers its evenly spaced rows without concatenating the set: the same rows, the
    same numbers as subsampling the concatenation (the definition)."""
    from hpatches_kit.evaluation.api import descriptor_spread_check

    rng = np.random.default_rng(9)
    descs = {
        s: {t: rng.normal(size=(n, 3)) * (1 + j) for j, t in enumerate(TYPES)}
        for s, n in (("i_a", 7), ("v_b", 3), ("i_c", 11))
    }
    seqs = ["v_b", "i_a", "i_c"]
    for max_rows in (5, 50, 10**6):
        x = np.concatenate([descs[s][t] for s in seqs for t in descs[s]])
        if len(x) > max_rows:
            x = x[np.linspace(0, len(x) - 1, max_rows).astype(int)]
        spread = float(np.sqrt(x.var(axis=0).sum()))
        rms = float(np.sqrt((x**2).sum(1).mean()))
        got = descriptor_spread_check(descs, seqs, max_rows=max_rows)
        assert got["spread"] == spread and got["rms_norm"] == rms
