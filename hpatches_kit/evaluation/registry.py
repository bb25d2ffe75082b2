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

import importlib

from .task_interface import Task, TaskContext, compact_summary

__all__ = ["Task", "TaskContext", "BUILTIN", "register", "unregister", "get", "names", "compact_summary"]

#: the built-in tasks, ``name -> "module:attribute"`` (imported on first use, in this order)
BUILTIN = {
    "verification": "hpatches_kit.evaluation.verification:TASK",
    "matching": "hpatches_kit.evaluation.matching:TASK",
    "retrieval": "hpatches_kit.evaluation.retrieval:TASK",
}


_TASKS: dict = {}
_loaded = False


def _load_builtin() -> None:
    global _loaded
    if _loaded:
        return
    builtin = {}
    for name, ref in BUILTIN.items():
        mod, attr = ref.split(":")
        builtin[name] = getattr(importlib.import_module(mod), attr)
    rest = {k: v for k, v in _TASKS.items() if k not in builtin}  # registered before the built-ins loaded
    _TASKS.clear()
    _TASKS.update(builtin)
    _TASKS.update(rest)
    _loaded = True


def register(task: Task, replace: bool = False) -> Task:
    """Add ``task`` (after the tasks already registered); ``replace=True`` to overwrite a name."""
    _load_builtin()
    for attr in ("name", "files", "headline_name", "headline_definition", "plot_label"):
        if not hasattr(task, attr):
            raise TypeError(f"task {task!r} has no attribute {attr!r} (see hpatches_kit.evaluation.registry.Task)")
    if task.name in _TASKS and not replace:
        raise ValueError(f"evaluation task {task.name!r} is already registered")
    _TASKS[task.name] = task
    return task


def unregister(name: str) -> None:
    """Remove the task ``name`` (tests; a built-in comes back only in a new process)."""
    _load_builtin()
    del _TASKS[name]


def get(name: str) -> Task:
    """The task registered as ``name``; ``ValueError`` listing the known names otherwise."""
    _load_builtin()
    try:
        return _TASKS[name]
    except KeyError:
        raise ValueError(f"unknown evaluation task {name!r}; expected one of {', '.join(_TASKS)}") from None


def names() -> tuple:
    """The registered task names, in order."""
    _load_builtin()
    return tuple(_TASKS)
