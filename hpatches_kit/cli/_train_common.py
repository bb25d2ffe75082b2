"""The arguments every ``hpatches-train`` subcommand shares (data, model and optimisation, device, output).
What they do is the library's: :mod:`hpatches_kit.training.run` (run folder, resume, checkpoints) and the
subcommand's training module."""

from __future__ import annotations

import argparse

from ..models.precision import PRECISIONS
from ..registry import Choices

LR_SCHEDULES = ("constant", "cosine")


def imports_in(argv) -> list[str]:
    """The values of ``--import MODULE`` / ``--import=MODULE`` in ``argv`` (read before the parser is built, so a
    model or loss the module registers is among the choices and in ``--help``)."""
    argv, out = list(argv), []
    for i, a in enumerate(argv):
        if a == "--import" and i + 1 < len(argv):
            out.append(argv[i + 1])
        elif a.startswith("--import="):
            out.append(a.split("=", 1)[1])
    return out


def add_import_arg(p) -> None:
    """``--import MODULE`` (repeatable): import the user's module first (:func:`hpatches_kit.plugins.import_modules`)
    so the models, losses and Keras layers it registers are known."""
    p.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import this module first (repeatable; a dotted name on sys.path/PYTHONPATH or in the "
        "current folder, or a .py file): models, losses and Keras layers it registers become "
        "available (--model/--loss NAME, .keras files using its layers)",
    )


def add_common_args(
    p: argparse.ArgumentParser,
    *,
    model: str,
    models,
    loss: str,
    losses,
    batch_size: int,
    epochs: int | None,
    lr: float,
    kind: str,
    lr_schedule: str = "constant",
    val_every: int | None = 1,
    epochs_help: str | None = None,
    model_help: str = "",
    loss_help: str = "",
) -> None:
    """Add the shared flags. ``models`` / ``losses``: a registry's live names (:meth:`~hpatches_kit.registry.
    Registry.choices`: a plug-in registered before parsing is a choice, and so is ``MODULE:FUNCTION``) or a tuple."""
    g = p.add_argument_group("data")
    g.add_argument("--data", default=None, help=f"dataset folder (default: the embedded {kind} dataset)")
    g.add_argument(
        "--split",
        default="a",
        help="hold out the 'test' sequences of this split (a/b/c from "
        "the dataset's splits.json, or illum/view) for validation and the final evaluation; "
        "'none' trains and evaluates on everything (default: a)",
    )
    g.add_argument("--splits-file", default=None, help="splits.json to use instead of <data>/splits.json")
    g = p.add_argument_group("model and optimisation")
    for flag, default, names, extra in (("--model", model, models, model_help), ("--loss", loss, losses, loss_help)):
        what = "architecture" if flag == "--model" else "loss"
        if isinstance(names, Choices):
            g.add_argument(
                flag,
                default=default,
                choices=names,
                metavar="NAME|MODULE:FUNCTION",
                help=f"{what}: one of {', '.join(names)} (registered), or MODULE:FUNCTION {extra}(default: {default})",
            )
        else:
            g.add_argument(flag, default=default, choices=names, help=f"{what} (default: {default})")
    g.add_argument("--batch-size", type=int, default=batch_size, help=f"patches per batch (default: {batch_size})")
    g.add_argument("--epochs", type=int, default=epochs, help=epochs_help or f"epochs (default: {epochs})")
    g.add_argument("--steps-per-epoch", type=int, default=None, help="batches per epoch (default: one pass)")
    g.add_argument("--lr", type=float, default=lr, help=f"Adam learning rate (default: {lr:g})")
    g.add_argument(
        "--lr-schedule",
        default=lr_schedule,
        choices=LR_SCHEDULES,
        help="constant, or cosine decay from --lr to 0 over --epochs x steps (Keras CosineDecay). "
        "--resume keeps the checkpoint's schedule; with cosine it re-plans the decay for a new "
        "--epochs (default: %(default)s)",
    )
    g.add_argument("--seed", type=int, default=0, help="seed for weights, shuffling and augmentation")
    g.add_argument("--no-augment", dest="augment", action="store_false", help="disable on-graph augmentation")
    g.add_argument(
        "--val-every",
        type=int,
        default=val_every,
        metavar="N",
        help="validate on the held-out tracks every N epochs and after the last one; the other "
        "epochs log val_* as null (default: "
        + ("only after the last epoch" if val_every is None else "%(default)s")
        + ")",
    )
    g = p.add_argument_group("device")
    g.add_argument(
        "--strategy",
        default="auto",
        choices=("auto", "tpu", "mirrored", "multiworker", "default"),
        help="tf.distribute strategy (default: auto = TPU > >=2 GPUs > TF_CONFIG > default)",
    )
    g.add_argument(
        "--mixed-precision",
        default="auto",
        choices=PRECISIONS,
        help="dtype policy (default: auto = per device, see docs/training.md)",
    )
    g.add_argument(
        "--jit",
        default="auto",
        choices=("auto", "on", "off"),
        help="XLA jit_compile (default: auto = on for GPU/TPU, off on CPU)",
    )
    g = p.add_argument_group("output")
    g.add_argument("--out", default=None, help="output folder (default: runs/<command>-<time>)")
    g.add_argument("--resume", action="store_true", help="continue from <out>/checkpoints (optimizer state, epoch)")
    g.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2), help="Keras progress (1 = bar)")
    g.add_argument("--no-eval", dest="evaluate", action="store_false", help="skip the final evaluation")
    add_import_arg(p)
