"""Pipeline batches/s vs L2-Net training-step batches/s at batch 1024 (S=512 tracks x K=2 views).

Target: the input pipeline is >= 5x faster than the training step, so training is never input-bound.
Prints measured numbers and the ratio. Timings on a shared CPU are noisy: run it on an idle machine for
numbers to quote.

    python benchmarks/train_pipeline_vs_step.py [--tracks 20000] [--batch 1024] [--steps 4]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tracks", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--views", type=int, default=2)
    ap.add_argument("--pipeline-batches", type=int, default=60)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--precision", default="float32")
    a = ap.parse_args()

    import keras
    import tensorflow as tf

    from hpatches_kit.losses import BatchHardTripletLoss
    from hpatches_kit.models.l2net import l2net
    from hpatches_kit.training import descriptor_dataset

    keras.mixed_precision.set_global_policy(a.precision)
    rng = np.random.default_rng(0)
    tracks = rng.integers(0, 256, (a.tracks, 16, 32, 32), dtype=np.uint8)
    S = a.batch // a.views
    ds = descriptor_dataset(tracks, S, a.views, seed=0)
    it = iter(ds)
    for _ in range(5):
        next(it)
    t0 = time.perf_counter()
    for _ in range(a.pipeline_batches):
        x, y = next(it)
    _ = x.numpy()
    pipe = a.pipeline_batches / (time.perf_counter() - t0)

    model = l2net()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=BatchHardTripletLoss(1.0), jit_compile=False)
    x, y = next(it)
    model.train_on_batch(x, y)  # trace + warm up
    model.train_on_batch(x, y)
    t0 = time.perf_counter()
    for _ in range(a.steps):
        model.train_on_batch(x, y)
    step = a.steps / (time.perf_counter() - t0)
    print(
        f"cpu threads visible: {os.cpu_count()}  tf intra-op: {tf.config.threading.get_intra_op_parallelism_threads()}"
    )
    print(
        f"pipeline: {pipe:8.2f} batches/s ({pipe * a.batch:9.0f} patches/s)  batch {a.batch} = {S} tracks x {a.views}"
    )
    print(f"L2-Net train step ({a.precision}): {step:8.3f} batches/s ({step * a.batch:9.0f} patches/s)")
    print(f"ratio pipeline / step = {pipe / step:.1f}x  (target >= 5x: {'OK' if pipe / step >= 5 else 'MISSED'})")


if __name__ == "__main__":
    main()
