"""``hpatches-eval`` end to end on a small on-disk dataset: tables, JSON, plots, CSV export/re-import,
official task files, pair-matching delegation, and clear errors with nothing half-written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hpatches_kit.cli import eval as cli
from hpatches_kit.evaluation import tasks as T


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HPATCHES_KIT_HOME", str(tmp_path / "home"))
    return tmp_path


def test_all_tasks_raw_json_plots_export(tiny_dataset, home, capsys):
    out = home / "res.json"
    rc = cli.main(
        [
            "--task",
            "all",
            "--data",
            str(tiny_dataset),
            "--baseline",
            "raw",
            "--json",
            str(out),
            "--plots",
            str(home / "plots"),
            "--export-csv",
            str(home / "csv" / "raw"),
            "--no-progress",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "Verification" in text and "Matching" in text and "Retrieval" in text
    res = json.loads(out.read_text())
    assert {"verification", "matching", "retrieval", "meta"} <= set(res)
    for task in ("verification", "matching", "retrieval"):
        h = res[task]["headline"]
        assert 0 <= h["value"] <= 100 and h["definition"]
    assert res["meta"]["sequences"] == 4 and res["meta"]["tracks"] == 38
    assert set(res["matching"]["table"]) == {"e", "h", "t"}
    # texture tracks with mild per-view noise are easy: raw pixels must beat chance clearly
    assert res["verification"]["table"]["e"]["inter"]["auc"] > 90
    for f in ("verification_curves.png", "retrieval_pool_sizes.png", "hpatches_bars.png"):
        assert (home / "plots" / f).stat().st_size > 1000
    # the exported CSVs evaluated again give the same numbers
    out2 = home / "res2.json"
    assert (
        cli.main(
            [
                "--data",
                str(tiny_dataset),
                "--descriptors",
                str(home / "csv" / "raw"),
                "--json",
                str(out2),
                "--no-progress",
            ]
        )
        == 0
    )
    res2 = json.loads(out2.read_text())
    for task in ("verification", "matching", "retrieval"):
        assert res2[task]["headline"]["value"] == pytest.approx(res[task]["headline"]["value"], abs=1e-9)


def test_tasks_dir_and_split(tiny_dataset, home, capsys):
    # official-format files written by hand for split "illum" (i_* sequences only)
    d = home / "tasks"
    refs = {"i_alpha": np.full((12, 4, 4), 50, np.uint8), "i_beta": np.full((9, 4, 4), 50, np.uint8)}
    for r in refs.values():
        r[:, 0, 0] = 255  # std > 10 so every patch may be sampled
    T.write_retrieval(d, "illum", T.generate_retrieval(refs, list(refs), 4, 12))
    T.write_verification(d, "illum", T.generate_verification({"i_alpha": 12, "i_beta": 9}, list(refs), 60))
    out = home / "r.json"
    assert (
        cli.main(
            [
                "--data",
                str(tiny_dataset),
                "--split",
                "illum",
                "--tasks-dir",
                str(d),
                "--baseline",
                "raw",
                "--json",
                str(out),
                "--no-progress",
                "--distance",
                "L1",
            ]
        )
        == 0
    )
    res = json.loads(out.read_text())
    assert res["meta"]["sequences"] == 2 and res["retrieval"]["num_queries"] == 4
    assert res["verification"]["num_pairs"]["pos"] == 60 and res["meta"]["distance"] == "L1"
    assert res["matching"]["table"]["e"]["view"] is None


def test_errors_are_clear_and_nothing_is_written(tiny_dataset, home, capsys):
    assert (
        cli.main(
            [
                "--data",
                str(tiny_dataset),
                "--baseline",
                "raw",
                "--export-csv",
                str(home / "csv"),
                "--task",
                "matching",
                "--no-progress",
            ]
        )
        == 0
    )
    (home / "csv" / "v_gamma" / "t2.csv").unlink()
    out = home / "bad.json"
    rc = cli.main(
        ["--data", str(tiny_dataset), "--descriptors", str(home / "csv"), "--json", str(out), "--no-progress"]
    )
    assert rc == 2 and not out.exists()
    assert "v_gamma: missing descriptor files: t2.csv" in capsys.readouterr().err
    # a task file naming a sequence that is not in the split
    d = home / "tasks"
    T.write_retrieval(
        d,
        "full",
        T.RetrievalTask(
            queries={"s": np.array(["i_alpha"], object), "idx": np.array([0])},
            distractors={"s": np.array(["v_nowhere"], object), "idx": np.array([0])},
        ),
    )
    rc = cli.main(
        [
            "--data",
            str(tiny_dataset),
            "--task",
            "retrieval",
            "--tasks-dir",
            str(d),
            "--baseline",
            "raw",
            "--json",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 2 and not out.exists()
    assert "retr_distractors_split-full.csv: unknown sequence 'v_nowhere'" in capsys.readouterr().err


def test_pair_matching_spelling_runs_the_pairs_benchmark(monkeypatch):
    seen = []
    monkeypatch.setattr(cli, "run_benchmark", lambda entry, args: seen.append((entry.name, args.model)) or 0)
    assert cli.main(["--task", "pair-matching", "--model", "m.keras"]) == 0
    assert cli.main(["--task=pair-matching", "--model", "n.keras"]) == 0
    assert seen == [("pairs", "m.keras"), ("pairs", "n.keras")]


@pytest.mark.slow
def test_embedded_default_raw_all_tasks(tmp_path, capsys):
    """On the embedded default (built once into $HPATCHES_KIT_HOME): all three tasks run and the
    difficulty variants are ordered Easy > Hard > Tough as on the real HPatches."""
    out = tmp_path / "emb.json"
    assert cli.main(["--task", "all", "--baseline", "raw", "--json", str(out), "--no-progress"]) == 0
    res = json.loads(out.read_text())
    v = res["verification"]["table"]
    assert v["e"]["inter"]["ap"] > v["h"]["inter"]["ap"] > v["t"]["inter"]["ap"]
    m = res["matching"]["table"]
    assert m["e"]["all"] > m["h"]["all"] > m["t"]["all"]
    r = res["retrieval"]["per_variant"]
    assert r["e"] > r["h"] > r["t"]
    assert res["meta"]["sequences"] >= 10


def _one_error_line(err, *needles):
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("hpatches-eval: error: ") and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], lines[0]


def test_bad_arguments_and_outputs_are_one_line_before_any_work(tiny_dataset, home, capsys, monkeypatch):
    import keras

    import hpatches_kit.evaluation as ev

    data = ["--data", str(tiny_dataset), "--no-progress"]
    assert cli.main(data + ["--split", "zz"]) == 2
    _one_error_line(capsys.readouterr().err, "zz")
    assert cli.main(data + ["--batch-size", "0", "--model", str(home / "m.keras")]) == 2
    _one_error_line(capsys.readouterr().err, "--batch-size must be >= 1")
    # output paths are checked first: the evaluation never starts
    started = []
    real = ev.compute_descriptors
    monkeypatch.setattr(ev, "compute_descriptors", lambda *a, **k: started.append(1) or real(*a, **k))
    (home / "adir").mkdir()
    (home / "afile").write_text("x")
    for flag, value, needle in (
        ("--json", home / "adir", "is a folder"),
        ("--json", home / "afile" / "r.json", "cannot write the file there"),
        ("--plots", home / "afile" / "plots", "cannot create the folder"),
        ("--export-csv", home / "afile", "exists and is not a folder"),
    ):
        assert cli.main(data + ["--baseline", "raw", flag, str(value)]) == 2
        _one_error_line(capsys.readouterr().err, str(value), flag, needle)
    assert started == []
    # --model: a file that is not a Keras model, and models of the wrong input shape, named with the problem
    (home / "notkeras.keras").write_bytes(b"plain text, not a zip")
    assert cli.main(data + ["--model", str(home / "notkeras.keras")]) == 2
    _one_error_line(capsys.readouterr().err, "notkeras.keras", "exists but is not a Keras model")
    for shape in ((32, 32, 3), (1024,)):
        inp = keras.Input(shape)
        m = keras.Model(inp, keras.layers.Dense(4)(keras.layers.Flatten()(inp) if len(shape) > 1 else inp))
        path = home / f"m{len(shape)}.keras"
        m.save(path)
        assert cli.main(data + ["--model", str(path)]) == 2
        _one_error_line(capsys.readouterr().err, path.name, "must take (H, W, 1) square grey patches", str(shape))
