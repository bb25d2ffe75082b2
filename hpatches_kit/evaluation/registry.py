"""The evaluation task registry: one small interface (:class:`Task`) and ``register`` / ``get`` / ``names``.

:func:`~.api.evaluate`, :func:`~.api.format_summary`, :func:`~.summary.summarise_evaluation`, the comparison
tables (:mod:`.compare`) and the bar plot (:mod:`hpatches_kit.plots.eval`) iterate the registry, in
registration order (the official tasks first: verification, matching, retrieval). Adding a task is one module
defining a ``TASK`` object (the interface is :mod:`.task_interface`, re-exported here) plus one entry in
:data:`BUILTIN` (or a :func:`register` call at run time). The built-ins are imported on first use, so the
task modules (which import only the leaf :mod:`.task_interface`) never import this module back.

Examples:
    >>> from hpatches_kit.evaluation import registry
    >>> registry.names()[:3]
    ('verification', 'matching', 'retrieval')
    >>> registry.get("matching").headline_name
    'matching mAP'
"""

from __future__ import annotations

from ..registry import Registry
from .task_interface import Task, TaskContext, compact_summary

__all__ = [
    "Task",
    "TaskContext",
    "BUILTIN",
    "TASKS",
    "REGISTRY",
    "register",
    "unregister",
    "get",
    "names",
    "entries",
    "compact_summary",
]

#: the built-in tasks, ``name -> "module:attribute"`` (imported on first use, in this order)
BUILTIN = {
    "verification": "hpatches_kit.evaluation.verification:TASK",
    "matching": "hpatches_kit.evaluation.matching:TASK",
    "retrieval": "hpatches_kit.evaluation.retrieval:TASK",
}
#: the official tasks, in the order of the results and the printed summary (what :func:`~.api.evaluate` runs)
TASKS = tuple(BUILTIN)


def _check(name: str, task) -> Task:
    for attr in ("name", "files", "headline_name", "headline_definition", "plot_label"):
        if not hasattr(task, attr):
            raise TypeError(f"task {task!r} has no attribute {attr!r} (see hpatches_kit.evaluation.registry.Task)")
    return task


#: every evaluation task by name (:class:`~hpatches_kit.registry.Registry` of :class:`Task`); ``register(task)``
#: adds one (``replace=True`` to overwrite a run-time one)
REGISTRY = Registry("evaluation task", builtin=BUILTIN, group="hpatches_kit.tasks", make=_check)
register, unregister, get, names, entries = REGISTRY.verbs()
