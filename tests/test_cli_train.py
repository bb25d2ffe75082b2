"""``hpatches-train denoise|descriptor`` end to end on a tiny dataset (1-2 epochs of a few steps)."""

import argparse
import json

import keras
import numpy as np
import pytest
from conftest import write_split_dataset

from hpatches_kit.cli import train_denoise, train_descriptor
from hpatches_kit.data import DataError


@pytest.fixture(scope="module")
def nh_data(tmp_path_factory):
    """5 sequences of 32x32 tracks with *_noise twins and a splits.json holding out 2 of them."""
    counts = {"i_a": 20, "i_b": 18, "v_c": 16, "v_d": 12, "i_e": 10}
    return write_split_dataset(
        tmp_path_factory.mktemp("nh") / "data", counts, 32, np.random.default_rng(0), 2, noise_sigma=20
    )


def _run(mod, argv):
    p = argparse.ArgumentParser()
    mod.configure(p)
    return mod.run(p.parse_args(argv))


def _brute_force_nn_matching(model_path, seq_dirs):
    """Held-out NN matching written out with loops: for each target image <v>1..<v>5 of variant v, the share of
    reference patches whose L2-nearest target descriptor is their own track's; mean over the 5 images."""
    from hpatches_kit.data import TYPES, load_sequence

    tracks = np.concatenate([load_sequence(d).tracks for d in seq_dirs])
    n = len(tracks)
    model = keras.models.load_model(model_path)
    desc = {
        t: model.predict(tracks[:, TYPES.index(t), :, :, None].astype(np.float32), verbose=0).astype(np.float64)
        for t in TYPES
    }
    out = {}
    for v in "eht":
        accs = []
        for k in range(1, 6):
            tgt = desc[f"{v}{k}"]
            hits = 0
            for i in range(n):
                dists = [np.sqrt(((desc["ref"][i] - tgt[j]) ** 2).sum()) for j in range(n)]
                hits += int(np.argmin(dists) == i)
            accs.append(hits / n)
        out[v] = sum(accs) / 5
    out["mean"] = (out["e"] + out["h"] + out["t"]) / 3
    return out


def test_descriptor_cli_end_to_end_and_resume(nh_data, tmp_path, capsys):
    out = tmp_path / "desc"
    base = [
        "--data",
        str(nh_data),
        "--batch-size",
        "16",
        "--steps-per-epoch",
        "2",
        "--out",
        str(out),
        "--verbose",
        "0",
        "--mixed-precision",
        "float32",
        "--dim",
        "32",
    ]
    assert _run(train_descriptor, base + ["--epochs", "1"]) == 0
    printed = capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    _check_evaluation(m["evaluation"], out / "model.keras", nh_data, printed)
    # split a: i_a, i_b, v_c train (20+18+16 tracks), v_d, i_e held out
    assert (m["train_sequences"], m["test_sequences"], m["train_tracks"]) == (3, 2, 54)
    assert m["tracks_per_batch"] == 8 and len(m["history"]["loss"]) == 1 and "val_loss" in m["history"]
    assert m["heldout_nn_matching"]["tracks"] == 22 and 0.0 <= m["heldout_nn_matching"]["mean"] <= 1.0
    want = _brute_force_nn_matching(out / "model.keras", [nh_data / "v_d", nh_data / "i_e"])
    for k in ("e", "h", "t", "mean"):
        assert m["heldout_nn_matching"][k] == pytest.approx(want[k], abs=1e-9), k
    model = keras.models.load_model(out / "model.keras")
    assert getattr(model, "optimizer", None) is None  # the final file is the uncompiled inference model
    d = model.predict(np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 1)), verbose=0)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-5)
    assert (out / "training_curves.png").stat().st_size > 1000
    assert json.loads((out / "checkpoints" / "state.json").read_text())["epoch"] == 1

    # resume to 2 epochs: continues the epoch counter and the optimizer's step count
    assert _run(train_descriptor, base + ["--epochs", "2", "--resume"]) == 0
    err = capsys.readouterr().err
    assert "[resume]" in err and "1 epochs done, optimizer step 2" in err
    m = json.loads((out / "metrics.json").read_text())
    assert m["history"]["epoch"] == [1, 2]
    ck = keras.models.load_model(out / "checkpoints" / "last.keras")
    assert int(ck.optimizer.iterations.numpy()) == 4


def test_descriptor_cosine_schedule_validation_every_and_resume(nh_data, tmp_path, capsys):
    """--lr-schedule cosine follows Keras's CosineDecay formula (written out by hand here) over
    epochs x steps; --val-every 2 of 3 epochs validates at epochs 2 and 3 (the last) and logs null at 1;
    a resume with more --epochs re-plans the decay over the new total."""
    import math

    out = tmp_path / "cos"
    base = [
        "--data",
        str(nh_data),
        "--batch-size",
        "16",
        "--steps-per-epoch",
        "2",
        "--verbose",
        "0",
        "--mixed-precision",
        "float32",
        "--dim",
        "16",
        "--no-eval",
        "--collapse",
        "off",
        "--lr",
        "0.002",
        "--lr-schedule",
        "cosine",
    ]
    assert _run(train_descriptor, base + ["--epochs", "3", "--val-every", "2", "--out", str(out)]) == 0
    h = json.loads((out / "metrics.json").read_text())["history"]
    assert h["epoch"] == [1, 2, 3] and len(h["loss"]) == 3 and all(np.isfinite(h["loss"]))
    assert h["val_loss"][0] is None and all(np.isfinite(h["val_loss"][1:]))
    assert json.loads((out / "history.json").read_text())["history"]["val_loss"][0] is None  # JSON null
    ck = keras.models.load_model(out / "checkpoints" / "epoch-0002.keras")
    step = int(ck.optimizer.iterations.numpy())
    assert step == 4
    want = 0.002 * 0.5 * (1 + math.cos(math.pi * step / 6))
    assert float(keras.ops.convert_to_numpy(ck.optimizer.learning_rate)) == pytest.approx(want, rel=1e-5)

    out2 = tmp_path / "ext"
    assert _run(train_descriptor, base + ["--epochs", "1", "--out", str(out2)]) == 0
    assert _run(train_descriptor, base + ["--epochs", "3", "--out", str(out2), "--resume"]) == 0
    assert "re-planned over 6 steps" in capsys.readouterr().err
    ck = keras.models.load_model(out2 / "checkpoints" / "epoch-0002.keras")
    assert ck.optimizer.get_config()["learning_rate"]["config"]["decay_steps"] == 6
    assert float(keras.ops.convert_to_numpy(ck.optimizer.learning_rate)) == pytest.approx(
        0.002 * 0.5 * (1 + math.cos(math.pi * 4 / 6)), rel=1e-5
    )
    # --init: a new run starts from the saved descriptor's weights; another size is refused by name
    from hpatches_kit.models.l2net import l2net
    from hpatches_kit.training.descriptor import init_weights

    net = l2net(input_size=32, dim=16)
    init_weights(net, out / "model.keras")
    for a, b in zip(net.get_weights(), keras.models.load_model(out / "model.keras").get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(DataError, match="model.keras: --init model does not match"):
        _run(
            train_descriptor,
            base + ["--dim", "32", "--epochs", "1", "--out", str(tmp_path / "bad"), "--init", str(out / "model.keras")],
        )
    # constant schedule (the default; make_optimizer's constant rate: tests/test_train_schedules.py)
    p = argparse.ArgumentParser()
    train_descriptor.configure(p)
    assert p.parse_args([]).lr_schedule == "constant"


def _check_evaluation(ev, model_path, data, printed):
    """The end-of-training evaluation succeeded on the 2 held-out sequences (official protocol) and agrees
    with the evaluation API run directly on the saved model; its summary was printed."""
    from hpatches_kit.data import load_dataset
    from hpatches_kit.evaluation import compute_descriptors, evaluate, keras_describer

    assert "error" not in ev and "skipped" not in ev, ev
    assert ev["meta"]["sequences"] == 2 and ev["meta"]["tracks"] == 12 + 10 and ev["meta"]["distance"] == "L2"
    assert set(ev["headline"]) == {"verification", "matching", "retrieval"}
    for task in ("verification", "matching", "retrieval"):
        assert 0.0 <= ev["headline"][task] <= 100.0 and ev[task]["headline"]["value"] == ev["headline"][task]
        assert set(ev[task]["table"]) == {"e", "h", "t"}  # per-variant tables
    assert "curves" not in ev["verification"]  # metrics.json keeps the tables, not the ROC/PR curves
    ds = load_dataset(data, sequences=["v_d", "i_e"], progress=False)
    model = keras.models.load_model(model_path)
    describer = keras_describer(str(model_path), precision="float32")  # loads our model (custom layers registered)
    x = ds["v_d"].tracks[:5, 3]
    np.testing.assert_allclose(describer(x), model.predict(x[..., None].astype(np.float32), verbose=0), atol=1e-5)
    # the run evaluated with the default describer (the device's fastest inference precision): the same here
    ref = evaluate(
        compute_descriptors(ds, keras_describer(str(model_path)), progress=False), dataset=ds, progress=False
    )
    for task in ("verification", "matching", "retrieval"):
        assert ev["headline"][task] == pytest.approx(ref[task]["headline"]["value"], abs=1e-9)
    assert "HPatches evaluation: split full, 2 sequences" in printed and "retrieval mAP" in printed


def test_evaluation_failure_keeps_the_model(nh_data, tmp_path, monkeypatch, capsys):
    import hpatches_kit.evaluation as ev

    def boom(*a, **k):
        raise RuntimeError("simulated evaluation crash")

    monkeypatch.setattr(ev, "evaluate", boom)
    out = tmp_path / "d"
    assert (
        _run(
            train_descriptor,
            [
                "--data",
                str(nh_data),
                "--batch-size",
                "16",
                "--steps-per-epoch",
                "1",
                "--epochs",
                "1",
                "--out",
                str(out),
                "--verbose",
                "0",
                "--mixed-precision",
                "float32",
                "--dim",
                "16",
                "--collapse",
                "off",
            ],
        )
        == 0
    )
    m = json.loads((out / "metrics.json").read_text())
    assert m["evaluation"] == {"error": "RuntimeError: simulated evaluation crash"}
    assert "evaluation failed: RuntimeError" in capsys.readouterr().out
    assert keras.models.load_model(out / "model.keras").output_shape == (None, 16)


def test_denoise_cli_end_to_end(nh_data, tmp_path):
    out = tmp_path / "den"
    assert (
        _run(
            train_denoise,
            [
                "--data",
                str(nh_data),
                "--batch-size",
                "32",
                "--steps-per-epoch",
                "2",
                "--epochs",
                "1",
                "--out",
                str(out),
                "--verbose",
                "0",
                "--mixed-precision",
                "float32",
            ],
        )
        == 0
    )
    m = json.loads((out / "metrics.json").read_text())
    assert m["train_pairs"] == (20 + 18 + 16) * 16
    # the reported held-out metrics agree with an independent recomputation from the saved model
    from hpatches_kit.data import load_dataset

    ds = load_dataset(nh_data, sequences=["v_d", "i_e"], noise=True, progress=False)
    clean, noisy = ds.all_tracks()[0].reshape(-1, 32, 32), ds.all_tracks(noisy=True)[0].reshape(-1, 32, 32)
    model = keras.models.load_model(out / "model.keras")
    den = np.clip(model.predict(noisy[..., None].astype(np.float32), verbose=0)[..., 0], 0, 255)
    assert m["heldout"]["patches"] == len(clean) == 22 * 16
    assert m["heldout"]["mae_denoised"] == pytest.approx(np.abs(den - clean).mean(), rel=1e-4)
    assert m["heldout"]["mae_noisy"] == pytest.approx(np.abs(noisy.astype(float) - clean).mean(), rel=1e-6)
    assert (out / "denoise_examples.png").stat().st_size > 1000

    # the denoiser then feeds the descriptor trainer; a size mismatch is reported clearly
    out2 = tmp_path / "desc"
    assert (
        _run(
            train_descriptor,
            [
                "--data",
                str(nh_data),
                "--batch-size",
                "16",
                "--steps-per-epoch",
                "1",
                "--epochs",
                "1",
                "--out",
                str(out2),
                "--verbose",
                "0",
                "--noisy",
                "--denoiser",
                str(out / "model.keras"),
                "--mixed-precision",
                "float32",
                "--no-eval",
                "--collapse",
                "off",
            ],
        )
        == 0
    )
    with pytest.raises(DataError, match="denoiser expects"):
        _run(
            train_descriptor,
            [
                "--data",
                str(nh_data),
                "--patch-size",
                "16",
                "--batch-size",
                "16",
                "--out",
                str(tmp_path / "x"),
                "--denoiser",
                str(out / "model.keras"),
                "--verbose",
                "0",
                "--mixed-precision",
                "float32",
            ],
        )


def test_cli_errors_name_the_problem(nh_data, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        _run(train_descriptor, ["--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--verbose", "0"])
    for flag, value in (("--val-every", "0"), ("--lr", "0")):
        with pytest.raises(ValueError, match=flag):
            _run(
                train_descriptor, ["--data", str(nh_data), flag, value, "--out", str(tmp_path / "o3"), "--verbose", "0"]
            )
    with pytest.raises(ValueError, match="fewer than one batch"):
        _run(
            train_descriptor,
            [
                "--data",
                str(nh_data),
                "--batch-size",
                "1024",
                "--out",
                str(tmp_path / "o2"),
                "--verbose",
                "0",
                "--mixed-precision",
                "float32",
            ],
        )


def test_dispatcher_builds_our_subcommands(monkeypatch, capsys):
    """Our modules plug into hpatches-train's contract (configure/run). The ViT subcommand is another
    branch's, so the dispatch table is narrowed to ours here."""
    from hpatches_kit.cli import train

    monkeypatch.setattr(train, "SUBCOMMANDS", {k: v for k, v in train.SUBCOMMANDS.items() if k != "vit-adapter"})
    for cmd, flag in (("descriptor", "--global-mining"), ("denoise", "--depth")):
        with pytest.raises(SystemExit) as e:
            train.main([cmd, "--help"])
        assert e.value.code == 0 and flag in capsys.readouterr().out


def _collapsed_l2net(input_size=32, dim=128, dropout=0.3, **_):
    """A stand-in for ``l2net`` whose descriptor is the constant unit vector e_1 for every patch (all
    distances exactly 0): a collapsed model, to drive the CLI's collapse detection."""
    from hpatches_kit.models import L2Normalize

    inp = keras.Input((input_size, input_size, 1))
    dense = keras.layers.Dense(
        dim, kernel_initializer="zeros", bias_initializer=keras.initializers.Constant(np.eye(dim)[0]), trainable=False
    )
    return keras.Model(inp, L2Normalize()(dense(keras.layers.Flatten()(inp))))


def test_descriptor_cli_collapse_detection(nh_data, tmp_path, monkeypatch):
    """--collapse: the probe is view 0 of the held-out tracks; the level is the margin (hinge), ln 2
    (soft margin) plus the KoLeo term of coincident descriptors; warn keeps training, stop ends it."""
    import warnings

    import hpatches_kit.training.callbacks as training_callbacks
    from hpatches_kit.data import load_sequence
    from hpatches_kit.training.callbacks import CollapseDetector, CollapseWarning

    made = []

    class Recording(CollapseDetector):
        def __init__(self, probe, **kw):
            super().__init__(probe, **kw)
            made.append(self)

    import dataclasses

    from hpatches_kit.models import registry  # --model l2net builds through the registry entry

    monkeypatch.setitem(
        registry.REGISTRY._entries, "l2net", dataclasses.replace(registry.entry("l2net"), builder=_collapsed_l2net)
    )
    monkeypatch.setattr(training_callbacks, "CollapseDetector", Recording)
    held = np.concatenate([load_sequence(nh_data / s).tracks[:, 0] for s in ("v_d", "i_e")])
    base = [
        "--data",
        str(nh_data),
        "--batch-size",
        "16",
        "--steps-per-epoch",
        "2",
        "--verbose",
        "0",
        "--mixed-precision",
        "float32",
        "--dim",
        "8",
        "--no-eval",
        "--epochs",
        "3",
    ]

    def run(extra, out):
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            assert _run(train_descriptor, base + extra + ["--out", str(tmp_path / out)]) == 0
        h = json.loads((tmp_path / out / "metrics.json").read_text())["history"]
        return made[-1], [str(w.message) for w in rec if issubclass(w.category, CollapseWarning)], h

    # soft margin, stop: collapse at ln 2, flagged at epoch 1, training ends there
    det, msgs, h = run(["--loss", "soft-margin", "--collapse", "stop"], "soft")
    assert det.margin == pytest.approx(np.log(2.0)) and det.action == "stop"
    assert h["loss"][0] == pytest.approx(np.log(2.0), abs=1e-4) and len(h["loss"]) == 1
    assert det.collapsed_epochs == [0] and len(msgs) == 1 and "collapse at epoch 1" in msgs[0]
    # the probe: view 0 of every held-out track (22 of them), not training patches
    probe = det.probe[..., 0].astype(np.uint8)
    assert probe.shape == held.shape
    assert sorted(map(bytes, probe)) == sorted(map(bytes, held))
    # batch-hard + KoLeo 0.1, warn: level 1 + 0.1 * -ln(1e-8); every epoch flagged, all 3 epochs run
    det, msgs, h = run(["--loss", "batch-hard", "--koleo", "0.1", "--collapse", "warn"], "koleo")
    level = 1.0 + 0.1 * -np.log(1e-8)
    assert det.margin == pytest.approx(level) and det.action == "warn"
    assert h["loss"] == pytest.approx([level] * 3, abs=1e-3)
    assert det.collapsed_epochs == [0, 1, 2] and len(msgs) == 3 and "collapse at epoch 3" in msgs[-1]
    # off: no detector at all
    n = len(made)
    run(["--loss", "batch-hard", "--collapse", "off", "--epochs", "1"], "off")
    assert len(made) == n
