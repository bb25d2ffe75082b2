"""``evaluation.summary.summarise_evaluation`` (registry-driven) against the hand-coded per-task selection it
replaces (``cli/_train_common.summarise_evaluation`` at the time of the split, copied below as the reference,
and the CLI's own function while it still exists) on a real :func:`evaluate` result."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hpatches_kit.data import TYPES
from hpatches_kit.evaluation import evaluate
from hpatches_kit.evaluation import tasks as T
from hpatches_kit.evaluation.summary import summarise_evaluation


def reference_summarise_evaluation(res: dict) -> dict:
    """Verbatim copy of ``hpatches_kit/cli/_train_common.py::summarise_evaluation`` (hard-coded task keys)."""
    out = {"meta": res.get("meta", {}),
           "headline": {t: res[t]["headline"]["value"] for t in ("verification", "matching", "retrieval") if t in res}}
    if "verification" in res:
        r = res["verification"]
        out["verification"] = {k: r[k] for k in ("headline", "table", "avg_balanced_auc", "avg_imbalanced_ap",
                                                 "num_pairs")}
    if "matching" in res:
        r = res["matching"]
        out["matching"] = {k: v for k, v in r.items() if k != "per_sequence"}
    if "retrieval" in res:
        r = res["retrieval"]
        out["retrieval"] = {k: r[k] for k in ("headline", "table", "per_variant", "avg", "pool_sizes", "num_queries",
                                              "num_distractors", "effective_pool_max")}
    return out


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A full evaluation (three tasks) of random descriptors on generated task files; ``i_``/``v_`` sequences
    so that matching reports the illumination/viewpoint averages."""
    root = tmp_path_factory.mktemp("tasks")
    rng = np.random.default_rng(7)
    lengths = {"i_a": 14, "v_b": 12, "v_c": 10}
    descs = {s: {t: rng.normal(size=(n, 8)).astype(np.float32) for t in TYPES} for s, n in lengths.items()}
    T.write_verification(root, "full", T.generate_verification(lengths, list(lengths), 40))
    refs = {s: rng.integers(0, 255, (n, 5, 5)).astype(np.uint8) for s, n in lengths.items()}
    T.write_retrieval(root, "full", T.generate_retrieval(refs, list(lengths), 5, 20))
    return descs, root, evaluate(descs, None, tasks_dir=root, progress=False)


def _dumps(d) -> str:
    return json.dumps(d, sort_keys=False, default=float)


def test_summary_equals_the_hand_coded_one(results):
    _, _, res = results
    got, want = summarise_evaluation(res), reference_summarise_evaluation(res)
    assert got == want
    assert _dumps(got) == _dumps(want)  # same key order too, so metrics.json is byte-identical
    assert list(got) == ["meta", "headline", "verification", "matching", "retrieval"]
    assert "curves" not in got["verification"] and "per_sequence" not in got["matching"]
    assert got["matching"]["avg"] == res["matching"]["avg"]  # both kinds present: the official average kept


def test_summary_equals_the_cli_one_while_it_exists(results):
    common = pytest.importorskip("hpatches_kit.cli._train_common")
    cli = getattr(common, "summarise_evaluation", None)
    if cli is None or cli is summarise_evaluation:
        pytest.skip("the CLI no longer has its own summarise_evaluation (it uses evaluation.summary)")
    _, _, res = results
    assert _dumps(summarise_evaluation(res)) == _dumps(cli(res))


def test_summary_of_a_task_subset(results):
    """One task only, one kind of sequence (no illum/view averages): the same as the hand-coded selection."""
    descs, root, _ = results
    res = evaluate(descs, None, tasks=("matching",), split="view", progress=False)
    got = summarise_evaluation(res)
    assert _dumps(got) == _dumps(reference_summarise_evaluation(res))
    assert list(got) == ["meta", "headline", "matching"] and "avg" not in got["matching"]
