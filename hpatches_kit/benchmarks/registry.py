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
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

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


_ENTRIES: dict = {}
_loaded = False


def _load_builtin() -> None:
    global _loaded
    if _loaded:
        return
    builtin = {}
    for name, ref in BUILTIN.items():
        mod, attr = ref.split(":")
        builtin[name] = getattr(importlib.import_module(mod), attr)
    rest = {k: v for k, v in _ENTRIES.items() if k not in builtin}  # registered before the built-ins loaded
    _ENTRIES.clear()
    _ENTRIES.update(builtin)
    _ENTRIES.update(rest)
    _loaded = True


def register(
    name,
    run: Callable | None = None,
    *,
    add_arguments=None,
    format=None,
    plots=None,
    help: str = "",
    description: str = "",
    outputs=None,
    aliases=(),
    replace: bool = False,
):
    """Register a benchmark: ``register(name, run, ...)`` or, as a decorator, ``@register(name, ...)``.

    Args:
        name: the sub-command name (or a ready :class:`Benchmark`, then no other argument).
        run: ``options -> result dict``.
        add_arguments, format, plots, help, description, outputs, aliases: see :class:`Benchmark`.
        replace: overwrite an entry of the same name (otherwise ``ValueError``).

    Returns:
        The :class:`Benchmark` (the decorator form returns ``run`` unchanged).

    Raises:
        ValueError: the name is taken, reserved (``compare``) or not usable as a sub-command.
        TypeError: ``run`` (or another given hook) is not callable.
    """
    if isinstance(name, Benchmark):
        entry = name
    elif run is None:

        def deco(fn):
            register(
                name,
                fn,
                add_arguments=add_arguments,
                format=format,
                plots=plots,
                help=help,
                description=description,
                outputs=outputs,
                aliases=aliases,
                replace=replace,
            )
            return fn

        return deco
    else:
        entry = Benchmark(
            name=str(name),
            run=run,
            add_arguments=add_arguments,
            format=format,
            plots=plots,
            help=help or (run.__doc__ or "").strip().split("\n")[0],
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
    _load_builtin()
    if entry.name in _ENTRIES and not replace:
        raise ValueError(f"benchmark {entry.name!r} is already registered")
    _ENTRIES[entry.name] = entry
    return entry


def unregister(name: str) -> None:
    """Remove the benchmark ``name`` (tests; a built-in comes back only in a new process)."""
    _load_builtin()
    del _ENTRIES[name]


def get(name: str) -> Benchmark:
    """The benchmark registered as ``name``; ``ValueError`` listing the known names otherwise."""
    _load_builtin()
    try:
        return _ENTRIES[name]
    except KeyError:
        raise ValueError(f"unknown benchmark {name!r}; expected one of {', '.join(_ENTRIES)}") from None


def names() -> tuple:
    """The registered benchmark names, in order (the built-ins first)."""
    _load_builtin()
    return tuple(_ENTRIES)


def entries() -> tuple:
    """The registered :class:`Benchmark` entries, in order."""
    _load_builtin()
    return tuple(_ENTRIES.values())
