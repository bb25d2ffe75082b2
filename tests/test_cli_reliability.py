"""Issue 27: the 28 defects of the second reliability probe, one test each, on tiny data.

Most cases run through one parametrised harness (:func:`test_cli_case`): a CLI invocation (in process), the
expected exit status, a fragment of its one-line message, and a check that nothing was lost (every file of the
protected paths keeps its bytes, symlinks stay symlinks). Killing a build, two concurrent trainings, umask,
symlinks and the large-descriptor distances have tests of their own with real subprocesses where the case is
about processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import CLI_ENV, TINY_TRAIN

from hpatches_kit.data.synth import synthesize

REPO = Path(__file__).resolve().parents[1]
TRAIN, ENV = TINY_TRAIN, CLI_ENV
MODEL = REPO / "models" / "l2net-embedded.keras"
TINY = ["--num-illum", "2", "--num-view", "2", "--max-patches", "40", "--size", "32", "--seed", "0", "-q"]


# -- shared tiny data -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """``base`` (the issue's tiny synth), ``sift`` (its SIFT CSVs) and ``m.keras`` (a model copy), read-only use."""
    root = tmp_path_factory.mktemp("issue27")
    synthesize(root / "base", num_illum=2, num_view=2, max_patches=40, size=32, seed=0, progress=False)
    from hpatches_kit.data import load_dataset
    from hpatches_kit.evaluation import compute_descriptors, get_baseline, write_descriptor_dir

    descs = compute_descriptors(load_dataset(root / "base", progress=False), get_baseline("sift"), progress=False)
    write_descriptor_dir(root / "sift", descs)
    shutil.copyfile(MODEL, root / "m.keras")
    return root


def _snapshot(paths) -> dict:
    """Bytes (sha256) of every file under ``paths``, and which paths are symlinks: what "nothing lost" compares.
    The packed cache a command builds beside a dataset (the toolkit's own sidecar, rebuilt from the data) is
    not the user's: left out."""
    from hpatches_kit.data.cache import CACHE_DIRNAME

    out = {}
    for p in map(Path, paths):
        if p.is_symlink():
            out[str(p)] = ("link", os.readlink(p))
        if p.is_file():
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.is_dir():
            for f in sorted(p.rglob("*")):
                if CACHE_DIRNAME in f.relative_to(p).parts:
                    continue
                out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest() if f.is_file() else "dir"
    return out


def _run_cli(cli: str, argv) -> int:
    if cli == "data":
        from hpatches_kit.cli.data import main
    elif cli == "eval":
        from hpatches_kit.cli.eval import main
    else:
        from hpatches_kit.cli.train import main
    return main([str(a) for a in argv])


def _csv_dir(src: Path, dst: Path, fn) -> Path:
    for f in src.rglob("*.csv"):
        a = np.loadtxt(f, delimiter=",", ndmin=2).astype(np.float32)
        o = dst / f.relative_to(src)
        o.parent.mkdir(parents=True, exist_ok=True)
        np.savetxt(o, fn(a).astype(np.float32), delimiter=",", fmt="%.9g")
    return dst


def _splits(t: Path, test) -> Path:
    (t / "s.json").write_text(json.dumps({"a": {"name": "a", "train": [], "test": test}}))
    return t / "s.json"


def _keras_model(path: Path, kind: str) -> Path:
    """Small models for the model cases: a denoiser of the wrong output shape, another architecture with the
    L2-Net's input/output shapes, a NaN-producing descriptor."""
    import keras

    inp = keras.Input((32, 32, 1))
    if kind == "bad-denoiser":
        out = keras.layers.AveragePooling2D(2)(inp)  # (16, 16, 1): not the input's shape
    elif kind == "other-arch":
        out = keras.layers.Dense(8)(keras.layers.Flatten()(inp))
    else:  # nan
        dense = keras.layers.Dense(8)
        out = dense(keras.layers.Flatten()(inp))
    m = keras.Model(inp, out)
    if kind == "nan":
        m.set_weights([np.full(w.shape, np.nan, np.float32) for w in m.get_weights()])
    m.save(path)
    return path


def _results_json(t: Path, shared, name="r.json", headline="keep") -> Path:
    from hpatches_kit.data import load_dataset
    from hpatches_kit.evaluation import compute_descriptors, evaluate, get_baseline

    ds = load_dataset(shared / "base", progress=False)
    res = evaluate(
        compute_descriptors(ds, get_baseline("sift"), progress=False), ds, tasks=("matching",), progress=False
    )
    res["meta"]["descriptor"] = "sift"
    if headline != "keep":
        res["matching"]["headline"] = headline
    (t / name).write_text(json.dumps(res))
    return t / name


# -- the harness --------------------------------------------------------------------------------------------------
# each case: (t, shared) -> (cli, argv, protected paths); the expected exit status and message fragments
def c01_eval_json_is_dataset_json(t, s):
    return "eval", ["--data", s / "base", "--baseline", "sift", "--json", s / "base/dataset.json"], [s / "base"]


def c01_eval_json_is_splits_json(t, s):
    return "eval", ["--data", s / "base", "--baseline", "sift", "--json", s / "base/splits.json"], [s / "base"]


def c01_eval_json_is_the_model(t, s):
    m = shutil.copyfile(s / "m.keras", t / "m.keras")
    return "eval", ["--data", s / "base", "--model", m, "--json", m], [m]


def c01_eval_json_through_symlink(t, s):
    (t / "link.json").symlink_to(s / "base/dataset.json")
    return "eval", ["--data", s / "base", "--json", t / "link.json"], [s / "base", t / "link.json"]


def c01_info_json_is_dataset_json(t, s):
    return "data", ["info", "--data", s / "base", "--json", s / "base/dataset.json"], [s / "base"]


def c01_plots_export_inside_input(t, s):
    return "eval", ["--data", s / "base", "--export-csv", s / "base/i_astronaut"], [s / "base"]


def c02_synth_over_foreign_folder(t, s):
    p = t / "p"
    (p / "sub").mkdir(parents=True)
    (p / "dataset.json").write_text("{}")
    (p / "notes.txt").write_text("x")
    (p / "sub" / "keep.txt").write_text("y")
    return "data", ["synth", "--out", p, *TINY], [p]


def c02_synth_over_own_dataset_with_a_foreign_file(t, s):
    shutil.copytree(s / "base", t / "own")
    (t / "own" / "notes.txt").write_text("mine")
    return "data", ["synth", "--out", t / "own", *TINY], [t / "own"]


def c03_pack_over_foreign_folder(t, s):
    w = t / "w"
    w.mkdir()
    (w / "manifest.json").write_text("{}")
    (w / "app.js").write_text("x")
    return "data", ["pack", "--data", s / "base", "--out", w], [w]


def c03_pack_into_its_input(t, s):
    return "data", ["pack", "--data", s / "base", "--out", s / "base"], [s / "base"]


def c07_split_with_a_duplicate(t, s):
    f = _splits(t, ["i_astronaut", "i_astronaut", "v_coins"])
    return "eval", ["--data", s / "base", "--split", "a", "--splits-file", f], [f]


def c08_export_csv_into_other_descriptors(t, s):
    shutil.copytree(s / "sift", t / "X")
    (t / "X" / ".hpatches-kit.json").unlink()  # descriptors someone else wrote
    return "eval", ["--data", s / "base", "--baseline", "rootsift", "--export-csv", t / "X"], [t / "X"]


def c09_lr_nan(t, s):
    return "train", [*TRAIN, "--data", s / "base", "--lr", "nan", "--out", t / "R"], [s / "base"]


def c09_koleo_nan(t, s):
    return "train", [*TRAIN, "--data", s / "base", "--koleo", "nan", "--out", t / "R"], [s / "base"]


def c10_margin_negative(t, s):
    return "train", [*TRAIN, "--data", s / "base", "--margin", "-1", "--out", t / "R"], [s / "base"]


def c11_synth_nothing(t, s):
    return "data", ["synth", "--out", t / "z", "--num-illum", "0", "--num-view", "0", "-q"], []


def c13_failed_eval_leaves_no_folders(t, s):
    return (
        "eval",
        ["--descriptors", t / "missing", "--json", t / "a/b/r.json", "--plots", t / "p/x", "--export-csv", t / "c/y"],
        [],
    )


def c14_split_test_null_eval(t, s):
    (t / "s.json").write_text(json.dumps({"a": {"train": [], "test": None}}))
    return "eval", ["--data", s / "base", "--split", "a", "--splits-file", t / "s.json"], [t / "s.json"]


def c14_split_test_null_info(t, s):
    shutil.copytree(s / "base", t / "d")
    (t / "d" / "splits.json").write_text(json.dumps({"a": {"train": [], "test": None}}))
    return "data", ["info", "--data", t / "d", "--strict"], [t / "d"]


def c15_dataset_json_list(t, s):
    shutil.copytree(s / "base", t / "d")
    (t / "d" / "dataset.json").write_text("[1, 2]")
    return "data", ["info", "--data", t / "d", "--strict"], [t / "d"]


def c15_dataset_json_string(t, s):
    shutil.copytree(s / "base", t / "d")
    (t / "d" / "dataset.json").write_text('"hello"')
    return "data", ["info", "--data", t / "d", "--strict"], [t / "d"]


def c16_headline_null(t, s):
    a, b = _results_json(t, s, "a.json"), _results_json(t, s, "b.json", headline=None)
    return "eval", ["compare", a, b, "--out", t / "cmp"], [a, b]


def c16_headline_string(t, s):
    a, b = _results_json(t, s, "a.json"), _results_json(t, s, "b.json", headline="55.2")
    return "eval", ["compare", a, b, "--out", t / "cmp"], [a, b]


def c17_huge_batch_size(t, s):
    return (
        "eval",
        [
            "--data",
            s / "base",
            "--model",
            s / "m.keras",
            "--batch-size",
            "1000000000000",
            "--task",
            "matching",
            "--no-progress",
        ],
        [s / "base"],
    )


def c18_denoiser_wrong_output(t, s):
    bad = _keras_model(t / "bad.keras", "bad-denoiser")
    return "eval", ["--data", s / "base", "--model", s / "m.keras", "--denoiser", bad, "--no-progress"], [bad]


def c19_init_other_architecture(t, s):
    other = _keras_model(t / "other.keras", "other-arch")
    return "train", [*TRAIN, "--data", s / "base", "--init", other, "--out", t / "R"], [other]


def c20_nan_model(t, s):
    nan = _keras_model(t / "nan.keras", "nan")
    return "eval", ["--data", s / "base", "--model", nan, "--no-progress"], [nan]


def c21_steps_per_epoch_negative(t, s):
    return "train", [*TRAIN, "--data", s / "base", "--steps-per-epoch", "-5", "--out", t / "R"], []


def c22_synth_seed_negative(t, s):
    return "data", ["synth", "--out", t / "z", *TINY, "--seed", "-1"], []


def c22_synth_size_negative(t, s):
    return "data", ["synth", "--out", t / "z", *TINY, "--size", "-5"], []


def c22_pack_size_negative(t, s):
    return "data", ["pack", "--data", s / "base", "--out", t / "w", "--size", "-3"], [s / "base"]


def c22_synth_max_patches_zero(t, s):
    return "data", ["synth", "--out", t / "z", *TINY, "--max-patches", "0"], []


def c23_split_test_string(t, s):
    (t / "s.json").write_text(json.dumps({"a": {"train": [], "test": "v_coins"}}))
    return "eval", ["--data", s / "base", "--split", "a", "--splits-file", t / "s.json"], [t / "s.json"]


def c24_synth_into_the_current_folder(t, s):
    shutil.copytree(s / "base", t / "b")
    os.chdir(t / "b")
    return "data", ["synth", "--out", ".", *TINY], [t / "b"]


def c25_compare_out_is_a_file(t, s):
    r = _results_json(t, s)
    (t / "existing.json").write_text("{}")
    return "eval", ["compare", r, r, "--out", t / "existing.json"], [t / "existing.json", r]


def c26_offset_descriptors(t, s):
    off = _csv_dir(s / "sift", t / "off", lambda a: a + np.float32(1e5))
    return "eval", ["--data", s / "base", "--descriptors", off, "--no-progress"], [off]


CASES = [  # function, exit status, fragments of the message (stderr; stdout for exit 0/1), created paths that
    # must not exist afterwards
    (c01_eval_json_is_dataset_json, 2, ["--json is inside the input folder --data"], []),
    (c01_eval_json_is_splits_json, 2, ["splits.json", "--json is inside the input folder --data"], []),
    (c01_eval_json_is_the_model, 2, ["--json is the input --model"], []),
    (c01_eval_json_through_symlink, 2, ["link.json", "--json is inside the input folder --data"], []),
    (c01_info_json_is_dataset_json, 2, ["--json is inside the input folder --data"], []),
    (c01_plots_export_inside_input, 2, ["--export-csv", "was not written by hpatches-kit"], []),
    (c02_synth_over_foreign_folder, 2, ["not a dataset built by hpatches-kit; refusing to overwrite"], []),
    (c02_synth_over_own_dataset_with_a_foreign_file, 2, ["did not write (notes.txt)"], []),
    (c03_pack_over_foreign_folder, 2, ["not a packed cache; refusing to overwrite"], []),
    (c03_pack_into_its_input, 2, ["not a packed cache"], []),
    (c07_split_with_a_duplicate, 2, ["s.json", "i_astronaut more than once"], []),
    (c08_export_csv_into_other_descriptors, 2, ["X: --export-csv", "refusing"], []),
    (c09_lr_nan, 2, ["--lr must be > 0, got nan"], ["R"]),
    (c09_koleo_nan, 2, ["--koleo must be >= 0, got nan"], ["R"]),
    (c10_margin_negative, 2, ["--margin must be >= 0, got -1.0"], ["R"]),
    (c11_synth_nothing, 2, ["nothing to synthesise"], ["z"]),
    (c13_failed_eval_leaves_no_folders, 2, ["missing"], ["a", "p", "c"]),
    (c14_split_test_null_eval, 2, ["s.json", "'test' must be a list of sequence names, got null"], []),
    (c14_split_test_null_info, 1, ["splits.json", "'test' must be a list of sequence names, got null"], []),
    (c15_dataset_json_list, 1, ["dataset.json", "expected a JSON object of builder metadata, got list"], []),
    (c15_dataset_json_string, 1, ["dataset.json", "expected a JSON object of builder metadata, got str"], []),
    (c16_headline_null, 2, ["b.json", "'headline' must be an object with a numeric 'value', got null"], ["cmp"]),
    (c16_headline_string, 2, ["b.json", "'headline' must be an object with a numeric 'value'"], ["cmp"]),
    (c17_huge_batch_size, 0, ["matching mAP"], []),
    (c18_denoiser_wrong_output, 2, ["bad.keras", "denoiser must output patches of its input shape"], []),
    (c19_init_other_architecture, 2, ["other.keras", "another architecture"], []),
    (c20_nan_model, 2, ["nan.keras", "NaN or Inf descriptors"], []),
    (c21_steps_per_epoch_negative, 2, ["--steps-per-epoch must be >= 1, got -5"], ["R"]),
    (c22_synth_seed_negative, 2, ["--seed must be >= 0, got -1"], ["z"]),
    (c22_synth_size_negative, 2, ["--size must be >= 1 and <= 1024, got -5"], ["z"]),
    (c22_pack_size_negative, 2, ["--size must be >= 1 and <= 1024, got -3", "pack --size 0` keeps"], ["w"]),
    (c22_synth_max_patches_zero, 2, ["--max-patches must be >= 1, got 0"], ["z"]),
    (c23_split_test_string, 2, ["s.json", "'test' must be a list of sequence names, got str 'v_coins'"], []),
    (c24_synth_into_the_current_folder, 2, ["is the current folder"], []),
    (c25_compare_out_is_a_file, 2, ["existing.json: --out: exists and is not a folder"], []),
    (c26_offset_descriptors, 0, ["matching mAP 55.20", "retrieval mAP 84.17"], []),
]


@pytest.mark.parametrize("case, status, fragments, absent", CASES, ids=[c[0].__name__ for c in CASES])
def test_cli_case(case, status, fragments, absent, shared, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cli, argv, protected = case(tmp_path, shared)
    before = _snapshot(protected)
    code = _run_cli(cli, argv)
    out, err = capsys.readouterr()
    text = err if status == 2 else out + err
    assert code == status, (code, out[-2000:], err[-2000:])
    assert "Traceback" not in err
    if status == 2:
        lines = [ln for ln in err.strip().splitlines() if ": error: " in ln]
        assert len(lines) == 1 and lines[0].startswith("hpatches-"), err
        text = lines[0]
    for frag in fragments:
        assert frag in text, (frag, text[-2000:])
    assert _snapshot(protected) == before  # nothing lost or changed
    for name in absent:
        assert not (tmp_path / name).exists(), name
    if case is c26_offset_descriptors:  # case 26: the offset is not "nearly constant"
        assert "nearly constant" not in out + err
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith((".tmp", ".old"))]
    assert not leftovers


# -- cases with their own tests -----------------------------------------------------------------------------------
def test_c02_c03_own_builds_are_replaced_and_marked(shared, tmp_path):
    """The other side of cases 2-3 and 8: a completed build of the same kind (marker, nothing foreign) is
    replaced; the marker lists what the build wrote."""
    from hpatches_kit.data.fsio import MARKER, foreign_entries
    from hpatches_kit.data.pack import pack_dataset
    from hpatches_kit.evaluation import read_descriptor_dir, write_descriptor_dir

    shutil.copytree(shared / "base", tmp_path / "ds")
    assert foreign_entries(tmp_path / "ds", "dataset") == [] and foreign_entries(tmp_path / "ds", "pack") is None
    synthesize(tmp_path / "ds", num_illum=1, num_view=1, max_patches=5, size=32, seed=3, progress=False)
    assert len([p for p in (tmp_path / "ds").iterdir() if p.is_dir()]) == 2  # 4 sequences replaced by 2
    pack_dataset(shared / "base", tmp_path / "pk", progress=False)
    pack_dataset(tmp_path / "ds", tmp_path / "pk", progress=False)
    assert json.loads((tmp_path / "pk" / MARKER).read_text())["kind"] == "pack"
    descs = read_descriptor_dir(shared / "sift", progress=False)
    write_descriptor_dir(tmp_path / "X", descs)
    write_descriptor_dir(tmp_path / "X", {k: descs[k] for k in list(descs)[:1]})  # an own export: replaced whole
    assert sorted(p.name for p in (tmp_path / "X").iterdir() if p.is_dir()) == sorted(descs)[:1]


def _train(argv, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "hpatches_kit.cli.train", *map(str, argv)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def test_c04_unfinished_run_is_refused_without_resume(shared, tmp_path, capsys):
    from hpatches_kit.cli.train import main

    R = tmp_path / "R"
    assert main([*TRAIN, "--data", str(shared / "base"), "--epochs", "2", "--out", str(R)]) == 0
    (R / "model.keras").unlink()  # as if killed before the end
    before = _snapshot([R])
    capsys.readouterr()
    assert main([*TRAIN, "--data", str(shared / "base"), "--seed", "9", "--out", str(R)]) == 2
    err = capsys.readouterr().err
    assert "holds an unfinished run" in err and "--resume" in err and str(R) in err
    assert _snapshot([R]) == before  # last.keras, state.json, history.json, run_args.json untouched
    # --resume continues it (the same arguments)
    assert main([*TRAIN, "--data", str(shared / "base"), "--epochs", "2", "--out", str(R), "--resume"]) == 0
    assert (R / "model.keras").is_file()


def test_c05_concurrent_runs_on_one_out(shared, tmp_path, capsys):
    """A second run on a folder a live run (another process) holds fails fast (exit 2, naming the folder); the
    lock goes with the first process (SIGKILL included). The second run is this process (no second interpreter);
    the first trains until it is killed."""
    from hpatches_kit.cli.train import main

    R = tmp_path / "R"
    first = _train([*TRAIN, "--data", shared / "base", "--epochs", "400", "--out", R])
    try:
        deadline = time.time() + 240
        while not ((R / ".lock").is_file() and f"pid {first.pid}" in (R / ".lock").read_text()):
            assert first.poll() is None and time.time() < deadline, first.communicate()
            time.sleep(0.2)
        capsys.readouterr()
        assert main([*TRAIN, "--data", str(shared / "base"), "--out", str(R), "--resume"]) == 2
        err = capsys.readouterr().err
        assert f"{R}: another run (pid {first.pid}) is writing this folder" in err, err
        assert first.poll() is None  # the first goes on
    finally:
        first.kill()
        first.communicate()
    from hpatches_kit.data.fsio import lock_folder

    lock_folder(R).close()  # released by the kill


@pytest.mark.parametrize("cmd", ["synth", "pack"])
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_c12_killed_build_leaves_no_temporary(cmd, sig, shared, tmp_path):
    """kill -9 leaves the temporary folder (nothing can run), the next build removes it before starting;
    kill -TERM removes it at once. The output folder is never half-made."""
    out = tmp_path / "ds"
    if cmd == "synth":
        argv = ["synth", "--out", out, *TINY[:-1], "--num-illum", "6", "--num-view", "6", "--max-patches", "400"]
    else:
        argv = ["pack", "--data", shared / "base", "--out", out, "--shards", "64"]
    # slow the build down so that the signal arrives during it: the children are spawned, so a sleep in the
    # writer of each sequence/shard is injected into this process only
    hook = (
        "import time, sys\nimport hpatches_kit.data.extract as W, hpatches_kit.data.pack as P\n"
        "ws = W.write_sequence\nW.write_sequence = lambda *a, **k: (time.sleep(0.5), ws(*a, **k))[1]\n"
        "ts = P.track_example\nP.track_example = lambda *a, **k: (time.sleep(0.01), ts(*a, **k))[1]\n"
        "from hpatches_kit.cli.data import main\nsys.exit(main(sys.argv[1:]))\n"
    )
    p = subprocess.Popen([sys.executable, "-c", hook, *map(str, argv)], env=ENV, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not [q for q in tmp_path.glob(".ds.*.tmp") if any(q.iterdir())]:
        assert p.poll() is None and time.time() < deadline, p.communicate()
        time.sleep(0.05)
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    temps = list(tmp_path.glob(".ds.*"))
    assert not out.exists()
    if sig == signal.SIGTERM:
        assert p.returncode == 128 + signal.SIGTERM and temps == [], (p.returncode, err, temps)
        return
    assert p.returncode == -signal.SIGKILL and len(temps) == 1 and str(p.pid) in temps[0].name
    live = tmp_path / f".ds.{os.getpid()}-x.tmp"  # a live process's build is left alone
    live.mkdir()
    # the next run removes the dead build's temporary folder before it starts, and builds
    again = ["synth", "--out", out, *TINY] if cmd == "synth" else ["pack", "--data", shared / "base", "--out", out]
    assert _run_cli("data", again) == 0
    assert not temps[0].exists() and live.is_dir() and out.is_dir()
    assert sorted(q.name for q in tmp_path.iterdir()) == sorted([live.name, "ds"])


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_c27_folders_follow_the_umask(mask, shared, tmp_path):
    from hpatches_kit.data.pack import pack_dataset

    old = os.umask(mask)
    try:
        synthesize(tmp_path / "ds", num_illum=1, num_view=1, max_patches=5, size=32, progress=False)
        pack_dataset(tmp_path / "ds", tmp_path / "pk", tfrecords=False, progress=False)
    finally:
        os.umask(old)
    for d in (tmp_path / "ds", tmp_path / "ds" / "i_astronaut", tmp_path / "pk"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o777 & ~mask, d
    assert stat.S_IMODE((tmp_path / "pk" / "tracks.npy").stat().st_mode) == 0o666 & ~mask


def test_c28_symlinked_out_is_written_through(shared, tmp_path, capsys):
    from hpatches_kit.cli.data import main

    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "target")
    assert main(["synth", "--out", str(tmp_path / "link"), *TINY]) == 0
    assert (tmp_path / "link").is_symlink() and os.readlink(tmp_path / "link") == str(tmp_path / "target")
    assert (tmp_path / "target" / "dataset.json").is_file()
    assert main(["synth", "--out", str(tmp_path / "link"), *TINY[:-2], "1", "-q"]) == 0  # rebuilt through it
    assert (tmp_path / "link").is_symlink() and json.loads((tmp_path / "target/dataset.json").read_text())["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "target"]  # no stray .old / .tmp


def test_c06_large_descriptors_rank_as_unscaled(shared, tmp_path, capsys):
    """SIFT x 1e18 (finite in float32, up to ~1e20): every task scores what the unscaled SIFT scores (distances
    cannot overflow), through the CLI and for the matching/retrieval kernels directly."""
    from hpatches_kit.cli.eval import main
    from hpatches_kit.evaluation.distances import FastDistances
    from hpatches_kit.evaluation.kernels import nn_sets_l2, use_numba

    big = _csv_dir(shared / "sift", tmp_path / "big", lambda a: a * np.float32(1e18))
    scores = []
    for d in (shared / "sift", big):
        assert (
            main(
                [
                    "--data",
                    str(shared / "base"),
                    "--descriptors",
                    str(d),
                    "--json",
                    str(tmp_path / "r.json"),
                    "--no-progress",
                ]
            )
            == 0
        )
        r = json.loads((tmp_path / "r.json").read_text())
        scores.append([r[t]["headline"]["value"] for t in ("verification", "matching", "retrieval")])
    assert scores[0] == scores[1] and scores[0][1] == pytest.approx(55.20, abs=0.01)
    # the kernels: nearest neighbours of scaled rows = those of the unscaled rows (NumPy float64 reference)
    rng = np.random.default_rng(0)
    A = rng.random((50, 16)).astype(np.float32) * 300
    B = rng.random((4 * 30, 16)).astype(np.float32) * 300
    ref = np.stack(
        [
            np.argmin(((A[:, None].astype(np.float64) - B[k * 30 : (k + 1) * 30][None]) ** 2).sum(-1), 1)
            for k in range(4)
        ]
    )
    As, Bs = A * np.float32(1e18), B * np.float32(1e18)
    with np.errstate(over="ignore"):  # the float32 squared norm overflows: what broke the old keys
        assert np.isfinite(As).all() and np.isfinite(Bs).all() and np.isinf(np.float32(As[0] @ As[0]))
    if use_numba():
        nn, md = nn_sets_l2(As, Bs, 30)
        np.testing.assert_array_equal(nn, ref)
        assert np.isfinite(md).all()
    fd = FastDistances(Bs)
    K, tol = fd.key(As)
    assert np.isfinite(K).all()
    exact = ((A[:, None].astype(np.float64) - B[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(np.argmin(K, 1), np.argmin(exact, 1))
