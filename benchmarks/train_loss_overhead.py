"""Cost of each ``hpatches-train descriptor --loss`` choice relative to an L2-Net training step.

For every loss the CLI offers: loss value + gradient w.r.t. the embeddings of one S x K batch (a compiled
``tf.function``), median of ``--reps`` runs, versus one full L2-Net fp32 train step (forward, loss, backward,
Adam) on the same batch with batch-hard. Prints ms and the ratio loss / step.

    python benchmarks/train_loss_overhead.py [--batch 1024] [--views 2] [--reps 5] [--model-steps 2]

CPU timings on shared cores are noisy: compare ratios, and re-run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from hpatches_kit import losses  # noqa: E402
from hpatches_kit.losses import sk_labels  # noqa: E402
from hpatches_kit.models.l2net import l2net  # noqa: E402


def _median_time(fn, reps):
    fn()  # trace / warm up
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--views", type=int, default=2)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--model-steps", type=int, default=2)
    a = ap.parse_args()
    K, S = a.views, a.batch // a.views
    B = S * K
    rng = np.random.default_rng(0)
    e = rng.normal(size=(B, a.dim)).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    emb = tf.constant(e)
    labels = tf.constant(sk_labels(S, K))
    trip = tf.constant(e[: (B // 3) * 3].reshape(-1, 3, a.dim))

    x = tf.constant(rng.uniform(0, 255, (B, 32, 32, 1)).astype(np.float32))
    model = l2net()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=losses.get("batch-hard"), jit_compile=False)
    step = _median_time(lambda: model.train_on_batch(x, labels), a.model_steps)
    print(f"L2-Net fp32 train step, batch {B} ({S} tracks x {K} views): {step * 1e3:.0f} ms")
    print(f"{'--loss':<16}{'loss+grad ms':>14}{'/ step':>10}")
    for name in losses.names("descriptor"):
        loss = losses.get(name, margin=1.0, distance_metric="L2", views_per_track=K)
        y_pred = trip if name == "random-triplet" else emb

        @tf.function
        def f(yp, loss=loss):
            with tf.GradientTape() as tape:
                tape.watch(yp)
                v = loss(labels, yp)
            return v, tape.gradient(v, yp)

        t = _median_time(lambda: [o.numpy() for o in f(y_pred)], a.reps)
        print(f"{name:<16}{t * 1e3:>14.2f}{t / step:>10.4f}")


if __name__ == "__main__":
    main()
