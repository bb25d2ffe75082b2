"""Experiment: the L2-Net train step with Keras BatchNormalization vs TensorFlow's fused batch-norm kernel.

    python benchmarks/bn_fused_experiment.py keras|fused [float32|mixed_bfloat16]

Prints patches/s of `train_on_batch` at batch 1024 (batch-hard loss). The fused layer here is a measuring
stick only (affine-free, TensorFlow-only), not part of the package; run both modes in one sitting and compare.
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras
import numpy as np
import tensorflow as tf

from hpatches_kit.losses import BatchHardTripletLoss
from hpatches_kit.models.l2net import L2Normalize, PatchStandardize

mode = sys.argv[1]
policy = sys.argv[2] if len(sys.argv) > 2 else "float32"
keras.mixed_precision.set_global_policy(policy)


class FusedBN(keras.layers.Layer):
    def __init__(self, momentum=0.99, epsilon=1e-3, **kw):
        super().__init__(**kw)
        self.momentum, self.epsilon = momentum, epsilon

    def build(self, s):
        c = s[-1]
        self.moving_mean = self.add_weight(shape=(c,), initializer="zeros", trainable=False, name="moving_mean")
        self.moving_variance = self.add_weight(shape=(c,), initializer="ones", trainable=False, name="moving_variance")

    def call(self, x, training=False):
        c = x.shape[-1]
        one, zero = tf.ones([c], tf.float32), tf.zeros([c], tf.float32)
        if training:
            y, m, v = tf.compat.v1.nn.fused_batch_norm(x, one, zero, epsilon=self.epsilon, is_training=True)
            n = tf.cast(tf.size(x) // c, tf.float32)
            v = v * (n - 1) / n  # the fused op returns the Bessel-corrected variance; Keras keeps the biased one
            self.moving_mean.assign(self.moving_mean * self.momentum + m * (1 - self.momentum))
            self.moving_variance.assign(self.moving_variance * self.momentum + v * (1 - self.momentum))
            return y
        y, _, _ = tf.compat.v1.nn.fused_batch_norm(
            x,
            one,
            zero,
            mean=tf.cast(self.moving_mean, tf.float32),
            variance=tf.cast(self.moving_variance, tf.float32),
            epsilon=self.epsilon,
            is_training=False,
        )
        return y


def net(fused):
    inp = keras.Input((32, 32, 1))
    x = PatchStandardize()(inp)
    for f, s in ((32, 1), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1)):
        x = keras.layers.Conv2D(f, 3, strides=s, padding="same", use_bias=False)(x)
        x = FusedBN()(x) if fused else keras.layers.BatchNormalization(center=False, scale=False)(x)
        x = keras.layers.Activation("relu")(x)
    x = keras.layers.Dropout(0.3)(x)
    x = keras.layers.Conv2D(128, 8, use_bias=False)(x)
    x = FusedBN()(x) if fused else keras.layers.BatchNormalization(center=False, scale=False)(x)
    return keras.Model(inp, L2Normalize()(keras.layers.Flatten()(x)))


m = net(mode == "fused")
m.compile(optimizer=keras.optimizers.Adam(1e-3), loss=BatchHardTripletLoss(1.0))
x = np.random.default_rng(0).uniform(0, 255, (1024, 32, 32, 1)).astype("float32")
y = np.repeat(np.arange(512), 2).astype("int32")
for _ in range(2):
    m.train_on_batch(x, y)
t0 = time.perf_counter()
for _ in range(6):
    m.train_on_batch(x, y)
print(mode, policy, 6 * 1024 / (time.perf_counter() - t0))
