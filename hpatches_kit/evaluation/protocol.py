"""The three HPatches tasks (verification, matching, retrieval), vectorised, with the official semantics.

A re-export module: the descriptor set lives in :mod:`.descriptor_set`, the tasks in :mod:`.verification`,
:mod:`.matching` and :mod:`.retrieval`, the task registry in :mod:`.registry`. Descriptors are
``{sequence: {type: (N, D) float32}}`` (types ``ref, e1..e5, h1..h5, t1..t5``). See ``docs/evaluation.md``
for the exact definitions and the summaries.
"""

from __future__ import annotations

from .descriptor_set import DescriptorSet
from .matching import eval_matching, matching_ap, nearest_neighbours, nearest_neighbours_multi
from .metrics import CURVE_POINTS
from .registry import TASKS
from .retrieval import POOL_SIZES, eval_retrieval
from .threads import compute_threads
from .verification import eval_verification, verification_distances

__all__ = [
    "POOL_SIZES",
    "TASKS",
    "DescriptorSet",
    "eval_verification",
    "eval_matching",
    "eval_retrieval",
    "verification_distances",
    "nearest_neighbours",
    "nearest_neighbours_multi",
    "matching_ap",
    "compute_threads",
    "CURVE_POINTS",
]
