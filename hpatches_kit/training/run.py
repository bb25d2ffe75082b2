"""One training run's folder and life cycle, shared by ``hpatches-train denoise``, ``descriptor`` and
``vit-adapter`` (and usable from a notebook).

A :class:`TrainingRun` owns ``<out>/``: it checks the folder before any long work (exists or can be made,
really writable, not a finished run unless resuming), writes ``run_args.json`` (on ``--resume``, compares the
arguments with the run's and refuses the ones that would change what the checkpoint means), seeds Keras, picks
the ``tf.distribute`` strategy, dtype policy and XLA choice, resumes from ``checkpoints/`` (model, optimizer
state, epoch, history), hands out the standard callbacks (history + curves PNG, atomic checkpoints,
TensorBoard) and writes ``model.keras`` / ``metrics.json`` atomically at the end.

Several workers (``MultiWorkerMirroredStrategy``, one process per host/worker, each with its ``TF_CONFIG``):
the **chief alone writes** anything under ``<out>`` (run_args.json, checkpoints, history, TensorBoard logs,
model.keras, metrics.json); the other workers run the same steps (their weights equal the chief's) and write
nothing. ``--resume`` reads ``<out>/checkpoints`` on every worker, so ``<out>`` must be the same folder on all of
them (a shared file system) for a run to resume.

Layout of ``<out>``::

    run_args.json            the arguments (paths absolute), written at the start
    checkpoints/             epoch-XXXX.keras (2 newest), last.keras, state.json (see AtomicCheckpoint)
    history.json             per-epoch logs (MetricsLogger), training_curves.png
    logs/                    TensorBoard event files (when tensorboard is installed)
    model.keras              the final model, uncompiled (inference file)
    metrics.json             device/strategy/precision + the command's own metrics

Examples:
    >>> run = TrainingRun.start("descriptor", "runs/x", {"epochs": 3}, seed=0)  # doctest: +SKIP
    >>> model, initial_epoch, history = run.resume_state()  # doctest: +SKIP
    >>> model.fit(..., callbacks=run.callbacks(history))  # doctest: +SKIP
    >>> run.save_final(model, {"train_seconds": 12.0})  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..data.errors import DataError
from ..data.fsio import LOCK
from ..io import atomic_path, atomic_write_json

log = logging.getLogger(__name__)

RUN_ARGS = "run_args.json"
# arguments a --resume may change: they alter how long the run goes on, what it prints or checks, not what
# the checkpoint's training so far means (everything else must match the run being resumed)
RESUME_SAFE = ("epochs", "verbose", "evaluate", "val_every", "resume", "out", "collapse", "imports")
PATH_ARGS = ("data", "splits_file", "init", "denoiser", "weights")
_FLAG_NAMES = {"evaluate": "--no-eval", "augment": "--no-augment"}


def check_schedule(epochs: int, batch_size: int, lr: float = 1.0, val_every: int = 1) -> None:
    """Raise :class:`~hpatches_kit.errors.OptionError` naming the option when ``epochs < 1``, ``batch_size < 2``,
    ``lr`` is not > 0 (NaN included) or ``val_every < 1`` (the ranges of :data:`hpatches_kit.checks.OPTION_RANGES`;
    the CLI shows the flags)."""
    from ..checks import check_options
    from ..errors import OptionError

    if not (epochs >= 1 and batch_size >= 2):  # NaN fails too; positives need two patches of a batch
        raise OptionError("{epochs} must be >= 1 and {batch_size} >= 2", "epochs", "batch_size")
    check_options(epochs=epochs, batch_size=batch_size, lr=lr, val_every=val_every)


def run_arguments(arguments: dict) -> dict:
    """The arguments as written to ``run_args.json``: private keys (``_x``) dropped, paths made absolute."""
    d = {k: v for k, v in arguments.items() if not k.startswith("_")}
    for k in PATH_ARGS:
        if d.get(k) is not None:
            d[k] = os.path.abspath(os.fspath(d[k]))
    return {k: (os.fspath(v) if isinstance(v, Path) else v) for k, v in d.items()}


def flag_name(key: str) -> str:
    """The command-line flag of an argument key (``"val_every"`` -> ``"--val-every"``)."""
    return _FLAG_NAMES.get(key, "--" + key.replace("_", "-"))


def check_run_args(arguments: dict, out, resume: bool) -> dict:
    """Write ``arguments`` to ``<out>/run_args.json``; returns what was written.

    On ``resume`` of a run that has a checkpoint, compare with the arguments it was started with: differences
    in :data:`RESUME_SAFE` are applied and listed on stderr; any other difference raises ``DataError`` naming
    every one (the checkpoint was trained with the old values and ``metrics.json`` would record the new ones).
    """
    out = Path(out)
    path = out / RUN_ARGS
    now = run_arguments(arguments)
    ck = out / "checkpoints"
    has_ck = (ck / "state.json").is_file() or any(ck.glob("epoch-*.keras"))
    if resume and has_ck:
        if not path.is_file():
            log.warning(
                f"[resume] {path}: missing (a run from an older version): the arguments cannot be checked "
                f"against the checkpoint's"
            )
        else:
            try:
                before = json.loads(path.read_text())
                if not isinstance(before, dict):
                    raise ValueError("not a JSON object")
            except (ValueError, OSError) as e:
                raise DataError(
                    path, f"unreadable ({type(e).__name__}: {e}); cannot check --resume arguments"
                ) from None
            diff = [k for k in now if k in before and before[k] != now[k]]
            bad = [k for k in diff if k not in RESUME_SAFE]
            if bad:
                listed = ", ".join(f"{flag_name(k)} {now[k]!r} (run: {before[k]!r})" for k in bad)
                raise DataError(
                    path,
                    f"--resume with arguments that differ from the run's: {listed}; resume with "
                    f"the run's values or start a new --out",
                )
            for k in (k for k in diff if k != "resume"):
                log.info(f"[resume] {flag_name(k)}: {before[k]!r} -> {now[k]!r} (applied)")
            now = {**before, **now}
    atomic_write_json(path, now)
    return now


def check_run_state(out, resume: bool, probe_lock: bool = True) -> None:
    """Refuse, without ``--resume``, an ``out`` that holds a finished run (``model.keras``) or an unfinished one
    (checkpoints or a history but no ``model.keras``: a run that was interrupted, which a new run would mix its
    files with).

    Args:
        out: the run folder.
        resume: whether ``--resume`` was given.
        probe_lock: first check that no other process holds the folder's lock (not when this one does).

    Raises:
        DataError: naming ``out`` and what it holds, or that another run is writing it.
    """
    from ..data.fsio import lock_folder

    out = Path(out)
    if not out.is_dir():
        return
    if probe_lock and (out / LOCK).exists():
        lock_folder(out).close()  # raises while another run holds it
    if resume:
        return
    if (out / "model.keras").exists():
        raise DataError(out, "already holds a finished run (model.keras); use another --out or --resume")
    ck = out / "checkpoints"
    if (ck.is_dir() and any(ck.iterdir())) or (out / "history.json").exists():
        raise DataError(
            out,
            "holds an unfinished run (checkpoints/history, no model.keras); continue it with "
            "--resume or choose another --out",
        )


def resolve_data(data, kind: str) -> Path:
    """``data`` as a path, or the embedded default dataset of ``kind`` (``"hpatches"``/``"n-hpatches"``),
    built on first use."""
    if data:
        return Path(data)
    from ..data import ensure_default

    try:
        return Path(ensure_default(kind=kind))
    except ImportError as e:
        raise DataError(None, f"the embedded default dataset cannot be built here ({e}); pass --data DIR") from None


def validation_epochs(epochs: int, every: int) -> list[int]:
    """The 1-based epochs that validate: every ``every``-th, and always the last (Keras ``validation_freq``)."""
    return [e for e in range(1, epochs + 1) if e % every == 0 or e == epochs]


def tensorboard_available() -> bool:
    """TensorBoard event files need the ``tensorboard`` package (tf.summary has no implementation without it)."""
    import importlib.util

    ok = importlib.util.find_spec("tensorboard") is not None
    if not ok:
        log.warning(
            "[note] tensorboard is not installed: no TensorBoard logs (history.json and the curves PNG are "
            "still written)"
        )
    return ok


@dataclass
class TrainingRun:
    """A started run (see the module docstring); make one with :meth:`start`.

    Attributes:
        out: the run folder.
        command: ``"descriptor"``, ``"denoise"``, ``"vit-adapter"``, ...
        resume: whether ``--resume`` was asked for.
        strategy: the ``tf.distribute`` strategy (build and compile models in ``strategy.scope()``).
        precision: the Keras dtype policy set.
        jit: whether to ``compile(jit_compile=...)``.
        device: ``"cpu"``, ``"gpu"`` or ``"tpu"``.
        info: device/strategy/precision/arguments, written at the top of ``metrics.json``.
        created: whether this run created ``out`` (then :meth:`discard_if_empty` may remove it again).
        chief: whether this process writes the run's files (always, but on the non-chief workers of a
            multi-worker run).
    """

    out: Path
    command: str
    resume: bool
    strategy: object
    precision: str
    jit: bool
    device: str
    info: dict = field(default_factory=dict)
    created: bool = False
    chief: bool = True
    _lock: object = field(default=None, repr=False)

    def release(self) -> None:
        """Release the run folder's lock (:func:`~hpatches_kit.data.fsio.lock_folder`); the end of the process
        releases it too."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    @classmethod
    def start(
        cls,
        command: str,
        out,
        arguments: dict,
        *,
        resume: bool = False,
        seed: int = 0,
        strategy: str = "auto",
        precision: str = "auto",
        jit: str = "auto",
    ) -> TrainingRun:
        """Check and prepare ``out`` and the device, before any long work.

        Args:
            command: the run's kind, recorded in ``metrics.json``.
            out: the run folder (``None``: ``runs/<command>-<time>``).
            arguments: the run's arguments (``vars(args)``), written to ``run_args.json``.
            resume: continue the run in ``out`` (else ``out`` must not hold a finished run).
            seed: the Keras/NumPy/Python seed.
            strategy: ``"auto"``, ``"tpu"``, ``"mirrored"``, ``"multiworker"`` or ``"default"``.
            precision: ``"auto"`` or a Keras dtype policy.
            jit: ``"auto"``, ``"on"`` or ``"off"``.

        Returns:
            The run.

        Raises:
            DataError: ``out`` holds a finished run, cannot be created or is not writable, or its
                ``run_args.json`` differs from a resumed run's.
        """
        import keras

        from ..checks import check_options
        from ..data.fsio import check_outputs, lock_folder
        from .callbacks import remove_stale_temporaries
        from .distribute import auto_jit, device_kind, get_strategy, set_precision, worker_info

        out = Path(out or Path("runs") / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}")
        check_options(arguments)
        check_outputs(folders={"--out": out}, inputs={flag_name(k): arguments.get(k) for k in PATH_ARGS})
        # fail fast, before the device is set up; the lock is probed only outside multi-worker runs (there the
        # chief holds it while the other workers start)
        check_run_state(out, resume, probe_lock=not os.environ.get("TF_CONFIG"))
        keras.utils.set_random_seed(seed)
        strat = get_strategy(strategy)
        worker = worker_info(strat)
        created = False
        if worker["chief"]:  # the other workers of a multi-worker run write nothing (module docstring)
            created = not out.exists()
            try:
                out.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise DataError(out, f"cannot create the output folder ({e.strerror or e})") from None
            try:  # a real write (os.access says yes to root on a read-only mount)
                with tempfile.TemporaryFile(dir=out):
                    pass
            except OSError as e:
                raise DataError(out, f"output folder is not writable ({e.strerror or e})") from None
            lock = lock_folder(out)  # held until the run ends (released by the OS if it is killed)
            try:
                check_run_state(out, resume, probe_lock=False)  # again under the lock: another run may have come
                for d in (out, out / "checkpoints"):
                    remove_stale_temporaries(d)
                recorded = check_run_args(arguments, out, resume)
            except BaseException:
                lock.close()
                raise
        else:
            recorded = run_arguments(arguments)
        dev = device_kind()
        policy = set_precision(precision)
        use_jit = auto_jit(dev) if jit == "auto" else jit == "on"
        run = cls(
            out=out,
            command=command,
            resume=resume,
            strategy=strat,
            precision=policy,
            jit=use_jit,
            device=dev,
            created=created,
            chief=worker["chief"],
        )
        run._lock = lock if worker["chief"] else None
        run.info = {
            "command": command,
            "device": dev,
            "replicas": strat.num_replicas_in_sync,
            "strategy": type(strat).__name__,
            "workers": worker["workers"],
            "precision": policy,
            "jit_compile": use_jit,
            "args": recorded,
        }
        task = (
            f" task={worker['task']}{' (chief)' if worker['chief'] else ' (writes nothing)'}" if worker["task"] else ""
        )
        log.info(
            f"[hpatches-train {command}] device={dev} replicas={strat.num_replicas_in_sync}{task} "
            f"precision={policy} jit={use_jit} out={out}"
        )
        return run

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    @property
    def checkpoints(self) -> Path:
        return self.out / "checkpoints"

    def resume_state(self, custom_objects=None):
        """``(model_or_None, initial_epoch, history)``: the newest intact checkpoint (compiled, optimizer state
        kept) and the history cut back to its epochs; ``(None, 0, {})`` when not resuming or nothing to resume."""
        from .callbacks import load_resume

        if not self.resume:
            return None, 0, {}
        with self.strategy.scope():
            res = load_resume(self.checkpoints, custom_objects=custom_objects)
        if res is None:
            log.info(f"[resume] no checkpoint in {self.checkpoints}: starting from scratch")
            return None, 0, {}
        for note in res.notes:
            log.info(f"[resume] {note}")
        hist = self._history_up_to(res.initial_epoch)
        log.info(
            f"[resume] {res.path}: {res.initial_epoch} epochs done, optimizer step "
            f"{int(res.model.optimizer.iterations.numpy())}"
        )
        return res.model, res.initial_epoch, hist

    def _history_up_to(self, epochs: int) -> dict:
        hp = self.out / "history.json"
        hist = {}
        if hp.is_file():
            try:
                loaded = json.loads(hp.read_text()).get("history", {})
                if not isinstance(loaded, dict) or not all(isinstance(v, list) for v in loaded.values()):
                    raise ValueError("no 'history' of per-metric lists")
                hist = {k: v[:epochs] for k, v in loaded.items()}
            except (ValueError, OSError, AttributeError) as e:
                log.warning(
                    f"[resume] {hp}: unreadable ({type(e).__name__}: {e}); the history restarts at epoch "
                    f"{epochs + 1} (earlier epochs logged as null)"
                )
                hist = {}
        done = len(hist.get("epoch", []))
        if done < epochs:  # pad, so every list stays aligned with the epochs the checkpoint holds
            if done:
                log.info(
                    f"[resume] {hp}: holds {done} of the {epochs} epochs done; the missing ones are logged as null"
                )
            hist = {k: list(v) + [None] * (epochs - len(v)) for k, v in hist.items() if k != "epoch"}
            hist["epoch"] = list(range(1, epochs + 1))
        return hist

    def history(self) -> dict:
        """The per-epoch logs in ``history.json`` (``{}`` before the first epoch)."""
        hp = self.out / "history.json"
        return json.loads(hp.read_text()).get("history", {}) if hp.is_file() else {}

    def callbacks(self, history: dict, extra=None, tensorboard: bool = True, checkpoints: bool = True) -> list:
        """``MetricsLogger`` (history.json + curves PNG), ``AtomicCheckpoint``, TensorBoard, then ``extra``; only
        ``extra`` on a non-chief worker (every worker must run the same ``extra``: they may run collectives).
        Callbacks of ``extra`` that add keys to the logs (``adds_logs = True``, e.g. :class:`CollapseDetector`)
        come first, and their ``reference_levels()`` go to the curves plot."""
        import keras

        from .callbacks import AtomicCheckpoint, MetricsLogger, NonFiniteLossGuard

        # every worker stops at the first non-finite loss ("loss became NaN at epoch E step S")
        guard = [NonFiniteLossGuard()]
        # history.json is written before the checkpoint's state.json: a kill between the two leaves the history
        # one epoch ahead, which the resume cuts back to the checkpoint (the other order would lose an epoch)
        if not self.chief:  # a non-chief worker trains in step with the chief and writes nothing
            return guard + list(extra or [])
        # callbacks that add keys to the epoch's logs (CollapseDetector: descriptor_spread, pca_dims_*) run
        # first, so that history.json and the curves record those keys
        extra = list(extra or [])
        producers = [c for c in extra if getattr(c, "adds_logs", False)]
        extra = [c for c in extra if c not in producers]
        levels = {k: v for c in producers if hasattr(c, "reference_levels") for k, v in c.reference_levels().items()}
        logger = MetricsLogger(
            self.out / "history.json", self.out / "training_curves.png", history=history, levels=levels
        )
        cbs = guard + producers + [logger]
        if checkpoints:
            cbs.append(AtomicCheckpoint(self.checkpoints))
        if tensorboard and tensorboard_available():
            cbs.append(keras.callbacks.TensorBoard(str(self.out / "logs"), write_graph=False, profile_batch=0))
        return cbs + extra

    def write_metrics(self, metrics: dict) -> None:
        """``metrics.json`` = :attr:`info` + ``metrics``, atomically (nothing on a non-chief worker)."""
        if not self.chief:
            return
        atomic_write_json(self.out / "metrics.json", {**self.info, **metrics})

    def save_final(self, model, metrics: dict, write_model: bool = True) -> Path:
        """Write ``model.keras`` (uncompiled: a light, loss-agnostic inference file; loading it needs only
        ``import hpatches_kit.models``) and ``metrics.json``, each atomically; returns the model's path. A
        non-chief worker writes neither (the path is where the chief writes it)."""
        path = self.out / "model.keras"
        if write_model and self.chief:
            final = model
            if getattr(model, "optimizer", None) is not None:  # compiled: save an uncompiled clone
                final = type(model).from_config(model.get_config())  # clone_model would copy the compile config
                final.set_weights(model.get_weights())
            with atomic_path(path, suffix=".keras") as tmp:
                final.save(tmp)
        self.write_metrics(metrics)
        return path

    def discard_if_empty(self) -> None:
        """After a failed run: remove ``out`` when this run created it and it holds nothing but ``run_args.json``,
        the lock and TensorBoard's logs (no checkpoint, history or model: :func:`discard_if_empty`)."""
        if not self.created or not self.out.is_dir():
            return
        discard_if_empty(self.out)


class OptionsFromNamespace:
    """Mixin of the ``*Options`` dataclasses: ``from_namespace(args)`` takes the fields an
    ``argparse.Namespace`` (or any object) holds under the same names and ignores the rest."""

    @classmethod
    def from_namespace(cls, ns):
        return cls(**{f.name: getattr(ns, f.name) for f in dataclasses.fields(cls) if hasattr(ns, f.name)})


def start_and_train(command: str, options, arguments: dict | None, train, **device):
    """Start the :class:`TrainingRun` of ``options`` (its ``out``, ``resume``, ``seed`` and, unless given in
    ``device``, ``strategy``/``mixed_precision``/``jit``), call ``train(run)`` and return its result; on any
    error remove an ``--out`` the run created and left empty, then re-raise.

    Args:
        command: the run's kind.
        options: an ``*Options`` dataclass.
        arguments: what ``run_args.json`` records (default: the options).
        train: ``run -> result``.
        **device: ``strategy=``, ``precision=``, ``jit=`` overriding the options'.
    """
    kw = {
        "strategy": getattr(options, "strategy", "auto"),
        "precision": getattr(options, "mixed_precision", "auto"),
        "jit": getattr(options, "jit", "auto"),
        **device,
    }
    from ..checks import check_options

    check_options(options)
    run = TrainingRun.start(
        command,
        options.out,
        dataclasses.asdict(options) if arguments is None else arguments,
        resume=options.resume,
        seed=options.seed,
        **kw,
    )
    try:
        return train(run)
    except BaseException:
        run.discard_if_empty()
        raise
    finally:
        run.release()


def discard_if_empty(out) -> None:
    """Remove the folder ``out`` when it holds nothing of a run's results: no file but ``run_args.json``, the
    lock and TensorBoard's event files (``logs/``, written from the first step on); a checkpoint, a history or a
    model keeps it."""
    out = Path(out)

    def kept(p: Path) -> bool:
        rel = p.relative_to(out).parts
        return p.is_file() and p.name not in (RUN_ARGS, LOCK) and rel[0] != "logs"

    if out.is_dir() and not [p for p in out.rglob("*") if kept(p)]:
        shutil.rmtree(out, ignore_errors=True)
