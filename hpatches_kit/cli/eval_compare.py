"""``hpatches-eval compare RESULTS.json... --out DIR``: compare descriptors from their results JSONs.

Writes the HPatches paper's three-panel figure (``comparison.png``: one bar per descriptor, each panel
sorted by its task's mAP, Easy/Hard/Tough markers), ``comparison.md`` and ``comparison.csv``. Results of
different splits, test sets or task files are refused (exit 2, naming the file and the field).
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hpatches-eval compare", description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="+", metavar="RESULTS.json", help="results files of hpatches-eval --json")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for comparison.{png,md,csv}")
    p.add_argument("--name", action="append", default=None, metavar="LABEL",
                   help="label of each results file, in order (repeat once per file; default: its descriptor)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from ..evaluation.compare import format_markdown, load_results, write_comparison
    from ._errors import run_command

    if args.name is not None and len(args.name) != len(args.results):
        print(f"hpatches-eval compare: error: {len(args.name)} --name for {len(args.results)} results files",
              file=sys.stderr)
        return 2

    def compare(args) -> int:
        from ..data.fsio import check_outputs

        check_outputs(folders={"--out": args.out}, inputs={"RESULTS.json": args.results})
        entries = load_results(args.results, names=args.name)
        paths = write_comparison(entries, args.out)
        print(format_markdown(entries))
        for p in paths:
            print(f"written: {p}")
        return 0

    return run_command("hpatches-eval compare", compare, args)


if __name__ == "__main__":
    sys.exit(main())
