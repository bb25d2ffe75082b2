"""Summaries of an :func:`~.api.evaluate` result, driven by the task registry (:mod:`.registry`).

:func:`summarise_evaluation` is the JSON part kept in ``metrics.json``; ``pct``, ``fmt`` and
``VARIANT_NAMES`` are the number and text helpers the tasks' summaries share.
"""

from __future__ import annotations

from . import registry

VARIANT_NAMES = {"e": "Easy", "h": "Hard", "t": "Tough"}

__all__ = ["summarise_evaluation", "VARIANT_NAMES", "pct", "fmt"]


def pct(x) -> float:
    """``x`` (a fraction) in %, as a Python float."""
    return float(100.0 * x)


def fmt(x) -> str:
    """A table cell: ``x`` in a 6-wide, 2-decimal field, ``-`` for None."""
    return "   -  " if x is None else f"{x:6.2f}"


def summarise_evaluation(res: dict) -> dict:
    """The JSON part of an :func:`hpatches_kit.evaluation.evaluate` result kept in ``metrics.json``.

    Args:
        res: the result of :func:`~hpatches_kit.evaluation.evaluate`.

    Returns:
        ``{"meta", "headline": {task: mAP in %}, task: compact summary, ...}`` for every registered task in
        ``res`` (in registry order): its headline, per-variant ``table`` and averages, without the ROC/PR
        curves and the per-sequence matching numbers (each task's :meth:`~.registry.Task.compact`).

    Examples:
        >>> summarise_evaluation({"meta": {"split": "a"}})
        {'meta': {'split': 'a'}, 'headline': {}}
    """
    present = [t for t in registry.names() if t in res]
    out = {"meta": res.get("meta", {}), "headline": {t: res[t]["headline"]["value"] for t in present}}
    for t in present:
        out[t] = registry.get(t).compact(res[t])
    return out
