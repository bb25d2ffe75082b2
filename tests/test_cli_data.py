"""`hpatches-data synth` / `extract`: argument plumbing (checked against a recording stand-in now) and the
real builders (run once synth.py / extract.py are merged; skipped until then)."""

import sys
import types

import cv2
import numpy as np
import pytest

from hpatches_kit.cli.data import build_parser, main
from hpatches_kit.data import TYPES
from hpatches_kit.data.validate import inspect_dataset


def _recorder(monkeypatch, modname, funcname):
    calls = []
    mod = types.ModuleType(modname)
    setattr(mod, funcname, lambda *a, **k: calls.append((a, k)))
    monkeypatch.setitem(sys.modules, modname, mod)
    monkeypatch.setattr("hpatches_kit.cli.data._print_dataset_summary", lambda root: None)
    return calls


def test_synth_arguments_reach_synthesize(monkeypatch, tmp_path):
    calls = _recorder(monkeypatch, "hpatches_kit.data.synth", "synthesize")
    assert (
        main(
            [
                "synth",
                "--out",
                str(tmp_path / "s"),
                "--photos",
                "a.png",
                "b.png",
                "--seed",
                "4",
                "--noise",
                "--num-illum",
                "2",
                "--num-view",
                "3",
                "--max-patches",
                "50",
                "--num-zoom",
                "5",
                "--num-blur",
                "6",
                "--jitter-scale",
                "0.2",
                "0.9",
                "--workers",
                "2",
                "--rescale",
                "--size",
                "32",
                "--test-fraction",
                "0.1",
            ]
        )
        == 0
    )
    assert calls == [
        (
            (tmp_path / "s",),
            dict(
                photos=["a.png", "b.png"],
                num_illum=2,
                num_view=3,
                max_patches=50,
                noise=True,
                seed=4,
                progress=True,
                num_zoom=5,
                num_blur=6,
                jitter_scale=(0.2, 0.9),
                workers=2,
                rescale=True,
                size=32,
                test_fraction=0.1,
            ),
        )
    ]
    calls.clear()
    assert main(["synth", "--out", str(tmp_path / "s"), "-q"]) == 0  # documented defaults
    assert calls == [
        (
            (tmp_path / "s",),
            dict(
                photos=None,
                num_illum=12,
                num_view=12,
                max_patches=None,
                noise=False,
                seed=0,
                progress=False,
                num_zoom=0,
                num_blur=0,
                jitter_scale=1.0,
                workers=1,
                rescale=False,
                size=None,
                test_fraction=40 / 116,
            ),
        )
    ]


def test_synth_tracks_detector_reaches_synthesize(monkeypatch, tmp_path):
    calls = _recorder(monkeypatch, "hpatches_kit.data.synth", "synthesize")
    assert main(["synth", "--out", str(tmp_path / "s"), "--tracks", "detector", "-q"]) == 0
    assert calls[0][1]["tracks"] == "detector"
    with pytest.raises(SystemExit):
        main(["synth", "--out", str(tmp_path / "s"), "--tracks", "bogus"])


def test_extract_arguments_reach_extract_dataset(monkeypatch, tmp_path):
    calls = _recorder(monkeypatch, "hpatches_kit.data.extract", "extract_dataset")
    assert (
        main(
            [
                "extract",
                str(tmp_path / "src"),
                "--out",
                str(tmp_path / "o"),
                "--seed",
                "9",
                "--max-patches",
                "7",
                "--jitter-scale",
                "0.333",
            ]
        )
        == 0
    )
    assert calls == [
        ((tmp_path / "src", tmp_path / "o"), dict(seed=9, max_patches=7, progress=True, jitter_scale=0.333))
    ]
    calls.clear()
    assert main(["extract", str(tmp_path / "src"), "--out", str(tmp_path / "o"), "-q"]) == 0
    assert calls == [
        ((tmp_path / "src", tmp_path / "o"), dict(seed=0, max_patches=None, progress=False, jitter_scale=1.0))
    ]


def test_parser_requires_out_for_extract_and_pack():
    for argv in (["extract", "x"], ["pack"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(argv)


# -- real builders (after merge) ------------------------------------------------------------------------
def test_cli_synth_real(tmp_path, capsys):
    synth = pytest.importorskip("hpatches_kit.data.synth")
    out = tmp_path / "syn"
    assert (
        main(
            [
                "synth",
                "--out",
                str(out),
                "--num-illum",
                "1",
                "--num-view",
                "1",
                "--max-patches",
                "6",
                "--noise",
                "--seed",
                "3",
                "-q",
            ]
        )
        == 0
    )
    r = inspect_dataset(out)
    assert r.ok, r.format()
    s = r.summary()
    assert (s["sequences"], s["illum_sequences"], s["view_sequences"]) == (2, 1, 1)
    assert all(0 < q.patches <= 6 and q.noisy for q in r.sequences)
    assert r.builder is not None and (out / "splits.json").is_file()
    assert "no problems found" in capsys.readouterr().out
    # the CLI is a thin wrapper: the same call through the API gives byte-identical files
    out2 = tmp_path / "syn2"
    synth.synthesize(out2, num_illum=1, num_view=1, max_patches=6, noise=True, seed=3, progress=False)
    for q in r.sequences:
        for t in TYPES:
            assert (out / q.name / f"{t}.png").read_bytes() == (out2 / q.name / f"{t}.png").read_bytes()


def test_cli_synth_default(capsys):
    pytest.importorskip("hpatches_kit.data.synth")
    from hpatches_kit.data.embedded import default_data_dir, default_root

    assert main(["synth", "-q"]) == 0
    out = capsys.readouterr().out
    assert str(default_root()) in out and "[hpatches]" in out and "[n-hpatches]" in out
    assert inspect_dataset(default_data_dir("n-hpatches")).sequences[0].noisy


def _write_image_sequence(d, rng):
    """One hpatches-sequences-style folder: 1.ppm..6.ppm and H_1_k (small translations)."""
    d.mkdir(parents=True)
    base = cv2.GaussianBlur(rng.normal(128, 60, (300, 400)).astype(np.float32), (0, 0), 2.0)
    base = np.clip(base, 0, 255).astype(np.uint8)
    cv2.imwrite(str(d / "1.ppm"), cv2.cvtColor(base, cv2.COLOR_GRAY2BGR))
    for k in range(2, 7):
        H = np.array([[1, 0, 2.0 * k], [0, 1, -1.5 * k], [0, 0, 1]])
        img = cv2.warpPerspective(base, H, (400, 300), borderMode=cv2.BORDER_REFLECT)
        cv2.imwrite(str(d / f"{k}.ppm"), cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))
        np.savetxt(d / f"H_1_{k}", H)


def test_cli_extract_real(tmp_path):
    pytest.importorskip("hpatches_kit.data.extract")
    rng = np.random.default_rng(0)
    _write_image_sequence(tmp_path / "src" / "v_shift", rng)
    out = tmp_path / "ext"
    assert main(["extract", str(tmp_path / "src"), "--out", str(out), "--max-patches", "8", "-q"]) == 0
    r = inspect_dataset(out)
    assert r.ok, r.format()
    assert [q.name for q in r.sequences] == ["v_shift"] and 0 < r.sequences[0].patches <= 8
