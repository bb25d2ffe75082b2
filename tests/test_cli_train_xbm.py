"""``hpatches-train descriptor --xbm SIZE --xbm-start STEP`` and ``--pca-dim D`` end to end on tiny data, and
what ``--loss sosr|hynet`` compiles: the memory is saved beside the checkpoints and a resumed run equals an
uninterrupted one bit for bit; the PCA is inside model.keras; bad combinations are one error line (exit 2)."""

import json

import keras
import numpy as np
import pytest
from conftest import write_split_dataset

from hpatches_kit.cli.train import main as train_main


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    counts = {"i_a": 12, "i_b": 10, "v_c": 10, "v_d": 8}
    return write_split_dataset(tmp_path_factory.mktemp("xbm") / "data", counts, 16, np.random.default_rng(0), 1)


def _argv(data, out, *extra, **over):
    opts = {
        "data": data,
        "batch_size": 8,
        "steps_per_epoch": 2,
        "verbose": 0,
        "mixed_precision": "float32",
        "dim": 8,
        "patch_size": 16,
        "collapse": "off",
        "val_every": 1,
        "out": out,
        **over,
    }
    argv = ["descriptor", "--no-eval"]
    for k, v in opts.items():
        argv += ["--" + k.replace("_", "-"), str(v)]
    return argv + list(extra)


def _history(out):
    return json.loads((out / "history.json").read_text())["history"]


def test_xbm_run_saves_memory_and_resumes_exactly(data, tmp_path):
    from hpatches_kit.losses import XBMLoss

    xbm = ["--loss", "hardnet", "--xbm", "24", "--xbm-start", "1"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert train_main(_argv(data, full, *xbm, epochs=2)) == 0
    ck = full / "checkpoints"
    assert sorted(p.name for p in ck.glob("xbm-*.npz")) == ["xbm-epoch-0001.npz", "xbm-epoch-0002.npz"]
    with np.load(ck / "xbm-epoch-0002.npz") as z:
        assert int(z["steps"]) == 4 and int(z["count"]) == 24  # steps 1..3 wrote 3 x 8 > 24: full
        assert np.abs(z["feats"]).sum() > 0
    loaded = keras.models.load_model(ck / "last.keras")
    assert isinstance(loaded.loss, XBMLoss) and loaded.loss.get_config()["memory_size"] == 24
    assert train_main(_argv(data, cut, *xbm, epochs=1)) == 0
    assert train_main(_argv(data, cut, *xbm, epochs=2) + ["--resume"]) == 0
    hf, hc = _history(full), _history(cut)
    assert hf["loss"] == hc["loss"] and hf["val_loss"] == hc["val_loss"]
    with np.load(ck / "xbm-epoch-0002.npz") as a, np.load(cut / "checkpoints" / "xbm-epoch-0002.npz") as b:
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k])
    a, b = (keras.models.load_model(o / "model.keras") for o in (full, cut))
    for x, y in zip(a.weights, b.weights):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_resume_without_memory_file_restarts_it_and_differs(data, tmp_path):
    xbm = ["--loss", "batch-hard", "--xbm", "16"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert train_main(_argv(data, full, *xbm, epochs=2)) == 0
    assert train_main(_argv(data, cut, *xbm, epochs=1)) == 0
    (cut / "checkpoints" / "xbm-epoch-0001.npz").unlink()
    assert train_main(_argv(data, cut, *xbm, epochs=2) + ["--resume"]) == 0
    # the memory matters: without it the resumed epoch's loss is another number
    assert _history(full)["loss"][1] != _history(cut)["loss"][1]


def test_pca_dim_inside_model_keras(data, tmp_path):
    from hpatches_kit.models import PCAProjection

    out = tmp_path / "pca"
    assert train_main(_argv(data, out, "--pca-dim", "4", epochs=1)) == 0
    net = keras.models.load_model(out / "model.keras")
    assert net.output_shape == (None, 4) and isinstance(net.get_layer("pca"), PCAProjection)
    x = np.random.default_rng(0).uniform(0, 255, (20, 16, 16, 1)).astype(np.float32)
    d = net.predict(x, verbose=0)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-5)
    assert json.loads((out / "metrics.json").read_text())["heldout_nn_matching"]["mean"] >= 0


@pytest.mark.parametrize("loss", ["sosr", "hynet"])
def test_sosr_and_hynet_flags_compile_their_loss(loss):
    """``--loss sosr|hynet`` compiles the package loss (a unit check of the parsed flags; both take the S x K
    path every S x K loss runs end to end: sosr with SOSNet in tests/test_cli_train_models.py)."""
    import argparse

    from hpatches_kit import losses as L
    from hpatches_kit.cli import train_descriptor
    from hpatches_kit.training.descriptor import DescriptorOptions, options_loss

    p = argparse.ArgumentParser()
    train_descriptor.configure(p)
    o = DescriptorOptions.from_namespace(p.parse_args(["--loss", loss, "--batch-size", "8", "--views", "4"]))
    loss_obj = options_loss(o)
    for got in (loss_obj, keras.losses.deserialize(keras.losses.serialize(loss_obj))):
        assert type(got) is {"sosr": L.SOSNetLoss, "hynet": L.HyNetLoss}[loss]
        assert got.get_config()["views_per_track"] == 4


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--loss", "batch-all", "--xbm", "16"], "--xbm mines over batch + memory"),
        (["--xbm", "16", "--koleo", "0.1"], "--koleo does not combine with --xbm"),
        (["--pca-dim", "9"], "--pca-dim must be in 1..--dim (8)"),
        (["--xbm", "4"], "at least one (global) batch"),
    ],
)
def test_bad_combinations_one_error_line(data, tmp_path, capsys, extra, needle):
    assert train_main(_argv(data, tmp_path / "bad", *extra, epochs=1)) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
