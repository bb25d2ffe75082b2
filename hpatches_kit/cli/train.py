"""``hpatches-train``: training commands. Each subcommand lives in its own module exposing
``configure(parser)`` (adds its arguments) and ``run(args) -> int``."""

from __future__ import annotations

import argparse
import importlib
import sys

from ..log import add_verbosity_arguments, setup_cli_logging, verbosity

SUBCOMMANDS = {
    "denoise": ("hpatches_kit.cli.train_denoise", "train a U-Net denoiser (noisy -> clean patches)"),
    "descriptor": ("hpatches_kit.cli.train_descriptor", "train an L2-Net/HardNet-style 128-d descriptor"),
    "vit-adapter": ("hpatches_kit.cli.train_vit", "train ViT bottleneck adapters for image-pair matching"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the chosen subcommand's module is imported (``--help`` lists all of them cheaply)."""
    parser = argparse.ArgumentParser(
        prog="hpatches-train", description="Train denoisers, descriptors and ViT adapters on HPatches-format data."
    )
    add_verbosity_arguments(parser, long_verbose=False)
    parser.add_argument(  # also before the subcommand: hpatches-train --import mynet descriptor ...
        "--import",
        dest="imports_first",
        action="append",
        default=[],
        metavar="MODULE",
        help="import this module first (repeatable; also accepted after COMMAND)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (mod, help_) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name == command:
            importlib.import_module(mod).configure(p)
        add_verbosity_arguments(p, suppress_defaults=True, long_verbose=False)  # --verbose N: Keras' progress
        p.set_defaults(_module=mod)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if a in SUBCOMMANDS), None)
    # logging (and TensorFlow's quieting) is set up before anything imports TensorFlow (a subcommand's module or
    # an --import module may)
    pre = argparse.ArgumentParser(add_help=False)
    add_verbosity_arguments(pre, long_verbose=False)
    setup_cli_logging(verbosity(pre.parse_known_args(argv)[0]))
    from ._errors import run_command
    from ._train_common import imports_in

    imports = imports_in(argv)
    if imports:  # before the parser: models and losses the modules register are among the choices
        from ..plugins import import_modules

        status = run_command("hpatches-train", lambda: import_modules(imports) and 0)
        if status:
            return status
    args = build_parser(command).parse_args(argv)
    args.imports = [*args.imports_first, *getattr(args, "imports", [])]
    del (
        args.imports_first,
        args.quiet,
        args.log_verbose,
    )  # how much is shown is no argument of the run (run_args.json, --resume)
    # One line on stderr and exit 2 for bad input / disk errors / argument checks (see _errors); checkpoints
    # and history already written stay (an --out the run created and left empty is removed by the library's
    # TrainingRun).
    return run_command(f"hpatches-train {args.command}", importlib.import_module(args._module).run, args)


if __name__ == "__main__":
    sys.exit(main())
