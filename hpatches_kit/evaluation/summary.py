"""Summaries of an :func:`~.api.evaluate` result, driven by the task registry (:mod:`.registry`).

:func:`summarise_evaluation` is the JSON part kept in ``metrics.json``.
"""

from __future__ import annotations

from . import registry

__all__ = ["summarise_evaluation"]


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
