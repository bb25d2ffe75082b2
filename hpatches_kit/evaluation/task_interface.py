"""The interface of an evaluation task (:class:`Task`, :class:`TaskContext`) and the small helpers the tasks'
summaries share. A leaf module: the task modules import it, :mod:`.registry` collects the tasks."""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

VARIANT_NAMES = {"e": "Easy", "h": "Hard", "t": "Tough"}

__all__ = ["Task", "TaskContext", "compact_summary", "VARIANT_NAMES", "pct", "fmt"]


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


def pct(x) -> float:
    """``x`` (a fraction) in %, as a Python float."""
    return float(100.0 * x)


def fmt(x) -> str:
    """A table cell: ``x`` in a 6-wide, 2-decimal field, ``-`` for None."""
    return "   -  " if x is None else f"{x:6.2f}"


def compact_summary(summary: dict, keep: Seq[str] | None = None, drop: Seq[str] = ()) -> dict:
    """``summary`` restricted to the keys ``keep`` (in that order; all keys when None) minus ``drop``."""
    if keep is None:
        return {k: v for k, v in summary.items() if k not in drop}
    return {k: summary[k] for k in keep if k not in drop}
