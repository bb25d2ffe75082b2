"""Distribution strategies, mixed precision and the replica split of S x K batches.

* :func:`get_strategy` -- ``"auto"``: TPU when a cluster resolver finds one, ``MirroredStrategy`` for >= 2
  GPUs, ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` is set, else the default strategy.
* Batches are split across replicas by *whole tracks*: Keras/tf.distribute cut the global batch into
  ``R`` consecutive slices, and batches are track-major, so each slice holds ``S/R`` complete tracks when
  ``S % R == 0`` (enforced by :func:`check_tracks_per_replica`).
* Loss scaling: Keras divides each replica's loss by ``R`` and sums the gradients, so the step equals the
  mean of the per-slice losses computed on one device. With global-batch mining
  (:class:`hpatches_kit.training.mining.GlobalBatchLoss`) every replica mines over the gathered global batch.
* Several workers (``MultiWorkerMirroredStrategy``): :func:`distribute_sk_dataset` builds each worker's input
  from its own share of the tracks or TFRecord files (``make(num_shards, shard_index)``, e.g.
  :func:`hpatches_kit.training.pipelines.descriptor_dataset` with those arguments), so the global batch is the
  workers' parts side by side: no track twice, none left out, labels unique across it. :func:`worker_info`:
  ``chief`` is the one worker that writes checkpoints, logs and the final model.
* :func:`set_precision` -- ``float32``, ``mixed_float16``, ``mixed_bfloat16`` or ``auto`` (per device).
"""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from ..models.precision import (  # noqa: F401 (re-exported)
    PRECISIONS,
    auto_precision,
    check_precision,
    cpu_has_amx_bf16,
    device_kind,
)

STRATEGIES = ("auto", "tpu", "mirrored", "multiworker", "default")


def _tpu_resolver():
    try:
        r = tf.distribute.cluster_resolver.TPUClusterResolver()
        r.master()  # raises when there is no TPU
        return r
    except (ValueError, RuntimeError, tf.errors.NotFoundError, KeyError, AttributeError):
        return None


class KerasMultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """``tf.distribute.MultiWorkerMirroredStrategy`` whose ``reduce`` takes what Keras 3's ``fit`` hands it.
    Plain ``MultiWorkerMirroredStrategy`` cannot ``fit`` at all under Keras 3.15 / TF 2.21 (found by the
    two-process test, ``tests/test_train_multiworker.py``):

    * before training, Keras reduces the first ``(x, y)`` batch (``_maybe_symbolic_build``); the multi-worker
      ``reduce`` tries to turn the whole tuple into one tensor (``ValueError: Attempt to convert a value
      (PerReplica...)``). Here a nested structure is reduced value by value, as ``MirroredStrategy`` does;
    * after every step Keras reduces the per-replica scalar logs (the loss) with ``axis=0`` (``Invalid reduction
      dimension 0 for input with 0 dimensions``). Here a scalar is reduced across replicas (``axis=None``): the
      mean of the replicas' values, what Keras computes under the other strategies.

    Everything else is the parent's (the same collectives, variables and input handling)."""

    def reduce(self, reduce_op, value, axis):
        if isinstance(value, (tuple, list, dict)):
            parent = super()
            return tf.nest.map_structure(lambda v: parent.reduce(reduce_op, v, axis), value)
        if axis is not None:
            local = self.experimental_local_results(value)[0]
            if getattr(local, "shape", None) is not None and local.shape.rank == 0:
                axis = None
        return super().reduce(reduce_op, value, axis)


def get_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """A ``tf.distribute`` strategy by name (see module docstring)."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}")
    if name in ("tpu", "auto"):
        r = (
            _tpu_resolver()
            if (
                name == "tpu"
                or os.environ.get("TPU_NAME")
                or os.path.exists("/dev/accel0")
                or os.environ.get("COLAB_TPU_ADDR")
            )
            else None
        )
        if r is not None:
            tf.config.experimental_connect_to_cluster(r)
            tf.tpu.experimental.initialize_tpu_system(r)
            return tf.distribute.TPUStrategy(r)
        if name == "tpu":
            raise RuntimeError("strategy 'tpu' requested but no TPU was found by TPUClusterResolver")
    if name == "multiworker" or (name == "auto" and os.environ.get("TF_CONFIG")):
        if name == "multiworker" and not os.environ.get("TF_CONFIG"):
            raise RuntimeError("strategy 'multiworker' needs TF_CONFIG (cluster spec and task) in the environment")
        json.loads(os.environ["TF_CONFIG"])  # fail early on malformed JSON
        return KerasMultiWorkerMirroredStrategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "auto" and len(tf.config.list_logical_devices("GPU")) >= 2:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def check_tracks_per_replica(tracks_per_batch: int, strategy: tf.distribute.Strategy) -> int:
    """Number of tracks per replica; raises unless ``S`` splits into whole tracks per replica."""
    r = strategy.num_replicas_in_sync
    if tracks_per_batch % r:
        raise ValueError(
            f"tracks per batch S={tracks_per_batch} must be divisible by the {r} replicas so every "
            "replica gets whole tracks"
        )
    return tracks_per_batch // r


def worker_info(strategy: tf.distribute.Strategy | None = None) -> dict:
    """``{"workers", "index", "chief", "task"}`` of this process in ``strategy``'s cluster (one worker, index 0,
    chief, outside a multi-worker strategy). The chief is task ``chief:0``, or ``worker:0`` when the cluster
    has no ``chief`` task (TensorFlow's rule)."""
    strategy = strategy or tf.distribute.get_strategy()
    resolver = (
        getattr(strategy, "cluster_resolver", None)
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        else None
    )
    if resolver is None or not resolver.cluster_spec().as_dict():
        return {"workers": 1, "index": 0, "chief": True, "task": None}
    spec = resolver.cluster_spec().as_dict()
    order = [("chief", i) for i in range(len(spec.get("chief", [])))] + [
        ("worker", i) for i in range(len(spec.get("worker", [])))
    ]
    me = (resolver.task_type, int(resolver.task_id))
    return {"workers": len(order), "index": order.index(me), "chief": order.index(me) == 0, "task": f"{me[0]}:{me[1]}"}


def distribute_sk_dataset(strategy: tf.distribute.Strategy, make, tracks_per_batch: int, views: int):
    """The S x K training input for ``strategy``: ``make(num_shards, shard_index)`` must return the dataset of
    one worker's ``S / num_shards`` tracks of each global batch (labels offset so they are unique across the
    global batch), e.g. ``lambda n, i: descriptor_dataset(tracks, S, K, num_shards=n, shard_index=i)``.

    One worker: ``make(1, 0)`` (global batches; Keras splits them over the local replicas by whole tracks).
    Several workers: ``strategy.distribute_datasets_from_function``; worker ``w`` builds ``make(W, w)`` from its
    own share and, with ``L`` local replicas, cuts each of its batches into ``L`` consecutive per-replica
    batches of ``S / R`` whole tracks (``rebatch``), so replica ``w * L + l`` gets tracks
    ``[(w * L + l) * S / R, ...)`` of the global batch -- the slice it would get from one global batch.

    Returns:
        A ``tf.data.Dataset`` (one worker) or a ``tf.distribute.DistributedDataset``; ``model.fit`` takes both.
    """
    per_replica = check_tracks_per_replica(tracks_per_batch, strategy)
    if worker_info(strategy)["workers"] == 1:
        return make(1, 0)

    def fn(ctx: tf.distribute.InputContext):
        ds = make(ctx.num_input_pipelines, ctx.input_pipeline_id)
        if ctx.num_replicas_in_sync > ctx.num_input_pipelines:  # several replicas on this worker
            ds = ds.rebatch(per_replica * views, drop_remainder=True)
        return ds

    return strategy.distribute_datasets_from_function(fn)


def auto_jit(kind: str | None = None) -> bool:
    """XLA ``jit_compile`` default: on for GPU/TPU, off on CPU (measured much slower there)."""
    return (kind or device_kind()) in ("gpu", "tpu")


def set_precision(policy: str = "float32") -> str:
    """Set Keras's global dtype policy; returns the policy set. Losses stay float32 (our models end in a
    float32 layer and our losses cast to float32); ``mixed_float16`` gets loss scaling from Keras."""
    if check_precision(policy) == "auto":
        policy = auto_precision()
    keras.mixed_precision.set_global_policy(policy)
    return policy
