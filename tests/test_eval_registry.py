"""The evaluation task registry: a toy task registered at run time is run by ``evaluate`` (after the official
tasks, whatever the order asked), printed by ``format_summary``, kept by ``summarise_evaluation``, scored by
``compare.variant_scores`` and plotted; the registry refuses duplicates, unknown names and incomplete tasks."""

from __future__ import annotations

import numpy as np
import pytest

from hpatches_kit.data import TYPES
from hpatches_kit.evaluation import evaluate, format_summary, registry
from hpatches_kit.evaluation.compare import variant_scores
from hpatches_kit.evaluation.summary import summarise_evaluation


class MeanNormTask:
    """Toy task: per variant, the mean L2 norm of the descriptors of that variant's 5 targets (no task files)."""

    name = "toy_norm"
    files = ()
    headline_name = "toy mean norm"
    headline_definition = "mean over e/h/t of the mean descriptor norm"
    plot_label = "Toy norm"

    def run(self, ds, ctx):
        per_v = {}
        for v in "eht":
            rows = [ds.stacks[s][TYPES.index(f"{v}{k}")] for s in ctx.sequences for k in range(1, 6)]
            per_v[v] = float(np.mean(np.linalg.norm(np.concatenate(rows).astype(np.float64), axis=1)))
        value = float(np.mean(list(per_v.values())))
        return {
            "per_variant": per_v,
            "debug": "dropped from metrics.json",
            "headline": {"name": self.headline_name, "value": value, "definition": self.headline_definition},
        }

    def compact(self, summary):
        return registry.compact_summary(summary, drop=("debug",))

    def format(self, r):
        return ["", f"  toy mean norm {r['headline']['value']:.3f}"]

    def variant_points(self, summary):
        return {v: [summary["per_variant"][v]] for v in "eht"}


@pytest.fixture
def toy():
    task = registry.register(MeanNormTask())
    try:
        yield task
    finally:
        registry.unregister(task.name)
    assert "toy_norm" not in registry.names()


def _descs(seed=0):
    rng = np.random.default_rng(seed)
    lengths = {"i_a": 6, "v_b": 5}
    return {s: {t: rng.normal(size=(n, 4)).astype(np.float32) for t in TYPES} for s, n in lengths.items()}


def _brute_norm(descs, v):
    norms = []
    for s in descs:
        for k in range(1, 6):
            for row in descs[s][f"{v}{k}"]:
                norms.append(sum(float(x) ** 2 for x in row) ** 0.5)
    return sum(norms) / len(norms)


def test_official_tasks_come_first():
    assert registry.names()[:3] == ("verification", "matching", "retrieval")
    for name in registry.names()[:3]:
        t = registry.get(name)
        assert isinstance(t, registry.Task) and t.name == name


def test_a_registered_task_is_picked_up_everywhere(toy, tmp_path):
    descs = _descs()
    assert registry.names()[-1] == "toy_norm"
    res = evaluate(descs, None, tasks=("toy_norm", "matching"), progress=False)
    assert list(res) == ["meta", "matching", "toy_norm"]  # registry order, not the order asked
    want = {v: _brute_norm(descs, v) for v in "eht"}
    assert res["toy_norm"]["per_variant"] == pytest.approx(want, rel=1e-12)
    assert res["toy_norm"]["headline"]["value"] == pytest.approx(np.mean(list(want.values())), rel=1e-12)
    assert set(res["meta"]["seconds"]) == {"matching", "toy_norm"}
    txt = format_summary(res)
    assert txt.index("matching mAP") < txt.index("toy mean norm")
    summ = summarise_evaluation(res)
    assert summ["headline"] == {
        "matching": res["matching"]["headline"]["value"],
        "toy_norm": res["toy_norm"]["headline"]["value"],
    }
    assert "debug" not in summ["toy_norm"] and summ["toy_norm"]["per_variant"] == res["toy_norm"]["per_variant"]
    assert variant_scores("toy_norm", res["toy_norm"]) == res["toy_norm"]["per_variant"]
    pytest.importorskip("matplotlib")
    from hpatches_kit.plots.eval import plot_results

    only_toy = {"meta": res["meta"], "toy_norm": res["toy_norm"]}
    written = plot_results(only_toy, tmp_path)
    assert [p.name for p in written] == ["hpatches_bars.png"] and written[0].stat().st_size > 0


def test_registry_refuses_bad_use(toy):
    with pytest.raises(ValueError, match="already registered"):
        registry.register(MeanNormTask())
    with pytest.raises(ValueError, match="unknown evaluation task 'nope'"):
        registry.get("nope")
    with pytest.raises(ValueError, match="unknown tasks"):
        evaluate(_descs(), None, tasks=("nope",), progress=False)

    class Incomplete:
        name = "incomplete"

    with pytest.raises(TypeError, match="no attribute 'files'"):
        registry.register(Incomplete())
    assert "incomplete" not in registry.names()


def test_unknown_task_without_the_toy():
    with pytest.raises(ValueError, match="unknown tasks"):
        evaluate(_descs(), None, tasks=("toy_norm",), progress=False)
