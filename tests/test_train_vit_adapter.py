"""``hpatches-train vit-adapter``: outputs, atomic checkpoints, exact resume; OneCycle vs PyTorch's formula."""

import json
import math

import keras
import numpy as np
import pytest

import hpatches_kit.models.vit  # noqa: F401
from hpatches_kit.training.one_cycle import OneCycle
from hpatches_kit.training.pairs import PairBatches


def torch_onecycle(step, max_lr, total, pct=0.3, div=25.0, final_div=1e4):
    """PyTorch OneCycleLR.get_lr (anneal_strategy='cos', three_phase=False), written out by hand."""
    init = max_lr / div
    low = init / final_div
    phases = [(pct * total - 1, init, max_lr), (total - 1, max_lr, low)]
    start_step = 0.0
    for i, (end_step, s, e) in enumerate(phases):
        if step <= end_step or i == len(phases) - 1:
            p = (step - start_step) / (end_step - start_step)
            return e + (s - e) / 2.0 * (math.cos(math.pi * p) + 1)
        start_step = end_step


def test_onecycle_matches_pytorch_formula():
    sched = OneCycle(0.01, 50)
    for step in range(50):
        assert float(sched(step)) == pytest.approx(torch_onecycle(step, 0.01, 50), rel=1e-5, abs=1e-12)
    assert float(sched(0)) == pytest.approx(0.01 / 25, rel=1e-5)
    assert float(sched(14)) == pytest.approx(0.01, rel=1e-5)
    clone = OneCycle.from_config(sched.get_config())
    assert float(clone(20)) == float(sched(20))


def test_pair_batches_cover_pairs_and_negatives():
    left = np.arange(10, dtype="f4")[:, None, None, None] * np.ones((10, 2, 2, 1), "f4")
    pb = PairBatches(left, left + 100, batch_size=4, negatives=True, augment=False, seed=3)
    seen = []
    for i in range(len(pb)):
        (l, r), y = pb[i]
        seen += [(int(a[0, 0, 0]), int(b[0, 0, 0]) - 100, int(t)) for a, b, t in zip(l, r, y)]
    assert len(seen) == 20
    assert sorted(a for a, b, t in seen if t == 1) == list(range(10)) and all(a == b for a, b, t in seen if t == 1)
    assert sorted(a for a, b, t in seen if t == -1) == list(range(10)) and all(a != b for a, b, t in seen if t == -1)
    # order is a function of (seed, epoch) only (fit(shuffle=False): PairBatches shuffles itself)
    again = PairBatches(left, left + 100, batch_size=4, negatives=True, augment=False, seed=3)
    np.testing.assert_array_equal(again[0][0][0], pb[0][0][0])


COMMON = [
    "--preset",
    "vit-tiny",
    "--bottleneck",
    "4",
    "--batch-size",
    "8",
    "--lr",
    "1e-2",
    "--verbose",
    "0",
    "--train-pairs-per-photo",
    "6",
    "--eval-pairs-per-photo",
    "3",
]


def _weights(path):
    return [w for w in keras.models.load_model(path).get_weights()]


def test_every_pair_loss_flag_compiles_its_loss():
    """What ``--loss`` compiles (``losses.get(name, margin=, temperature=)``, as the trainer calls it): the class
    each name stands for, with the flag's option, finite on a batch of pairs. The losses' values are checked
    against loops in tests/test_losses_embedding.py; both batch paths run end to end in test_train_outputs."""
    from hpatches_kit import losses
    from hpatches_kit.losses import embedding as E
    from hpatches_kit.losses import registry

    want = {
        "contrastive": (E.SymmetricContrastiveLoss, "margin"),
        "cosine": (E.CosineEmbeddingLoss, "margin"),
        "irt": (E.IRTLoss, None),
        "infonce": (E.InfoNCELoss, "temperature"),
    }
    assert set(registry.names("pair")) == set(want)  # the --loss choices of hpatches-train vit-adapter
    rng = np.random.default_rng(0)
    pairs = rng.normal(size=(8, 2, 16)).astype("float32")
    for name, (cls, option) in want.items():
        loss = losses.get(name, margin=0.3, temperature=0.2)
        assert type(loss) is cls, name
        if option:
            assert loss.get_config()[option] == pytest.approx({"margin": 0.3, "temperature": 0.2}[option]), name
        assert np.isfinite(float(loss(np.ones(8, "float32"), pairs))), name


# the two batch paths: positive pairs only (contrastive, irt, infonce) and with negatives (cosine)
@pytest.mark.parametrize("loss", ["contrastive", "cosine"])
def test_train_outputs(tmp_path, loss):
    from hpatches_kit.cli.train_vit import main

    out = tmp_path / "run"
    assert main(COMMON + ["--epochs", "1", "--loss", loss, "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert [e["epoch"] for e in m["epochs"]] == [1] and np.isfinite(m["epochs"][0]["loss"])
    assert m["parameters"]["trainable"] == m["parameters"]["adapters"] == 2 * 2 * (2 * 32 * 4 + 4 + 32)
    assert set(m["final"]["accuracy"]) == {"row", "both_axes", "assignment"}
    # the run folder every hpatches-train command writes (hpatches_kit.training.run.TrainingRun)
    for f in (
        "checkpoints/epoch-0001.keras",
        "checkpoints/last.keras",
        "checkpoints/state.json",
        "run_args.json",
        "history.json",
    ):
        assert (out / f).is_file(), f
    assert json.loads((out / "run_args.json").read_text())["loss"] == loss
    model = keras.models.load_model(out / "model.keras")
    assert model.output_shape == (None, 32)
    assert not list(out.rglob(".*tmp*"))  # nothing half-written left behind


def test_resume_reproduces_uninterrupted_run(tmp_path, capsys):
    import os

    from hpatches_kit.cli.train_vit import main

    a, b = tmp_path / "a", tmp_path / "b"
    assert main(COMMON + ["--epochs", "2", "--out", str(a)]) == 0
    assert main(COMMON + ["--epochs", "2", "--out", str(b)]) == 0
    # simulate a crash after epoch 1: drop what epoch 2 wrote (its checkpoint, last.keras and state.json naming
    # it, the final model), then resume: the newest intact epoch file is used
    for p in ("checkpoints/epoch-0002.keras", "checkpoints/last.keras", "checkpoints/state.json", "model.keras"):
        (b / p).unlink()
    first = b / "checkpoints" / "epoch-0001.keras"
    before = (first.read_bytes(), os.stat(first).st_mtime_ns)
    epoch1 = json.loads((b / "metrics.json").read_text())["epochs"][0]
    capsys.readouterr()
    assert main(COMMON + ["--epochs", "2", "--out", str(b), "--resume"]) == 0
    err = capsys.readouterr().err
    # the resume loaded epoch 1's checkpoint, said so, left it untouched, and fitted epoch 2 only
    assert f"resuming from the newest intact checkpoint {first} (1 epochs done)" in err
    assert (first.read_bytes(), os.stat(first).st_mtime_ns) == before
    mb = json.loads((b / "metrics.json").read_text())
    assert mb["epochs"][0] == epoch1  # epoch 1's record (its wall seconds too) kept, not re-measured
    steps = int(keras.models.load_model(first).optimizer.iterations.numpy())
    assert steps >= 1
    assert (
        int(keras.models.load_model(b / "checkpoints" / "epoch-0002.keras").optimizer.iterations.numpy()) == 2 * steps
    )
    ma, mb = json.loads((a / "metrics.json").read_text()), json.loads((b / "metrics.json").read_text())
    assert [e["epoch"] for e in mb["epochs"]] == [1, 2]
    for ea, eb in zip(ma["epochs"], mb["epochs"]):
        assert eb["loss"] == pytest.approx(ea["loss"], rel=1e-4) and eb["lr"] == pytest.approx(ea["lr"], rel=1e-5)
    for wa, wb in zip(_weights(a / "model.keras"), _weights(b / "model.keras")):
        np.testing.assert_allclose(wb, wa, rtol=1e-4, atol=1e-6)
    # training moved the adapters away from their initialisation
    init = _weights(a / "checkpoints" / "epoch-0001.keras")
    assert any(not np.allclose(x, y) for x, y in zip(init, _weights(a / "checkpoints" / "epoch-0002.keras")))


def test_pair_batches_grouped_keep_sources_together():
    left = np.arange(12, dtype="f4")[:, None, None, None] * np.ones((12, 2, 2, 1), "f4")
    groups = np.array(list("aaabbbbccddd"))
    pb = PairBatches(left, left, batch_size=4, augment=False, seed=1, groups=groups)
    order = [int(v) for i in range(len(pb)) for v in pb[i][0][0][:, 0, 0, 0]]
    assert sorted(order) == list(range(12))
    seq = [groups[i] for i in order]
    runs = [g for k, g in enumerate(seq) if k == 0 or seq[k - 1] != g]
    assert sorted(runs) == ["a", "b", "c", "d"]  # each source appears as one contiguous run


@pytest.mark.parametrize(
    "bad, message", [(["--temperature", "0"], "--temperature"), (["--train-pairs-per-photo", "0"], "pairs-per-photo")]
)
def test_bad_options_are_named(tmp_path, bad, message):
    from hpatches_kit.cli.train_vit import main

    with pytest.raises(ValueError, match=message):
        main(COMMON + ["--epochs", "1", "--out", str(tmp_path / "run")] + bad)
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_loss_must_be_a_registered_pair_loss():
    from hpatches_kit.errors import OptionError
    from hpatches_kit.training.vit_adapter import VitAdapterOptions, check_options

    for name in ("batch-hard", "nope"):  # a descriptor loss, an unknown name: the pair losses are listed
        with pytest.raises(OptionError, match="no image-pair loss; expected one of contrastive, cosine, infonce, irt"):
            check_options(VitAdapterOptions(loss=name))
    check_options(VitAdapterOptions(loss="infonce"))
