"""Shared plumbing of the ``hpatches-train`` subcommands: common arguments, run setup (seed, precision,
jit, strategy), the train/held-out split, resume and the fit loop with checkpoints, TensorBoard logs,
``metrics.json`` and plots. Everything under ``--out`` is written atomically."""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..data.errors import DataError

PRECISION_CHOICES = ("auto", "float32", "mixed_float16", "mixed_bfloat16")


LR_SCHEDULES = ("constant", "cosine")


def add_common_args(p: argparse.ArgumentParser, *, model: str, models, loss: str, losses, batch_size: int,
                    epochs: int, lr: float, kind: str, lr_schedule: str = "constant", val_every: int = 1) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", default=None, help=f"dataset folder (default: the embedded {kind} dataset)")
    g.add_argument("--split", default="a", help="hold out the 'test' sequences of this split (a/b/c from "
                   "the dataset's splits.json, or illum/view) for validation and the final evaluation; "
                   "'none' trains and evaluates on everything (default: a)")
    g.add_argument("--splits-file", default=None, help="splits.json to use instead of <data>/splits.json")
    g = p.add_argument_group("model and optimisation")
    g.add_argument("--model", default=model, choices=models, help=f"architecture (default: {model})")
    g.add_argument("--loss", default=loss, choices=losses, help=f"loss (default: {loss})")
    g.add_argument("--batch-size", type=int, default=batch_size, help=f"patches per batch (default: {batch_size})")
    g.add_argument("--epochs", type=int, default=epochs, help=f"epochs (default: {epochs})")
    g.add_argument("--steps-per-epoch", type=int, default=None, help="batches per epoch (default: one pass)")
    g.add_argument("--lr", type=float, default=lr, help=f"Adam learning rate (default: {lr:g})")
    g.add_argument("--lr-schedule", default=lr_schedule, choices=LR_SCHEDULES,
                   help="constant, or cosine decay from --lr to 0 over --epochs x steps (Keras CosineDecay). "
                        "--resume keeps the checkpoint's schedule; with cosine it re-plans the decay for a new "
                        "--epochs (default: %(default)s)")
    g.add_argument("--seed", type=int, default=0, help="seed for weights, shuffling and augmentation")
    g.add_argument("--no-augment", dest="augment", action="store_false", help="disable on-graph augmentation")
    g.add_argument("--val-every", type=int, default=val_every, metavar="N",
                   help="validate on the held-out tracks every N epochs and after the last one; the other "
                        "epochs log val_* as null (default: %(default)s)")
    g = p.add_argument_group("device")
    g.add_argument("--strategy", default="auto", choices=("auto", "tpu", "mirrored", "multiworker", "default"),
                   help="tf.distribute strategy (default: auto = TPU > >=2 GPUs > TF_CONFIG > default)")
    g.add_argument("--mixed-precision", default="auto", choices=PRECISION_CHOICES,
                   help="dtype policy (default: auto = per device, see docs/training.md)")
    g.add_argument("--jit", default="auto", choices=("auto", "on", "off"),
                   help="XLA jit_compile (default: auto = on for GPU/TPU, off on CPU)")
    g = p.add_argument_group("output")
    g.add_argument("--out", default=None, help="output folder (default: runs/<command>-<time>)")
    g.add_argument("--resume", action="store_true", help="continue from <out>/checkpoints (optimizer state, epoch)")
    g.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2), help="Keras progress (1 = bar)")
    g.add_argument("--no-eval", dest="evaluate", action="store_false", help="skip the final evaluation")


@dataclass
class RunContext:
    out: Path
    strategy: object
    precision: str
    jit: bool
    device: str
    info: dict = field(default_factory=dict)


def setup_run(args, command: str) -> RunContext:
    import keras

    from ..training.distribute import auto_jit, device_kind, get_strategy, set_precision

    out = Path(args.out or Path("runs") / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}")
    if out.exists() and (out / "model.keras").exists() and not args.resume:
        raise SystemExit(f"{out}: already holds a finished run (model.keras); use another --out or --resume")
    if args.epochs < 1 or args.batch_size < 2:
        raise SystemExit("--epochs must be >= 1 and --batch-size >= 2")
    if getattr(args, "val_every", 1) < 1:
        raise SystemExit(f"--val-every must be >= 1, got {args.val_every}")
    if getattr(args, "lr", 1.0) <= 0:
        raise SystemExit(f"--lr must be > 0, got {args.lr}")
    if not out.exists():
        args._created_out = out  # removed again if the run fails before it has written anything else
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(out, f"cannot create the output folder ({e.strerror or e})") from None
    import tempfile

    try:  # a real write (os.access says yes to root on a read-only mount)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise DataError(out, f"output folder is not writable ({e.strerror or e})") from None
    from ..training.callbacks import remove_stale_temporaries

    for d in (out, out / "checkpoints"):
        remove_stale_temporaries(d)
    check_run_args(args, out)
    keras.utils.set_random_seed(args.seed)
    strategy = get_strategy(args.strategy)
    dev = device_kind()
    precision = set_precision(args.mixed_precision)
    jit = auto_jit(dev) if args.jit == "auto" else args.jit == "on"
    ctx = RunContext(out=out, strategy=strategy, precision=precision, jit=jit, device=dev)
    ctx.info = {"command": command, "device": dev, "replicas": strategy.num_replicas_in_sync,
                "strategy": type(strategy).__name__, "precision": precision, "jit_compile": jit,
                "args": {k: v for k, v in vars(args).items() if not k.startswith("_")}}
    print(f"[hpatches-train {command}] device={dev} replicas={strategy.num_replicas_in_sync} "
          f"precision={precision} jit={jit} out={out}", file=sys.stderr)
    return ctx


RUN_ARGS = "run_args.json"
# arguments a --resume may change: they alter how long the run goes on, what it prints or checks, not what
# the checkpoint's training so far means (everything else must match the run being resumed)
RESUME_SAFE = ("epochs", "verbose", "evaluate", "val_every", "resume", "out", "collapse")
_PATH_ARGS = ("data", "splits_file", "init", "denoiser")


def run_arguments(args) -> dict:
    """The run's arguments as written to ``<out>/run_args.json`` (paths made absolute)."""
    d = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    for k in _PATH_ARGS:
        if d.get(k) is not None:
            d[k] = os.path.abspath(os.fspath(d[k]))
    return {k: (os.fspath(v) if isinstance(v, Path) else v) for k, v in d.items()}


def _flag(k: str) -> str:
    return {"evaluate": "--no-eval", "augment": "--no-augment"}.get(k, "--" + k.replace("_", "-"))


def check_run_args(args, out: Path) -> None:
    """Write the run's arguments to ``<out>/run_args.json`` at the start. On ``--resume`` of a run that has a
    checkpoint, compare with the arguments it was started with: differences in :data:`RESUME_SAFE` are applied
    and listed on stderr; any other difference raises ``DataError`` naming every one (the checkpoint was
    trained with the old values and ``metrics.json`` would record the new ones)."""
    import json

    from ..io import atomic_write_json

    path = out / RUN_ARGS
    now = run_arguments(args)
    has_ck = (out / "checkpoints" / "state.json").is_file() or any((out / "checkpoints").glob("epoch-*.keras"))
    if args.resume and has_ck:
        if not path.is_file():
            print(f"[resume] {path}: missing (a run from an older version): the arguments cannot be checked "
                  f"against the checkpoint's", file=sys.stderr)
        else:
            try:
                before = json.loads(path.read_text())
                if not isinstance(before, dict):
                    raise ValueError("not a JSON object")
            except (ValueError, OSError) as e:
                raise DataError(path, f"unreadable ({type(e).__name__}: {e}); cannot check --resume arguments") from None
            diff = [k for k in now if k in before and before[k] != now[k]]
            bad = [k for k in diff if k not in RESUME_SAFE]
            if bad:
                listed = ", ".join(f"{_flag(k)} {now[k]!r} (run: {before[k]!r})" for k in bad)
                raise DataError(path, f"--resume with arguments that differ from the run's: {listed}; resume with "
                                      f"the run's values or start a new --out")
            for k in (k for k in diff if k != "resume"):
                print(f"[resume] {_flag(k)}: {before[k]!r} -> {now[k]!r} (applied)", file=sys.stderr)
            now = {**before, **now}
    atomic_write_json(path, now)


def discard_empty_out(args) -> None:
    """After a failed start: remove the ``--out`` folder this run created when it holds nothing but
    ``run_args.json`` (no checkpoint, history or model)."""
    import shutil

    out = getattr(args, "_created_out", None)
    if out is None or not Path(out).is_dir():
        return
    left = [p for p in Path(out).rglob("*") if p.is_file() and p.name != RUN_ARGS]
    if not left:
        shutil.rmtree(out, ignore_errors=True)


def resolve_data(args, kind: str) -> Path:
    if args.data:
        return Path(args.data)
    from ..data import ensure_default

    try:
        return Path(ensure_default(kind=kind))
    except ImportError as e:
        raise DataError(None, f"the embedded default dataset cannot be built here ({e}); pass --data DIR") from None


def split_names(args, root: Path) -> tuple[list[str], list[str], str]:
    """``(train, test, how)`` sequence names of the dataset at ``root`` for ``--split``/``--splits-file``."""
    from ..training.split_policy import train_test_names

    return train_test_names(root, args.split, args.splits_file)


def make_callbacks(ctx: RunContext, history: dict, extra: list | None = None, tensorboard: bool = True):
    import keras

    from ..training.callbacks import AtomicCheckpoint, MetricsLogger

    # history.json is written before the checkpoint's state.json: a kill between the two leaves the history
    # one epoch ahead, which the resume cuts back to the checkpoint (the other order would lose an epoch)
    cbs = [MetricsLogger(ctx.out / "history.json", ctx.out / "training_curves.png", history=history),
           AtomicCheckpoint(ctx.out / "checkpoints")]
    if tensorboard and tensorboard_available():
        cbs.append(keras.callbacks.TensorBoard(str(ctx.out / "logs"), write_graph=False, profile_batch=0))
    return cbs + list(extra or [])


def tensorboard_available() -> bool:
    """TensorBoard event files need the ``tensorboard`` package (tf.summary has no implementation without it)."""
    import importlib.util

    ok = importlib.util.find_spec("tensorboard") is not None
    if not ok:
        print("[note] tensorboard is not installed: no TensorBoard logs (history.json and the curves PNG are "
              "still written)", file=sys.stderr)
    return ok


def maybe_resume(args, ctx: RunContext):
    """``(model_or_None, initial_epoch, previous_history)``."""
    import json

    from ..training.callbacks import load_resume

    if not args.resume:
        return None, 0, {}
    with ctx.strategy.scope():
        res = load_resume(ctx.out / "checkpoints")
    if res is None:
        print(f"[resume] no checkpoint in {ctx.out / 'checkpoints'}: starting from scratch", file=sys.stderr)
        return None, 0, {}
    for note in res.notes:
        print(f"[resume] {note}", file=sys.stderr)
    hist = {}
    hp = ctx.out / "history.json"
    if hp.is_file():
        try:
            loaded = json.loads(hp.read_text()).get("history", {})
            if not isinstance(loaded, dict) or not all(isinstance(v, list) for v in loaded.values()):
                raise ValueError("no 'history' of per-metric lists")
            hist = {k: v[: res.initial_epoch] for k, v in loaded.items()}
        except (ValueError, OSError, AttributeError) as e:
            print(f"[resume] {hp}: unreadable ({type(e).__name__}: {e}); the history restarts at epoch "
                  f"{res.initial_epoch + 1} (earlier epochs logged as null)", file=sys.stderr)
            hist = {}
    done = len(hist.get("epoch", []))
    if done < res.initial_epoch:  # pad, so every list stays aligned with the epochs the checkpoint holds
        if done:
            print(f"[resume] {hp}: holds {done} of the {res.initial_epoch} epochs done; the missing ones are "
                  f"logged as null", file=sys.stderr)
        hist = {k: list(v) + [None] * (res.initial_epoch - len(v)) for k, v in hist.items() if k != "epoch"}
        hist["epoch"] = list(range(1, res.initial_epoch + 1))
    print(f"[resume] {res.path}: {res.initial_epoch} epochs done, optimizer step "
          f"{int(res.model.optimizer.iterations.numpy())}", file=sys.stderr)
    return res.model, res.initial_epoch, hist


def save_final(model, ctx: RunContext, metrics: dict, write_model: bool = True) -> None:
    from ..io import atomic_path, atomic_write_json

    if not write_model:
        atomic_write_json(ctx.out / "metrics.json", {**ctx.info, **metrics})
        return
    # The final model is saved uncompiled (no optimizer, no loss): a light, loss-agnostic inference file.
    # Loading it needs only ``import hpatches_kit.models`` (custom layers); checkpoints keep the full state.
    final = type(model).from_config(model.get_config())  # clone_model would copy the compile config
    final.set_weights(model.get_weights())
    with atomic_path(ctx.out / "model.keras", suffix=".keras") as tmp:
        final.save(tmp)
    atomic_write_json(ctx.out / "metrics.json", {**ctx.info, **metrics})


def try_evaluation(model_path, dataset, denoiser=None, noisy: bool = False, progress: bool = False):
    """:func:`hpatches_kit.training.evaluate.evaluate_saved` with the registry-driven
    :func:`hpatches_kit.evaluation.summary.summarise_evaluation`."""
    from ..training.evaluate import evaluate_saved

    return evaluate_saved(model_path, dataset, denoiser=denoiser, noisy=noisy, progress=progress)


def make_optimizer(args, steps_per_epoch: int):
    """:func:`hpatches_kit.training.schedules.make_optimizer` for ``--lr``, ``--lr-schedule``, ``--epochs``."""
    from ..training.schedules import make_optimizer as make

    return make(args.lr, getattr(args, "lr_schedule", "constant"), args.epochs, steps_per_epoch)


def replan_schedule(optimizer, args, steps_per_epoch: int) -> None:
    """:func:`hpatches_kit.training.schedules.replan_schedule` for ``--resume``."""
    from ..training.schedules import replan_schedule as replan

    replan(optimizer, args.lr, getattr(args, "lr_schedule", "constant"), args.epochs, steps_per_epoch)


def validation_epochs(epochs: int, every: int) -> list[int]:
    """The 1-based epochs that validate: every ``every``-th, and always the last (Keras ``validation_freq``)."""
    return [e for e in range(1, epochs + 1) if e % every == 0 or e == epochs]


def steps_or_default(args, default: int) -> int:
    steps = args.steps_per_epoch or default
    if steps < 1:
        raise SystemExit(f"not enough training data for one batch of {args.batch_size}")
    return steps
