"""Training-side wrappers around the losses of :mod:`hpatches_kit.losses` (``keras.ops``).

The losses themselves (batch-hard, batch-all, semi-hard, soft margin, HardNet, random triplets) live in
:mod:`hpatches_kit.losses`; this module adds what only the trainer needs:

* :class:`CurriculumTripletLoss` (defined in :mod:`hpatches_kit.losses.curriculum`, re-exported here) --
  ``(1 - w) * batch_all + w * batch_hard`` with ``w`` in a variable set by
  :class:`hpatches_kit.training.callbacks.MiningCurriculum` (batch-all first, then batch-hard).
* :class:`ReplicaLoss` / :func:`GlobalBatchLoss` -- per-replica or global-batch (``all_gather``) mining under
  ``tf.distribute``.

All are :class:`hpatches_kit.losses.base.MetricLoss` subclasses (a function plus its keyword arguments; the
wrapped loss is serialised with ``keras.saving.serialize_keras_object``): ``__call__`` keeps the labels' own
(integer) dtype and divides the value by the number of replicas exactly once; ``call`` is the unscaled loss.
Every loss takes ``(labels, embeddings)``: ``labels`` (B,) track ids, ``embeddings`` (B, D).
"""

from __future__ import annotations

import keras
from keras import ops

from ..losses.base import MetricLoss
from ..losses.curriculum import CurriculumTripletLoss
from ..losses.distances import check_views
from ..losses.embedding import koleo_loss

__all__ = [
    "CurriculumTripletLoss",
    "KoLeoRegularised",
    "ReplicaLoss",
    "GlobalBatchLoss",
    "num_replicas",
    "unscaled_loss",
]


def num_replicas() -> int:
    """Replicas of the current ``tf.distribute`` strategy (1 outside any, or on another backend)."""
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    return int(tf.distribute.get_strategy().num_replicas_in_sync)


def unscaled_loss(loss, y_true, y_pred):
    """The value of ``loss`` on one batch, *not* divided by the number of replicas: ``loss.call`` for a
    ``keras.losses.Loss`` (a :class:`~hpatches_kit.losses.base.LabelledLoss`'s ``__call__`` would scale it),
    the callable otherwise. Per-sample values are averaged to a scalar."""
    fn = loss.call if isinstance(loss, keras.losses.Loss) else loss
    value = fn(y_true, y_pred)
    if len(value.shape):
        value = ops.mean(value)
    return ops.cast(value, "float32")


def _replica_loss(y_true, y_pred, loss, global_batch=False):
    """``loss`` unscaled (:func:`unscaled_loss`) on this replica's batch or, with ``global_batch`` inside a
    replica context of R > 1 replicas, on the batch gathered from all replicas (labels in their own dtype)."""
    if global_batch and num_replicas() > 1:
        import tensorflow as tf

        ctx = tf.distribute.get_replica_context()
        if ctx is not None and ctx.num_replicas_in_sync > 1:
            y_pred = ctx.all_gather(y_pred, axis=0)
            y_true = ctx.all_gather(ops.reshape(y_true, (-1,)), axis=0)
    return unscaled_loss(loss, y_true, y_pred)


def _koleo_regularised(y_true, y_pred, loss, weight=0.1, views_per_track=2, eps=1e-8):
    """``loss`` (unscaled) + ``weight * koleo_loss`` on rows ``0, K, 2K, ...`` (one view per track)."""
    check_views(views_per_track, y_pred.shape[0])
    base = unscaled_loss(loss, y_true, y_pred)
    return base + weight * ops.cast(koleo_loss(y_pred[::views_per_track], eps), "float32")


@keras.saving.register_keras_serializable(package="hpatches_kit")
class ReplicaLoss(MetricLoss):
    """Make a ``(labels, embeddings) -> scalar`` loss correct under ``tf.distribute``.

    ``global_batch=False``: each replica computes the loss on its own slice (whole tracks), scaled by
    ``1/R``, so the step equals the mean of the per-slice losses on one device (the package losses already
    do this themselves; the wrapper is for any other scalar loss).
    ``global_batch=True``: inside a replica context with R > 1 replicas, embeddings and labels of all
    replicas are gathered (``ReplicaContext.all_gather``, whose gradient sums the upstream gradients over
    replicas and hands each replica its own slice), so hardest negatives come from the global batch; every
    replica computes the same global loss, scaled by ``1/R``, and the optimizer's cross-replica sum gives the
    update one device would make on the whole batch. Labels must be unique per track across the global
    batch (the S x K pipelines give ``repeat(arange(S), K)`` over the global batch); they are gathered in
    their own dtype (never cast to float).
    The wrapped loss is evaluated unscaled (:func:`unscaled_loss`) and the result is scaled once, by
    :class:`~hpatches_kit.losses.base.LabelledLoss`. Outside a strategy both modes equal the wrapped loss. The
    gather needs the TensorFlow backend (``tf.distribute``)."""

    def __init__(self, loss, global_batch: bool = False, name=None, **kwargs):
        loss = keras.losses.get(loss) if isinstance(loss, (str, dict)) else loss
        prefix = "global_" if global_batch else ""
        super().__init__(
            _replica_loss,
            dict(loss=loss, global_batch=bool(global_batch)),
            name=name or f"{prefix}{getattr(loss, 'name', 'loss')}",
            **kwargs,
        )


@keras.saving.register_keras_serializable(package="hpatches_kit")
class KoLeoRegularised(MetricLoss):
    """``loss + weight * koleo_loss(one view per track)``: the wrapped ``(labels, embeddings)`` loss (unscaled)
    plus the KoLeo entropy regulariser (:func:`hpatches_kit.losses.koleo_loss`, Sablayrolles et al. 2019) on
    the first view of every track of an S x K track-major batch (rows ``0, K, 2K, ...``). Taking one view per
    track keeps KoLeo from pushing the views of a track apart (their nearest neighbour is usually each other);
    it spreads distinct tracks over the sphere."""

    def __init__(self, loss, weight: float = 0.1, views_per_track: int = 2, eps: float = 1e-8, name=None, **kwargs):
        loss = keras.losses.get(loss) if isinstance(loss, (str, dict)) else loss
        super().__init__(
            _koleo_regularised,
            dict(loss=loss, weight=float(weight), eps=float(eps), views_per_track=check_views(views_per_track, None)),
            name=name or f"{getattr(loss, 'name', 'loss')}_koleo",
            **kwargs,
        )


def GlobalBatchLoss(loss, **kwargs):  # noqa: N802 - reads like a class
    """``ReplicaLoss(loss, global_batch=True)``: mine over the embeddings of all replicas."""
    return ReplicaLoss(loss, global_batch=True, **kwargs)
