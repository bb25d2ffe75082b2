"""The benchmark registry: every benchmark ``hpatches-eval`` runs is one :class:`Benchmark` entry.

An entry carries everything a front end needs, so no command-line code branches on a benchmark's name:

* ``add_arguments(parser)``: its own options (``argparse``); the CLI adds the common ones (``--json``,
  ``--plots``, ``--no-progress``, ``-q/-v``, ``--import``) to every sub-command;
* ``run(options) -> result``: the library call; ``options`` is the parsed namespace (its own options plus
  ``json``, ``plots`` and ``progress``), the result a JSON-ready ``dict``. Keys starting with ``_`` are
  in-memory extras for ``plots`` (arrays) and never reach the JSON (:func:`json_ready`);
* ``format(result) -> str``: the summary table printed on stdout (default: :func:`default_format`);
* ``plots(result, out_dir) -> [paths]``: the figures written for ``--plots`` (default: none);
* ``outputs``: ``{dest: "file" | "dir" | KIND}`` of further output options the CLI checks before the run (KIND: a
  folder replaced whole by ``data.fsio.build_then_swap(path, KIND)``, e.g. ``"descriptors"``);
* ``aliases``: old spellings that select it (``(("benchmark", "brown"),)`` = ``--benchmark brown``).

The built-in entries (:data:`BUILTIN`: ``hpatches``, ``brown``, ``sequences``, ``pairs``, ``real``) are
imported on first use. A user's benchmark is one function plus one :func:`register` call, in a module the
CLI loads with ``hpatches-eval --import MODULE NAME ...``.

Example:
    >>> from hpatches_kit import benchmarks
    >>> def count_to(options):
    ...     return {"numbers": list(range(1, options.n + 1))}
    >>> _ = benchmarks.register("count-to", count_to,
    ...                         add_arguments=lambda p: p.add_argument("--n", type=int, default=3))
    >>> benchmarks.get("count-to").run(benchmarks.namespace(n=2))
    {'numbers': [1, 2]}
    >>> benchmarks.unregister("count-to")
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..registry import Registry

__all__ = [
    "Benchmark",
    "REGISTRY",
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

#: the built-in benchmarks, ``name -> "module:attribute"`` (imported on first use, in this order)
BUILTIN = {
    "hpatches": "hpatches_kit.benchmarks.hpatches:BENCHMARK",
    "brown": "hpatches_kit.benchmarks.brown:BENCHMARK",
    "sequences": "hpatches_kit.benchmarks.sequences:BENCHMARK",
    "pairs": "hpatches_kit.benchmarks.pairs:BENCHMARK",
    "real": "hpatches_kit.benchmarks.real:BENCHMARK",
}

#: names the CLI keeps for itself (not benchmarks)
RESERVED = ("compare",)


def json_ready(result: dict) -> dict:
    """``result`` without its in-memory extras (top-level keys starting with ``_``)."""
    return {k: v for k, v in result.items() if not str(k).startswith("_")}


def default_format(result: dict) -> str:
    """The summary of an entry without ``format``: its JSON (extras dropped), indented.

    Example:
        >>> print(default_format({"headline": 12.5, "_curve": [1, 2]}))
        {
          "headline": 12.5
        }
    """
    return json.dumps(json_ready(result), indent=2, default=str)


def namespace(**options) -> argparse.Namespace:
    """The options object a ``run`` receives, built from keywords (for calling an entry from Python).

    ``progress`` defaults to ``False``; ``json`` and ``plots`` to ``None``.
    """
    base = {"progress": False, "no_progress": not options.get("progress", False), "json": None, "plots": None}
    return argparse.Namespace(**{**base, **options})


@dataclass(frozen=True)
class Benchmark:
    """One benchmark (see the module docstring for each field's contract).

    Args:
        name: the sub-command (``hpatches-eval NAME``) and the registry key.
        run: ``options -> result dict`` (JSON-ready; ``_``-keys are extras for ``plots``).
        add_arguments: ``parser -> None``, adds the benchmark's own options.
        format: ``result -> str``, the summary table (default: :func:`default_format`).
        plots: ``(result, out_dir) -> list of written paths``.
        help: one line for ``hpatches-eval --help``.
        description: the sub-command's ``--help`` text (default: ``help``).
        outputs: ``{dest: "file" | "dir"}``: further output options, checked before ``run``.
        aliases: ``((option_dest, value), ...)``: old spellings that select this benchmark.
    """

    name: str
    run: Callable
    add_arguments: Callable | None = None
    format: Callable | None = None
    plots: Callable | None = None
    help: str = ""
    description: str = ""
    outputs: dict = field(default_factory=dict)
    aliases: tuple = ()

    def format_result(self, result: dict) -> str:
        """The summary table of ``result``."""
        return (self.format or default_format)(result)

    def write_plots(self, result: dict, out_dir) -> list:
        """Write this benchmark's plots of ``result`` into ``out_dir``; the written paths (``[]``: none)."""
        if self.plots is None:
            return []
        return [Path(p) for p in (self.plots(result, Path(out_dir)) or [])]


def _make(
    name: str,
    run: Callable,
    *,
    add_arguments=None,
    format=None,
    plots=None,
    help: str = "",
    description: str = "",
    outputs=None,
    aliases=(),
) -> Benchmark:
    """The checked :class:`Benchmark` of ``run`` (a :class:`Benchmark` is checked as it is)."""
    if isinstance(run, Benchmark):
        entry = run
    else:
        entry = Benchmark(
            name=str(name),
            run=run,
            add_arguments=add_arguments,
            format=format,
            plots=plots,
            help=help or (getattr(run, "__doc__", None) or "").strip().split("\n")[0],
            description=description,
            outputs=dict(outputs or {}),
            aliases=tuple(aliases),
        )
    if not entry.name or entry.name.startswith("-") or any(c.isspace() for c in entry.name):
        raise ValueError(f"benchmark name {entry.name!r} cannot be a sub-command")
    if entry.name in RESERVED:
        raise ValueError(f"benchmark name {entry.name!r} is reserved for hpatches-eval's own command")
    for attr in ("run", "add_arguments", "format", "plots"):
        fn = getattr(entry, attr)
        if (fn is not None or attr == "run") and not callable(fn):
            raise TypeError(f"benchmark {entry.name!r}: {attr} must be callable, got {fn!r}")
    for dest, kind in entry.outputs.items():
        if kind not in ("file", "dir", "descriptors"):
            raise ValueError(
                f"benchmark {entry.name!r}: output {dest!r} must be 'file', 'dir' or 'descriptors' "
                f"(a descriptor CSV folder, replaced whole), got {kind!r}"
            )
    return entry


#: every benchmark by name (:class:`~hpatches_kit.registry.Registry` of :class:`Benchmark`): ``register(name, run,
#: add_arguments=, format=, plots=, help=, description=, outputs=, aliases=)`` (a decorator without ``run``) or
#: ``register(benchmark)``; ``replace=True`` overwrites a run-time entry
REGISTRY = Registry("benchmark", builtin=BUILTIN, group="hpatches_kit.benchmarks", make=_make)
register, unregister, get, names, entries = REGISTRY.verbs()
