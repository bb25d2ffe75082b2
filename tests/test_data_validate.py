"""Bad input: load_sequence/load_dataset raise DataError naming the file; inspect_dataset / `hpatches-data info`
report every problem without crashing. The broken datasets are built by hand, so each expected problem is
known exactly."""

import json

import cv2
import numpy as np
import pytest
from conftest import make_tracks, write_dataset

from hpatches_kit.cli.data import main
from hpatches_kit.data import TYPES, DataError, load_dataset, load_sequence
from hpatches_kit.data.validate import inspect_dataset, png_size


def _seq(tmp_path, name="i_x", n=4, p=65, seed=0, noisy=False):
    rng = np.random.default_rng(seed)
    tracks = make_tracks(n, p, rng)
    write_dataset(tmp_path, {name: tracks}, {name: 255 - tracks} if noisy else None)
    return tmp_path / name, tracks


# -- load_sequence / load_dataset: one clear error per bad input ------------------------------------------
def test_corrupt_png_names_file(tmp_path):
    d, _ = _seq(tmp_path)
    (d / "h2.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not really a png")
    with pytest.raises(DataError, match=r"i_x/h2\.png: cannot decode image"):
        load_sequence(d)
    with pytest.raises(DataError, match=r"i_x/h2\.png: cannot decode image"):
        load_dataset(tmp_path, progress=False)


def test_missing_png_names_sequence_and_types(tmp_path):
    d, _ = _seq(tmp_path)
    (d / "t5.png").unlink()
    (d / "e1.png").unlink()
    with pytest.raises(DataError, match=r"i_x: sequence is missing image types: e1, t5"):
        load_sequence(d)


def test_wrong_patch_width_names_file(tmp_path):
    d, tracks = _seq(tmp_path)
    cv2.imwrite(str(d / "e3.png"), np.zeros((4 * 64, 64), np.uint8))
    with pytest.raises(DataError, match=r"i_x/e3\.png: patch width is 64 px, expected 65"):
        load_sequence(d)


def test_unequal_patch_counts_names_file(tmp_path):
    d, tracks = _seq(tmp_path)
    cv2.imwrite(str(d / "h4.png"), tracks[:3, TYPES.index("h4")].reshape(-1, 65))
    with pytest.raises(DataError, match=r"i_x/h4\.png: holds 3 patches but ref\.png holds 4"):
        load_sequence(d)


def test_non_square_height_names_file(tmp_path):
    d, _ = _seq(tmp_path)
    cv2.imwrite(str(d / "ref.png"), np.zeros((4 * 65 + 7, 65), np.uint8))
    with pytest.raises(DataError, match=r"i_x/ref\.png: image height 267 is not a multiple of the patch size 65"):
        load_sequence(d)


def test_missing_noise_when_required(tmp_path):
    d, _ = _seq(tmp_path)
    with pytest.raises(DataError, match=r"i_x: noisy images missing: ref_noise\.png"):
        load_sequence(d, noise=True)


def test_png_size_reads_header(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((130, 65), np.uint8))
    assert png_size(tmp_path / "a.png") == (65, 130)
    (tmp_path / "b.png").write_bytes(b"nope")
    assert png_size(tmp_path / "b.png") is None
    assert png_size(tmp_path / "missing.png") is None


# -- inspect_dataset --------------------------------------------------------------------------------------
def test_inspect_clean_dataset(tiny_dataset):
    r = inspect_dataset(tiny_dataset)
    assert r.ok, r.format()
    ds = load_dataset(tiny_dataset, progress=False)  # the reader is the reference for the counts
    assert [(s.name, s.patches, s.patch_size, s.kind) for s in r.sequences] == [
        (s.name, s.num_patches, s.patch_size, s.kind) for s in ds
    ]
    s = r.summary()
    assert (s["sequences"], s["illum_sequences"], s["view_sequences"], s["tracks"], s["patch_size"]) == (
        4,
        2,
        2,
        38,
        65,
    )
    assert s["noisy_sequences"] == 0 and r.builder is None


def test_inspect_noisy_and_builder_metadata(tmp_path):
    _seq(tmp_path, "v_n", n=3, p=32, noisy=True)
    meta = {"generator": "synth", "seed": 3, "jitter_overlap_median": {"e": 0.81, "h": 0.62, "t": 0.45}}
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    (tmp_path / "splits.json").write_text(json.dumps({"full": {"test": ["v_n"]}}))
    r = inspect_dataset(tmp_path)
    assert r.ok, r.format()
    assert r.sequences[0].noisy and r.sequences[0].patches == 3 and r.sequences[0].patch_size == 32
    assert r.builder == meta and r.has_splits_file
    text = r.format()
    assert "jitter_overlap_median: e=0.81, h=0.62, t=0.45" in text
    assert "noisy twins in 1/1 sequences" in text


def _broken_dataset(root):
    """Six sequences, each broken in one known way, plus a stray file and folder at the top."""
    rng = np.random.default_rng(5)
    names = ["i_corrupt", "i_missing", "v_width", "v_counts", "v_height", "v_stray", "i_good"]
    seqs = {n: make_tracks(3, 65, rng) for n in names}
    write_dataset(root, seqs)
    (root / "i_corrupt" / "e2.png").write_bytes(b"garbage")
    (root / "i_missing" / "h5.png").unlink()
    (root / "i_missing" / "t1.png").unlink()
    cv2.imwrite(str(root / "v_width" / "t3.png"), np.zeros((3 * 60, 60), np.uint8))
    cv2.imwrite(str(root / "v_counts" / "e4.png"), np.zeros((2 * 65, 65), np.uint8))
    cv2.imwrite(str(root / "v_height" / "h1.png"), np.zeros((3 * 65 + 1, 65), np.uint8))
    (root / "v_stray" / "notes.txt").write_text("hello")
    (root / "v_stray" / "ref_noise.png").write_bytes((root / "v_stray" / "ref.png").read_bytes())  # 1 of 16 twins
    (root / "README.txt").write_text("stray")
    (root / "misc").mkdir()
    return root


EXPECTED_BROKEN = {
    ("i_corrupt/e2.png", "cannot decode image"),
    ("i_missing", "missing image types: h5, t1"),
    ("v_width/t3.png", "patch width is 60 px, expected 65"),
    ("v_counts/e4.png", "holds 2 patches but ref.png holds 3"),
    ("v_height/h1.png", "image height 196 is not a multiple of the patch size 65"),
    ("v_stray/notes.txt", "stray file"),
    ("v_stray", "incomplete noisy twins: missing e1_noise.png"),
    ("README.txt", "stray file in the dataset folder"),
    ("misc", "stray folder in the dataset folder"),
}


def test_inspect_reports_every_problem(tmp_path):
    root = _broken_dataset(tmp_path / "broken")
    r = inspect_dataset(root)  # must not raise
    got = [(p.path.replace(str(root) + "/", ""), p.problem) for p in r.problems]
    for rel, phrase in EXPECTED_BROKEN:
        assert any(g_rel == rel and phrase in prob for g_rel, prob in got), (rel, phrase, got)
    assert len(got) == len(EXPECTED_BROKEN), got
    status = {s.name: s.ok for s in r.sequences}
    assert status == {
        "i_corrupt": False,
        "i_good": True,
        "i_missing": False,
        "v_counts": False,
        "v_height": False,
        "v_stray": False,
        "v_width": False,
    }
    # every problem's file exists (or is the sequence/dataset folder) -- the report names real paths
    for p in r.problems:
        assert (root / p.path.replace(str(root) + "/", "")).exists()


def test_inspect_missing_folder_and_empty_folder(tmp_path):
    r = inspect_dataset(tmp_path / "nope")
    assert [p.problem for p in r.problems] == ["dataset folder does not exist"]
    (tmp_path / "empty").mkdir()
    r = inspect_dataset(tmp_path / "empty")
    assert len(r.problems) == 1 and "no HPatches sequences found" in r.problems[0].problem


# -- the CLI ----------------------------------------------------------------------------------------------
def test_cli_info_broken_dataset(tmp_path, capsys):
    root = _broken_dataset(tmp_path / "broken")
    rc = main(["info", "--data", str(root), "--json", str(tmp_path / "out" / "info.json"), "-q"])
    out = capsys.readouterr().out
    assert rc == 0
    assert f"{len(EXPECTED_BROKEN)} problem(s):" in out
    assert "i_corrupt/e2.png: cannot decode image" in out
    assert "BROKEN" in out and "i_good" in out
    js = json.loads((tmp_path / "out" / "info.json").read_text())
    assert js["summary"]["sequences"] == 7 and len(js["problems"]) == len(EXPECTED_BROKEN)
    assert main(["info", "--data", str(root), "--strict", "-q"]) == 1


def test_cli_info_clean(tiny_dataset, capsys):
    assert main(["info", "--data", str(tiny_dataset), "--strict", "-q"]) == 0
    out = capsys.readouterr().out
    assert "4 sequences (2 illum, 2 view), 38 tracks, 608 patches, patch size 65" in out
    assert "no problems found" in out


# -- parallel loading -------------------------------------------------------------------------------------
def test_parallel_load_equals_serial(tmp_path):
    rng = np.random.default_rng(11)
    seqs = {f"{'iv'[i % 2]}_s{i}": make_tracks(int(rng.integers(2, 6)), 65, rng) for i in range(9)}
    write_dataset(tmp_path, seqs)
    ser = load_dataset(tmp_path, size=32, progress=False, workers=1)
    par = load_dataset(tmp_path, size=32, progress=False, workers=3)
    assert par.names == ser.names == sorted(seqs)
    for s in ser:
        np.testing.assert_array_equal(par[s.name].tracks, s.tracks)
        # and the reference: per-sequence load of the original tracks
        np.testing.assert_array_equal(
            load_dataset(tmp_path, sequences=[s.name], progress=False)[s.name].tracks, seqs[s.name]
        )


def test_parallel_load_error_names_file(tmp_path):
    rng = np.random.default_rng(12)
    write_dataset(tmp_path, {f"v_s{i}": make_tracks(2, 65, rng) for i in range(6)})
    (tmp_path / "v_s4" / "t2.png").write_bytes(b"bad")
    with pytest.raises(DataError, match=r"v_s4/t2\.png: cannot decode image"):
        load_dataset(tmp_path, progress=False, workers=3)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("{not json", "not valid JSON"),
        ('["a", "b"]', "expected a JSON object"),
        ('{"a": {"train": ["i_alpha"]}}', "split 'a' has no 'test' list"),
    ],
)
def test_cli_info_strict_fails_on_a_malformed_splits_file(tiny_dataset, capsys, text, problem):
    (tiny_dataset / "splits.json").write_text(text)
    assert main(["info", "--data", str(tiny_dataset), "--strict", "-q"]) == 1
    out = capsys.readouterr().out
    assert f"splits.json: {problem}" in out and "1 problem(s):" in out
    (tiny_dataset / "splits.json").write_text('{"a": {"train": ["i_alpha"], "test": ["v_gamma"]}}')
    assert main(["info", "--data", str(tiny_dataset), "--strict", "-q"]) == 0
