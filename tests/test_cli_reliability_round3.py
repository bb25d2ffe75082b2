"""Issue 38: the third reliability probe, one test per case, on tiny data.

Cases about processes or files (a crash, an input folder damaged, a corrupted cache, half-made output folders)
run the console commands in real subprocesses; the others call the CLI's ``main`` in process. Each asserts the
one-line message (exit 2, no traceback) or the exit status and what was kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CLI_ENV, TINY_TRAIN

from hpatches_kit.data.synth import synthesize

REPO = Path(__file__).resolve().parents[1]
TRAIN, ENV = TINY_TRAIN, CLI_ENV
MODEL = REPO / "models" / "l2net-embedded.keras"
UNET = REPO / "models" / "unet-shallow-embedded.keras"


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """``base`` (a tiny synth), ``ones`` (constant descriptors of it: every row ``1,1,...``), read-only use."""
    from hpatches_kit.data import TYPES, load_dataset
    from hpatches_kit.evaluation import write_descriptor_dir

    root = tmp_path_factory.mktemp("issue38")
    synthesize(root / "base", num_illum=2, num_view=2, max_patches=40, size=32, seed=0, progress=False)
    ds = load_dataset(root / "base", progress=False)
    write_descriptor_dir(
        root / "ones", {s.name: {t: np.ones((s.num_patches, 8), np.float32) for t in TYPES} for s in ds}
    )
    return root


def _cli(name: str, *argv, cwd=None, env=None) -> subprocess.CompletedProcess:
    """``hpatches-<name> argv`` in a subprocess of this checkout."""
    mod = {"eval": "hpatches_kit.cli.eval", "data": "hpatches_kit.cli.data", "train": "hpatches_kit.cli.train"}[name]
    return subprocess.run(
        [sys.executable, "-m", mod, *map(str, argv)],
        env={**ENV, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _main(name: str, *argv) -> int:
    if name == "eval":
        from hpatches_kit.cli.eval import main
    elif name == "data":
        from hpatches_kit.cli.data import main
    else:
        from hpatches_kit.cli.train import main
    return main([str(a) for a in argv])


def _one_error(err: str, *fragments) -> str:
    """The single ``hpatches-...: error: ...`` line of ``err`` (no traceback), holding every fragment."""
    assert "Traceback" not in err, err[-3000:]
    lines = [ln for ln in err.strip().splitlines() if ": error: " in ln]
    assert len(lines) == 1 and lines[0].startswith("hpatches-"), err[-3000:]
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def _digests(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
    }


# -- 1. constant descriptors with --plots: no crash in t-SNE ------------------------------------------------------
def test_01_constant_descriptors_with_plots_warn_and_skip_diagnostics(shared, tmp_path):
    r = _cli("eval", "--data", shared / "base", "--descriptors", shared / "ones", "--plots", tmp_path / "p",
             "--json", tmp_path / "r.json", "--no-progress")  # fmt: skip
    assert r.returncode == 0, (r.returncode, r.stderr[-3000:])  # was -11 (SIGSEGV in scikit-learn's t-SNE)
    assert "the descriptors are constant" in r.stdout + r.stderr
    assert "descriptor-space diagnostics skipped" in r.stderr
    assert (tmp_path / "r.json").is_file() and not (tmp_path / "p" / "tsne.png").exists()


def test_01_tsne_map_refuses_constant_rows():
    from hpatches_kit.evaluation.diagnostics import tsne_map

    descs = {"i_a": {t: np.zeros((5, 4), np.float32) for t in __import__("hpatches_kit").data.TYPES}}
    with pytest.raises(ValueError, match="constant"):
        tsne_map(descs, tracks=5)


# -- 2. one output-inside-input rule: --export-csv and pack --out (also through a symlink) -------------------------
@pytest.mark.parametrize("via_link", [False, True])
def test_02_outputs_inside_an_input_are_refused(shared, tmp_path, via_link):
    d = shutil.copytree(shared / "base", tmp_path / "D", ignore=shutil.ignore_patterns(".hpatches-kit-cache"))
    data = d
    if via_link:
        (tmp_path / "L").symlink_to(d)
        data = tmp_path / "L"
    before = _digests(d)
    r = _cli("data", "pack", "--data", data, "--out", d / "packed")
    _one_error(r.stderr, "--out is inside the input folder --data")
    assert r.returncode == 2
    r = _cli("eval", "--data", data, "--baseline", "sift", "--export-csv", d / "x", "--no-progress")
    _one_error(r.stderr, "--export-csv is inside the input folder --data")
    assert r.returncode == 2
    assert _digests(d) == before  # D still loads: nothing was added or changed
    # the toolkit's own cache folder is the one place allowed inside the data
    from hpatches_kit.data.cache import ensure_packed

    pk = ensure_packed(data, size=32, progress=False)
    assert pk.parent == d.resolve() / ".hpatches-kit-cache"


# -- 3. the model's output must be a vector ---------------------------------------------------------------------
def test_03_a_unet_is_refused_as_a_descriptor(shared, capsys):
    code = _main("eval", "--data", shared / "base", "--model", UNET, "--task", "matching", "--no-progress")
    assert code == 2
    _one_error(capsys.readouterr().err, "unet-shallow-embedded.keras", "one (D,) descriptor vector per patch",
               "(32, 32, 1)")  # fmt: skip


# -- 4. one finite-values check for results -------------------------------------------------------------------------
def _results(t: Path, shared, name: str, value) -> Path:
    from hpatches_kit.data import load_dataset
    from hpatches_kit.evaluation import compute_descriptors, evaluate, get_baseline

    ds = load_dataset(shared / "base", progress=False)
    res = evaluate(
        compute_descriptors(ds, get_baseline("sift"), progress=False), ds, tasks=("matching",), progress=False
    )
    res["meta"]["descriptor"] = name
    if value is not None:
        res["matching"]["headline"]["value"] = value
    (t / f"{name}.json").write_text(json.dumps(res))  # json writes NaN as NaN, as a hand edit would
    return t / f"{name}.json"


@pytest.mark.parametrize("value", [float("nan"), 1e9, -1.0, float("inf")])
def test_04_compare_refuses_a_headline_outside_0_100(shared, tmp_path, capsys, value):
    a, b = _results(tmp_path, shared, "a", None), _results(tmp_path, shared, "b", value)
    assert _main("eval", "compare", a, b, "--out", tmp_path / "cmp") == 2
    _one_error(capsys.readouterr().err, "b.json", "matching.headline.value", "finite percentage in [0, 100]")
    assert not (tmp_path / "cmp").exists()


# -- 5. packed-cache digests verified (once per cache, remembered) --------------------------------------------------
def test_05_a_corrupted_packed_array_of_the_same_size_is_detected(shared, tmp_path):
    from hpatches_kit.data.packed import _verified_record, load_packed

    r = _cli("data", "pack", "--data", shared / "base", "--out", tmp_path / "pk")
    assert r.returncode == 0, r.stderr[-3000:]
    pk = tmp_path / "pk"
    load_packed(pk)  # verified and remembered: the next opens hash nothing
    rec = json.loads(_verified_record(pk).read_text())
    assert set(rec["files"]) >= {"tracks.npy", "seq_ids.npy"}
    f = pk / "tracks.npy"
    size = f.stat().st_size
    with open(f, "r+b") as fh:  # one byte flipped in the middle: same size
        fh.seek(size // 2)
        b = fh.read(1)
        fh.seek(size // 2)
        fh.write(bytes([b[0] ^ 0xFF]))
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))  # a later write (coarse clocks)
    assert f.stat().st_size == size
    from hpatches_kit.data.errors import DataError

    with pytest.raises(DataError, match="sha256 checksum mismatch"):
        load_packed(pk)
    r = _cli("eval", "--data", pk, "--baseline", "sift", "--task", "matching", "--no-progress")
    assert r.returncode == 2
    _one_error(r.stderr, "tracks.npy", "corrupt packed cache", "sha256")


# -- 7. one plug-in contract check; a user's module failing is one line naming it ---------------------------------
PLUGIN = """
from hpatches_kit import benchmarks


def returns_none(options):
    return None


def returns_object(options):
    return {"value": object()}


def divides(options):
    return {"value": 1 / 0}


benchmarks.register("b-none", returns_none, replace=True)
benchmarks.register("b-object", returns_object, replace=True)
benchmarks.register("b-raises", divides, replace=True)


def wrong_builder(width, depth):
    raise AssertionError("never called")
"""


@pytest.mark.parametrize(
    "bench, fragments",
    [
        ("b-none", ["benchmark 'b-none' (plug38.returns_none)", "run(args) must return a dict", "NoneType"]),
        ("b-object", ["benchmark 'b-object' (plug38.returns_object)", "does not serialise as JSON"]),
        ("b-raises", ["module plug38 (plug38.py:", "raised ZeroDivisionError: division by zero", "-v shows"]),
    ],
)
def test_07_benchmark_plugin_contract(tmp_path, capsys, bench, fragments):
    (tmp_path / "plug38.py").write_text(PLUGIN)
    code = _main("eval", "--import", tmp_path / "plug38.py", bench, "--json", tmp_path / "r.json")
    assert code == 2
    _one_error(capsys.readouterr().err, *fragments)
    assert not (tmp_path / "r.json").exists()


def test_07_user_module_traceback_with_v(tmp_path):
    (tmp_path / "plug38.py").write_text(PLUGIN)
    r = _cli("eval", "--import", tmp_path / "plug38.py", "b-raises", "-v")
    assert r.returncode == 2
    assert "Traceback" in r.stderr and "ZeroDivisionError" in r.stderr and "plug38.py" in r.stderr
    assert "hpatches-eval: error: module plug38 (plug38.py:" in r.stderr


def test_07_model_builder_with_the_wrong_signature(shared, tmp_path, capsys):
    (tmp_path / "plug38.py").write_text(PLUGIN)
    argv = [
        *TRAIN,
        "--data",
        shared / "base",
        "--model",
        f"{tmp_path / 'plug38.py'}:wrong_builder",
        "--out",
        tmp_path / "R",
    ]
    assert _main("train", *argv) == 2
    _one_error(capsys.readouterr().err, "model builder", "plug38.wrong_builder", "(width, depth)", "input_size=")
    assert not (tmp_path / "R").exists()


# -- 14. -q is quiet with an --import that imports Keras ---------------------------------------------------------------
def test_14_quiet_import_of_keras_prints_nothing(tmp_path):
    (tmp_path / "kmod.py").write_text("import keras\nimport tensorflow as tf\ntf.constant(1.0) + 1\n")
    env = {k: v for k, v in ENV.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    r = subprocess.run(
        [sys.executable, "-m", "hpatches_kit.cli.eval", "--import", str(tmp_path / "kmod.py"), "hpatches", "-q",
         "--descriptors", str(tmp_path / "missing")],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("hpatches-eval: error:"), r.stderr[-3000:]


# -- 6. a missing or truncated row file of the streamed store: found on open, the cache rebuilt ----------------------
def test_06_damaged_row_store_is_rebuilt(shared, tmp_path, capsys):
    d = shutil.copytree(shared / "base", tmp_path / "D", ignore=shutil.ignore_patterns(".hpatches-kit-cache"))
    assert _main("train", *TRAIN, "--data", d, "--out", tmp_path / "R1") == 0
    (row,) = [f for f in (d / ".hpatches-kit-cache").glob("*/rows/00000/00000003.u8")]
    row.unlink()
    r = _cli("train", *TRAIN, "--data", d, "--out", tmp_path / "R2")
    assert r.returncode == 0, r.stderr[-3000:]  # was: NotFoundError / DecodeRaw traceback mid-epoch, every rerun
    assert "corrupt packed cache" in r.stderr and "00000003.u8: " in r.stderr and "rebuilding it" in r.stderr
    assert row.is_file() and row.stat().st_size == 16 * 32 * 32
    row.write_bytes(row.read_bytes()[:100])  # truncated
    capsys.readouterr()
    assert _main("train", *TRAIN, "--data", d, "--out", tmp_path / "R3") == 0
    assert "(truncated); re-run" in capsys.readouterr().err
    assert row.stat().st_size == 16 * 32 * 32


# -- 8. a NaN loss is named as such, with its epoch and step ---------------------------------------------------------
def test_08_nan_loss_is_reported_with_epoch_and_step(shared, tmp_path):
    (tmp_path / "nanloss38.py").write_text(
        "from keras import ops\n\ndef nan_loss(y_true, y_pred):\n    return ops.mean(y_pred) * float('nan')\n"
    )
    argv = [a for a in TRAIN if a not in ("--collapse", "off")]  # the collapse check on: it used to fail first
    argv[argv.index("--steps-per-epoch") + 1] = "2"
    r = _cli("train", *argv, "--data", shared / "base", "--loss", f"{tmp_path / 'nanloss38.py'}:nan_loss",
             "--out", tmp_path / "R")  # fmt: skip
    assert r.returncode == 2, r.stderr[-3000:]
    _one_error(r.stderr, "loss became NaN at epoch 1 step 1")
    assert "Eigenvalues" not in r.stderr
    assert not (tmp_path / "R").exists()  # 12: no half-made --out (run_args.json, logs/, .lock) is left


# -- 9. pack --size: bounded in the option table, 0 = the source size as --help says ----------------------------------
def test_09_pack_size_bounds_and_zero(shared, tmp_path, capsys):
    assert _main("data", "pack", "--data", shared / "base", "--out", tmp_path / "big", "--size", "100000") == 2
    _one_error(capsys.readouterr().err, "--size must be >= 1 and <= 1024, got 100000")  # was an 8.7 TiB allocation
    assert not (tmp_path / "big").exists()
    from hpatches_kit.cli.data import build_parser

    help_text = " ".join(build_parser()._subparsers._group_actions[0].choices["pack"].format_help().split())
    assert "0 keeps the source size" in help_text and "1..1024" in help_text
    synthesize(tmp_path / "s24", num_illum=1, num_view=1, max_patches=5, size=24, seed=0, progress=False)
    assert _main("data", "pack", "--data", tmp_path / "s24", "--out", tmp_path / "pk", "--size", "0", "-q") == 0
    from hpatches_kit.data.packed import load_packed

    assert load_packed(tmp_path / "pk").patch_size == 24  # the source's size kept (not the default 32)


# -- 11. --pca-dim larger than the training patches: refused before training ------------------------------------------
def test_11_pca_dim_checked_before_training(shared, tmp_path, capsys):
    argv = [*TRAIN, "--data", shared / "base", "--dim", "256", "--pca-dim", "250", "--out", tmp_path / "R"]
    argv[argv.index("--epochs") + 1] = "50"  # were it trained first, this would take minutes
    assert _main("train", *argv) == 2
    err = capsys.readouterr().err
    _one_error(err, "--pca-dim 250 needs more than 250 training patches", "use --pca-dim < ")
    assert "Epoch" not in err and not (tmp_path / "R").exists()  # nothing trained, no half-made run to resume


# -- 13. silently ignored cases -----------------------------------------------------------------------------------------
def test_13_xbm_start_without_xbm(shared, tmp_path, capsys):
    argv = [*TRAIN, "--data", shared / "base", "--xbm-start", "100", "--out", tmp_path / "R"]
    assert _main("train", *argv) == 2
    _one_error(capsys.readouterr().err, "--xbm-start 100", "give --xbm SIZE")
    assert not (tmp_path / "R").exists()


def test_13_sequences_kinds_naming_no_scene(tmp_path):
    from hpatches_kit.evaluation.image_matching import read_sequences

    (tmp_path / "src" / "leuven").mkdir(parents=True)
    import cv2

    rng = np.random.default_rng(0)
    for k in (1, 2):
        cv2.imwrite(str(tmp_path / "src" / "leuven" / f"{k}.png"), rng.integers(0, 255, (40, 40), np.uint8))
    np.savetxt(tmp_path / "src" / "leuven" / "H_1_2", np.eye(3))
    assert [n for n, _, _ in read_sequences(tmp_path / "src", kinds="leuven=v")] == ["v_leuven"]
    assert [n for n, _, _ in read_sequences(tmp_path / "src", kinds="i_leuven=v")] == ["v_leuven"]  # prefix given
    with pytest.raises(ValueError, match="--kinds names lueven, which is no scene of the data"):
        read_sequences(tmp_path / "src", kinds="lueven=v")


def test_13_compare_says_which_task_it_leaves_out(shared, tmp_path, capsys):
    a, b = _results(tmp_path, shared, "a", None), _results(tmp_path, shared, "b", None)
    ra = json.loads(a.read_text())
    ra["retrieval"] = {"headline": {"value": 40.0}, "per_variant": {"e": 41.0, "h": 40.0, "t": 39.0}}
    a.write_text(json.dumps(ra))  # only a has retrieval: it leaves every row and the mean
    capsys.readouterr()
    assert _main("eval", "compare", a, b, "--out", tmp_path / "cmp") == 0
    err = capsys.readouterr().err
    assert f"task retrieval is left out of the comparison (its column and the mean): {b} lacks it" in err


def test_13_compare_out_does_not_overwrite_the_users_file(shared, tmp_path, capsys):
    a, b = _results(tmp_path, shared, "a", None), _results(tmp_path, shared, "b", None)
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / "comparison.md").write_text("my notes")
    assert _main("eval", "compare", a, b, "--out", tmp_path / "rep") == 2
    _one_error(capsys.readouterr().err, "rep", "--out", "not written by hpatches-kit")
    assert (tmp_path / "rep" / "comparison.md").read_text() == "my notes"
    assert _main("eval", "compare", a, b, "--out", tmp_path / "new") == 0  # and an own comparison is replaced
    assert _main("eval", "compare", a, "--out", tmp_path / "new") == 0
    rows = (tmp_path / "new" / "comparison.csv").read_text().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == ["a"]


def test_13_info_on_a_non_dataset_is_an_error(tmp_path, capsys):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    assert _main("data", "info", "--data", tmp_path / "notes") == 2
    _one_error(capsys.readouterr().err, "notes", "no HPatches sequences found")


def test_13_results_record_the_describing_precision(shared, tmp_path):
    assert _main("eval", "--data", shared / "base", "--model", MODEL, "--precision", "float32", "--task",
                 "matching", "--json", tmp_path / "r.json", "--no-progress") == 0  # fmt: skip
    assert json.loads((tmp_path / "r.json").read_text())["meta"]["precision"] == "float32"


# -- 10. unclear messages made clear ------------------------------------------------------------------------------------
BUILDERS = """
import keras


def own_error(input_size=32, dim=128):
    raise ValueError("this builder needs an even dim")


def feature_map(input_size=32, dim=128):
    inp = keras.Input((input_size, input_size, 1))
    return keras.Model(inp, keras.layers.Conv2D(dim, 3, padding="same")(inp))


def two_outputs(input_size=32, dim=128):
    inp = keras.Input((input_size, input_size, 1))
    x = keras.layers.Dense(dim)(keras.layers.Flatten()(inp))
    return keras.Model(inp, [x, x])


def str_loss(y_true, y_pred):
    return "not a loss"
"""


@pytest.mark.parametrize(
    "model, loss, fragments",
    [
        ("own_error", None, ["--model", "own_error: this builder needs an even dim"]),
        ("feature_map", None, ["outputs shape (8, 8, 8) per patch, not a (8,) descriptor vector"]),
        ("two_outputs", None, ["must have one output (a descriptor), it has 2"]),
        (None, "str_loss", ["loss 'str_loss' (b38.str_loss) breaks the plug-in contract", "returned str"]),
    ],
)
def test_10_builder_and_loss_messages_name_the_flag(shared, tmp_path, capsys, model, loss, fragments):
    (tmp_path / "b38.py").write_text(BUILDERS)
    argv = [*TRAIN, "--data", shared / "base", "--patch-size", "8", "--out", tmp_path / "R"]
    if model:
        argv += ["--model", f"{tmp_path / 'b38.py'}:{model}"]
    if loss:
        argv += ["--loss", f"{tmp_path / 'b38.py'}:{loss}"]
    assert _main("train", *argv) == 2
    err = capsys.readouterr().err
    _one_error(err, *fragments)
    assert "set --dim 8" not in err and "No gradients" not in err and "inhomogeneous" not in err
    assert not (tmp_path / "R").exists()


def test_10_views_over_16_named_before_loading(shared, tmp_path, capsys):
    assert _main("train", *TRAIN, "--data", tmp_path / "nowhere", "--views", "20", "--out", tmp_path / "R") == 2
    # the option is checked first: the missing data folder is not even looked at
    _one_error(capsys.readouterr().err, "--views must be >= 1 and <= 16, got 20", "a track has 16 views")


def test_10_broken_manifest_is_a_corrupt_cache(shared, tmp_path, capsys):
    from hpatches_kit.data.pack import pack_dataset

    pk = pack_dataset(shared / "base", tmp_path / "pk", tfrecords=False, progress=False)
    (pk / "manifest.json").write_text("{broken")
    assert _main("eval", "--data", pk, "--baseline", "sift", "--task", "matching", "--no-progress") == 2
    _one_error(capsys.readouterr().err, "manifest.json", "corrupt packed cache", "not valid JSON")


def test_10_a_file_where_the_cache_goes_is_replaced(shared, tmp_path):
    from hpatches_kit.data.cache import cache_key, ensure_packed
    from hpatches_kit.data.hpatches import find_sequence_dirs
    from hpatches_kit.data.packed import source_fingerprint

    d = shutil.copytree(shared / "base", tmp_path / "D", ignore=shutil.ignore_patterns(".hpatches-kit-cache"))
    key = cache_key(source_fingerprint(find_sequence_dirs(d)), 32, False)
    (d / ".hpatches-kit-cache").mkdir()
    (d / ".hpatches-kit-cache" / key).write_text("not a cache")  # was: "--out: exists and is not a folder"
    out = ensure_packed(d, size=32, progress=False)
    assert out.name == key and out.is_dir() and (out / "manifest.json").is_file()


def test_10_sequence_names_must_be_a_list(shared, tmp_path, capsys):
    a, b = _results(tmp_path, shared, "a", None), _results(tmp_path, shared, "b", None)
    rb = json.loads(b.read_text())
    rb["meta"]["sequence_names"] = "i_astronaut"  # hand-edited: was iterated as its characters
    b.write_text(json.dumps(rb))
    assert _main("eval", "compare", a, b, "--out", tmp_path / "cmp") == 2
    _one_error(capsys.readouterr().err, "b.json", "meta.sequence_names must be a list of sequence names, got str")


def _source_sequence(folder: Path, images: list, gap_at: int | None = None) -> Path:
    import cv2

    folder.mkdir(parents=True)
    for k, img in enumerate(images, 1):
        if k == gap_at:
            continue
        cv2.imwrite(str(folder / f"{k}.png"), img)
        if k > 1:
            np.savetxt(folder / f"H_1_{k}", np.eye(3))
    return folder


def test_10_a_gap_in_a_sequence_is_named_as_a_gap(tmp_path):
    from hpatches_kit.data.errors import DataError
    from hpatches_kit.data.extract import read_source_sequence

    rng = np.random.default_rng(0)
    ims = [rng.integers(0, 255, (60, 60), np.uint8) for _ in range(4)]
    src = _source_sequence(tmp_path / "leuven", ims, gap_at=3)
    with pytest.raises(DataError, match=r"missing image 3\.\* while 4\.\* exists: a gap in the sequence") as e:
        read_source_sequence(src)
    assert "at least 2" not in str(e.value)


def test_10_an_image_without_keypoints_in_sequences(tmp_path, capsys):
    import cv2

    rng = np.random.default_rng(0)
    tex = cv2.GaussianBlur(rng.integers(0, 255, (120, 120)).astype(np.uint8), (0, 0), 2)
    _source_sequence(tmp_path / "src" / "leuven", [tex, np.full((120, 120), 128, np.uint8)])  # the 2nd is flat
    code = _main("eval", "sequences", "--data", tmp_path / "src", "--baseline", "sift", "--no-progress")
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]  # was: "cannot reshape array of size 0"
    assert "cannot reshape" not in out + err


def test_10_nan_brown_descriptor_file_says_nan(tmp_path):
    from hpatches_kit.data.errors import DataError
    from hpatches_kit.evaluation.descriptor_csv import read_descriptor_rows

    a = np.ones((5, 4), np.float32)
    a[3, 1] = np.nan
    np.save(tmp_path / "d.npy", a)
    with pytest.raises(DataError, match=r"d\.npy: 1 of 5 descriptor rows hold NaN or Inf \(first: row 3\)"):
        read_descriptor_rows(tmp_path / "d.npy")


def test_14_cache_default_is_the_same_in_help_and_docs():
    from hpatches_kit.cli.eval import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices["hpatches"]
    (cache,) = [a for a in sub._actions if "--cache" in a.option_strings]
    assert cache.default == "auto" and "auto (default)" in cache.help
    arch = " ".join((REPO / "docs" / "ARCHITECTURE.md").read_text().split())
    assert "`hpatches-eval --cache` defaults to `auto`" in arch and "defaults to `off`" not in arch
