"""PyTorch -> Keras import: each port against the PyTorch model it mirrors (written here as published, random
weights and batch-norm statistics), TFeat's real Liberty checkpoint against PyTorch, layout helpers against
hand-worked values, checkpoint errors, and .keras round trips that ``hpatches-eval --model`` reads."""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from hpatches_kit.data.errors import DataError
from hpatches_kit.models import InstanceNorm, PatchStandardize, from_torch, torch_port
from hpatches_kit.models.torch_ports import ARCHS

REPO = Path(__file__).resolve().parents[1]
TFEAT = REPO.parent / "shared" / "pretrained" / "tfeat" / "tfeat-liberty.params"


def _torch():
    return pytest.importorskip(
        "torch",
        reason="PyTorch (CPU) is the parity tests' reference and only a test "
        "dependency (pip install -e .[test]); not installed",
    )


# -- the PyTorch reference models, as their papers' code defines them ------------------------------------
def _hardnet_features(nn, convs, final, dropout, eps_bn=1e-5):
    mods, cin = [], 1
    for f, s in convs:
        mods += [
            nn.Conv2d(cin, f, 3, stride=s, padding=1, bias=False),
            nn.BatchNorm2d(f, affine=False, eps=eps_bn),
            nn.ReLU(),
        ]
        cin = f
    mods += [nn.Dropout(dropout), nn.Conv2d(cin, final, 8, bias=False), nn.BatchNorm2d(final, affine=False)]
    return mods


def torch_reference(arch: str):
    torch = _torch()
    nn, F = torch.nn, torch.nn.functional
    hn = ((32, 1), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1))

    def std_norm(x, eps):  # HardNet / L2-Net input_norm: torch.std is unbiased
        sp, mp = torch.std_mean(x, dim=(-3, -2, -1), keepdim=True)
        return (x - mp) / (sp + eps)

    class TFeat(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.InstanceNorm2d(1, affine=False),
                nn.Conv2d(1, 32, 7),
                nn.Tanh(),
                nn.MaxPool2d(2, 2),
                nn.Conv2d(32, 64, 6),
                nn.Tanh(),
            )
            self.descr = nn.Sequential(nn.Linear(64 * 8 * 8, 128), nn.Tanh())

        def forward(self, x):
            return self.descr(self.features(x).view(x.size(0), -1))

    class HardNet(nn.Module):
        def __init__(self, eps):
            super().__init__()
            self.eps = eps
            self.features = nn.Sequential(*_hardnet_features(nn, hn, 128, 0.3))

        def forward(self, x):
            return F.normalize(self.features(std_norm(x, self.eps)).view(x.size(0), -1), dim=1)

    class HardNet8(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(*_hardnet_features(nn, hn + ((256, 1),), 512, 0.3))
            self.register_buffer("components", torch.ones(512, 128))
            self.register_buffer("mean", torch.zeros(512))

        def forward(self, x):
            pre = F.normalize(self.features(std_norm(x, 1e-7)).view(x.size(0), -1))
            return F.normalize(torch.mm(pre - self.mean, self.components), dim=1)

    class SOSNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.Sequential(nn.InstanceNorm2d(1, affine=False), *_hardnet_features(nn, hn, 128, 0.1))
            self.desc_norm = nn.Sequential(nn.LocalResponseNorm(256, alpha=256.0, beta=0.5, k=0.0))

        def forward(self, x, eps=1e-10):
            return self.desc_norm(self.layers(x) + eps).view(x.size(0), -1)

    return {
        "tfeat": TFeat,
        "hardnet": lambda: HardNet(1e-6),
        "l2net": lambda: HardNet(1e-7),
        "hardnet8": HardNet8,
        "sosnet": SOSNet,
    }[arch]()


def _randomise(net, seed):
    """Random weights *and* batch-norm statistics / buffers, so a wrong layout cannot pass by symmetry."""
    torch = _torch()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, b in net.named_buffers():
            if name.endswith("running_mean") or name == "mean":
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) * 1.5 + 0.25)
            elif name == "components":
                b.copy_(torch.randn(b.shape, generator=g) / 20)
    return net.eval()


def _patches(n=6, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 255, (n, 32, 32)).astype(np.float32)
    return np.clip(base + np.linspace(-40, 40, 32, dtype=np.float32)[None, None], 0, 255)  # not zero-mean


def _torch_out(net, x, scale=1 / 255):
    torch = _torch()
    with torch.no_grad():
        return net(torch.from_numpy(x[:, None] * np.float32(scale))).numpy()


@pytest.mark.parametrize("arch", list(ARCHS))
def test_random_torch_model_matches_keras_port(arch):
    torch = _torch()
    torch.manual_seed(1)
    net = _randomise(torch_reference(arch), seed=2)
    x = _patches()
    ref = _torch_out(net, x)
    model = from_torch(net.state_dict(), arch=arch)
    got = model.predict(x[..., None], verbose=0)
    assert got.shape == ref.shape == (6, 128)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)
    # outputs differ per patch by far more than the tolerance (not a constant any layout would reproduce)
    assert np.abs(ref[0] - ref[1]).max() > 100 * 1e-5


@pytest.mark.parametrize("arch", ["tfeat", "hardnet"])
def test_input_scale_one_matches_torch_fed_0_255(arch):
    torch = _torch()
    torch.manual_seed(3)
    net = _randomise(torch_reference(arch), seed=4)
    x = _patches(seed=5)
    got = from_torch(net.state_dict(), arch=arch, input_scale=1.0).predict(x[..., None], verbose=0)
    np.testing.assert_allclose(got, _torch_out(net, x, scale=1.0), rtol=0, atol=1e-5)


def test_numpy_state_dict_needs_no_torch(monkeypatch):
    """A state dict of NumPy arrays converts with ``import torch`` failing; a checkpoint *file* says torch is needed."""
    torch = _torch()
    torch.manual_seed(0)
    net = _randomise(torch_reference("tfeat"), seed=0)
    sd = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    x = _patches(n=3)
    ref = _torch_out(net, x)
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    got = from_torch(sd, arch="tfeat").predict(x[..., None], verbose=0)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)
    with pytest.raises(ImportError, match="needs PyTorch"):
        from_torch(__file__, arch="tfeat")


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
    torch = _torch()
    net = torch_reference("tfeat")
    sd = dict(net.state_dict())
    with pytest.raises(DataError, match="missing key 'descr.0.bias'"):
        from_torch({k: v for k, v in sd.items() if k != "descr.0.bias"}, "tfeat")
    with pytest.raises(DataError, match=r"missing key 'features.0.weight' \(the \(32, 1, 3, 3\).*wrong arch"):
        from_torch(sd, "hardnet")
    with pytest.raises(
        DataError, match=r"'descr.0.weight' has shape \(64, 4096\), the architecture needs \(128, 4096\)"
    ):
        from_torch({**sd, "descr.0.weight": torch.zeros(64, 4096)}, "tfeat")
    with pytest.raises(DataError, match="unexpected keys.*'extra.weight'"):
        from_torch({**sd, "extra.weight": torch.zeros(3)}, "tfeat")
    with pytest.raises(DataError, match="checkpoint not found"):
        from_torch(tmp_path / "nope.pth", "tfeat")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="bad.pth: cannot read"):
        from_torch(bad, "tfeat")
    with pytest.raises(ValueError, match="unknown architecture 'resnet'; expected one of tfeat, hardnet"):
        from_torch(sd, "resnet")
    # HardNet-style wrapped checkpoints with DataParallel prefixes load
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in sd.items()}}, wrapped)
    x = _patches(n=2)
    np.testing.assert_allclose(
        from_torch(wrapped, "tfeat").predict(x[..., None], verbose=0), _torch_out(net.eval(), x), rtol=0, atol=1e-5
    )


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
    x = _patches(n=3)[..., None]
    np.testing.assert_allclose(back.predict(x, verbose=0), m.predict(x, verbose=0), rtol=0, atol=1e-6)
    assert [type(l).__name__ for l in back.layers] == [type(l).__name__ for l in m.layers]
    assert InstanceNorm.from_config(InstanceNorm(epsilon=0.25).get_config()).epsilon == 0.25
    assert PatchStandardize.from_config(PatchStandardize(ddof=1).get_config()).ddof == 1


def test_saved_port_runs_in_hpatches_eval(tiny_dataset, tmp_path, capsys):
    torch = _torch()
    torch.manual_seed(0)
    from_torch(torch_reference("tfeat").state_dict(), "tfeat").save(tmp_path / "tfeat.keras")
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
    x = _patches(n=8, seed=7)
    ref = _torch_out(net, x)
    got = from_torch(TFEAT, arch="tfeat").predict(x[..., None], verbose=0)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)
    assert np.abs(ref).max() > 0.1  # trained weights give non-trivial descriptors
