"""Training: tf.data pipelines (S x K descriptor batches, denoising pairs, random triplets), distribution,
mining-loss wrappers (the losses themselves are in hpatches_kit.losses) and callbacks (collapse detection, curriculum, atomic checkpoints / resume)."""

from .pipelines import (denoise_dataset, descriptor_dataset, descriptor_dataset_from_tfrecords, make_sk_batch,
                        shard_tracks, sharded_steps_per_epoch, steps_per_epoch, triplet_dataset)
from .distribute import (auto_jit, auto_precision, check_tracks_per_replica, device_kind, distribute_sk_dataset,
                         get_strategy, is_chief, set_precision, worker_info)
from .mining import CurriculumTripletLoss, GlobalBatchLoss, KoLeoRegularised, ReplicaLoss
from .callbacks import (AtomicCheckpoint, CollapseDetector, MiningCurriculum, ResumeState, descriptor_spread,
                        load_resume)

__all__ = [
    "descriptor_dataset", "descriptor_dataset_from_tfrecords", "denoise_dataset", "triplet_dataset",
    "make_sk_batch", "steps_per_epoch", "shard_tracks", "sharded_steps_per_epoch", "distribute_sk_dataset",
    "is_chief", "worker_info", "get_strategy", "check_tracks_per_replica", "set_precision",
    "auto_precision", "auto_jit", "device_kind", "CurriculumTripletLoss", "KoLeoRegularised",
    "GlobalBatchLoss", "ReplicaLoss", "CollapseDetector", "MiningCurriculum",
    "AtomicCheckpoint", "ResumeState", "load_resume", "descriptor_spread",
]
