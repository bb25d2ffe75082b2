"""Minimal online-mining triplet losses used by the training loop (``keras.ops``, float32).

The full-featured losses live in :mod:`hpatches_kit.losses` (another branch); this module keeps what the
trainer itself needs: batch-hard and batch-all (hinge, L2 distance), a curriculum loss that moves from
batch-all to batch-hard through a weight held in a variable (set by
:class:`hpatches_kit.training.callbacks.MiningCurriculum`), and :class:`GlobalBatchLoss`, which mines
over the embeddings of all replicas.

Our losses divide themselves by the number of replicas (see :func:`scale_for_replicas`); wrap any other
scalar ``(labels, embeddings)`` loss in :class:`ReplicaLoss`. Every loss takes ``(labels, embeddings)``: ``labels`` (B,) integer-valued (may arrive as float),
``embeddings`` (B, D).
"""

from __future__ import annotations

import keras
from keras import ops


def pairwise_l2(e):
    """(B, B) Euclidean distances (gradient-safe at 0)."""
    sq = ops.sum(ops.square(e), axis=1)
    d2 = ops.expand_dims(sq, 1) - 2.0 * ops.matmul(e, ops.transpose(e)) + ops.expand_dims(sq, 0)
    d2 = ops.maximum(d2, 0.0)
    zero = ops.cast(d2 <= 1e-16, d2.dtype)
    d = ops.sqrt(d2 + zero * 1e-16) * (1.0 - zero)
    return d


def _prep(labels, emb):
    emb = ops.cast(emb, "float32")
    labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
    same = ops.expand_dims(labels, 0) == ops.expand_dims(labels, 1)
    eye = ops.eye(ops.shape(labels)[0], dtype="bool")
    pos = ops.logical_and(same, ops.logical_not(eye))
    neg = ops.logical_not(same)
    return emb, pos, neg


def batch_hard_triplet(labels, emb, margin: float = 1.0):
    """Mean over anchors of ``max(0, hardest_pos - hardest_neg + margin)`` (anchors with a positive)."""
    emb, pos, neg = _prep(labels, emb)
    d = pairwise_l2(emb)
    posf, negf = ops.cast(pos, "float32"), ops.cast(neg, "float32")
    hp = ops.max(d * posf, axis=1)
    big = ops.max(d) + 1.0
    hn = ops.min(d + big * (1.0 - negf), axis=1)
    valid = ops.cast(ops.logical_and(ops.any(pos, axis=1), ops.any(neg, axis=1)), "float32")
    l = ops.maximum(hp - hn + margin, 0.0) * valid
    return ops.sum(l) / ops.maximum(ops.sum(valid), 1.0)


def batch_all_triplet(labels, emb, margin: float = 1.0):
    """Mean of ``max(0, d(a,p) - d(a,n) + margin)`` over the valid triplets with a positive loss."""
    emb, pos, neg = _prep(labels, emb)
    d = pairwise_l2(emb)
    t = ops.expand_dims(d, 2) - ops.expand_dims(d, 1) + margin  # [a, p, n]
    mask = ops.cast(ops.logical_and(ops.expand_dims(pos, 2), ops.expand_dims(neg, 1)), "float32")
    t = ops.maximum(t, 0.0) * mask
    n_pos = ops.sum(ops.cast(t > 1e-16, "float32"))
    return ops.sum(t) / ops.maximum(n_pos, 1.0)


@keras.saving.register_keras_serializable(package="hpatches_kit")
class CurriculumTripletLoss(keras.losses.Loss):
    """``(1 - w) * batch_all + w * batch_hard``; ``w`` (``hard_weight``) is a non-trainable variable,
    0 = batch-all, 1 = batch-hard. With ``hard_weight=1`` it is plain batch-hard."""

    def __init__(self, margin: float = 1.0, hard_weight: float = 1.0, name="curriculum_triplet", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = float(margin)
        self.hard_weight = keras.Variable(float(hard_weight), trainable=False, dtype="float32", name="hard_weight")

    def raw(self, y_true, y_pred):
        w = ops.convert_to_tensor(self.hard_weight)
        hard = batch_hard_triplet(y_true, y_pred, self.margin)
        soft = batch_all_triplet(y_true, y_pred, self.margin)
        return (1.0 - w) * soft + w * hard

    def call(self, y_true, y_pred):
        return scale_for_replicas(self.raw(y_true, y_pred))

    def get_config(self):
        return {"margin": self.margin, "hard_weight": float(keras.ops.convert_to_numpy(self.hard_weight)), "name": self.name,
                "reduction": self.reduction}


@keras.saving.register_keras_serializable(package="hpatches_kit")
class BatchHardLoss(keras.losses.Loss):
    def __init__(self, margin: float = 1.0, name="batch_hard", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = float(margin)

    def raw(self, y_true, y_pred):
        """The loss on this batch, not divided by the number of replicas."""
        return batch_hard_triplet(y_true, y_pred, self.margin)

    def call(self, y_true, y_pred):
        return scale_for_replicas(self.raw(y_true, y_pred))

    def get_config(self):
        return {"margin": self.margin, "name": self.name, "reduction": self.reduction}


@keras.saving.register_keras_serializable(package="hpatches_kit")
class BatchAllLoss(BatchHardLoss):
    def __init__(self, margin: float = 1.0, name="batch_all", **kwargs):
        super().__init__(margin=margin, name=name, **kwargs)

    def raw(self, y_true, y_pred):
        return batch_all_triplet(y_true, y_pred, self.margin)


def num_replicas() -> int:
    """Replicas of the current ``tf.distribute`` strategy (1 outside any, or on another backend)."""
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    return int(tf.distribute.get_strategy().num_replicas_in_sync)


def scale_for_replicas(loss):
    """Divide a scalar loss by the number of replicas. Keras 3 does this itself only for losses whose
    ``call`` returns per-sample values: ``reduce_values`` returns a scalar ``call`` result untouched, so
    under ``MirroredStrategy`` a scalar triplet loss would otherwise be summed over replicas (R x too
    large gradients and reported loss)."""
    r = num_replicas()
    return loss if r == 1 else loss * (1.0 / r)


@keras.saving.register_keras_serializable(package="hpatches_kit")
class ReplicaLoss(keras.losses.Loss):
    """Make a ``(labels, embeddings) -> scalar`` loss correct under ``tf.distribute``.

    ``global_batch=False``: each replica computes the loss on its own slice (whole tracks), scaled by
    ``1/R``, so the step equals the mean of the per-slice losses on one device.
    ``global_batch=True``: inside a replica context with R > 1 replicas, embeddings and labels of all
    replicas are gathered (``ReplicaContext.all_gather``, whose gradient sums the upstream gradients over
    replicas and hands each replica its own slice), so hardest negatives come from the global batch; every
    replica computes the same global loss, scaled by ``1/R``, and the optimizer's cross-replica sum gives the
    update one device would make on the whole batch. Labels must be unique per track across the global
    batch (the S x K pipelines give ``repeat(arange(S), K)`` over the global batch).
    Outside a strategy both are the wrapped loss unchanged. ``tf.distribute`` is TensorFlow's, so the gather
    needs the TensorFlow backend."""

    def __init__(self, loss, global_batch: bool = False, name=None, **kwargs):
        loss = keras.losses.get(loss) if isinstance(loss, (str, dict)) else loss
        prefix = "global_" if global_batch else ""
        super().__init__(name=name or f"{prefix}{getattr(loss, 'name', 'loss')}", **kwargs)
        self.loss = loss
        self.global_batch = bool(global_batch)

    def call(self, y_true, y_pred):
        if self.global_batch and num_replicas() > 1:
            import tensorflow as tf

            ctx = tf.distribute.get_replica_context()
            if ctx is not None and ctx.num_replicas_in_sync > 1:
                y_pred = ctx.all_gather(ops.cast(y_pred, "float32"), axis=0)
                y_true = ctx.all_gather(ops.cast(y_true, "float32"), axis=0)
        fn = getattr(self.loss, "raw", None) or (self.loss.call if isinstance(self.loss, keras.losses.Loss) else self.loss)
        value = fn(y_true, y_pred)
        if len(value.shape):
            value = ops.mean(value)
        return scale_for_replicas(ops.cast(value, "float32"))

    def get_config(self):
        return {"loss": keras.losses.serialize(self.loss), "global_batch": self.global_batch, "name": self.name,
                "reduction": self.reduction}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["loss"] = keras.losses.deserialize(config["loss"])
        return cls(**config)


def GlobalBatchLoss(loss, **kwargs):  # noqa: N802 - reads like a class
    """``ReplicaLoss(loss, global_batch=True)``: mine over the embeddings of all replicas."""
    return ReplicaLoss(loss, global_batch=True, **kwargs)


@keras.saving.register_keras_serializable(package="hpatches_kit")
class RandomTripletLoss(keras.losses.Loss):
    """The classic baseline's triplet loss on explicit triplets: ``y_pred`` is ``concat(a, p, n)`` along
    the last axis (``(B, 3D)``), loss ``mean(max(0, ||a-p|| - ||a-n|| + margin))``; ``y_true`` is ignored."""

    def __init__(self, margin: float = 1.0, name="random_triplet", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = float(margin)

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        a, p, n = ops.split(y_pred, 3, axis=-1)
        dp = ops.sqrt(ops.sum(ops.square(a - p), axis=-1) + 1e-12)
        dn = ops.sqrt(ops.sum(ops.square(a - n), axis=-1) + 1e-12)
        return ops.maximum(dp - dn + self.margin, 0.0)  # per sample: Keras averages and scales per replica

    def get_config(self):
        return {"margin": self.margin, "name": self.name, "reduction": self.reduction}
