"""``hpatches-train descriptor --model``: every registered architecture and a user's ``MODULE:FUNCTION`` model
and loss (from a module outside the package) train, evaluate and round-trip ``.keras`` through the CLIs."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from conftest import REPO, write_split_dataset

from hpatches_kit.cli import train_descriptor


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    counts = {"i_a": 14, "v_b": 12, "i_c": 8}
    return write_split_dataset(tmp_path_factory.mktemp("models") / "data", counts, 32, np.random.default_rng(3), 1)


def _train(argv):
    import argparse

    p = argparse.ArgumentParser()
    train_descriptor.configure(p)
    return train_descriptor.run(p.parse_args(argv))


def _check_run(out, name, data):
    """The run evaluated its model, and model.keras reloads to the network the checkpoint holds."""
    m = json.loads((out / "metrics.json").read_text())
    assert np.isfinite(m["history"]["loss"][0])
    ev = m["evaluation"]
    assert {"verification", "matching", "retrieval"} <= set(ev)
    assert all(0 <= ev[t]["headline"]["value"] <= 100 for t in ("verification", "matching", "retrieval"))
    net = keras.models.load_model(out / "model.keras")
    assert net.name == name and net.input_shape == (None, 32, 32, 1) and net.output_shape == (None, 128)
    ck = keras.models.load_model(out / "checkpoints" / "last.keras")
    from hpatches_kit.models.registry import descriptor_branch

    branch = descriptor_branch(ck)
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 1)).astype("float32")
    np.testing.assert_allclose(net.predict(x, verbose=0), branch.predict(x, verbose=0), atol=1e-5)
    # save again and reload: the same outputs (the .keras round trip of the architecture)
    again = out / "again.keras"
    net.save(again)
    np.testing.assert_allclose(
        keras.models.load_model(again).predict(x, verbose=0), net.predict(x, verbose=0), atol=1e-6
    )
    return m, net


@pytest.mark.parametrize(
    "model,loss",
    [("hardnet8", "batch-hard"), ("tfeat", "random-triplet"), ("hardnet", "hardnet")],
)  # sosnet: test_sosnet_with_sosr
def test_registered_architectures_train_evaluate_round_trip(data, tmp_path, model, loss):
    out = tmp_path / model
    assert (
        _train(
            [
                "--data",
                str(data),
                "--model",
                model,
                "--loss",
                loss,
                "--epochs",
                "1",
                "--steps-per-epoch",
                "2",
                "--batch-size",
                "8",
                "--out",
                str(out),
                "--verbose",
                "0",
                "--mixed-precision",
                "float32",
            ]
        )
        == 0
    )
    m, net = _check_run(out, model, data)
    if model == "hardnet8":  # the PCA stayed the fixed buffer it is in PyTorch
        assert net.get_layer("pca").trainable is False
        fresh = keras.models.load_model(out / "checkpoints" / "last.keras").get_layer("pca")
        assert fresh.trainable is False


def test_sosnet_with_sosr(data, tmp_path):
    """SOSNet end to end, with the loss it was published with."""
    out = tmp_path / "sosr"
    assert (
        _train(
            [
                "--data",
                str(data),
                "--model",
                "sosnet",
                "--loss",
                "sosr",
                "--epochs",
                "1",
                "--steps-per-epoch",
                "2",
                "--batch-size",
                "8",
                "--out",
                str(out),
                "--verbose",
                "0",
                "--mixed-precision",
                "float32",
            ]
        )
        == 0
    )
    _check_run(out, "sosnet", data)


def test_contract_and_unknown_names_are_refused_by_flag(data, tmp_path):
    from hpatches_kit.training.descriptor import DescriptorOptions, check_options

    with pytest.raises(ValueError, match="--model hardnet8 takes 32x32 patches only: use --patch-size 32, not 16"):
        check_options(DescriptorOptions(model="hardnet8", patch_size=16))
    with pytest.raises(ValueError, match="--model tfeat outputs 128-d descriptors: use --dim 128, not 64"):
        check_options(DescriptorOptions(model="tfeat", dim=64))
    with pytest.raises(ValueError, match="--model: unknown model 'small_cnn'"):
        check_options(DescriptorOptions(model="small_cnn"))  # recorded and silently ignored before
    with pytest.raises(ValueError, match="--loss infonce is an image-pair loss"):
        check_options(DescriptorOptions(loss="infonce"))
    with pytest.raises(SystemExit):
        _train(["--model", "resnet"])  # argparse: invalid choice, listing the registered names


USER_MODULE = '''
"""A researcher's own model and loss: each one function plus one registration (or a MODULE:FUNCTION name)."""
import keras
from keras import ops

from hpatches_kit import losses, models


@keras.saving.register_keras_serializable(package="mymod")
class Scale255(keras.layers.Layer):
    """A layer of the user's own: the saved model needs this module to load (hpatches-eval --import mymod)."""

    def call(self, x):
        return x / 255.0


def build(input_size=32, dim=128):
    x = keras.Input((input_size, input_size, 1))
    y = Scale255()(x)
    y = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(y)
    y = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(y)
    y = keras.layers.Dense(dim)(keras.layers.Flatten()(y))
    y = keras.layers.UnitNormalization(dtype="float32")(y)
    return keras.Model(x, y, name="small_cnn")


def myloss(y_true, y_pred, margin=1.0):
    """Mean over anchors of relu(margin + d(hardest positive) - d(hardest negative)), written out plainly."""
    same = ops.equal(ops.expand_dims(y_true, 0), ops.expand_dims(y_true, 1))
    d = ops.sqrt(ops.maximum(ops.sum(ops.square(ops.expand_dims(y_pred, 0) - ops.expand_dims(y_pred, 1)), -1), 1e-12))
    pos = ops.max(ops.where(same, d, 0.0), axis=1)
    neg = ops.min(ops.where(same, 1e9, d), axis=1)
    return ops.mean(ops.relu(margin + pos - neg))


models.register("small-cnn", build)                                   # --model small-cnn after --import mymod
losses.register("my-hard", losses.function_loss(myloss, uses=("margin",)))  # --loss my-hard after --import mymod
'''


def _cli(args, cwd, extra_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(extra_path)]), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=900)


def test_user_model_and_loss_from_outside_the_package(data, tmp_path):
    plug = tmp_path / "plug"
    plug.mkdir()
    (plug / "mymod.py").write_text(textwrap.dedent(USER_MODULE))
    out = tmp_path / "out"
    r = _cli(
        [
            "hpatches_kit.cli.train",
            "descriptor",
            "--data",
            str(data),
            "--model",
            "mymod:build",
            "--loss",
            "mymod:myloss",
            "--epochs",
            "1",
            "--steps-per-epoch",
            "2",
            "--batch-size",
            "8",
            "--dim",
            "32",
            "--out",
            str(out),
            "--verbose",
            "0",
            "--mixed-precision",
            "float32",
            "--no-eval",
        ],
        tmp_path,
        plug,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert np.isfinite(m["history"]["loss"][0])
    run_args = json.loads((out / "run_args.json").read_text())
    assert run_args["model"] == "mymod:build" and run_args["loss"] == "mymod:myloss"

    # without the user's module the model cannot load: one clear line, exit 2, naming --import
    r = _cli(
        [
            "hpatches_kit.cli.eval",
            "--data",
            str(data),
            "--model",
            str(out / "model.keras"),
            "--task",
            "matching",
            "--no-progress",
        ],
        tmp_path,
        tmp_path / "nowhere",
    )
    assert r.returncode == 2 and "--import MODULE" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    # with --import it evaluates (the module is found on PYTHONPATH)
    res = tmp_path / "res.json"
    r = _cli(
        [
            "hpatches_kit.cli.eval",
            "--import",
            "mymod",
            "--data",
            str(data),
            "--model",
            str(out / "model.keras"),
            "--task",
            "matching",
            "--no-progress",
            "--json",
            str(res),
        ],
        tmp_path,
        plug,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(res.read_text())["matching"]["headline"]["value"]
    assert 0 <= got <= 100

    # the registered names reach the CLI through --import (choices read the registries after the import) and
    # train (the user's --loss checkpoint resumes: its function was registered for deserialisation)
    out2 = tmp_path / "out2"
    args = [
        "hpatches_kit.cli.train",
        "descriptor",
        "--import",
        "mymod",
        "--data",
        str(data),
        "--model",
        "small-cnn",
        "--loss",
        "my-hard",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "2",
        "--batch-size",
        "8",
        "--dim",
        "16",
        "--out",
        str(out2),
        "--verbose",
        "0",
        "--mixed-precision",
        "float32",
        "--no-eval",
    ]
    r = _cli(args, tmp_path, plug)
    assert r.returncode == 0, r.stderr[-3000:]
    r = _cli(["hpatches_kit.cli.train", "descriptor", "--help", "--import", "mymod"], tmp_path, plug)
    assert "small_cnn" in r.stdout and "my-hard" in r.stdout
    r = _cli(
        [
            "hpatches_kit.cli.train",
            "descriptor",
            "--data",
            str(data),
            "--loss",
            "my-hard",
            "--out",
            str(tmp_path / "x"),
        ],
        tmp_path,
        plug,
    )
    assert r.returncode == 2 and "invalid choice: 'my-hard'" in r.stderr
    # --resume with a MODULE:FUNCTION loss: the checkpoint's compiled loss deserialises
    r = _cli(
        [
            "hpatches_kit.cli.train",
            "descriptor",
            "--data",
            str(data),
            "--model",
            "mymod:build",
            "--loss",
            "mymod:myloss",
            "--epochs",
            "2",
            "--steps-per-epoch",
            "2",
            "--batch-size",
            "8",
            "--dim",
            "32",
            "--out",
            str(out),
            "--resume",
            "--verbose",
            "0",
            "--mixed-precision",
            "float32",
            "--no-eval",
        ],
        tmp_path,
        plug,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(json.loads((out / "metrics.json").read_text())["history"]["loss"]) == 2
