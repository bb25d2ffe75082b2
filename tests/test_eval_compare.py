"""``hpatches-eval compare``: rows and panels sorted by hand-set headlines, per-variant numbers worked by hand,
mismatched splits / test sets / task files refused naming the file, and end to end on JSONs that
``hpatches-eval --json`` writes."""

from __future__ import annotations

import csv
import json

import pytest

from hpatches_kit.cli.eval import main
from hpatches_kit.data.errors import DataError
from hpatches_kit.evaluation.compare import comparison_rows, format_markdown, load_results, variant_scores


def result(name, ver, mat, ret, split="a", tracks=1000, source="/tasks/x"):
    """A results dict shaped like ``evaluate``'s, with the per-variant numbers (e, h, t) = base + (2, 0, -2)."""
    off = {"e": 2.0, "h": 0.0, "t": -2.0}
    return {
        "meta": {
            "split": split,
            "sequences": 10,
            "tracks": tracks,
            "dim": 128,
            "distance": "L2",
            "tasks_source": source,
            "descriptor": name,
        },
        "verification": {
            "table": {
                v: {"intra": {"auc": 0, "ap": ver + off[v] - 1}, "inter": {"auc": 0, "ap": ver + off[v] + 1}}
                for v in "eht"
            },
            "headline": {"value": ver},
        },
        "matching": {
            "table": {v: {"illum": mat + off[v] - 3, "view": mat + off[v] + 3, "all": -1, "sr": 0} for v in "eht"},
            "headline": {"value": mat},
        },
        "retrieval": {"per_variant": {v: ret + off[v] for v in "eht"}, "headline": {"value": ret}},
    }


def write(tmp_path, fname, r):
    p = tmp_path / fname
    p.write_text(json.dumps(r))
    return p


def test_variant_scores_by_hand():
    r = result("d", 50, 30, 40)
    assert variant_scores("verification", r["verification"]) == {"e": 52.0, "h": 50.0, "t": 48.0}  # mean(51, 53)
    assert variant_scores("matching", r["matching"]) == {"e": 32.0, "h": 30.0, "t": 28.0}
    r["matching"]["table"]["h"].update(illum=None, view=None, all=7.5)  # a split with one kind: 'all'
    assert variant_scores("matching", r["matching"])["h"] == 7.5
    assert variant_scores("retrieval", r["retrieval"]) == {"e": 42.0, "h": 40.0, "t": 38.0}


def test_rows_sorted_by_mean_and_table(tmp_path):
    files = [
        write(tmp_path, "a.json", result("sift", 60, 20, 30)),  # mean 36.67
        write(tmp_path, "b.json", result("tfeat", 80, 30, 50)),  # mean 53.33
        write(tmp_path, "c.json", result("raw", 40, 10, 10)),
    ]  # mean 20
    entries = load_results(files)
    rows = comparison_rows(entries)
    assert [r["name"] for r in rows] == ["tfeat", "sift", "raw"]
    assert rows[0]["mean"] == pytest.approx(160 / 3) and rows[0]["verification_e"] == 82.0
    md = format_markdown(entries).splitlines()
    assert md[0].startswith("HPatches results, split `a`, 10 sequences, 1000 tracks")
    assert md[4].startswith("| tfeat | 80.00 | 82.00 | 80.00 | 78.00 | 30.00 |") and md[4].endswith("| 53.33 |")
    assert [l.split(" | ")[0] for l in md[4:]] == ["| tfeat", "| sift", "| raw"]
    # CLI: figure + table + CSV, CSV in the same order with full precision
    out = tmp_path / "report"
    assert main(["compare", *map(str, files), "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {
        "comparison.png",
        "comparison.pdf",
        "comparison.md",
        "comparison.csv",
        ".hpatches-kit.json",  # the completion marker: compare --out is a folder built whole (issue 38)
    }
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows_csv = list(csv.DictReader((out / "comparison.csv").open()))
    assert [r["descriptor"] for r in rows_csv] == ["tfeat", "sift", "raw"]
    assert float(rows_csv[1]["mean"]) == pytest.approx(110 / 3, abs=1e-12)


def test_each_panel_sorted_by_its_task(tmp_path, monkeypatch):
    """The figure's panels: bottom-to-top = ascending headline of that task (best on top), per task."""
    import matplotlib.axes

    import hpatches_kit.plots.eval as pe

    widths = []
    real_barh = matplotlib.axes.Axes.barh

    def barh(self, ys, w, *a, **k):
        widths.append(list(w))
        return real_barh(self, ys, w, *a, **k)

    monkeypatch.setattr(matplotlib.axes.Axes, "barh", barh)
    entries = load_results(
        [
            write(tmp_path, "a.json", result("a", 60, 35, 30)),
            write(tmp_path, "b.json", result("b", 80, 20, 50)),
            write(tmp_path, "c.json", result("c", 40, 25, 10)),
        ]
    )
    pe.plot_hpatches_bars([(n, r) for n, r, _ in entries], tmp_path / "f.png")
    assert widths == [[40, 60, 80], [20, 25, 35], [10, 30, 50]]  # verification, matching, retrieval


@pytest.mark.parametrize(
    "field,kw,message",
    [
        ("split", {"split": "b"}, "split is 'b' but .*a.json has 'a': results of different splits"),
        ("tracks", {"tracks": 999}, "number of tracks is 999 but .*a.json has 1000"),
        ("tasks", {"source": "/tasks/y"}, "task files '/tasks/y' differ from .*a.json's '/tasks/x'"),
    ],
)
def test_mismatched_results_refused(tmp_path, capsys, field, kw, message):
    a = write(tmp_path, "a.json", result("sift", 60, 20, 30))
    b = write(tmp_path, "b.json", result("mine", 70, 25, 35, **kw))
    with pytest.raises(DataError, match=message) as e:
        load_results([a, b])
    assert e.value.path == str(b)
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"hpatches-eval compare: error: {b}: ")
    assert not (tmp_path / "o").exists()


def test_bad_files_and_duplicate_names(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="bad.json: not a results JSON"):
        load_results([bad])
    with pytest.raises(DataError, match="holds none of the tasks"):
        load_results([write(tmp_path, "e.json", {"meta": {"split": "a"}})])
    a = write(tmp_path, "x1.json", result("sift", 60, 20, 30))
    b = write(tmp_path, "x2.json", result("sift", 61, 20, 30))
    assert [n for n, _, _ in load_results([a, b])] == ["sift (x1)", "sift (x2)"]
    assert [n for n, _, _ in load_results([a, b], names=["L2", "L1"])] == ["L2", "L1"]
    assert main(["compare", str(a), str(b), "--name", "one", "--out", str(tmp_path / "o")]) == 2
    assert "1 --name for 2 results files" in capsys.readouterr().err


def test_end_to_end_on_hpatches_eval_json(tiny_dataset, tmp_path, capsys):
    """JSONs written by ``hpatches-eval --json`` compare; the row order follows their printed headlines."""
    files = []
    for b in ("sift", "raw"):
        f = tmp_path / f"{b}.json"
        assert main(["--data", str(tiny_dataset), "--baseline", b, "--json", str(f), "--no-progress"]) == 0
        files.append(f)
    capsys.readouterr()
    assert main(["compare", *map(str, files), "--out", str(tmp_path / "cmp")]) == 0
    res = {f.stem: json.loads(f.read_text()) for f in files}
    means = {
        k: sum(r[t]["headline"]["value"] for t in ("verification", "matching", "retrieval")) / 3 for k, r in res.items()
    }
    order = sorted(means, key=lambda k: -means[k])
    rows = list(csv.DictReader((tmp_path / "cmp" / "comparison.csv").open()))
    assert [r["descriptor"] for r in rows] == order
    for r in rows:
        assert float(r["mean"]) == pytest.approx(means[r["descriptor"]], abs=1e-9)
    # another split of the same data is refused
    other = tmp_path / "illum.json"
    assert (
        main(
            [
                "--data",
                str(tiny_dataset),
                "--split",
                "illum",
                "--baseline",
                "sift",
                "--json",
                str(other),
                "--no-progress",
            ]
        )
        == 0
    )
    assert main(["compare", str(files[0]), str(other), "--out", str(tmp_path / "x")]) == 2
    assert "split is 'illum' but" in capsys.readouterr().err


def test_compares_sequences_not_split_labels_and_reads_every_results_file(tmp_path):
    """A Python-API result labelled ``full`` and a CLI result labelled ``a`` on the same sequences compare; a run's
    ``metrics.json`` and a results dict are read; other sequences are refused naming them."""
    names = [f"i_s{i}" for i in range(5)] + [f"v_s{i}" for i in range(5)]
    api = result("api", 60, 20, 30, split="full")
    api["meta"]["sequence_names"] = names
    cli = result("cli", 70, 25, 35, split="a")
    cli["meta"]["sequence_names"] = list(reversed(names))  # the order does not matter
    run = {"data": "x", "epochs": 3, "evaluation": {**result(None, 50, 10, 20), "headline": {}}}
    run["evaluation"]["meta"]["sequence_names"] = names
    run["evaluation"]["meta"].pop("descriptor")
    (tmp_path / "myrun").mkdir()
    entries = load_results([write(tmp_path, "cli.json", cli), api, write(tmp_path / "myrun", "metrics.json", run)])
    assert [n for n, _, _ in entries] == ["cli", "api", "myrun"]
    assert [r["name"] for r in comparison_rows(entries)] == ["cli", "api", "myrun"]
    other = result("other", 1, 1, 1, split="a")
    other["meta"]["sequence_names"] = names[:9] + ["v_zz"]
    with pytest.raises(
        DataError,
        match=r"o.json: evaluated other sequences than the first result: has 1 "
        r"sequence\(s\) the other lacks \(v_zz\) and lacks 1 of its "
        r"sequences \(v_s4\)",
    ):
        load_results([cli, write(tmp_path, "o.json", other)])
    failed = {"evaluation": {"error": "boom"}}
    with pytest.raises(DataError, match="evaluation did not complete: boom"):
        load_results([write(tmp_path, "f.json", failed)])


def test_evaluate_records_the_sequences(tiny_dataset):
    """``evaluate`` writes the evaluated sequence names into ``meta`` (what compare matches on)."""
    from hpatches_kit.data import load_dataset
    from hpatches_kit.evaluation import compute_descriptors, evaluate, get_baseline

    ds = load_dataset(tiny_dataset, progress=False)
    res = evaluate(
        compute_descriptors(ds, get_baseline("raw"), progress=False), ds, tasks=("matching",), progress=False
    )
    assert res["meta"]["sequence_names"] == sorted(["i_alpha", "i_beta", "v_gamma", "v_delta"])


def test_task_identity_follows_the_task_content(tmp_path):
    """A training run's final evaluation (the held-out sequences, split label 'full') and ``hpatches-eval --split
    a`` (the whole dataset, split a) score the same generated pairs and queries: same ``tasks_digest`` and same
    numbers, so compare takes both; other task content is refused."""
    import numpy as np
    from conftest import write_split_dataset

    from hpatches_kit.data import load_dataset
    from hpatches_kit.evaluation import evaluate, get_baseline
    from hpatches_kit.evaluation.describers import compute_descriptors

    root = write_split_dataset(
        tmp_path / "d", {"i_a": 9, "v_b": 8, "i_c": 10, "v_d": 12}, 32, np.random.default_rng(0), num_test=2
    )
    sift = get_baseline("sift")
    held_out = load_dataset(root, split="a", progress=False)  # what the trainer evaluates on
    run = evaluate(compute_descriptors(held_out, sift, progress=False), held_out, split="full", progress=False)
    whole = load_dataset(root, progress=False)
    cli = evaluate(compute_descriptors(whole, sift, progress=False), whole, split="a", progress=False)
    assert run["meta"]["tasks_source"] != cli["meta"]["tasks_source"]  # other folders, other split labels
    assert run["meta"]["tasks_digest"] == cli["meta"]["tasks_digest"]
    for t in ("verification", "matching", "retrieval"):
        assert run[t]["headline"]["value"] == pytest.approx(cli[t]["headline"]["value"])
    metrics = write(tmp_path, "metrics.json", {"evaluation": run})  # as a run's metrics.json holds it
    assert len(load_results([metrics, cli])) == 2
    other = json.loads(json.dumps(cli))
    other["meta"]["tasks_digest"] = "0" * 16
    with pytest.raises(DataError, match="task files .* differ"):
        load_results([metrics, other])


def _sequences_result(name, mma, h3, pairs=6, **meta):
    th = list(range(1, 11))
    s = {
        "pairs": pairs,
        "mma": mma,
        "homography": {"1": h3 / 2, "3": h3, "5": min(1.0, h3 + 0.1)},
        "mean_matches": 50.0,
    }
    m = dict(descriptor=name, thresholds=th, sequences=["v_a", "v_b"], detector="dog", max_keypoints=500)
    m.update(patch_size=65, method="ransac", orientation="dominant", magnification=None, mutual=True, ratio=None)
    m.update(meta)
    empty = {"pairs": 0, "mma": None, "homography": None, "mean_matches": None}
    return {"meta": m, "overall": s, "illumination": empty, "viewpoint": s}


def test_compare_takes_whole_image_matching_results(tmp_path, capsys):
    """hpatches-eval compare on ``sequences`` results: one MMA figure for every descriptor, a table of MMA at
    1/3/5/10 px and homography accuracy (hand-set numbers), best mean MMA first; other keypoints refused."""
    ramp = [0.1 * t for t in range(1, 11)]
    files = [
        write(tmp_path, "sift.json", _sequences_result("sift", [0.5 * x for x in ramp], 0.4)),
        write(tmp_path, "mine.json", _sequences_result("mine", ramp, 0.6)),
        write(tmp_path, "rootsift.json", _sequences_result("rootsift", [0.6 * x for x in ramp], 0.5)),
    ]
    out = tmp_path / "report"
    assert main(["compare", *map(str, files), "--out", str(out)]) == 0
    md = (out / "comparison.md").read_text()
    rows = [ln for ln in md.splitlines() if ln.startswith("| ") and "descriptor" not in ln]
    assert [r.split("|")[1].strip() for r in rows] == ["mine", "rootsift", "sift"]
    assert rows[0].split("|")[2:9] == [" 0.100 ", " 0.300 ", " 0.500 ", " 1.000 ", " 0.30 ", " 0.60 ", " 0.70 "]
    assert "Whole-image matching, 2 sequences, 6 image pairs" in md
    assert (out / "comparison.png").is_file() and (out / "comparison.pdf").is_file()
    with open(out / "comparison.csv") as f:
        got = {r["descriptor"]: r for r in csv.DictReader(f)}
    assert float(got["sift"]["mma@3"]) == pytest.approx(0.15) and float(got["rootsift"]["h@3"]) == 0.5
    other = write(tmp_path, "other.json", _sequences_result("x", ramp, 0.5, max_keypoints=2000))
    with pytest.raises(DataError, match="max_keypoints is 2000 but .*sift.json has 500"):
        load_results([files[0], other])
    hp = write(tmp_path, "hp.json", result("sift", 60, 20, 30))
    with pytest.raises(DataError, match="holds HPatches tasks results but .*sift.json holds whole-image matching"):
        load_results([files[0], hp])


def test_models_trained_on_the_test_photos_are_flagged_and_named(tmp_path):
    """A model card's ``| not held out | `DATASET` |`` row, or a run trained with ``--split none`` on the same data,
    flags the model on that data only; runs are named after their folder; the retrieval headline line says when
    its pools are capped."""
    from hpatches_kit.benchmarks.describe import model_label, not_held_out
    from hpatches_kit.evaluation.retrieval import TASK

    (tmp_path / "m.keras").write_bytes(b"")
    (tmp_path / "m.md").write_text("| | |\n|---|---|\n| not held out | `embedded-v2` (the same photos) |\n")
    assert "embedded-v2" in not_held_out(tmp_path / "m.keras", tmp_path / "cache" / "embedded-v2" / "hpatches")
    assert not_held_out(tmp_path / "m.keras", tmp_path / "real" / "hpatches-release") is None
    run, data = tmp_path / "runs" / "all-in", tmp_path / "mine"
    run.mkdir(parents=True)
    (run / "run_args.json").write_text(json.dumps({"split": "none", "data": str(data)}))
    assert "--split none" in not_held_out(run / "model.keras", data)
    (run / "run_args.json").write_text(json.dumps({"split": "a", "data": str(data)}))
    assert not_held_out(run / "model.keras", data) is None
    assert model_label(run / "model.keras") == "all-in" and model_label(tmp_path / "m.keras") == "m"
    r = {
        "pool_sizes": [100, 500, 1000],
        "table": {v: {"100": 90.0, "500": 80.0, "1000": 80.0} for v in "eht"},
        "per_variant": {v: 83.3 for v in "eht"},
        "avg": 83.3,
        "num_queries": 10,
        "num_distractors": 300,
        "effective_pool_max": 305,
    }
    head = [ln for ln in TASK.format(r) if "retrieval mAP 83.30" in ln]
    assert head and "pools 500, 1,000 capped at 305 (300 distractors)" in head[0]


def test_a_real_validation_result_is_refused_with_the_command_that_compares_on_real_scenes(tmp_path, capsys):
    real = {
        "benchmark": "real",
        "data": "scenes",
        "regimes": {"hpatches": {"rows": {"m": {"verification": 90.0, "matching": 60.0, "retrieval": 80.0}}}},
    }
    p = tmp_path / "real.json"
    p.write_text(json.dumps(real))
    with pytest.raises(DataError, match="hpatches-eval real --model"):
        load_results([p])
    assert main(["compare", str(p), "--out", str(tmp_path / "cmp")]) == 2
    err = capsys.readouterr().err
    assert "real.json" in err and "hpatches-eval real --model" in err and "Traceback" not in err
