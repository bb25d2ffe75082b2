"""Backend-dispatched layers shared by the descriptor models.

``FusedBatchNorm`` is ``keras.layers.BatchNormalization`` with the same variables, arguments and maths, that on the
TensorFlow backend runs TensorFlow's fused batch-norm kernel (``FusedBatchNormV3`` and its fused gradient) instead
of the composite ``moments`` + ``batch_normalization`` graph. On the L2-Net train step this is ~1.3-1.9x faster on CPU
(``docs/training.md``, ``benchmarks/train_speed.py``).
"""

from __future__ import annotations

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="hpatches_kit")
class FusedBatchNorm(layers.BatchNormalization):
    """Batch normalisation over the last axis that uses TensorFlow's fused kernel where it can.

    A subclass of ``keras.layers.BatchNormalization``: same arguments, the same weights (``gamma``/``beta`` when
    ``scale``/``center``, ``moving_mean``, ``moving_variance``), the same semantics (training normalises with the
    biased batch variance; ``moving = moving * momentum + batch * (1 - momentum)`` with the biased variance;
    inference uses the moving statistics; a non-trainable layer runs in inference mode). Weights therefore move
    freely between the two layers (``set_weights(bn.get_weights())``), and code that checks
    ``isinstance(layer, keras.layers.BatchNormalization)`` keeps working.

    The fused path is taken on the TensorFlow backend for 4-D channels-last input (2-D input is viewed as
    ``(B, 1, 1, C)``) without a mask, renorm or ``synchronized``; everything else falls back to the parent's
    ``keras.ops`` code. float16/bfloat16 inputs go to the kernel as they are (it accumulates in float32, with
    float32 scale, offset and statistics; TensorFlow's CPU kernel supports both), and the output has the layer's
    compute dtype, as in the parent.

    Under ``tf.distribute`` the moving statistics are mean-aggregated across replicas (Keras' layer leaves each
    replica's copy to drift on its own slice): every replica and worker holds the same statistics.

    Args:
        **kwargs: those of ``keras.layers.BatchNormalization`` (``axis`` must be the last one for the fused path).

    Shape:
        - Input: :math:`(B, ..., C)`
        - Output: same as the input.

    Examples:
        >>> import numpy as np
        >>> bn = FusedBatchNorm(center=False, scale=False)
        >>> y = bn(np.random.rand(8, 4, 4, 3).astype("float32"), training=True)
        >>> tuple(y.shape)
        (8, 4, 4, 3)
    """

    def add_weight(self, *args, **kwargs):
        # Keras creates the moving statistics with aggregation "none": under tf.distribute every replica then
        # updates only its own copy, so replicas (and the workers of a multi-worker run) drift apart and the saved
        # model keeps replica 0's statistics. "mean" all-reduces each update: every replica holds
        # moving * momentum + mean_r(batch_r) * (1 - momentum). Outside a strategy it changes nothing.
        if kwargs.get("name") in ("moving_mean", "moving_variance") and kwargs.get("aggregation", "none") == "none":
            kwargs["aggregation"] = "mean"
        return super().add_weight(*args, **kwargs)

    def _fused_ok(self, inputs, mask):
        rank = len(inputs.shape)
        axis = self.axis if isinstance(self.axis, int) else (list(self.axis) + [None])[0]
        if isinstance(self.axis, (list, tuple)) and len(self.axis) != 1:
            return False
        return (
            keras.backend.backend() == "tensorflow"
            and mask is None
            and not self.renorm
            and not getattr(self, "synchronized", False)
            and rank in (2, 4)
            and axis is not None
            and axis % rank == rank - 1
            and inputs.shape[-1] is not None
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fused_ok(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        x = inputs
        if x.dtype not in (tf.float16, tf.bfloat16, tf.float32):
            x = tf.cast(x, tf.float32)
        shape2d = None
        if len(x.shape) == 2:
            shape2d = tf.shape(x)
            x = tf.reshape(x, [-1, 1, 1, x.shape[-1]])
        c = int(x.shape[-1])
        scale = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones([c], tf.float32)
        offset = tf.cast(self.beta, tf.float32) if self.center else tf.zeros([c], tf.float32)
        empty = tf.zeros([0], tf.float32)
        if training and self.trainable:
            y, mean, var, _, _, _ = tf.raw_ops.FusedBatchNormV3(
                x=x,
                scale=scale,
                offset=offset,
                mean=empty,
                variance=empty,
                epsilon=self.epsilon,
                data_format="NHWC",
                is_training=True,
            )
            # The kernel normalises with the biased variance but returns the Bessel-corrected one; Keras keeps
            # (and averages) the biased one.
            n = tf.cast(tf.size(x, out_type=tf.int64) // c, tf.float32)
            var = var * ((n - 1.0) / tf.maximum(n, 1.0))
            mm = tf.cast(self.moving_mean, tf.float32)
            mv = tf.cast(self.moving_variance, tf.float32)
            self.moving_mean.assign(mm * self.momentum + tf.stop_gradient(mean) * (1.0 - self.momentum))
            self.moving_variance.assign(mv * self.momentum + tf.stop_gradient(var) * (1.0 - self.momentum))
        else:
            y, _, _, _, _, _ = tf.raw_ops.FusedBatchNormV3(
                x=x,
                scale=scale,
                offset=offset,
                mean=tf.cast(self.moving_mean, tf.float32),
                variance=tf.cast(self.moving_variance, tf.float32),
                epsilon=self.epsilon,
                data_format="NHWC",
                is_training=False,
            )
        if shape2d is not None:
            y = tf.reshape(y, shape2d)
        return ops.cast(y, self.compute_dtype)


def with_fused_batch_norm(model: keras.Model) -> keras.Model:
    """Return a copy of ``model`` whose plain ``keras.layers.BatchNormalization`` layers are
    :class:`FusedBatchNorm` (same config and names), with every weight copied: the conversion for models saved
    before the fused layer existed (e.g. ``models/l2net-embedded.keras``). Outputs are unchanged (to float
    round-off); the original model is not modified.

    Args:
        model: a functional or sequential Keras model.

    Returns:
        The converted ``keras.Model``.
    """

    def clone(layer):
        if type(layer) is layers.BatchNormalization:
            return FusedBatchNorm.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    out = keras.models.clone_model(model, clone_function=clone)
    out.set_weights(model.get_weights())
    return out
