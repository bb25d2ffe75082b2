"""``hpatches-eval compare RESULTS.json... --out DIR``: compare descriptors from their results JSONs.

Writes the HPatches paper's three-panel figure (``comparison.png``: one bar per descriptor, each panel
sorted by its task's mAP, Easy/Hard/Tough markers), ``comparison.md`` and ``comparison.csv``; for whole-image
matching results (``hpatches-eval sequences --json``) the MMA curves of every descriptor on one figure and an
MMA / homography-accuracy table. Results of other test sequences, task content, images or matchers are refused
(exit 2, naming the file and the field).
"""

from __future__ import annotations

import logging
import sys

log = logging.getLogger("hpatches_kit.cli.eval_compare")  # not __name__ (python -m)


def configure(p) -> None:
    """Add the ``compare`` options to ``p``."""
    p.add_argument(
        "results",
        nargs="+",
        metavar="RESULTS.json",
        help="results files: hpatches-eval --json (the HPatches tasks, or sequences), a run's metrics.json",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder for comparison.{png,md,csv}")
    p.add_argument(
        "--name",
        action="append",
        default=None,
        metavar="LABEL",
        help="label of each results file, in order (repeat once per file; default: its descriptor)",
    )


def run(args) -> int:
    from ..evaluation.compare import format_markdown, load_results, write_comparison
    from ..plots.eval import plot_comparison

    if args.name is not None and len(args.name) != len(args.results):
        raise SystemExit(f"{len(args.name)} --name for {len(args.results)} results files")
    from pathlib import Path

    from ..data.fsio import build_then_swap, check_outputs

    # --out is replaced whole, as --export-csv is: a folder holding files compare did not write (the user's own
    # comparison.md) is refused, not overwritten; an earlier comparison is replaced
    inputs = {"RESULTS.json": args.results}
    check_outputs(replaced={"--out": (args.out, "comparison", None)}, inputs=inputs)
    entries = load_results(args.results, names=args.name)
    with build_then_swap(args.out, "comparison", inputs=inputs) as tmp:
        paths = [Path(args.out) / p.name for p in write_comparison(entries, tmp, figure=plot_comparison)]
    print(format_markdown(entries))
    for p in paths:
        log.info("written: %s", p)
    return 0


def main(argv=None) -> int:
    """``hpatches-eval compare ARGV...``."""
    from .eval import run_subcommand

    return run_subcommand("compare", list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
