"""``hpatches-train``: training commands. Each subcommand lives in its own module exposing
``configure(parser)`` (adds its arguments) and ``run(args) -> int``."""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = {
    "denoise": ("hpatches_kit.cli.train_denoise", "train a U-Net denoiser (noisy -> clean patches)"),
    "descriptor": ("hpatches_kit.cli.train_descriptor", "train an L2-Net/HardNet-style 128-d descriptor"),
    "vit-adapter": ("hpatches_kit.cli.train_vit", "train ViT bottleneck adapters for image-pair matching"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hpatches-train", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (mod, help_) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        importlib.import_module(mod).configure(p)
        p.set_defaults(_module=mod)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
