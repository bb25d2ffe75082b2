"""L2-Net training throughput (patches/s) at batch 1024: float32 vs mixed_bfloat16 (and mixed_float16 on
GPU), each with and without XLA ``jit_compile``. Prints patches/s and ratios against float32/no-jit.
Each configuration runs in a fresh subprocess (dtype policy and XLA state are process-global).
Reference on the project's CPU machines: ~350 fp32, ~510 bf16, ~70 jit. Timings under CPU contention are
noisy.

    python benchmarks/train_throughput.py [--batch 1024] [--steps 3] [--configs float32,mixed_bfloat16]
"""

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np, keras
from hpatches_kit.models import l2net
from hpatches_kit.losses import BatchHardTripletLoss
policy, jit, batch, steps = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3]), int(sys.argv[4])
keras.mixed_precision.set_global_policy(policy)
keras.utils.set_random_seed(0)
x = np.random.default_rng(0).uniform(0, 255, (batch, 32, 32, 1)).astype("float32")
y = np.repeat(np.arange(batch // 2), 2).astype("int32")
m = l2net()
m.compile(optimizer=keras.optimizers.Adam(1e-3), loss=BatchHardTripletLoss(1.0), jit_compile=jit)
t0 = time.perf_counter(); m.train_on_batch(x, y); m.train_on_batch(x, y); warm = time.perf_counter() - t0
t0 = time.perf_counter()
for _ in range(steps):
    loss = m.train_on_batch(x, y)
dt = time.perf_counter() - t0
print("RESULT" + json.dumps({"policy": policy, "jit": jit, "patches_per_s": batch * steps / dt, "warmup_s": warm,
                             "loss_finite": bool(np.isfinite(loss))}))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--configs", default="float32,mixed_bfloat16")
    ap.add_argument("--jit", default="0,1")
    a = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = []
    for pol in a.configs.split(","):
        for jit in a.jit.split(","):
            p = subprocess.run([sys.executable, "-c", CHILD, pol, jit, str(a.batch), str(a.steps)],
                               capture_output=True, text=True, env=env)
            line = [l for l in p.stdout.splitlines() if l.startswith("RESULT")]
            if not line:
                print(f"{pol} jit={jit}: FAILED\n{p.stderr[-1500:]}")
                continue
            r = json.loads(line[0][6:])
            res.append(r)
            print(f"{pol:15s} jit={'on ' if r['jit'] else 'off'}  {r['patches_per_s']:8.1f} patches/s  "
                  f"(warm-up {r['warmup_s']:.1f}s, loss finite: {r['loss_finite']})", flush=True)
    base = next((r for r in res if r["policy"] == "float32" and not r["jit"]), None)
    if base:
        for r in res:
            print(f"ratio {r['policy']}/jit={'on' if r['jit'] else 'off'} vs float32/jit=off: "
                  f"{r['patches_per_s'] / base['patches_per_s']:.2f}x")


if __name__ == "__main__":
    main()
