"""Training speed in one sitting: the bare L2-Net step, a real `hpatches-train descriptor` run, and PyTorch.

    python benchmarks/train_speed.py [--json OUT] [--epochs N] [--precisions float32,mixed_bfloat16] [--no-torch]

Runs, one after another in fresh subprocesses (dtype policies are process-global) on the same machine:

1. the bare Keras train step (`train_on_batch`, batch 1024 = 512 tracks x 2 views, 32x32, batch-hard loss)
   in each precision, with and without XLA;
2. the default `hpatches-train descriptor` run on the embedded default (its epochs unless `--epochs`; all default
   callbacks: checkpoints, TensorBoard, history/plots, collapse probe, validation; no final evaluation), with
   the fastest precision, measured from its own `metrics.json` (`train_seconds`: the whole `model.fit` call,
   tracing and every callback included), then the bare step once more (the ratio uses the mean of the two);
3. the PyTorch HardNet-architecture step (the same layers, batch-hard loss, Adam), float32 and with
   `torch.autocast("cpu", torch.bfloat16)`; needs the `bench` extra (`pip install -e ".[bench]"`), skipped with
   a message otherwise.

Prints a table and the ratios fit/step and step/PyTorch (best precision of each). Timings on shared VMs
swing by up to 2x between runs: only the side-by-side ratios of one sitting mean something.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

KERAS_STEP = r"""
import json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np, keras
from hpatches_kit.models.l2net import l2net
from hpatches_kit.losses import BatchHardTripletLoss
policy, jit, batch, steps = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3]), int(sys.argv[4])
keras.mixed_precision.set_global_policy(policy)
keras.utils.set_random_seed(0)
x = np.random.default_rng(0).uniform(0, 255, (batch, 32, 32, 1)).astype("float32")
y = np.repeat(np.arange(batch // 2), 2).astype("int32")
m = l2net(fused_bn=os.environ.get("TRAIN_SPEED_BN", "fused") != "keras")  # TRAIN_SPEED_BN=keras: plain Keras BN
m.compile(optimizer=keras.optimizers.Adam(1e-3), loss=BatchHardTripletLoss(1.0), jit_compile=jit)
for _ in range(2):
    m.train_on_batch(x, y)
t0 = time.perf_counter()
for _ in range(steps):
    loss = m.train_on_batch(x, y)
dt = time.perf_counter() - t0
print("RESULT" + json.dumps({"patches_per_s": batch * steps / dt, "loss_finite": bool(np.isfinite(loss))}))
"""

TORCH_STEP = r"""
import json, sys, time
import torch, torch.nn as nn, torch.nn.functional as F
autocast, batch, steps = sys.argv[1] == "1", int(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)

def block(i, o, s=1):
    return [nn.Conv2d(i, o, 3, stride=s, padding=1, bias=False), nn.BatchNorm2d(o, affine=False), nn.ReLU()]

class HardNet(nn.Module):  # Mishchuk et al. 2017, the architecture of hpatches_kit.models.l2net
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(*block(1, 32), *block(32, 32), *block(32, 64, 2), *block(64, 64),
                                      *block(64, 128, 2), *block(128, 128), nn.Dropout(0.3),
                                      nn.Conv2d(128, 128, 8, bias=False), nn.BatchNorm2d(128, affine=False))
    def forward(self, x):
        m = x.mean(dim=(1, 2, 3), keepdim=True)
        s = x.std(dim=(1, 2, 3), keepdim=True, unbiased=False) + 1e-7
        return F.normalize(self.features((x - m) / s).flatten(1), dim=1)

def batch_hard(e, labels, margin=1.0):
    d = torch.cdist(e, e)
    same = labels[:, None] == labels[None]
    pos = (d * same).max(1).values
    neg = (d + same * 1e6).min(1).values
    return F.relu(pos - neg + margin).mean()

net = HardNet()
opt = torch.optim.Adam(net.parameters(), 1e-3)
x = torch.rand(batch, 1, 32, 32) * 255
y = torch.arange(batch // 2).repeat_interleave(2)

def step():
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        e = net(x)
    loss = batch_hard(e.float(), y)
    loss.backward()
    opt.step()
    return float(loss)

for _ in range(2):
    step()
t0 = time.perf_counter()
for _ in range(steps):
    loss = step()
dt = time.perf_counter() - t0
print("RESULT" + json.dumps({"patches_per_s": batch * steps / dt, "threads": torch.get_num_threads(),
                             "torch": torch.__version__}))
"""


def _child(args, timeout=1800) -> dict | None:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)
    for line in r.stdout.splitlines():
        if line.startswith("RESULT"):
            return json.loads(line[6:])
    print(f"  failed: {' '.join(args[:3])}...\n{r.stderr[-2000:]}", file=sys.stderr)
    return None


def fit_run(precision: str, epochs: int | None, extra: list[str]) -> dict:
    """A real `hpatches-train descriptor` run; patches/s over the whole `model.fit` call (its `train_seconds`:
    tracing, every epoch, callbacks, checkpoints, validation) and over the epochs after the first (history.json
    `epoch_wall_s`)."""
    with tempfile.TemporaryDirectory(prefix="train-speed-") as d:
        out = Path(d) / "run"
        cmd = [
            sys.executable,
            "-m",
            "hpatches_kit.cli.train",
            "descriptor",
            "--out",
            str(out),
            *(["--epochs", str(epochs)] if epochs else []),
            "--mixed-precision",
            precision,
            "--verbose",
            "0",
            "--no-eval",
            *extra,
        ]
        subprocess.run(cmd, check=True, capture_output=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        m = json.loads((out / "metrics.json").read_text())
    walls = m["history"]["epoch_wall_s"]
    batch = m["tracks_per_batch"] * m["views"]
    per_epoch = m["steps_per_epoch"] * batch
    steady = walls[1:] or walls
    return {
        "precision": precision,
        "epochs": len(walls),
        "steps_per_epoch": m["steps_per_epoch"],
        "batch": batch,
        "epoch_wall_s": walls,
        "train_seconds": m["train_seconds"],
        "fit_patches_per_s": per_epoch * len(walls) / m["train_seconds"],
        "fit_epochs_patches_per_s": per_epoch * len(walls) / sum(walls),
        "fit_steady_patches_per_s": per_epoch * len(steady) / sum(steady),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs of the real run (default: the default run's, `hpatches-train descriptor`'s)",
    )
    ap.add_argument("--steps", type=int, default=12, help="timed bare steps per configuration (default: 12)")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--precisions", default="float32,mixed_bfloat16")
    ap.add_argument("--jit", action="store_true", help="also time the bare step with XLA jit_compile")
    ap.add_argument("--fit-args", default="", help="extra `hpatches-train descriptor` flags for the real run")
    ap.add_argument("--no-torch", action="store_true")
    a = ap.parse_args(argv)

    rows = {}
    for prec in a.precisions.split(","):
        for jit in (False, True) if a.jit else (False,):
            r = _child([sys.executable, "-c", KERAS_STEP, prec, "1" if jit else "0", str(a.batch), str(a.steps)])
            if r:
                rows[f"keras step {prec}{' + XLA' if jit else ''}"] = r["patches_per_s"]
                print(f"keras step {prec}{' + XLA' if jit else ''}: {r['patches_per_s']:.0f} patches/s", flush=True)
    best_name = max(rows, key=rows.get)
    best_prec = best_name.split()[2]
    step = rows[best_name]
    fit = fit_run(best_prec, a.epochs, a.fit_args.split())
    print(
        f"hpatches-train descriptor ({best_prec}, {fit['epochs']} epochs x {fit['steps_per_epoch']} steps): "
        f"{fit['fit_patches_per_s']:.0f} patches/s over the whole fit ({fit['train_seconds']:.1f} s), "
        f"{fit['fit_steady_patches_per_s']:.0f} over the epochs after the first; epoch walls "
        f"{', '.join(f'{w:.1f}' for w in fit['epoch_wall_s'])} s",
        flush=True,
    )
    # the bare step again, right after the run: load on a shared VM drifts; the ratio uses the mean of both
    r = _child(
        [sys.executable, "-c", KERAS_STEP, best_prec, "1" if "XLA" in best_name else "0", str(a.batch), str(a.steps)]
    )
    if r:
        print(f"keras step {best_prec} again after the run: {r['patches_per_s']:.0f} patches/s", flush=True)
        step = (step + r["patches_per_s"]) / 2
        rows[f"keras step {best_prec} (mean before/after the run)"] = step
    torch_rows = {}
    if not a.no_torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            print('PyTorch not installed (pip install -e ".[bench]"): skipping the PyTorch rows')
        else:
            for ac in (False, True):
                r = _child([sys.executable, "-c", TORCH_STEP, "1" if ac else "0", str(a.batch), str(a.steps)])
                if r:
                    name = f"torch {r['torch']} step {'bf16 autocast' if ac else 'float32'}"
                    torch_rows[name] = r["patches_per_s"]
                    print(f"{name}: {r['patches_per_s']:.0f} patches/s ({r['threads']} threads)", flush=True)

    print(f"\n{'what':<48}{'patches/s':>12}")
    for k, v in {**rows, f"fit, whole run ({best_prec})": fit["fit_patches_per_s"], **torch_rows}.items():
        print(f"{k:<48}{v:>12.0f}")
    out = {
        "step_patches_per_s": step,
        "step_config": best_name,
        "fit_patches_per_s": fit["fit_patches_per_s"],
        "fit_over_step": fit["fit_patches_per_s"] / step,
        "fit": fit,
        "steps": rows,
        "torch": torch_rows,
    }
    print(f"\nfit / step ({best_prec}): {out['fit_over_step']:.2f}x (target >= 0.9)")
    f32 = rows.get("keras step float32")
    t32 = next((v for k, v in torch_rows.items() if k.endswith("float32")), None)
    if torch_rows:
        tbest = max(torch_rows.values())
        out.update(torch_step_patches_per_s=tbest, step_over_torch=step / tbest)
        print(f"step / PyTorch, best precision vs best: {step / tbest:.2f}x (target >= 2)")
        if f32 and t32:
            out["step_over_torch_float32"] = f32 / t32
            print(f"step / PyTorch, float32 vs float32: {f32 / t32:.2f}x (target >= 2)")
    else:
        out.update(torch_step_patches_per_s=None, step_over_torch=None)
    if a.json:
        a.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
