"""PyTorch -> Keras import: each port against the PyTorch model it mirrors (``tests/torch_reference.py``: the
models as published, random weights and batch-norm statistics; their PyTorch outputs committed as a fixture, so
these tests need no PyTorch), TFeat's real Liberty checkpoint against PyTorch (needs it), layout helpers against
hand-worked values, checkpoint errors, and .keras round trips that ``hpatches-eval --model`` reads."""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from torch_reference import SCALE_ONE, load_fixture, numpy_state_dict, patches, torch_outputs, torch_reference

from hpatches_kit.data.errors import DataError
from hpatches_kit.models import InstanceNorm, PatchStandardize, from_torch, torch_port
from hpatches_kit.models.torch_ports import ARCHS

REPO = Path(__file__).resolve().parents[1]
TFEAT = REPO.parent / "shared" / "pretrained" / "tfeat" / "tfeat-liberty.params"
FIX = load_fixture()


def _torch():
    return pytest.importorskip(
        "torch",
        reason="PyTorch (CPU) is only the reference of the optional cross-checks (pip install -e .[torch]); "
        "not installed",
    )


def _state_dict(arch):
    return numpy_state_dict(FIX[arch]["specs"], FIX[arch]["seed"])


def test_fixture_covers_every_port():
    assert set(FIX) == set(ARCHS)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_keras_port_matches_pytorch_outputs(arch, monkeypatch):
    """The port loaded with a NumPy state dict (``import torch`` failing) gives PyTorch's outputs."""
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    ref = FIX[arch]["out"]
    got = from_torch(_state_dict(arch), arch=arch).predict(patches()[..., None], verbose=0)
    assert got.shape == ref.shape == (6, 128)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)
    # outputs differ per patch by far more than the tolerance (not a constant any layout would reproduce)
    assert np.abs(ref[0] - ref[1]).max() > 100 * 1e-5
    with pytest.raises(ImportError, match="needs PyTorch"):  # a checkpoint *file* needs it
        from_torch(__file__, arch=arch)


@pytest.mark.parametrize("arch", SCALE_ONE)
def test_input_scale_one_matches_torch_fed_0_255(arch):
    x = patches(seed=5)
    got = from_torch(_state_dict(arch), arch=arch, input_scale=1.0).predict(x[..., None], verbose=0)
    np.testing.assert_allclose(got, FIX[arch]["out_scale_one"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_fixture_is_what_pytorch_computes(arch):
    """The cross-check itself (optional extra ``[torch]``): PyTorch, now, gives the committed outputs."""
    _torch()
    specs, outs = torch_outputs(arch, FIX[arch]["seed"])
    assert specs == FIX[arch]["specs"]
    for k, v in outs.items():
        np.testing.assert_allclose(v, FIX[arch][k], rtol=0, atol=1e-6)


def test_linear_after_flatten_reorders_columns_by_hand():
    """A Linear whose only non-zero weight reads PyTorch feature (c=1, h=0, w=2) of the (64, 8, 8) map must read
    Keras' flattened index (h * 8 + w) * 64 + c."""
    sd = {
        "features.1.weight": np.zeros((32, 1, 7, 7)),
        "features.1.bias": np.zeros(32),
        "features.4.weight": np.zeros((64, 32, 6, 6)),
        "features.4.bias": np.zeros(64),
        "descr.0.weight": np.zeros((128, 4096)),
        "descr.0.bias": np.zeros(128),
    }
    sd["descr.0.weight"][5, 1 * 64 + 0 * 8 + 2] = 1.0
    k = np.asarray(from_torch(sd, "tfeat").get_layer("descr_0").kernel)
    assert k[(0 * 8 + 2) * 64 + 1, 5] == 1.0 and np.count_nonzero(k) == 1


def test_conv_kernel_layout_by_hand():
    sd = {
        "features.1.weight": np.zeros((32, 1, 7, 7)),
        "features.1.bias": np.zeros(32),
        "features.4.weight": np.zeros((64, 32, 6, 6)),
        "features.4.bias": np.zeros(64),
        "descr.0.weight": np.zeros((128, 4096)),
        "descr.0.bias": np.zeros(128),
    }
    sd["features.4.weight"][7, 3, 1, 4] = 2.0  # out 7, in 3, row 1, col 4
    k = np.asarray(from_torch(sd, "tfeat").get_layer("features_4").kernel)
    assert k.shape == (6, 6, 32, 64) and k[1, 4, 3, 7] == 2.0 and np.count_nonzero(k) == 1


def test_hand_worked_normalisations():
    x = np.array([1, 2, 3, 6], np.float32).reshape(1, 2, 2, 1)  # mean 3, population var 3.5, sample var 14/3
    np.testing.assert_allclose(
        np.asarray(InstanceNorm(epsilon=0.5)(x)).ravel(), (np.array([1, 2, 3, 6]) - 3) / 2.0, rtol=1e-6
    )
    np.testing.assert_allclose(
        np.asarray(PatchStandardize(epsilon=0.0, ddof=1)(x)).ravel(),
        (np.array([1, 2, 3, 6]) - 3) / np.sqrt(14 / 3),
        rtol=1e-6,
    )


def test_checkpoint_errors_name_the_problem(tmp_path):
    sd = _state_dict("tfeat")
    with pytest.raises(DataError, match="missing key 'descr.0.bias'"):
        from_torch({k: v for k, v in sd.items() if k != "descr.0.bias"}, "tfeat")
    with pytest.raises(DataError, match=r"missing key 'features.0.weight' \(the \(32, 1, 3, 3\).*wrong arch"):
        from_torch(sd, "hardnet")
    with pytest.raises(
        DataError, match=r"'descr.0.weight' has shape \(64, 4096\), the architecture needs \(128, 4096\)"
    ):
        from_torch({**sd, "descr.0.weight": np.zeros((64, 4096), np.float32)}, "tfeat")
    with pytest.raises(DataError, match="unexpected keys.*'extra.weight'"):
        from_torch({**sd, "extra.weight": np.zeros(3, np.float32)}, "tfeat")
    with pytest.raises(DataError, match="checkpoint not found"):
        from_torch(tmp_path / "nope.pth", "tfeat")
    with pytest.raises(ValueError, match="unknown architecture 'resnet'; expected one of tfeat, hardnet"):
        from_torch(sd, "resnet")


def test_checkpoint_files_read_with_pytorch(tmp_path):
    """A file PyTorch cannot read is named; HardNet-style wrapped checkpoints with DataParallel prefixes load."""
    torch = _torch()
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="bad.pth: cannot read"):
        from_torch(bad, "tfeat")
    sd = {k: torch.from_numpy(v) for k, v in _state_dict("tfeat").items()}
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in sd.items()}}, wrapped)
    got = from_torch(wrapped, "tfeat").predict(patches()[..., None], verbose=0)
    np.testing.assert_allclose(got, FIX["tfeat"]["out"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_ports_round_trip_keras_file(arch, tmp_path):
    m = torch_port(arch)
    rng = np.random.default_rng(0)
    for w in m.weights:  # non-trivial weights everywhere (variances positive)
        w.assign(
            rng.uniform(0.5, 1.5, w.shape).astype(np.float32)
            if "variance" in w.path
            else rng.normal(0, 0.1, w.shape).astype(np.float32)
        )
    p = tmp_path / f"{arch}.keras"
    m.save(p)
    back = keras.saving.load_model(p, compile=False)
    x = patches(n=3)[..., None]
    np.testing.assert_allclose(back.predict(x, verbose=0), m.predict(x, verbose=0), rtol=0, atol=1e-6)
    assert [type(l).__name__ for l in back.layers] == [type(l).__name__ for l in m.layers]
    assert InstanceNorm.from_config(InstanceNorm(epsilon=0.25).get_config()).epsilon == 0.25
    assert PatchStandardize.from_config(PatchStandardize(ddof=1).get_config()).ddof == 1


def test_saved_port_runs_in_hpatches_eval(tiny_dataset, tmp_path, capsys):
    from_torch(_state_dict("tfeat"), "tfeat").save(tmp_path / "tfeat.keras")
    from hpatches_kit.cli.eval import main

    rc = main(
        [
            "--data",
            str(tiny_dataset),
            "--model",
            str(tmp_path / "tfeat.keras"),
            "--task",
            "matching",
            "--json",
            str(tmp_path / "r.json"),
            "--no-progress",
        ]
    )
    assert rc == 0
    import json

    r = json.loads((tmp_path / "r.json").read_text())
    assert r["meta"]["descriptor"] == "tfeat" and r["meta"]["dim"] == 128
    assert 0 <= r["matching"]["headline"]["value"] <= 100


def test_real_tfeat_liberty_checkpoint_matches_torch():
    torch = _torch()
    if not TFEAT.is_file():
        pytest.skip(f"TFeat checkpoint not found: {TFEAT} (../shared/pretrained is laid beside the checkout in CI)")
    net = torch_reference("tfeat")
    net.load_state_dict(torch.load(str(TFEAT), map_location="cpu", weights_only=True))
    net.eval()
    x = patches(n=8, seed=7)
    with torch.no_grad():
        ref = net(torch.from_numpy(x[:, None] * np.float32(1 / 255))).numpy()
    got = from_torch(TFEAT, arch="tfeat").predict(x[..., None], verbose=0)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)
    assert np.abs(ref).max() > 0.1  # trained weights give non-trivial descriptors
