"""Which device runs the models and in which dtype policy: :func:`device_kind`, :func:`cpu_has_amx_bf16`,
:func:`auto_precision`, and the one list of dtype policies (:data:`PRECISIONS`; importable without TensorFlow).
Below ``evaluation`` and ``training`` in the layering, so describing
(:func:`hpatches_kit.evaluation.keras_describer`) and training resolve ``"auto"`` by the same rule;
``hpatches_kit.training.distribute`` re-exports them.
"""

from __future__ import annotations

__all__ = [
    "PRECISIONS",
    "check_precision",
    "device_kind",
    "cpu_has_amx_bf16",
    "cpu_has_bf16",
    "auto_precision",
    "inference_precision",
]

#: the dtype policies a run or a describer takes (``--mixed-precision``, ``--precision``); ``auto``: per device
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")


def check_precision(policy: str) -> str:
    """``policy`` if it is one of :data:`PRECISIONS`; ``ValueError`` listing them otherwise."""
    if policy not in PRECISIONS:
        raise ValueError(f"unknown precision {policy!r}; expected one of {', '.join(PRECISIONS)}")
    return policy


def device_kind() -> str:
    import tensorflow as tf

    if tf.config.list_logical_devices("TPU"):
        return "tpu"
    if tf.config.list_logical_devices("GPU"):
        return "gpu"
    return "cpu"


def _cpu_flags(cpuinfo: str | None = None) -> list[str]:
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            return []
    return next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU computes bf16 dot products natively: AMX-BF16 tiles or the AVX512-BF16 instructions
    (``amx_bf16`` / ``avx512_bf16`` in ``/proc/cpuinfo``'s flags; Linux only, else ``False``)."""
    flags = _cpu_flags(cpuinfo)
    return "amx_bf16" in flags or "avx512_bf16" in flags


def cpu_has_amx_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU has AMX with bf16 tiles (``amx_bf16`` in ``/proc/cpuinfo``'s flags; Linux only, else
    ``False``): oneDNN then runs bf16 convolutions and matrix products on the tile units.

    Args:
        cpuinfo: the text of ``/proc/cpuinfo`` (default: read it).
    """
    return "amx_bf16" in _cpu_flags(cpuinfo)


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
        import tensorflow as tf

        try:
            cc = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0]).get(
                "compute_capability"
            )
            return "mixed_bfloat16" if cc and cc[0] >= 8 else "mixed_float16"
        except Exception:  # pragma: no cover - device query failed
            return "mixed_float16"
    return "mixed_bfloat16" if cpu_has_amx_bf16(cpuinfo) else "float32"


def inference_precision(kind: str | None = None, cpuinfo: str | None = None) -> str:
    """The dtype policy describing (inference only) runs fastest in on this device: :func:`auto_precision`,
    except on CPUs with AVX512-BF16 but no AMX, where training stays float32 (its bf16 gradients are slower
    there) but the forward pass alone is faster in bf16: L2-Net described 1.41x float32's patches/s on the
    project's 2-core AVX512-BF16 machine, with the three headline numbers within 0.02 points of float32's
    (``hpatches-eval --split a --precision float32|auto``; docs/real-hpatches.md, "Describing precision and its
    effect").

    Args:
        kind: ``"cpu"``, ``"gpu"`` or ``"tpu"`` (default: :func:`device_kind`).
        cpuinfo: ``/proc/cpuinfo``'s text for the CPU check (default: read it).

    Example:
        >>> inference_precision("cpu", cpuinfo="flags : fpu avx512f avx512_bf16")
        'mixed_bfloat16'
        >>> inference_precision("cpu", cpuinfo="flags : fpu avx2")
        'float32'
    """
    kind = kind or device_kind()
    if kind == "cpu":
        return "mixed_bfloat16" if cpu_has_bf16(cpuinfo) else "float32"
    return auto_precision(kind, cpuinfo)
