"""``hpatches-train descriptor`` under interruption and bad input: kill -9 at chosen writes, --resume with
other arguments, corrupt checkpoint files, a full disk and bad data -- one line on stderr, exit 2, finished
work kept (tiny data, a few steps)."""

import errno
import json
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import write_split_dataset

from hpatches_kit.cli.train import main as train_main

KILL_AT_WRITE = r"""
import os, signal, sys
from hpatches_kit.training import callbacks as cb
target, epoch = sys.argv[1], int(sys.argv[2])
orig = cb.atomic_write_json
def hooked(path, obj, **kw):
    orig(path, obj, **kw)
    n = obj.get("epoch") if path.name == "state.json" else obj.get("history", {}).get("epoch", [None])[-1]
    if path.name == target and n == epoch:
        os.kill(os.getpid(), signal.SIGKILL)
cb.atomic_write_json = hooked
from hpatches_kit.cli.train import main
sys.exit(main(sys.argv[3:]))
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    counts = {"i_a": 12, "i_b": 10, "v_c": 10, "v_d": 8}
    return write_split_dataset(tmp_path_factory.mktemp("rel") / "data", counts, 32, np.random.default_rng(0), 1)


def _base(data, out, **over):
    """argv of a tiny run; ``over`` replaces options (``batch_size=6`` -> ``--batch-size 6``)."""
    opts = {
        "data": data,
        "batch_size": 8,
        "steps_per_epoch": 1,
        "verbose": 0,
        "mixed_precision": "float32",
        "dim": 8,
        "collapse": "off",
        "val_every": 1,
        "out": out,
        **over,
    }
    argv = ["descriptor", "--no-eval"]
    for k, v in opts.items():
        argv += ["--" + k.replace("_", "-"), str(v)]
    return argv


def _history(out):
    return json.loads((out / "history.json").read_text())["history"]


def _one_error_line(err, *needles):
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith(("[", "WARNING", "I0000", "W0000"))]
    assert len(lines) == 1 and lines[0].startswith("hpatches-train descriptor: error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_kill9_between_the_epoch_writes_loses_no_epoch(data, tmp_path, capsys):
    """Killed right after epoch 2's ``state.json`` write (and, in a second run, right after its
    ``history.json`` write), the resumed run's history holds every epoch once: [1, 2, 3], each with a loss."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    for target in ("state.json", "history.json"):
        out = tmp_path / target
        p = subprocess.run(
            [sys.executable, "-c", KILL_AT_WRITE, target, "2", *_base(data, out), "--epochs", "3"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
        assert train_main(_base(data, out) + ["--epochs", "3", "--resume"]) == 0
        h = _history(out)
        assert h["epoch"] == [1, 2, 3], (target, h["epoch"])
        assert len(h["loss"]) == 3 and all(v is not None and np.isfinite(v) for v in h["loss"])
        assert json.loads((out / "checkpoints" / "state.json").read_text())["epoch"] == 3


def test_resume_refuses_changed_arguments_and_applies_safe_ones(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_main(_base(data, out) + ["--epochs", "1"]) == 0
    saved = json.loads((out / "run_args.json").read_text())
    assert saved["dim"] == 8 and saved["data"] == str(data.resolve())
    capsys.readouterr()
    before = (out / "checkpoints" / "last.keras").read_bytes()
    # --dim 16, --lr 0.05 and --patch-size 48: refused, every difference named, nothing trained
    rc = train_main(_base(data, out, dim=16, lr=0.05, patch_size=48, epochs=2) + ["--resume"])
    line = _one_error_line(
        capsys.readouterr().err,
        "run_args.json",
        "--dim 16 (run: 8)",
        "--lr 0.05 (run: 0.001)",
        "--patch-size 48 (run: 32)",
    )
    assert rc == 2 and "--epochs" not in line
    assert (out / "checkpoints" / "last.keras").read_bytes() == before
    assert json.loads((out / "run_args.json").read_text())["dim"] == 8
    # another --batch-size is refused too
    assert train_main(_base(data, out, batch_size=6) + ["--resume"]) == 2
    _one_error_line(capsys.readouterr().err, "--batch-size 6 (run: 8)")
    # --epochs / --val-every / --verbose may change: applied, and said so
    assert train_main(_base(data, out, val_every=2, epochs=2) + ["--resume"]) == 0
    err = capsys.readouterr().err
    assert "--epochs: 1 -> 2 (applied)" in err and "--val-every: 1 -> 2 (applied)" in err
    m = json.loads((out / "metrics.json").read_text())
    assert m["args"]["epochs"] == 2 and m["args"]["dim"] == 8 and m["history"]["epoch"] == [1, 2]
    assert json.loads((out / "run_args.json").read_text())["epochs"] == 2


def test_corrupt_checkpoint_files_fall_back_to_the_newest_intact_one(data, tmp_path, capsys):
    out = tmp_path / "run"
    ck = out / "checkpoints"
    assert train_main(_base(data, out) + ["--epochs", "2"]) == 0
    epoch2 = keras.models.load_model(ck / "epoch-0002.keras")
    # a torn last.keras and a leftover temporary from a killed checkpoint write
    (ck / "last.keras").write_bytes(b"PK\x03\x04 torn")
    (ck / ".epoch-0003.keras.k2j3h4.tmp.keras").write_bytes(b"half")
    (out / ".history.json.a1b2c3.tmp.json").write_text("{")
    capsys.readouterr()
    assert train_main(_base(data, out) + ["--epochs", "3", "--resume"]) == 0
    err = capsys.readouterr().err
    assert "last.keras: cannot load checkpoint" in err
    assert "resuming from the newest intact checkpoint" in err and "epoch-0002.keras (2 epochs done)" in err
    assert f"optimizer step {int(epoch2.optimizer.iterations.numpy())}" in err
    assert _history(out)["epoch"] == [1, 2, 3]
    assert not list(ck.glob(".*.tmp*")) and not list(out.glob(".*.tmp*"))
    # corrupt state.json: the newest epoch file (3) is used
    (ck / "state.json").write_text("{not json")
    assert train_main(_base(data, out) + ["--epochs", "4", "--resume"]) == 0
    err = capsys.readouterr().err
    assert "state.json: corrupt checkpoint state" in err and "epoch-0003.keras (3 epochs done)" in err
    # corrupt history.json: said so; the history restarts, earlier epochs null
    (out / "history.json").write_text("{broken")
    assert train_main(_base(data, out) + ["--epochs", "5", "--resume"]) == 0
    err = capsys.readouterr().err
    assert "history.json: unreadable" in err and "restarts at epoch 5" in err
    h = _history(out)
    assert h["epoch"] == [1, 2, 3, 4, 5] and h["loss"][:4] == [None] * 4 and np.isfinite(h["loss"][4])
    # nothing intact at all: one line naming the file
    for f in ck.glob("*.keras"):
        f.write_bytes(b"garbage")
    assert train_main(_base(data, out) + ["--epochs", "6", "--resume"]) == 2
    _one_error_line(capsys.readouterr().err, "last.keras: no intact checkpoint to resume from")


def test_bad_input_is_one_line_and_leaves_no_empty_out(data, tmp_path, capsys):
    out = tmp_path / "new"
    assert train_main(_base(tmp_path / "nope", out) + ["--epochs", "1"]) == 2
    _one_error_line(capsys.readouterr().err, "nope", "does not exist")
    assert not out.exists()
    assert train_main(_base(data, out) + ["--views", "1"]) == 2
    _one_error_line(capsys.readouterr().err, "--views must be >= 2")
    assert not out.exists()
    assert train_main(_base(data, out, batch_size=0)) == 2
    _one_error_line(capsys.readouterr().err, "--batch-size >= 2")


def test_disk_full_during_training_keeps_the_finished_epochs(data, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    real_save = keras.Model.save
    calls = []

    def save(self, path, *a, **kw):
        calls.append(path)
        if len(calls) == 2:  # epoch 2's checkpoint: the disk is full half-way through the write
            with open(path, "wb") as f:
                f.write(b"PK half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_save(self, path, *a, **kw)

    monkeypatch.setattr(keras.Model, "save", save)
    assert train_main(_base(data, out) + ["--epochs", "3"]) == 2
    _one_error_line(capsys.readouterr().err, "No space left on device", ".epoch-0002.keras")
    monkeypatch.setattr(keras.Model, "save", real_save)
    ck = out / "checkpoints"
    assert json.loads((ck / "state.json").read_text())["epoch"] == 1
    assert sorted(p.name for p in ck.iterdir()) == ["epoch-0001.keras", "last.keras", "state.json"]
    keras.models.load_model(ck / "last.keras")
    assert train_main(_base(data, out) + ["--epochs", "2", "--resume"]) == 0
    assert _history(out)["epoch"] == [1, 2]


def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(data, tmp_path, capsys):
    """Same seed on CPU: 2 epochs straight vs 1 epoch + --resume to 2 -- equal losses and weights, bit for bit
    (Dropout's SeedGenerator state, which ``model.save`` does not keep, is restored from state.json; the
    optimizer step/slots come from the checkpoint and the data stream is skipped to the same batch)."""
    kw = dict(steps_per_epoch=2)
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert train_main(_base(data, full, epochs=2, **kw)) == 0
    assert train_main(_base(data, cut, epochs=1, **kw)) == 0
    assert train_main(_base(data, cut, epochs=2, **kw) + ["--resume"]) == 0
    assert "dropout random state not restored" not in capsys.readouterr().err
    hf, hc = _history(full), _history(cut)
    assert hf["epoch"] == hc["epoch"] == [1, 2]
    assert hf["loss"] == hc["loss"] and hf["val_loss"] == hc["val_loss"]
    a = keras.models.load_model(full / "checkpoints" / "last.keras")
    b = keras.models.load_model(cut / "checkpoints" / "last.keras")
    for x, y in zip(a.weights, b.weights):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    for x, y in zip(a.optimizer.variables, b.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
