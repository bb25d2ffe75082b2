"""``hpatches-eval pairs`` (old spelling: ``hpatches-eval --task pair-matching``): image-pair matching accuracy
of a ViT or any Keras image embedder. The benchmark is :mod:`hpatches_kit.benchmarks.pairs`; this module keeps
the entry point the old spelling was handed to."""

from __future__ import annotations

import sys

from ..benchmarks.pairs import add_arguments, load_model  # noqa: F401  (old import paths)


def main(argv=None) -> int:
    """``hpatches-eval pairs ARGV...`` (``--task pair-matching`` in ``argv`` is accepted)."""
    from .eval import run_subcommand

    return run_subcommand("pairs", list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
