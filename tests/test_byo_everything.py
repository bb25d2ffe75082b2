"""docs/byo-everything.md, run as written: its Python files are written out and every command of its bash blocks
runs in order (in this process, through the CLIs' ``main``), on tiny data: 6 sequences of 20 tracks and two
3-image sequences. The only changes to the commands are the short-run flags in :data:`TINY` and the path of the
repository's ``models/``."""

from __future__ import annotations

import json
import re
import shlex
import sys

import numpy as np
import pytest
from conftest import REPO, make_tracks

PAGE = REPO / "docs" / "byo-everything.md"
#: the page's commands on tiny data: one short epoch, small batches, float32
TINY = {"--epochs 5": "--epochs 1 --steps-per-epoch 2 --batch-size 16 --mixed-precision float32 --verbose 0"}


def page_files_and_commands():
    text = PAGE.read_text()
    files = dict(re.findall(r"```python\n# file: (\S+)\n(.*?)```", text, flags=re.S))
    commands = [
        line.strip()
        for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)
        for line in block.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    return files, commands


def _images(rng, size=200):
    import cv2

    base = cv2.GaussianBlur(rng.normal(128, 60, (size, size)).astype(np.float32), (0, 0), 2.0)
    base += cv2.GaussianBlur(rng.normal(0, 40, (size, size)).astype(np.float32), (0, 0), 6.0)
    return np.clip(base, 0, 255).astype(np.uint8)


def write_sequences(root, rng):
    """Two 3-image sequences in the hpatches-sequences layout: lighting changes (identity H) and small
    rotations + shifts (their homographies)."""
    import cv2

    for name in ("i_lamp", "v_wall"):
        d = root / name
        d.mkdir(parents=True)
        ref = _images(rng)
        cv2.imwrite(str(d / "1.ppm"), cv2.cvtColor(ref, cv2.COLOR_GRAY2BGR))  # colour, as the real sequences
        for k in (2, 3):
            if name.startswith("i_"):
                img, H = np.clip(ref * (0.7 + 0.2 * k), 0, 255).astype(np.uint8), np.eye(3)
            else:
                H = np.vstack([cv2.getRotationMatrix2D((100, 100), 6.0 * k, 1.0 - 0.04 * k), [0, 0, 1]])
                img = cv2.warpPerspective(ref, H, (200, 200), borderMode=cv2.BORDER_REFLECT)
            cv2.imwrite(str(d / f"{k}.ppm"), cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))
            np.savetxt(d / f"H_1_{k}", H)


@pytest.fixture
def day(tmp_path, monkeypatch):
    files, commands = page_files_and_commands()
    for name, code in files.items():
        (tmp_path / name).write_text(code)
    rng = np.random.default_rng(0)
    names = ["i_a", "v_b", "i_c", "v_d", "i_e", "v_f"]
    data = tmp_path / "my-tracks"
    data.mkdir()
    np.savez(data / "tracks.npz", **{n: make_tracks(20, 32, rng) for n in names})
    (data / "splits.json").write_text(json.dumps({"a": {"train": names[:4], "test": names[4:]}}))
    write_sequences(tmp_path / "my-sequences", rng)
    monkeypatch.chdir(tmp_path)
    yield tmp_path, files, commands
    from hpatches_kit import benchmarks, models
    from hpatches_kit.data import formats
    from hpatches_kit.losses import registry as loss_registry

    for undo in (
        lambda: models.unregister("tiny64"),
        lambda: benchmarks.unregister("nn-top1"),
        lambda: formats.unregister("npz-tracks"),
    ):
        try:
            undo()
        except (ValueError, KeyError):
            pass
    loss_registry.REGISTRY._resolved.pop("my_losses:top_k_margin", None)
    for name in files:
        sys.modules.pop(name[:-3], None)


def test_a_researchers_day_runs_as_documented(day):
    from hpatches_kit.cli import eval as eval_cli
    from hpatches_kit.cli import train as train_cli

    tmp, files, commands = day
    assert set(files) == {"my_nets.py", "my_losses.py", "my_reader.py", "my_bench.py"}
    assert len(commands) == 10
    for command in commands:
        for short, tiny in TINY.items():
            command = command.replace(short, tiny)
        argv = shlex.split(command.replace("models/", f"{REPO}/models/"))
        main = {"hpatches-train": train_cli.main, "hpatches-eval": eval_cli.main}[argv[0]]
        assert main(argv[1:]) == 0, command

    # the run: the user's model, loss and setting, its final evaluation on the held-out sequences
    run_args = json.loads((tmp / "runs/mine/run_args.json").read_text())
    run_args = run_args.get("arguments", run_args)
    assert run_args["model"] == "tiny64" and run_args["loss_arg"] == ["hard_ratio=0.25"]
    metrics = json.loads((tmp / "runs/mine/metrics.json").read_text())
    assert metrics["evaluation"]["meta"]["split"] == "full"
    # compare took the run's own numbers beside the CLI's split-a results, the run named after its folder
    md = (tmp / "report/comparison.md").read_text()
    for name in ("sift", "rootsift", "l2net-embedded", "mine"):
        assert f"| {name} |" in md, md
    sift = json.loads((tmp / "sift.json").read_text())
    assert sift["meta"]["tasks_digest"] == metrics["evaluation"]["meta"]["tasks_digest"]
    assert (tmp / "report/comparison.png").is_file()
    nn = json.loads((tmp / "nn-top1.json").read_text())
    assert nn["descriptor"] == "mine" and 0 <= nn["headline"] <= 1
    # whole-image matching: three descriptors in one table and one figure
    md = (tmp / "report-matching/comparison.md").read_text()
    assert "Whole-image matching, 2 sequences, 4 image pairs" in md
    assert all(f"| {n} |" in md for n in ("sift", "rootsift", "mine")), md
    assert (tmp / "report-matching/comparison.png").is_file()
