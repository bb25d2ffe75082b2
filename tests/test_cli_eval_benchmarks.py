"""The benchmark registry behind ``hpatches-eval``: a user's benchmark added from a module outside the package
(one function + one registration) runs as its own sub-command; the built-ins, their sub-commands and the old
spellings (no command, ``--benchmark``, ``--task pair-matching``) reach the same entries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hpatches_kit import benchmarks
from hpatches_kit.cli import eval as cli

REPO = Path(__file__).resolve().parents[1]

USER_MODULE = '''
"""A user's benchmark: the trimmed mean of numbers given on the command line (nothing of hpatches_kit edited)."""
from pathlib import Path

from hpatches_kit import benchmarks


def trimmed_mean(options):
    """trimmed mean of --values (drops the smallest and the largest)"""
    vals = sorted(float(v) for v in options.values.split(","))[1:-1]
    return {"trimmed_mean": sum(vals) / len(vals), "kept": len(vals), "_raw": vals}


benchmarks.register("trimmed-mean", trimmed_mean,
                    add_arguments=lambda p: p.add_argument("--values", required=True),
                    format=lambda r: f"trimmed mean {r['trimmed_mean']:.3f} of {r['kept']} values",
                    plots=lambda r, out: [out.mkdir(parents=True, exist_ok=True) or (out / "kept.txt").write_text(
                        " ".join(map(str, r["_raw"]))) and out / "kept.txt"])
'''


def _cli(args, cwd, extra_path=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(extra_path or ""), str(REPO), env.get("PYTHONPATH", "")) if p)
    return subprocess.run(
        [sys.executable, "-m", "hpatches_kit.cli.eval", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_user_benchmark_from_outside_the_package_runs_as_a_subcommand(tmp_path):
    mods = tmp_path / "user_code"
    mods.mkdir()
    (mods / "mybench.py").write_text(textwrap.dedent(USER_MODULE))
    out = tmp_path / "res.json"
    r = _cli(
        [
            "--import",
            "mybench",
            "trimmed-mean",
            "--values",
            "9,1,2,6,100",
            "--json",
            str(out),
            "--plots",
            str(tmp_path / "pl"),
        ],
        cwd=tmp_path,
        extra_path=mods,
    )
    assert r.returncode == 0, r.stderr
    # by hand: sorted 1 2 6 9 100 -> 2 6 9 kept -> 17 / 3
    assert "trimmed mean 5.667 of 3 values" in r.stdout
    assert json.loads(out.read_text()) == {"trimmed_mean": pytest.approx(17 / 3), "kept": 3}  # no "_raw"
    assert (tmp_path / "pl" / "kept.txt").read_text() == "2.0 6.0 9.0"
    assert f"results written to {out}" in r.stderr
    # its sub-command is listed; a bad option of it is argparse's usage error (exit 2)
    h = _cli(["--import", "mybench", "--help"], cwd=tmp_path, extra_path=mods)
    assert h.returncode == 0 and "trimmed-mean" in h.stdout and "compare" in h.stdout and "brown" in h.stdout
    bad = _cli(["--import", "mybench", "trimmed-mean"], cwd=tmp_path, extra_path=mods)
    assert bad.returncode == 2 and "--values" in bad.stderr
    # a .py file works as --import too, and a module that does not exist is one error line naming it
    r = _cli(["--import", str(mods / "mybench.py"), "trimmed-mean", "--values", "1,2,3"], cwd=tmp_path)
    assert r.returncode == 0 and "trimmed mean 2.000 of 1 values" in r.stdout
    r = _cli(["--import", "no_such_mod", "trimmed-mean"], cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "hpatches-eval: error: cannot import module 'no_such_mod': No module named 'no_such_mod'"
    ]


@pytest.fixture
def recorded():
    """A registered benchmark that records the options it ran with (removed afterwards)."""
    seen = []

    def run(o):
        seen.append(o)
        return {"x": o.x, "_big": list(range(5))}

    def args(p):
        p.add_argument("--x", type=int, default=1)
        p.add_argument("--side", default=None)

    benchmarks.register(
        "probe",
        run,
        add_arguments=args,
        aliases=(("benchmark", "probe"),),
        outputs={"side": "file"},
        format=lambda r: f"probe x={r['x']}",
    )
    yield seen
    benchmarks.unregister("probe")


def test_registry_contract(recorded):
    assert benchmarks.names()[:5] == ("hpatches", "brown", "sequences", "pairs", "real")
    assert benchmarks.names()[-1] == "probe"
    with pytest.raises(ValueError, match="already registered"):
        benchmarks.register("probe", lambda o: {})
    with pytest.raises(ValueError, match="reserved"):
        benchmarks.register("compare", lambda o: {})
    with pytest.raises(TypeError, match="run must be callable"):
        benchmarks.register("nope", 3)
    with pytest.raises(ValueError, match="unknown benchmark 'nope'; expected one of hpatches, brown"):
        benchmarks.get("nope")
    assert benchmarks.json_ready({"a": 1, "_b": 2}) == {"a": 1}

    # the decorator form registers the function and returns it unchanged
    @benchmarks.register("deco", help="h")
    def deco(o):
        return {}

    try:
        assert benchmarks.get("deco").run is deco and benchmarks.get("deco").help == "h"
    finally:
        benchmarks.unregister("deco")


def test_subcommand_and_old_spelling_reach_the_entry(recorded, tmp_path, capsys):
    assert cli.main(["probe", "--x", "3", "--no-progress"]) == 0
    assert cli.main(["--benchmark", "probe", "--x", "4"]) == 0  # the entry's alias, in the old position
    assert [o.x for o in recorded] == [3, 4] and recorded[0].progress is False and recorded[1].progress is True
    assert capsys.readouterr().out.splitlines() == ["probe x=3", "probe x=4"]
    # --json and the entry's own outputs are checked before it runs (the run never starts)
    (tmp_path / "d").mkdir()
    for flag in ("--json", "--side"):
        assert cli.main(["probe", flag, str(tmp_path / "d")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"hpatches-eval: error: {tmp_path / 'd'}") and flag in err and "is a folder" in err
    assert len(recorded) == 2


def test_default_command_equals_hpatches_subcommand(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("HPATCHES_KIT_HOME", str(tmp_path / "home"))
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    common = ["--data", str(tiny_dataset), "--baseline", "raw", "--task", "matching", "--no-progress"]
    assert cli.main(common + ["--json", str(a)]) == 0
    assert cli.main(["hpatches"] + common + ["--json", str(b)]) == 0
    assert cli.main(["--benchmark", "hpatches"] + common + ["--json", str(b)]) == 0
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    assert ra["matching"] == rb["matching"] and ra["meta"]["descriptor"] == "raw"


def test_real_validation_subcommand_matches_the_library(real_sequences, tmp_path, monkeypatch, capsys):
    from hpatches_kit.evaluation.real import compare_on_real

    monkeypatch.setenv("HPATCHES_KIT_HOME", str(tmp_path / "home"))
    out = tmp_path / "real.json"
    assert (
        cli.main(
            [
                "real",
                "--data",
                str(real_sequences),
                "--baseline",
                "sift",
                "--baseline",
                "raw",
                "--regime",
                "small",
                "--max-patches",
                "25",
                "--json",
                str(out),
                "--plots",
                str(tmp_path / "pl"),
                "--no-progress",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "## small geometric noise" in text and "SIFT" in text and "raw" in text
    res = json.loads(out.read_text())
    ref = compare_on_real(real_sequences, {}, baselines=("sift", "raw"), regimes=("small",), max_patches=25)
    assert res["regimes"]["small"]["rows"] == ref["small"]["rows"]
    assert (tmp_path / "pl" / "real_validation.png").stat().st_size > 1000
