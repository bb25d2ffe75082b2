"""``hpatches-train descriptor --strategy mirrored --global-mining`` end to end on two logical CPU replicas (issue 19):
the dataset is distributed (2 replicas recorded, whole tracks per replica), validation runs under the strategy,
the checkpoint written under the strategy carries the global-mining loss, and ``--resume`` continues from it
(epoch counter, optimizer step count, first epoch's history untouched).

Logical devices must be configured before TensorFlow initialises them, so the runs happen in a subprocess.
The loss arithmetic of global mining (equal to one device, different from per-replica mining) is proven in
``tests/test_train_distribute.py``; this file proves the CLI wires it through a real strategy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_split_dataset

SCRIPT = r"""
import argparse, json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from hpatches_kit.cli import train_descriptor
from hpatches_kit.log import add_stderr_handler
add_stderr_handler(20)  # the toolkit's INFO lines ([resume], ...) on stderr, as the hpatches-train CLI shows them

data, out = sys.argv[1], sys.argv[2]
base = ["--data", data, "--strategy", "mirrored", "--global-mining", "--batch-size", "16",
        "--steps-per-epoch", "2", "--out", out, "--verbose", "0", "--mixed-precision", "float32", "--dim", "16",
        "--no-eval", "--collapse", "off"]

def run(argv):
    p = argparse.ArgumentParser()
    train_descriptor.configure(p)
    return train_descriptor.run(p.parse_args(argv))

rc1 = run(base + ["--epochs", "1"])
first = json.loads(open(out + "/metrics.json").read())
rc2 = run(base + ["--epochs", "2", "--resume"])
print("RESULT " + json.dumps({"rc": [rc1, rc2], "first": first}))
"""


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    counts = {"i_a": 20, "i_b": 18, "v_c": 16, "v_d": 12, "i_e": 10}
    root = write_split_dataset(tmp_path_factory.mktemp("dist") / "data", counts, 32, np.random.default_rng(3), 2)
    out = tmp_path_factory.mktemp("dist") / "run"
    env = dict(
        os.environ,
        PYTHONPATH=str(Path(__file__).resolve().parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    p = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(root), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=str(Path(__file__).parent),
    )
    line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
    assert p.returncode == 0 and line, p.stdout[-3000:] + p.stderr[-3000:]
    return json.loads(line[0][7:]), out, p.stderr


def test_two_replica_run_and_resume_exit_zero(result):
    r, _, _ = result
    assert r["rc"] == [0, 0]


def test_dataset_distributed_over_two_replicas_by_whole_tracks(result):
    r, out, _ = result
    m = json.loads((out / "metrics.json").read_text())
    assert m["replicas"] == 2 and r["first"]["replicas"] == 2
    # --batch-size 16 with K=2 views: S = 8 tracks per global batch, 4 whole tracks per replica
    assert m["tracks_per_batch"] == 8 and m["tracks_per_batch"] % m["replicas"] == 0
    h = m["history"]
    assert len(h["loss"]) == 2 and all(np.isfinite(h["loss"]))
    # validation ran under the strategy with a replica-divisible batch every epoch
    assert len(h["val_loss"]) == 2 and all(np.isfinite(h["val_loss"]))


def test_checkpoint_under_strategy_carries_global_mining_and_resume_continues_it(result):
    r, out, err = result
    import keras

    import hpatches_kit.models  # noqa: F401  (custom layers)
    from hpatches_kit.training.mining import ReplicaLoss

    assert "[resume]" in err and "1 epochs done, optimizer step 2" in err
    m = json.loads((out / "metrics.json").read_text())
    assert m["history"]["epoch"] == [1, 2]
    # the first epoch's record survives the resume unchanged: it was not retrained from scratch
    assert m["history"]["loss"][0] == pytest.approx(r["first"]["history"]["loss"][0], rel=0, abs=0)
    assert json.loads((out / "checkpoints" / "state.json").read_text())["epoch"] == 2
    ck = keras.models.load_model(out / "checkpoints" / "last.keras")
    assert int(ck.optimizer.iterations.numpy()) == 4  # 2 steps per epoch x 2 epochs: resumed, not restarted
    loss = ck.loss
    assert isinstance(loss, ReplicaLoss) and loss.global_batch, type(loss).__name__
