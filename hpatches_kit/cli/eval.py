"""``hpatches-eval``: run a benchmark on a descriptor; one sub-command per entry of the benchmark registry.

``hpatches-eval [--import MODULE]... [-q|-v] COMMAND [options]``: ``hpatches`` (the official tasks; the command
when none is named), ``brown``, ``sequences``, ``pairs``, ``real``, any benchmark a module imported with
``--import`` registered (:mod:`hpatches_kit.benchmarks`), and ``compare`` (results JSONs side by side).
Every benchmark takes ``--json OUT``, ``--plots DIR`` and ``--no-progress``; what it runs, prints and plots comes
from its registry entry. Old spellings still work: no command = ``hpatches``; ``--benchmark brown|sequences``
and ``--task pair-matching`` select those benchmarks.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ..checks import check_options
from ..data.fsio import check_outputs, input_paths
from ..log import add_verbosity_arguments, setup_cli_logging, verbosity

log = logging.getLogger("hpatches_kit.cli.eval")  # not __name__: "__main__" under python -m

PROG = "hpatches-eval"
DEFAULT = "hpatches"
#: commands that are tools, not benchmarks: ``name -> (module with configure(parser) and run(args), help)``
TOOLS = {"compare": ("hpatches_kit.cli.eval_compare", "compare descriptors from their results JSONs")}


def _common(p: argparse.ArgumentParser, top: bool) -> None:
    """``--import`` and ``-q/-v`` (top level, and repeated by each sub-command with suppressed defaults)."""
    p.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[] if top else argparse.SUPPRESS,
        metavar="MODULE",
        help="import MODULE (a name or a .py file) first, e.g. to register a "
        "benchmark or the Keras layers of a --model (repeatable)",
    )
    add_verbosity_arguments(p, suppress_defaults=not top)


def _add_benchmark(sub, entry) -> None:
    p = sub.add_parser(entry.name, help=entry.help, description=entry.description or entry.help)
    if entry.add_arguments is not None:
        entry.add_arguments(p)
    p.add_argument("--json", default=None, metavar="OUT", help="write the results JSON here")
    p.add_argument("--plots", default=None, metavar="DIR", help="write plots into this folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    for dest, value in entry.aliases:  # the old spelling that selected this benchmark is accepted here too
        try:
            p.add_argument(
                "--" + dest.replace("_", "-"), dest=dest, choices=[value], default=value, help=argparse.SUPPRESS
            )
        except argparse.ArgumentError:
            pass
    _common(p, top=False)
    p.set_defaults(_benchmark=entry.name)


def build_parser() -> argparse.ArgumentParser:
    """The parser: one sub-command per registered benchmark, plus the tools (:data:`TOOLS`)."""
    from .. import benchmarks

    p = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0].split(": ", 1)[1],
        epilog=f"no COMMAND: {DEFAULT}; {PROG} COMMAND --help for its options",
    )
    _common(p, top=True)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for entry in benchmarks.entries():
        _add_benchmark(sub, entry)
    for name, (mod, help_) in TOOLS.items():
        t = sub.add_parser(name, help=help_, description=help_)
        importlib.import_module(mod).configure(t)
        _common(t, top=False)
        t.set_defaults(_tool=mod)
    return p


def run_benchmark(entry, args) -> int:
    """Check the output paths, run ``entry`` on ``args``, print its summary, write ``--json`` and ``--plots``."""
    from ..benchmarks import json_ready
    from ..io import atomic_write_json

    # every numeric option range-checked, and the output paths checked (writable, none of them an input) before
    # the (long) run, not after it
    check_options(args)
    files, folders, replaced = {"--json": args.json}, {"--plots": args.plots}, {}
    for dest, kind in entry.outputs.items():
        flag, value = "--" + dest.replace("_", "-"), getattr(args, dest, None)
        if kind == "file":
            files[flag] = value
        elif kind == "dir":
            folders[flag] = value
        else:  # a folder the run replaces whole (build_then_swap of that kind)
            replaced[flag] = (value, kind, None)
    check_outputs(files=files, folders=folders, replaced=replaced, inputs=input_paths(args))
    args.progress = not args.no_progress
    result = check_benchmark_result(entry, entry.run(args))
    print(entry.format_result(result))
    if args.json:
        atomic_write_json(args.json, json_ready(result))
        log.info("results written to %s", args.json)
    if args.plots:
        for path in entry.write_plots(result, args.plots):
            log.info("plot written: %s", path)
    return 0


def check_benchmark_result(entry, result) -> dict:
    """The plug-in contract of a benchmark's ``run``: a dict whose JSON-ready part (keys not starting with ``_``)
    serialises as JSON; else a :class:`~hpatches_kit.errors.PluginError` naming the benchmark and its ``run``."""
    import json

    from ..benchmarks import json_ready
    from ..errors import PluginError, qualified_name
    from ..io import _json_default

    plugin = f"benchmark {entry.name!r} ({qualified_name(entry.run)})"
    contract = "run(args) must return a dict of JSON-ready results"
    if not isinstance(result, dict):
        raise PluginError(plugin, contract, f"it returned {type(result).__name__} {str(result)[:40]!r}")
    try:
        json.dumps(json_ready(result), default=_json_default)  # as --json writes it
    except (TypeError, ValueError) as e:
        raise PluginError(plugin, contract, f"its result does not serialise as JSON ({e})") from None
    return result


def _route(argv: list) -> tuple[str | None, bool]:
    """``(command, named)``: the command of ``argv`` and whether it is named as one (else it comes from an old
    spelling, or is ``None``: the default). Runs ``--import`` first, so imported benchmarks count."""
    from .. import benchmarks
    from ..plugins import import_modules

    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    _common(pre, top=True)
    known, _ = pre.parse_known_args(argv)
    # -q/-v (wherever given) take effect before a user's module runs: one that imports Keras starts TensorFlow
    setup_cli_logging(verbosity(known))
    import_modules(known.imports)
    entries = benchmarks.entries()
    for dest in sorted({d for e in entries for d, _ in e.aliases}):
        pre.add_argument("--" + dest.replace("_", "-"), dest=dest, default=None)
    known, rest = pre.parse_known_args(argv)
    if rest and (rest[0] in TOOLS or rest[0] in benchmarks.names()):
        return rest[0], True
    for e in entries:
        if e.name != DEFAULT and any(getattr(known, d, None) == v for d, v in e.aliases):
            return e.name, False
    return None, bool(rest) and rest[0] in ("-h", "--help")


def run_subcommand(name: str, argv: list) -> int:
    """Run the command ``name`` with its arguments ``argv`` (what ``hpatches-eval NAME ARGV...`` runs)."""
    return main([name, *argv])


def main(argv=None) -> int:
    from ._errors import run_command

    argv = list(sys.argv[1:] if argv is None else argv)
    routed = []  # an --import that cannot be found, or that fails: one line (run_command)
    status = run_command(PROG, lambda: routed.append(_route(argv)))
    if not routed:
        return status
    command, named = routed[0]
    if command is None and not named:  # no command: the default (named: top-level --help)
        argv = [DEFAULT, *argv]
    elif command is not None and not named:  # an old spelling (--task pair-matching, --benchmark brown)
        argv = [command, *argv]  # its sub-command accepts the spelling's own option too
    args = build_parser().parse_args(argv)
    setup_cli_logging(verbosity(args))
    if getattr(args, "_tool", None):
        return run_command(f"{PROG} {args.command}", importlib.import_module(args._tool).run, args)
    from .. import benchmarks

    return run_command(PROG, run_benchmark, benchmarks.get(args._benchmark), args)


if __name__ == "__main__":
    sys.exit(main())
