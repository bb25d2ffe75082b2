"""Training: tf.data pipelines (S x K descriptor batches, denoising pairs, random triplets), distribution,
mining-loss wrappers (the losses themselves are in hpatches_kit.losses), callbacks (collapse detection,
curriculum, atomic checkpoints / resume), the run folder (:mod:`.run`) and one module per trainable thing
(:mod:`.descriptor`, :mod:`.denoise`, :mod:`.vit_adapter`).

The names below load their module (and TensorFlow) on first use, so that importing a submodule for its
constants (e.g. ``hpatches_kit.training.descriptor.DISTANCES`` for a CLI's choices) stays cheap.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    ".pipelines": (
        "descriptor_dataset",
        "denoise_dataset",
        "triplet_dataset",
        "joint_dataset",
        "make_sk_batch",
        "sharded_steps_per_epoch",
    ),
    ".joint": ("train_joint", "compile_joint", "load_joint_start"),
    ".distribute": (
        "get_strategy",
        "check_tracks_per_replica",
        "set_precision",
        "auto_precision",
        "auto_jit",
        "device_kind",
        "distribute_sk_dataset",
        "worker_info",
        "KerasMultiWorkerMirroredStrategy",
    ),
    ".mining": ("CurriculumTripletLoss", "KoLeoRegularised", "GlobalBatchLoss", "ReplicaLoss"),
    ".callbacks": (
        "CollapseDetector",
        "MiningCurriculum",
        "AtomicCheckpoint",
        "ResumeState",
        "load_resume",
        "descriptor_spread",
    ),
    ".run": ("TrainingRun",),
    ".one_cycle": ("OneCycle",),
    ".pairs": ("PairBatches",),
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
