"""``hpatches-eval brown`` / ``hpatches-eval sequences`` (old spelling: ``--benchmark brown|sequences``). The
benchmarks are :mod:`hpatches_kit.benchmarks.brown` and :mod:`hpatches_kit.benchmarks.sequences`; this module
keeps the entry point the old spelling was handed to."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    """``hpatches-eval --benchmark brown|sequences ARGV...``: runs the sub-command ``--benchmark`` names."""
    from .eval import run_subcommand

    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(prog="hpatches-eval", add_help=False, allow_abbrev=False)
    pre.add_argument("--benchmark", required=True, choices=("brown", "sequences"))
    known, _ = pre.parse_known_args(argv)
    return run_subcommand(known.benchmark, argv)


if __name__ == "__main__":
    sys.exit(main())
