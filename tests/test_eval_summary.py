"""``evaluation.summary.summarise_evaluation`` (registry-driven) on a real :func:`evaluate` result: equal to
what ``metrics.json`` held (all but the curves and per-sequence numbers, the key order of the hand-coded
``cli/_train_common.summarise_evaluation``, now ``evaluation/summary.py``)."""

from __future__ import annotations

import json

import pytest
from test_eval_api import random_descriptors_and_task_files

from hpatches_kit.evaluation import evaluate
from hpatches_kit.evaluation.summary import summarise_evaluation

#: the key order of the compact summaries in ``metrics.json`` (as written before the registry)
VERIFICATION_KEYS = ["headline", "table", "avg_balanced_auc", "avg_imbalanced_ap", "num_pairs"]
RETRIEVAL_KEYS = [
    "headline",
    "table",
    "per_variant",
    "avg",
    "pool_sizes",
    "num_queries",
    "num_distractors",
    "effective_pool_max",
]


def expected_summary(res: dict) -> dict:
    """What ``metrics.json`` held for the official tasks, stated by what it leaves out: the verification
    curves and the per-sequence matching numbers; every other number of ``res`` as it is."""
    out = {"meta": res.get("meta", {}), "headline": {}}
    for t in ("verification", "matching", "retrieval"):
        if t in res:
            out["headline"][t] = res[t]["headline"]["value"]
    for t in ("verification", "matching", "retrieval"):
        if t in res:
            out[t] = {k: v for k, v in res[t].items() if k not in ("curves", "per_sequence")}
    return out


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A full evaluation (three tasks) of random descriptors on generated task files; ``i_``/``v_`` sequences
    so that matching reports the illumination/viewpoint averages."""
    root = tmp_path_factory.mktemp("tasks")
    descs = random_descriptors_and_task_files(root, 7, {"i_a": 14, "v_b": 12, "v_c": 10})
    return descs, root, evaluate(descs, None, tasks_dir=root, progress=False)


def _dumps(d) -> str:
    return json.dumps(d, sort_keys=False, default=float)


def test_summary_equals_the_hand_coded_one(results):
    _, _, res = results
    got = summarise_evaluation(res)
    assert got == expected_summary(res)
    assert list(got) == ["meta", "headline", "verification", "matching", "retrieval"]
    assert list(got["headline"]) == ["verification", "matching", "retrieval"]
    assert list(got["verification"]) == VERIFICATION_KEYS and list(got["retrieval"]) == RETRIEVAL_KEYS
    assert list(got["matching"]) == [k for k in res["matching"] if k != "per_sequence"]
    assert "curves" not in got["verification"] and "per_sequence" not in got["matching"]
    assert got["matching"]["avg"] == res["matching"]["avg"]  # both kinds present: the official average kept


def test_summary_of_a_task_subset(results):
    """One task only, one kind of sequence (no illum/view averages): the same as the hand-coded selection."""
    descs, root, _ = results
    res = evaluate(descs, None, tasks=("matching",), split="view", progress=False)
    got = summarise_evaluation(res)
    assert got == expected_summary(res)
    assert list(got) == ["meta", "headline", "matching"] and "avg" not in got["matching"]
