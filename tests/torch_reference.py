"""The PyTorch models the Keras ports mirror (as their papers' code defines them) and the committed parity fixture.

The parity tests (``tests/test_models_torch_import.py``) need no PyTorch: they compare the Keras ports against
``tests/fixtures/torch_ports.npz``, the outputs PyTorch computed for random weights that NumPy regenerates from a
seed (:func:`numpy_state_dict`, legacy ``RandomState``: a frozen stream). Regenerate the fixture after changing a
reference model or the weight draw (needs ``pip install -e .[torch]``)::

    python tests/torch_reference.py

With PyTorch installed, ``test_fixture_is_what_pytorch_computes`` recomputes every output and compares.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "torch_ports.npz"
ARCHS = ("tfeat", "hardnet", "l2net", "hardnet8", "sosnet")
#: architectures also checked fed 0..255 (``input_scale=1.0``)
SCALE_ONE = ("tfeat", "hardnet")


def patches(n: int = 6, seed: int = 0) -> np.ndarray:
    """``(n, 32, 32)`` float32 patches in [0, 255], not zero-mean."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 255, (n, 32, 32)).astype(np.float32)
    return np.clip(base + np.linspace(-40, 40, 32, dtype=np.float32)[None, None], 0, 255)


def numpy_state_dict(specs: dict, seed: int) -> dict:
    """Random weights *and* batch-norm statistics / buffers for the state-dict ``specs`` (``{key: [shape, dtype]}``),
    so that a wrong layout cannot pass by symmetry."""
    rs = np.random.RandomState(seed)
    sd = {}
    for key, (shape, dtype) in specs.items():
        shape = tuple(shape)
        if dtype.startswith("int"):
            v = np.zeros(shape, np.int64)
        elif key.endswith("running_mean") or key == "mean":
            v = rs.standard_normal(shape) * 0.1
        elif key.endswith("running_var"):
            v = rs.random_sample(shape) * 1.5 + 0.25
        elif key == "components":
            v = rs.standard_normal(shape) / 20
        elif len(shape) > 1:  # a weight: unit-variance outputs
            v = rs.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))
        else:
            v = rs.standard_normal(shape) * 0.1
        sd[key] = v.astype(np.int64 if dtype.startswith("int") else np.float32)
    return sd


def load_fixture() -> dict:
    """``{arch: {"specs", "seed", "out", "out_scale_one"?}}`` from the committed fixture."""
    with np.load(FIXTURE) as z:
        meta = json.loads(str(z["meta"]))
        return {a: {**meta[a], **{k.split("/", 1)[1]: z[k] for k in z.files if k.startswith(a + "/")}} for a in meta}


def torch_reference(arch: str):
    """The PyTorch module of ``arch`` (needs PyTorch)."""
    import torch

    nn, F = torch.nn, torch.nn.functional
    hn = ((32, 1), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1))

    def features(convs, final, dropout, eps_bn=1e-5):
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
            self.features = nn.Sequential(*features(hn, 128, 0.3))

        def forward(self, x):
            return F.normalize(self.features(std_norm(x, self.eps)).view(x.size(0), -1), dim=1)

    class HardNet8(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(*features(hn + ((256, 1),), 512, 0.3))
            self.register_buffer("components", torch.ones(512, 128))
            self.register_buffer("mean", torch.zeros(512))

        def forward(self, x):
            pre = F.normalize(self.features(std_norm(x, 1e-7)).view(x.size(0), -1))
            return F.normalize(torch.mm(pre - self.mean, self.components), dim=1)

    class SOSNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.Sequential(nn.InstanceNorm2d(1, affine=False), *features(hn, 128, 0.1))
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


def torch_outputs(arch: str, seed: int) -> tuple[dict, dict]:
    """PyTorch's outputs for ``arch`` with :func:`numpy_state_dict` weights: ``(specs, {"out", "out_scale_one"?})``
    (``out``: :func:`patches` ``(6, seed 0)`` scaled by 1/255; ``out_scale_one``: ``patches(6, 5)`` fed 0..255)."""
    import torch

    net = torch_reference(arch)
    specs = {k: [list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in net.state_dict().items()}
    net.load_state_dict({k: torch.from_numpy(v) for k, v in numpy_state_dict(specs, seed).items()})
    net.eval()
    outs = {}
    with torch.no_grad():
        outs["out"] = net(torch.from_numpy(patches()[:, None] * np.float32(1 / 255))).numpy()
        if arch in SCALE_ONE:
            outs["out_scale_one"] = net(torch.from_numpy(patches(seed=5)[:, None])).numpy()
    return specs, outs


def main() -> None:
    import torch

    meta, arrays = {}, {}
    for i, arch in enumerate(ARCHS):
        specs, outs = torch_outputs(arch, seed=100 + i)
        meta[arch] = {"specs": specs, "seed": 100 + i, "torch": torch.__version__}
        arrays.update({f"{arch}/{k}": v for k, v in outs.items()})
    FIXTURE.parent.mkdir(exist_ok=True)
    np.savez_compressed(FIXTURE, meta=np.array(json.dumps(meta)), **arrays)
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
