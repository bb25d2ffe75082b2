"""Time the triplet-family losses (forward + gradient, inside ``tf.function``) on S x K batches.

Prints, per batch size, the milliseconds of each loss, and the speed-up ratios of
* semi-hard: our general-label path (sort + binary search, memory B^2) over tfa's tiled algorithm
  (B^2 x B tile, re-written here in TF for reference only), and the S x K fast path (``views_per_track=K``,
  memory B*K*B) over the general path;
* batch-all: the S x K fast path (B*K*B) over the general path (B^3).
B^3 variants are skipped above B = 256 (memory). Values are asserted equal across paths.
Numbers are wall-clock medians; on a shared CPU they are noisy.

    python benchmarks/bench_losses.py [--sizes 64x4,128x4] [--dim 128] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import hpatches_kit.losses as L  # noqa: E402


def tfa_style_semihard(labels, emb, margin=1.0):
    """tfa 0.23's tiled algorithm (reference for timing only)."""
    d = L.pairwise_distance(emb, "L2")
    labels = tf.reshape(labels, [-1, 1])
    adj = tf.equal(labels, tf.transpose(labels))
    adj_not = tf.logical_not(adj)
    b = tf.size(labels)
    tile = tf.tile(d, [b, 1])
    mask = tf.logical_and(tf.tile(adj_not, [b, 1]), tile > tf.reshape(tf.transpose(d), [-1, 1]))
    mask_f = tf.cast(mask, d.dtype)
    mask_final = tf.transpose(tf.reshape(tf.reduce_sum(mask_f, 1, keepdims=True) > 0.0, [b, b]))
    mx = tf.reduce_max(tile, 1, keepdims=True)
    outside = tf.transpose(tf.reshape(tf.reduce_min((tile - mx) * mask_f, 1, keepdims=True) + mx, [b, b]))
    mn = tf.reduce_min(d, 1, keepdims=True)
    inside = tf.tile(tf.reduce_max((d - mn) * tf.cast(adj_not, d.dtype), 1, keepdims=True) + mn, [1, b])
    semi = tf.where(mask_final, outside, inside)
    mpos = tf.cast(adj, d.dtype) - tf.eye(b)
    return tf.reduce_sum(tf.maximum((margin + d - semi) * mpos, 0.0)) / tf.reduce_sum(mpos)


def timed(fn, labels, emb, repeats):
    var = tf.Variable(emb)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = fn(labels, var)
        return loss, tape.gradient(loss, var)

    step()  # trace + warm up
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        loss, g = step()
        g.numpy()
        ts.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(ts)), float(loss)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="32x4,64x4,128x2,128x4")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"{'S x K':>8} {'B':>5}  loss                         ms      value")
    for size in args.sizes.split(","):
        S, K = (int(v) for v in size.split("x"))
        labels = tf.constant(L.sk_labels(S, K))
        emb = rng.normal(size=(S * K, args.dim)).astype(np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        small = S * K <= 256
        fns = {
            "semihard (general)": lambda y, e: L.triplet_semihard_loss(y, e),
            "semihard (S x K fast)": lambda y, e: L.triplet_semihard_loss(y, e, views_per_track=K),
            **({"semihard (tfa tiled)": tfa_style_semihard} if small else {}),
            **({"batch-all (general)": lambda y, e: L.batch_all_triplet_loss(y, e)} if small else {}),
            "batch-all (S x K fast)": lambda y, e: L.batch_all_triplet_loss(y, e, views_per_track=K),
            "hard (tfa)": lambda y, e: L.triplet_hard_loss(y, e),
            "hardnet (S x K)": lambda y, e: L.hardnet_loss(y, e, views_per_track=K),
            "hardnet (labels)": lambda y, e: L.hardnet_loss(y, e),
        }
        res = {}
        for name, fn in fns.items():
            ms, v = timed(fn, labels, emb, args.repeats)
            res[name] = (ms, v)
            print(f"{size:>8} {S * K:>5}  {name:<26} {ms:8.2f}  {v:.6f}")
        pairs = [
            ("semihard (general)", "semihard (S x K fast)"),
            ("semihard (tfa tiled)", "semihard (general)"),
            ("batch-all (general)", "batch-all (S x K fast)"),
        ]
        for slow, fast in pairs:
            if slow in res:
                (ts, vs), (tf_, vf) = res[slow], res[fast]
                assert abs(vs - vf) <= 1e-5 * max(1.0, abs(vs)), (slow, fast, vs, vf)
                print(f"{size:>8} {S * K:>5}  speed-up {fast} over {slow}: {ts / tf_:.2f}x (same value)")


if __name__ == "__main__":
    main()
