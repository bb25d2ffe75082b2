"""Descriptor CSV folders: the fast (Arrow) parser gives the values ``np.loadtxt`` gives (the independent
reference), errors name the file and the line, and evaluating CSV descriptors decodes no image (only the
``ref`` images when retrieval task files must be generated), with the numbers of the loop reference."""

from __future__ import annotations

import json

import numpy as np
import pytest
import test_eval_protocol as naive

from hpatches_kit.cli import eval as cli
from hpatches_kit.data import TYPES, DataError
from hpatches_kit.data import hpatches as H
from hpatches_kit.evaluation import describers as Dsc
from hpatches_kit.evaluation import tasks as T
from hpatches_kit.evaluation.describers import read_descriptor_dir, read_descriptor_set, write_descriptor_dir


def _write_folder(root, lengths, dim, rng, fmt="{:.9g}"):
    descs = {
        s: {t: (rng.normal(size=(n, dim)) * rng.uniform(0.01, 300)).astype(np.float32) for t in TYPES}
        for s, n in lengths.items()
    }
    for s in descs:
        (root / s).mkdir(parents=True)
        for t in TYPES:
            (root / s / f"{t}.csv").write_text(
                "\n".join(",".join(fmt.format(v) for v in r) for r in descs[s][t].tolist()) + "\n"
            )
    return descs


@pytest.mark.parametrize("fmt", ["{:.9g}", "{:.5f}", "{:.17g}", "{:.0f}"])
def test_fast_parser_equals_loadtxt(tmp_path, fmt):
    rng = np.random.default_rng(0)
    lengths = {"i_a": 31, "v_b": 7}
    _write_folder(tmp_path, lengths, 24, rng, fmt)
    got = read_descriptor_dir(tmp_path, progress=False)
    ds = read_descriptor_set(tmp_path, progress=False)
    for s in lengths:
        for j, t in enumerate(TYPES):
            ref = np.loadtxt(tmp_path / s / f"{t}.csv", delimiter=",", dtype=np.float64, ndmin=2).astype(np.float32)
            assert got[s][t].dtype == np.float32
            np.testing.assert_array_equal(got[s][t], ref)
            np.testing.assert_array_equal(ds.stacks[s][j], ref)
    assert ds.names == ["i_a", "v_b"] and ds.lengths == lengths and ds.dim == 24


def test_separators_blank_lines_and_integers(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(4, 3) - 5
    p = tmp_path / "x.csv"
    for sep in (",", ";", "\t", " ", "  "):
        p.write_text("\n".join(sep.join(str(int(v)) for v in r) for r in a) + "\n\n")
        np.testing.assert_array_equal(Dsc._read_desc_csv(p), a)
    p.write_text("1.5,2\n\n3,4e-3\n")  # a blank line inside is skipped, as np.loadtxt does
    np.testing.assert_array_equal(Dsc._read_desc_csv(p), np.array([[1.5, 2], [3, 4e-3]], np.float32))


@pytest.mark.parametrize(
    "body, message",
    [
        ("1,2,3\n4,5\n6,7,8\n", r"bad\.csv: line 2: 2 values, expected 3"),
        ("1,2,3\n4,5,6,7\n", r"bad\.csv: line 2: 4 values, expected 3"),
        ("1,2,3\n4,5,6\n7,x9,8\n", r"bad\.csv: line 3, column 2: not a number: 'x9'"),
        ("1,2,3\n4,,6\n", r"bad\.csv: line 2, column 2: not a number: ''"),
        ("1,2,3\n\n4,5,nan\n", r"bad\.csv: row 2 contains NaN or Inf \(line 3, column 3"),
        ("1,2,3\n4,-inf,6\n", r"bad\.csv: row 2 contains NaN or Inf \(line 2, column 2"),
        ("1,2,3\n4,5,1e39\n", r"bad\.csv: row 2 contains NaN or Inf \(line 2, column 3: '1e39'"),  # float32 overflow
        ("1 2 3\n4 5 x\n", r"bad\.csv: line 2, column 3: not a number: 'x'"),
        ("\n", r"bad\.csv: empty descriptor file"),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path, body, message):
    p = tmp_path / "bad.csv"
    p.write_text(body)
    with pytest.raises(DataError, match=message):
        Dsc._read_desc_csv(p)


def test_folder_errors_name_the_file(tmp_path):
    rng = np.random.default_rng(1)
    _write_folder(tmp_path, {"i_a": 5, "v_b": 4}, 6, rng)
    (tmp_path / "v_b" / "h2.csv").write_text("\n".join(["1,2,3,4,5,6"] * 3) + "\n")
    with pytest.raises(DataError, match=r"v_b/h2\.csv: 3 descriptors but ref\.csv has 4"):
        read_descriptor_set(tmp_path, progress=False)
    (tmp_path / "v_b" / "h2.csv").write_text("\n".join(["1,2,3,4,5"] * 4) + "\n")
    with pytest.raises(DataError, match=r"v_b/h2\.csv: descriptor dimension 5 differs from 6"):
        read_descriptor_set(tmp_path, progress=False)


# -- no image decoding ---------------------------------------------------------------------------------
@pytest.fixture
def no_decoding(monkeypatch):
    """Record every PNG the toolkit decodes (and every cv2.imread)."""
    import cv2

    seen = []
    real_read, real_imread = H.read_patch_image, cv2.imread

    def read(path, *a, **k):
        seen.append(str(path))
        return real_read(path, *a, **k)

    def imread(path, *a, **k):
        seen.append(str(path))
        return real_imread(path, *a, **k)

    monkeypatch.setattr(H, "read_patch_image", read)
    monkeypatch.setattr(cv2, "imread", imread)
    return seen


def _csv_and_tasks(tiny_dataset, home, rng):
    from hpatches_kit.data import load_dataset

    ds = load_dataset(tiny_dataset, progress=False)
    lengths = {s.name: s.num_patches for s in ds}
    descs = {s: {t: rng.integers(0, 3, size=(n, 6)).astype(np.float32) for t in TYPES} for s, n in lengths.items()}
    write_descriptor_dir(home / "csv" / "mine", descs)
    d = home / "tasks"
    T.write_verification(d, "full", T.generate_verification(lengths, list(lengths), 200))
    T.write_retrieval(d, "full", T.generate_retrieval(ds.ref_patches(), list(lengths), 8, 20))
    return descs, d


def test_csv_evaluation_decodes_no_image(tiny_dataset, tmp_path, monkeypatch, no_decoding):
    monkeypatch.setenv("HPATCHES_KIT_HOME", str(tmp_path / "home"))
    descs, tdir = _csv_and_tasks(tiny_dataset, tmp_path, np.random.default_rng(2))
    no_decoding.clear()
    out = tmp_path / "r.json"
    assert (
        cli.main(
            [
                "--data",
                str(tiny_dataset),
                "--descriptors",
                str(tmp_path / "csv" / "mine"),
                "--tasks-dir",
                str(tdir),
                "--json",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    assert no_decoding == []
    res = json.loads(out.read_text())
    # the numbers of the official-style loop reference
    pairs = T.read_verification(tdir, "full")
    ref = naive.ref_verification(descs, pairs, "L2")
    for v in "eht":
        for n in ("intra", "inter"):
            assert res["verification"]["table"][v][n]["auc"] == pytest.approx(100 * ref[v][n][0], abs=1e-9)
            assert res["verification"]["table"][v][n]["ap"] == pytest.approx(100 * ref[v][n][1], abs=1e-9)
    rm = naive.ref_matching(descs, list(descs), "L2")
    for s in descs:
        for v in "eht":
            assert res["matching"]["per_sequence"][s][v] == pytest.approx(
                100 * np.mean([rm[s][v][k][0] for k in range(1, 6)]), abs=1e-9
            )
    rr = naive.ref_retrieval(descs, T.read_retrieval(tdir, "full"), "L2", (100, 500, 1000, 5000, 10000, 15000, 20000))
    for v in "eht":
        assert res["retrieval"]["per_variant"][v] == pytest.approx(100 * rr[v].mean(axis=0).mean(), abs=1e-9)
    # a descriptor count that disagrees with the dataset (read from the PNG header) is named
    (tmp_path / "csv" / "mine" / "v_delta").rename(tmp_path / "csv" / "v_delta_orig")
    (tmp_path / "csv" / "mine" / "v_delta").mkdir()
    for t in TYPES:
        (tmp_path / "csv" / "mine" / "v_delta" / f"{t}.csv").write_text("1,2,3,4,5,6\n" * 3)
    assert (
        cli.main(
            [
                "--data",
                str(tiny_dataset),
                "--descriptors",
                str(tmp_path / "csv" / "mine"),
                "--tasks-dir",
                str(tdir),
                "--no-progress",
            ]
        )
        == 2
    )
    assert no_decoding == []


def test_generated_tasks_decode_only_ref_images(tiny_dataset, tmp_path, monkeypatch, no_decoding, capsys):
    from hpatches_kit.data import load_dataset

    monkeypatch.setenv("HPATCHES_KIT_HOME", str(tmp_path / "home"))
    ds = load_dataset(tiny_dataset, progress=False)
    rng = np.random.default_rng(3)
    descs = {s.name: {t: rng.normal(size=(s.num_patches, 5)).astype(np.float32) for t in TYPES} for s in ds}
    write_descriptor_dir(tmp_path / "csv", descs)
    no_decoding.clear()
    out = tmp_path / "g.json"
    assert (
        cli.main(
            ["--data", str(tiny_dataset), "--descriptors", str(tmp_path / "csv"), "--json", str(out), "--no-progress"]
        )
        == 0
    )
    assert no_decoding and all(p.endswith("ref.png") for p in no_decoding) and len(set(no_decoding)) == len(descs)
    from hpatches_kit.evaluation import evaluate

    full = evaluate(descs, ds, progress=False, cache_dir=tmp_path / "home" / "tasks")  # the fully decoded dataset
    res = json.loads(out.read_text())
    for task in ("verification", "matching", "retrieval"):
        assert res[task]["headline"]["value"] == full[task]["headline"]["value"]
    capsys.readouterr()
