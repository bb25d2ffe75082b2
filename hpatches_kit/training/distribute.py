"""Distribution strategies, mixed precision and the replica split of S x K batches.

* :func:`get_strategy` -- ``"auto"``: TPU when a cluster resolver finds one, ``MirroredStrategy`` for >= 2
  GPUs, ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` is set, else the default strategy.
* Batches are split across replicas by *whole tracks*: Keras/tf.distribute cut the global batch into
  ``R`` consecutive slices, and batches are track-major, so each slice holds ``S/R`` complete tracks when
  ``S % R == 0`` (enforced by :func:`check_tracks_per_replica`).
* Loss scaling: Keras divides each replica's loss by ``R`` and sums the gradients, so the step equals the
  mean of the per-slice losses computed on one device. With global-batch mining
  (:class:`hpatches_kit.training.mining.GlobalBatchLoss`) every replica mines over the gathered global batch.
* :func:`set_precision` -- ``float32``, ``mixed_float16``, ``mixed_bfloat16`` or ``auto`` (per device).
"""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

STRATEGIES = ("auto", "tpu", "mirrored", "multiworker", "default")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")


def _tpu_resolver():
    try:
        r = tf.distribute.cluster_resolver.TPUClusterResolver()
        r.master()  # raises when there is no TPU
        return r
    except (ValueError, RuntimeError, tf.errors.NotFoundError, KeyError, AttributeError):
        return None


def get_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """A ``tf.distribute`` strategy by name (see module docstring)."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}")
    if name in ("tpu", "auto"):
        r = _tpu_resolver() if (name == "tpu" or os.environ.get("TPU_NAME") or os.path.exists("/dev/accel0")
                                or os.environ.get("COLAB_TPU_ADDR")) else None
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
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "auto" and len(tf.config.list_logical_devices("GPU")) >= 2:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def check_tracks_per_replica(tracks_per_batch: int, strategy: tf.distribute.Strategy) -> int:
    """Number of tracks per replica; raises unless ``S`` splits into whole tracks per replica."""
    r = strategy.num_replicas_in_sync
    if tracks_per_batch % r:
        raise ValueError(f"tracks per batch S={tracks_per_batch} must be divisible by the {r} replicas so every "
                         "replica gets whole tracks")
    return tracks_per_batch // r


def device_kind() -> str:
    if tf.config.list_logical_devices("TPU"):
        return "tpu"
    if tf.config.list_logical_devices("GPU"):
        return "gpu"
    return "cpu"


def cpu_has_amx_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU has AMX with bf16 tiles (``amx_bf16`` in ``/proc/cpuinfo``'s flags; Linux only, else
    ``False``): oneDNN then runs bf16 convolutions and matrix products on the tile units.

    Args:
        cpuinfo: the text of ``/proc/cpuinfo`` (default: read it).
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            return False
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return "amx_bf16" in flags


def auto_precision(kind: str | None = None, cpuinfo: str | None = None) -> str:
    """Default dtype policy per device.

    - TPU: ``mixed_bfloat16``.
    - GPU: ``mixed_bfloat16`` on Ampere and newer (compute capability >= 8), else ``mixed_float16``.
    - CPU with AMX-BF16 (:func:`cpu_has_amx_bf16`): ``mixed_bfloat16``. Measured on the project's 2-core
      AMX machines: the L2-Net step 1.6-2.5x float32 (``benchmarks/train_speed.py``), and the default run
      in bf16 with 40 epochs (the same wall budget) beats the float32 27-epoch one on all six real-validation
      numbers (docs/training.md, "bf16 vs float32").
    - Other CPUs: ``float32`` (bf16 is emulated there, not faster).

    Args:
        kind: ``"cpu"``, ``"gpu"`` or ``"tpu"`` (default: :func:`device_kind`).
        cpuinfo: ``/proc/cpuinfo``'s text for the CPU check (default: read it).
    """
    kind = kind or device_kind()
    if kind == "tpu":
        return "mixed_bfloat16"
    if kind == "gpu":
        try:
            cc = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0]).get("compute_capability")
            return "mixed_bfloat16" if cc and cc[0] >= 8 else "mixed_float16"
        except Exception:  # pragma: no cover - device query failed
            return "mixed_float16"
    return "mixed_bfloat16" if cpu_has_amx_bf16(cpuinfo) else "float32"


def auto_jit(kind: str | None = None) -> bool:
    """XLA ``jit_compile`` default: on for GPU/TPU, off on CPU (measured much slower there)."""
    return (kind or device_kind()) in ("gpu", "tpu")


def set_precision(policy: str = "float32") -> str:
    """Set Keras's global dtype policy; returns the policy set. Losses stay float32 (our models end in a
    float32 layer and our losses cast to float32); ``mixed_float16`` gets loss scaling from Keras."""
    if policy not in PRECISIONS:
        raise ValueError(f"unknown precision {policy!r}; expected one of {', '.join(PRECISIONS)}")
    if policy == "auto":
        policy = auto_precision()
    keras.mixed_precision.set_global_policy(policy)
    return policy
