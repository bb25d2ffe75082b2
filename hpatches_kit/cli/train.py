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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the chosen subcommand's module is imported (``--help`` lists all of them cheaply)."""
    parser = argparse.ArgumentParser(prog="hpatches-train", description="Train denoisers, descriptors and ViT adapters on HPatches-format data.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (mod, help_) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name == command:
            importlib.import_module(mod).configure(p)
        p.set_defaults(_module=mod)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if a in SUBCOMMANDS), None)
    args = build_parser(command).parse_args(argv)
    # Bad input (DataError is a ValueError), an unwritable or full disk (OSError) and the commands' own
    # argument checks (SystemExit with a message) end in one line on stderr and exit status 2; checkpoints
    # and history already written stay (an --out this run created and left empty is removed).
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except (ValueError, OSError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if isinstance(e, OSError) and e.filename and str(e.filename) not in msg:
            msg = f"{e.filename}: {msg}"
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            raise
        msg = str(e.code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    from ._train_common import discard_empty_out

    discard_empty_out(args)
    print(f"hpatches-train {args.command}: error: {msg}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
