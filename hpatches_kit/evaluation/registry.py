"""The evaluation task registry: one small interface (:class:`Task`) and ``register`` / ``get`` / ``names``.

:func:`~.api.evaluate`, :func:`~.api.format_summary`, :func:`~.summary.summarise_evaluation`, the comparison
tables (:mod:`.compare`) and the bar plot (:mod:`hpatches_kit.plots.eval`) iterate the registry, in
registration order (the official tasks first: verification, matching, retrieval). Adding a task is one module
defining a ``TASK`` object plus one entry in :data:`BUILTIN` (or a :func:`register` call at run time).

Examples:
    >>> from hpatches_kit.evaluation import registry
    >>> registry.names()[:3]
    ('verification', 'matching', 'retrieval')
    >>> registry.get("matching").headline_name
    'matching mAP'
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Protocol, Sequence as Seq, runtime_checkable

__all__ = ["Task", "TaskContext", "BUILTIN", "register", "unregister", "get", "names", "compact_summary"]

#: the built-in tasks, ``name -> "module:attribute"`` (imported on first use, in this order)
BUILTIN = {
    "verification": "hpatches_kit.evaluation.verification:TASK",
    "matching": "hpatches_kit.evaluation.matching:TASK",
    "retrieval": "hpatches_kit.evaluation.retrieval:TASK",
}


@dataclass
class TaskContext:
    """What a task's :meth:`Task.run` gets besides the descriptors.

    Args:
        sequences: the test sequences, in order.
        split: the split name (it names the official task files).
        distance: ``"L2"`` or ``"L1"``.
        progress: show progress bars.
        files: the :class:`~.tasks.TaskSet` holding the task files listed in the tasks' ``files`` (None when
            no task needs any).
    """

    sequences: list
    split: str
    distance: str = "L2"
    progress: bool = False
    files: Any = None


@runtime_checkable
class Task(Protocol):
    """One evaluation task.

    Attributes:
        name: the key of the task in the results and on the command line.
        files: the official task-file kinds it reads from :attr:`TaskContext.files` (``"verification"``,
            ``"retrieval"``), ``()`` for none.
        headline_name: the name of its headline number (``"... mAP"``).
        headline_definition: one sentence defining the headline number.
        plot_label: x-axis label of its panel in the bar plot.
    """

    name: str
    files: tuple
    headline_name: str
    headline_definition: str
    plot_label: str

    def run(self, ds, ctx: TaskContext) -> dict:
        """The JSON-ready summary on the :class:`~.descriptor_set.DescriptorSet` ``ds``: at least
        ``{"headline": {"name", "value" (in %), "definition"}}``, plus whatever the task reports."""

    def compact(self, summary: dict) -> dict:
        """The part of :meth:`run`'s summary kept in ``metrics.json`` (no curves, no per-sequence numbers)."""

    def format(self, summary: dict) -> list:
        """Lines of the plain-text summary (:func:`~.api.format_summary`), starting with a blank line."""

    def variant_points(self, summary: dict) -> dict:
        """``{"e", "h", "t"} -> [numbers in %]``: the per-variant markers of the bar plot; their mean is the
        per-variant score of the comparison tables."""


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


def compact_summary(summary: dict, keep: Seq[str] | None = None, drop: Seq[str] = ()) -> dict:
    """``summary`` restricted to the keys ``keep`` (in that order; all keys when None) minus ``drop``."""
    if keep is None:
        return {k: v for k, v in summary.items() if k not in drop}
    return {k: summary[k] for k in keep if k not in drop}
