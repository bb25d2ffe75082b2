"""Quiet by default (issue 31): a normal run of each command prints the toolkit's own lines and progress bars,
not TensorFlow's C++/absl start-up chatter; ``-v`` brings it back. Each command runs as a user runs it: a fresh
process without ``TF_CPP_MIN_LOG_LEVEL`` in its environment."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_split_dataset

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "l2net-embedded.keras"
NOISE = re.compile(r"E0000|oneDNN|cuInit|absl::InitializeLog|^[IWEF]\d{4} \S+\s+\d+ \S+:\d+\]", re.M)


def _run(module, args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    r = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )
    return r, r.stdout + r.stderr


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    counts = {"i_a": 14, "i_b": 12, "v_c": 12, "v_d": 10}
    return write_split_dataset(tmp_path_factory.mktemp("quiet") / "data", counts, 32, np.random.default_rng(0), 2)


@pytest.fixture(scope="module")
def tf_is_chatty(tmp_path_factory):
    """Whether TensorFlow prints start-up lines here at all (it does on a CPU-only machine: oneDNN, cuInit)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    r = subprocess.run(
        [sys.executable, "-c", "import tensorflow as tf; tf.constant(1.0) + 1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return bool(NOISE.search(r.stdout + r.stderr))


def test_each_command_is_quiet_by_default_and_verbose_on_request(data, tmp_path, tf_is_chatty):
    runs = {
        "hpatches-data info": ("hpatches_kit.cli.data", ["info", "--data", str(data)]),
        "hpatches-eval --baseline sift": (
            "hpatches_kit.cli.eval",
            ["--data", str(data), "--baseline", "sift", "--task", "matching", "--no-progress"],
        ),
        "hpatches-eval --model": (
            "hpatches_kit.cli.eval",
            ["--data", str(data), "--model", str(MODEL), "--task", "matching", "--no-progress"],
        ),
        "hpatches-train descriptor": (
            "hpatches_kit.cli.train",
            [
                "descriptor",
                "--data",
                str(data),
                "--epochs",
                "1",
                "--steps-per-epoch",
                "1",
                "--batch-size",
                "16",
                "--no-eval",
                "--verbose",
                "0",
                "--mixed-precision",
                "float32",
                "--out",
                str(tmp_path / "run"),
            ],
        ),
    }
    done = {}
    for name, (module, args) in runs.items():
        r, text = done[name] = _run(module, args, tmp_path)
        assert r.returncode == 0, (name, text[-3000:])
        noise = NOISE.findall(text)
        assert not noise, f"{name} printed TensorFlow log lines: {noise}\n{text[-3000:]}"
    # the toolkit's own lines are still there: the results, a training run's [data]/[done] lines
    assert "Matching" in done["hpatches-eval --baseline sift"][0].stdout
    r = done["hpatches-train descriptor"][0]
    assert "[data]" in r.stderr and "[done]" in r.stderr
    # -v: TensorFlow's lines come back (where TensorFlow prints any), the result is the same
    r, text = _run("hpatches_kit.cli.eval", ["-v"] + runs["hpatches-eval --model"][1], tmp_path)
    assert r.returncode == 0 and "Matching" in r.stdout
    if tf_is_chatty:
        assert NOISE.search(text), text[-3000:]
    # -q: the [data]/[done] lines of a training run go, the result files stay
    r, text = _run(
        "hpatches_kit.cli.train",
        ["-q"] + runs["hpatches-train descriptor"][1][:-1] + [str(tmp_path / "run-q")],
        tmp_path,
    )
    assert r.returncode == 0 and (tmp_path / "run-q" / "model.keras").is_file(), text[-3000:]
    assert "[data]" not in r.stderr and "[done]" not in r.stderr
