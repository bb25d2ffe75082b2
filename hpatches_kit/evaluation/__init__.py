"""HPatches evaluation: the official verification / matching / retrieval protocol, exact and vectorised.

Public API: :func:`evaluate`, :func:`format_summary`, :func:`compute_descriptors`, :func:`get_baseline`,
:func:`keras_describer`, descriptor CSV folders (:func:`read_descriptor_dir`, :func:`write_descriptor_dir`),
task files (:mod:`.tasks`) and the official metrics (:mod:`.metrics`).
"""

from .api import evaluate, format_summary
from .describers import (
    BASELINES,
    compute_descriptors,
    get_baseline,
    keras_describer,
    read_descriptor_dir,
    write_descriptor_dir,
)
from .descriptor_set import DescriptorSet
from .metrics import pr, roc, tpfp
from .registry import TASKS
from .retrieval import POOL_SIZES

__all__ = [
    "evaluate",
    "format_summary",
    "compute_descriptors",
    "get_baseline",
    "keras_describer",
    "read_descriptor_dir",
    "write_descriptor_dir",
    "BASELINES",
    "POOL_SIZES",
    "TASKS",
    "DescriptorSet",
    "pr",
    "roc",
    "tpfp",
]
