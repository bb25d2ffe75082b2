"""The HPatches layout: constants and index arithmetic every module shares.

A leaf module (imports nothing from ``hpatches_kit``), so that data, evaluation, training and the CLIs can all
import it without cycles.

A sequence holds 16 images in *track order*: index 0 is the reference, then ``e1..e5``, ``h1..h5``, ``t1..t5``
(easy, hard, tough geometric-noise variants). Target ``k`` (1..5) of variant ``v`` is at ``1 + 5 * vi + (k - 1)``
where ``vi`` is the variant's position in :data:`VARIANTS`.
"""

from __future__ import annotations

import os

import numpy as np

#: The 16 image types of a sequence, in track order (index 0 is the reference).
TYPES: tuple[str, ...] = ("ref",) + tuple(f"{v}{i}" for v in "eht" for i in range(1, 6))
#: The three difficulty variants of the targets.
VARIANTS: tuple[str, ...] = ("e", "h", "t")
TYPE_INDEX = {t: i for i, t in enumerate(TYPES)}
#: Targets per variant.
TARGETS_PER_VARIANT = 5
HPATCHES_PATCH_SIZE = 65
NHPATCHES_PATCH_SIZE = 32
NOISE_SUFFIX = "_noise"


def type_index(t: str) -> int:
    """Track index of image type ``t`` (``"ref"`` -> 0, ``"e1"`` -> 1, ..., ``"t5"`` -> 15)."""
    try:
        return TYPE_INDEX[t]
    except KeyError:
        raise ValueError(f"unknown image type {t!r}; expected one of {', '.join(TYPES)}") from None


def target_indices(variant: str) -> range:
    """Track indices of the five targets of ``variant`` (``"e"`` -> 1..5, ``"h"`` -> 6..10, ``"t"`` -> 11..15)."""
    vi = VARIANTS.index(variant)
    start = 1 + TARGETS_PER_VARIANT * vi
    return range(start, start + TARGETS_PER_VARIANT)


def variant_type_index(variant: str, t) -> np.ndarray:
    """Image id 0..5 of a task file -> track index for a variant (0 -> ref, k -> ``<variant>k``)."""
    vi = VARIANTS.index(variant)
    t = np.asarray(t, np.int64)
    return np.where(t == 0, 0, 1 + TARGETS_PER_VARIANT * vi + (t - 1))


def sequence_kind(name) -> str:
    """``"illum"`` for ``i_*`` sequences, ``"view"`` for ``v_*``, else ``"unknown"``."""
    base = os.path.basename(str(name))
    if base.startswith("i_"):
        return "illum"
    if base.startswith("v_"):
        return "view"
    return "unknown"
