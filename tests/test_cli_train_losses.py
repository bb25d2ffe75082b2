"""Every ``hpatches-train descriptor --loss`` choice compiles the package loss the flag names (class, distance,
options; a unit check of the parsed flags), and each batch path (S x K, triplets) runs end to end on tiny data."""

import argparse
import json

import keras
import numpy as np
import pytest
from conftest import write_split_dataset

from hpatches_kit import losses as L
from hpatches_kit.cli import train_descriptor
from hpatches_kit.losses import registry as loss_registry
from hpatches_kit.training import CurriculumTripletLoss, KoLeoRegularised, ReplicaLoss
from hpatches_kit.training.descriptor import DescriptorOptions, collapse_level, make_loss, options_loss

# every built-in descriptor loss (the registry is the only list; training.descriptor.LOSSES is gone)
LOSSES = tuple(n for n in loss_registry.REGISTRY.builtin_names() if n in loss_registry.names("descriptor"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    counts = {"i_a": 12, "v_b": 10, "i_c": 6}
    return write_split_dataset(tmp_path_factory.mktemp("losses") / "data", counts, 16, np.random.default_rng(1), 1)


def _run(argv):
    p = argparse.ArgumentParser()
    train_descriptor.configure(p)
    return train_descriptor.run(p.parse_args(argv))


# (flag, distance, expected class, expected config entries)
CASES = [
    ("batch-hard", "L2", L.BatchHardTripletLoss, {"soft": False, "margin": 0.5}),
    ("batch-all", "squared-L2", L.BatchAllTripletLoss, {"views_per_track": 2, "average": "positive"}),
    ("semi-hard", "angular", L.TripletSemiHardLoss, {"views_per_track": 2, "soft": False}),
    ("soft-margin", "L2", L.BatchHardTripletLoss, {"soft": True}),
    ("hardnet", "L2", L.HardNetLoss, {"views_per_track": 2, "anchor_swap": True}),
    ("curriculum", "angular", CurriculumTripletLoss, {"views_per_track": 2}),
    ("random-triplet", "squared-L2", L.RandomTripletLoss, {"swap": False}),
]


def test_every_loss_choice_is_offered():
    assert sorted(LOSSES) == sorted([c[0] for c in CASES] + ["sosr", "hynet"])  # those two: test_cli_train_xbm.py
    p = argparse.ArgumentParser()
    train_descriptor.configure(p)
    assert p.parse_args([]).loss == "batch-hard" and p.parse_args([]).distance == "L2"
    with pytest.raises(SystemExit):
        p.parse_args(["--distance", "cosine"])


@pytest.mark.parametrize("flag,distance,cls,cfg", CASES, ids=[c[0] for c in CASES])
def test_loss_flags_compile_the_named_loss(flag, distance, cls, cfg):
    """The loss a run compiles (``options_loss`` of the parsed flags) is the class the flag names, with the
    distance and options, and survives Keras' (de)serialisation as a checkpoint stores it."""
    p = argparse.ArgumentParser()
    train_descriptor.configure(p)
    args = p.parse_args(["--loss", flag, "--distance", distance, "--margin", "0.5", "--batch-size", "8"])
    loss = options_loss(DescriptorOptions.from_namespace(args))
    for got in (loss, keras.losses.deserialize(keras.losses.serialize(loss))):
        assert type(got) is cls
        conf = got.get_config()
        assert conf["distance_metric"] == distance and conf["margin"] == 0.5
        for k, v in cfg.items():
            assert conf[k] == v, (k, conf)


def test_random_triplet_end_to_end(data, tmp_path):
    """The triplet-batch path (its own pipeline and triplet model) runs and saves the bare descriptor; the S x K
    path runs end to end in test_koleo_flag_with_curriculum_and_global_mining (and tests/test_cli_train.py)."""
    out = tmp_path / "rt"
    argv = ["--data", str(data), "--batch-size", "8", "--steps-per-epoch", "2", "--epochs", "1", "--patch-size"]
    argv += ["16", "--dim", "8", "--loss", "random-triplet", "--distance", "squared-L2", "--margin", "0.5"]
    argv += ["--out", str(out), "--verbose", "0", "--mixed-precision", "float32", "--no-eval"]
    assert _run(argv) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert len(m["history"]["loss"]) == 1 and np.isfinite(m["history"]["loss"][0])
    ck = keras.models.load_model(out / "checkpoints" / "last.keras")  # compiled: the loss deserialises
    assert type(ck.loss) is L.RandomTripletLoss and ck.loss.get_config()["distance_metric"] == "squared-L2"
    net = keras.models.load_model(out / "model.keras")  # the bare descriptor
    assert net.name == "l2net" and net.output_shape == (None, 8)


def test_global_mining_wraps_the_chosen_loss():
    loss = make_loss("hardnet", 1.0, "L2", 4, global_mining=True)
    assert isinstance(loss, ReplicaLoss) and loss.global_batch and isinstance(loss.loss, L.HardNetLoss)
    assert loss.loss.views_per_track == 4
    with pytest.raises(ValueError, match="random-triplet"):
        make_loss("random-triplet", global_mining=True)
    # soft margin collapses to softplus(0) = ln 2, the hinge losses to the margin
    assert collapse_level("soft-margin", 1.0) == pytest.approx(np.log(2))
    assert collapse_level("hardnet", 0.7) == 0.7


def test_koleo_regularised_matches_numpy_loop():
    """batch-hard + w * KoLeo over the first view of each track, against brute-force loops; int labels."""
    rng = np.random.default_rng(3)
    S, K, w = 6, 3, 0.3
    labels = np.repeat(np.arange(S), K)
    e = rng.normal(size=(S * K, 5)).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    d = np.sqrt(((e[:, None].astype(np.float64) - e[None]) ** 2).sum(-1))
    hard = np.mean(
        [
            max(
                0.0,
                max(d[a, p] for p in range(S * K) if p != a and labels[p] == labels[a])
                - min(d[a, q] for q in range(S * K) if labels[q] != labels[a])
                + 1.0,
            )
            for a in range(S * K)
        ]
    )
    first = list(range(0, S * K, K))
    ko = -np.mean([np.log(min(d[i, j] for j in first if j != i) + 1e-8) for i in first])
    loss = KoLeoRegularised(L.BatchHardTripletLoss(1.0), weight=w, views_per_track=K)
    assert float(loss(labels, e)) == pytest.approx(hard + w * ko, rel=1e-4)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(again) is KoLeoRegularised and type(again.loss) is L.BatchHardTripletLoss
    assert float(again(labels, e)) == pytest.approx(float(loss(labels, e)), rel=1e-6)
    with pytest.raises(ValueError, match="multiple of views_per_track"):
        KoLeoRegularised(L.BatchHardTripletLoss(), views_per_track=4)(labels, e)


def test_koleo_flag_with_curriculum_and_global_mining(data, tmp_path):
    out = tmp_path / "ko"
    assert (
        _run(
            [
                "--data",
                str(data),
                "--batch-size",
                "8",
                "--steps-per-epoch",
                "2",
                "--epochs",
                "2",
                "--patch-size",
                "16",
                "--dim",
                "8",
                "--loss",
                "curriculum",
                "--koleo",
                "0.1",
                "--global-mining",
                "--curriculum-warmup",
                "1",
                "--out",
                str(out),
                "--verbose",
                "0",
                "--mixed-precision",
                "float32",
                "--no-eval",
            ]
        )
        == 0
    )
    h = json.loads((out / "metrics.json").read_text())["history"]
    assert len(h["loss"]) == 2 and all(np.isfinite(h["loss"]))
    loss = keras.models.load_model(out / "checkpoints" / "last.keras").loss
    assert isinstance(loss, ReplicaLoss) and loss.global_batch and isinstance(loss.loss, KoLeoRegularised)
    inner = loss.loss.loss
    assert isinstance(inner, CurriculumTripletLoss) and float(inner.hard_weight.numpy()) == 1.0  # ramped
    assert loss.loss.weight == 0.1
    with pytest.raises(ValueError, match="koleo"):
        make_loss("random-triplet", koleo=0.1)


def test_loss_arg_errors_are_one_line_before_any_data_is_read(tmp_path, capsys):
    """A malformed ``--loss-arg`` is an argparse error; a key the loss does not take names the flag, the loss
    and its settings (exit 2, one line) before the data folder (which does not exist here) is looked at."""
    from hpatches_kit.cli.train import main

    base = ["descriptor", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"), "--loss"]
    with pytest.raises(SystemExit) as e:
        main([*base, "batch-hard", "--loss-arg", "hard_ratio"])
    assert e.value.code == 2 and "expected KEY=VALUE" in capsys.readouterr().err
    assert main([*base, "batch-hard", "--loss-arg", "hard_ratio=0.1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "hpatches-train descriptor: error: --loss-arg hard_ratio: --loss batch-hard takes no setting 'hard_ratio' "
        "(its settings: margin, distance_metric, views_per_track)"
    ]
    assert not (tmp_path / "o").exists()
