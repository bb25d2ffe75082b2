"""Benchmarks: one registry for everything ``hpatches-eval`` runs (:mod:`.registry`).

Built-ins: ``hpatches`` (the official verification / matching / retrieval tasks, through the task registry
:mod:`hpatches_kit.evaluation.registry`), ``brown`` (FPR95 + revisited mAP), ``sequences`` (full-image
matching), ``pairs`` (image-pair matching of a ViT) and ``real`` (real validation next to SIFT and RootSIFT).

This package sits above :mod:`hpatches_kit.evaluation` and :mod:`hpatches_kit.plots` (it calls both; neither
imports it) and below :mod:`hpatches_kit.cli`.
"""

from .registry import (
    BUILTIN,
    Benchmark,
    default_format,
    entries,
    get,
    json_ready,
    names,
    namespace,
    register,
    unregister,
)

__all__ = [
    "Benchmark",
    "BUILTIN",
    "register",
    "unregister",
    "get",
    "names",
    "entries",
    "json_ready",
    "default_format",
    "namespace",
]
