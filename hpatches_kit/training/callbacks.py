"""Training callbacks: collapse detection, mining curriculum, atomic per-epoch checkpoints + resume,
and a metrics/plots logger."""

from __future__ import annotations

import json
import re
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from ..io import atomic_path, atomic_write_json
from ..losses.curriculum import MiningCurriculum  # noqa: F401  (lives beside its loss; re-exported here)


def descriptor_spread(emb) -> float:
    """Root total variance of a set of descriptors: ``sqrt(sum_d var_d)`` = RMS distance to the centroid.
    About 1 for well-spread unit vectors, 0 when every patch maps to the same descriptor."""
    e = np.asarray(emb, np.float64)
    return float(np.sqrt(e.var(axis=0).sum()))


class CollapseWarning(UserWarning):
    pass


class NonFiniteLossError(ValueError):
    """The training loss (or the descriptors) became NaN or Inf: training cannot go on from there."""


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stop training with :class:`NonFiniteLossError` ("loss became NaN at epoch E step S") at the first step
    whose loss is not finite: no NaN passes silently into the checkpoints, the collapse check or the curves.

    Dispatched asynchronously (``async_safe``): reading the step's loss does not hold up the training loop; the
    error surfaces at the next step or at the epoch's end, naming the first bad step (the logged loss is the
    epoch's running mean, NaN from the first NaN step on).

    Args:
        monitor: the log key of the loss.
    """

    async_safe = True

    def __init__(self, monitor: str = "loss"):
        super().__init__()
        self.monitor = monitor
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            return
        value = float(np.asarray(value))
        if not np.isfinite(value):
            what = "NaN" if np.isnan(value) else "infinite"
            raise NonFiniteLossError(
                f"{self.monitor} became {what} at epoch {self._epoch + 1} step {batch + 1}; training stopped "
                "(a learning rate too high for this loss, or NaN/Inf in the data or the model?)"
            )


class CollapseDetector(keras.callbacks.Callback):
    """Flag descriptor collapse at the end of each epoch: the training loss is pinned at the margin
    (``|loss - margin| <= loss_tol * margin``) **and** the spread of the descriptors of a fixed probe batch
    (:func:`descriptor_spread`) is below ``spread_tol``, for ``patience`` epochs in a row.
    ``action="warn"`` emits a :class:`CollapseWarning`; ``"stop"`` also stops training.
    ``self.collapsed_epochs`` lists the epochs flagged; ``self.spreads`` the spread per epoch.

    Every epoch it also adds to the epoch's logs (and so to ``history.json`` and the training curves, when it
    runs before :class:`MetricsLogger`, as :meth:`~hpatches_kit.training.run.TrainingRun.callbacks` orders it):
    ``descriptor_spread`` and ``pca_dims_90`` / ``pca_dims_99``, the number of principal components of the probe
    descriptors that hold 90% / 99% of their variance
    (:func:`~hpatches_kit.evaluation.diagnostics.pca_energy`): a collapsing descriptor concentrates its energy
    in few dimensions before its spread vanishes. ``self.pca_dims`` lists ``(dims_90, dims_99)`` per epoch.

    Args:
        probe: ``(M, H, W, C)`` fixed batch of patches described every epoch.
        margin: the loss value of a collapsed descriptor.
        loss_tol: relative band around ``margin`` that counts as pinned.
        spread_tol: spread below which the descriptors count as collapsed (drawn as the collapse level in the
            training curves).
        patience: epochs in a row before flagging.
        action: ``"warn"`` or ``"stop"``.
        monitor: the log key of the loss.

    Examples:
        >>> det = CollapseDetector(np.zeros((64, 32, 32, 1), np.float32), margin=1.0)  # doctest: +SKIP
        >>> model.fit(..., callbacks=[det, MetricsLogger("history.json")])  # doctest: +SKIP
    """

    #: it adds keys to the epoch logs: callers put it before the callbacks that record the logs
    adds_logs = True

    def __init__(
        self,
        probe,
        margin: float = 1.0,
        loss_tol: float = 0.05,
        spread_tol: float = 0.05,
        patience: int = 1,
        action: str = "warn",
        monitor: str = "loss",
    ):
        super().__init__()
        if action not in ("warn", "stop"):
            raise ValueError(f"action must be 'warn' or 'stop', got {action!r}")
        self.probe = np.asarray(probe, np.float32)
        self.margin, self.loss_tol, self.spread_tol = float(margin), float(loss_tol), float(spread_tol)
        self.patience, self.action, self.monitor = int(patience), action, monitor
        self.collapsed_epochs: list[int] = []
        self.spreads: list[float] = []
        self.pca_dims: list[tuple[int, int]] = []
        self._streak = 0

    def reference_levels(self) -> dict:
        """``{log key: (value, label)}``: the lines the training-curves plot draws (the collapse level)."""
        return {"descriptor_spread": (self.spread_tol, f"collapse level (spread < {self.spread_tol:g})")}

    def on_epoch_end(self, epoch, logs=None):
        from ..evaluation.diagnostics import pca_energy

        logs = logs if logs is not None else {}
        emb = np.asarray(self.model.predict(self.probe, verbose=0, batch_size=256), np.float64)
        if not np.isfinite(emb).all():
            raise NonFiniteLossError(
                f"the descriptors became NaN or Inf at epoch {epoch + 1} (loss {logs.get(self.monitor)}); "
                "training stopped"
            )
        spread = descriptor_spread(emb)
        energy = pca_energy(emb.reshape(len(emb), -1))
        self.spreads.append(spread)
        self.pca_dims.append((energy["dims_90"], energy["dims_99"]))
        logs["descriptor_spread"] = spread
        logs["pca_dims_90"] = float(energy["dims_90"])
        logs["pca_dims_99"] = float(energy["dims_99"])
        loss = logs.get(self.monitor)
        pinned = loss is not None and abs(float(loss) - self.margin) <= self.loss_tol * self.margin
        if pinned and spread < self.spread_tol:
            self._streak += 1
        else:
            self._streak = 0
        if self._streak >= self.patience:
            self.collapsed_epochs.append(epoch)
            msg = (
                f"descriptor collapse at epoch {epoch + 1}: loss {float(loss):.4f} pinned at margin {self.margin} "
                f"and descriptor spread {spread:.4g} < {self.spread_tol}"
            )
            warnings.warn(msg, CollapseWarning, stacklevel=2)
            if self.action == "stop":
                self.model.stop_training = True


STATE_FILE = "state.json"
LAST = "last.keras"


class AtomicCheckpoint(keras.callbacks.Callback):
    """Save the full model (weights, optimizer state, compile config) every epoch to
    ``<dir>/epoch-XXXX.keras`` and ``<dir>/last.keras``, each written atomically, then ``state.json``
    (``{"epoch": epochs completed, "file": ...}``), also atomically and last, so a crash at any moment
    leaves a consistent last checkpoint. Keeps the ``keep`` newest epoch files. Temporary files that an
    interrupted write left behind (``.*.tmp.keras``) are removed when training starts.

    Put it **after** :class:`MetricsLogger` in the callback list: ``history.json`` is then written before
    ``state.json``, so a kill between the two leaves a history one epoch ahead of the checkpoint, which
    :func:`load_resume`'s caller cuts back (never one behind, which would lose an epoch)."""

    def __init__(self, directory, keep: int = 2):
        super().__init__()
        self.dir = Path(directory)
        self.keep = int(keep)

    def on_train_begin(self, logs=None):
        remove_stale_temporaries(self.dir)

    def on_epoch_end(self, epoch, logs=None):
        self.dir.mkdir(parents=True, exist_ok=True)
        f = self.dir / f"epoch-{epoch + 1:04d}.keras"
        with atomic_path(f, suffix=".keras") as tmp:
            self.model.save(tmp)
        with atomic_path(self.dir / LAST, suffix=".keras") as tmp:
            shutil.copyfile(f, tmp)
        clean_logs = {k: float(v) for k, v in (logs or {}).items() if np.ndim(v) == 0}
        atomic_write_json(
            self.dir / STATE_FILE,
            {
                "epoch": epoch + 1,
                "file": LAST,
                "logs": clean_logs,
                "seed_generators": seed_generator_states(self.model),
            },
        )
        olds = sorted(self.dir.glob("epoch-*.keras"))[: -self.keep] if self.keep > 0 else []
        for o in olds:
            o.unlink(missing_ok=True)


def _seed_layers(model):
    return [
        (f"{i}:{layer.name}", layer)
        for i, layer in enumerate(model._flatten_layers(include_self=True))
        if getattr(layer, "_seed_generators", None)
    ]


def seed_generator_states(model) -> dict:
    """The state of every ``keras.random.SeedGenerator`` of ``model``'s layers (Dropout's random masks), which
    ``model.save`` does not keep: ``{"<index>:<layer name>": [[seed, counter], ...]}``."""
    return {
        key: [np.asarray(sg.state.numpy()).tolist() for sg in layer._seed_generators]
        for key, layer in _seed_layers(model)
    }


def restore_seed_generator_states(model, states: dict) -> bool:
    """Put :func:`seed_generator_states` back; ``False`` (nothing changed) when the layers do not match."""
    layers = dict(_seed_layers(model))
    if set(layers) != set(states) or any(len(layers[k]._seed_generators) != len(v) for k, v in states.items()):
        return False
    for key, values in states.items():
        for sg, v in zip(layers[key]._seed_generators, values):
            sg.state.assign(np.asarray(v, dtype=sg.state.dtype))
    return True


def remove_stale_temporaries(directory) -> list[Path]:
    """Delete the temporary files :func:`hpatches_kit.io.atomic_path` names (``.<name>.<random>.tmp<ext>``)
    that a killed write left in ``directory``; returns them."""
    d = Path(directory)
    stale = [p for p in d.glob(".*.tmp*") if p.is_file() and re.fullmatch(r"\..+\.[^.]+\.tmp(\.[A-Za-z0-9]+)?", p.name)]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


@dataclass
class ResumeState:
    model: keras.Model
    initial_epoch: int
    path: Path
    notes: list = field(default_factory=list)  # what was wrong and what was used instead


def _epoch_of(path: Path) -> int | None:
    m = re.fullmatch(r"epoch-(\d+)\.keras", path.name)
    return int(m.group(1)) if m else None


def load_resume(directory, custom_objects=None) -> ResumeState | None:
    """The newest intact checkpoint in ``directory`` (model compiled with its optimizer state) and the
    number of epochs already done, or ``None`` when there is none. The one ``state.json`` names comes first;
    when ``state.json`` is corrupt, or its checkpoint is missing or does not load, the newest
    ``epoch-XXXX.keras`` that loads is used instead and ``notes`` says so. Nothing loadable at all raises
    ``DataError`` naming the file and the problem."""
    from ..data.errors import DataError

    d = Path(directory)
    sf = d / STATE_FILE
    epochs = sorted(((e, p) for p in d.glob("epoch-*.keras") if (e := _epoch_of(p)) is not None), reverse=True)
    if not sf.is_file() and not epochs:
        return None
    notes, candidates, seeds = [], [], None
    if sf.is_file():
        try:
            state = json.loads(sf.read_text())
            candidates.append((int(state["epoch"]), d / state.get("file", LAST)))
            seeds = state.get("seed_generators")
        except (ValueError, KeyError, TypeError, OSError) as e:
            notes.append(f"{sf}: corrupt checkpoint state ({type(e).__name__}: {e})")
    else:
        notes.append(f"{sf}: missing")
    known = candidates[0][0] if candidates else None
    candidates += [(e, p) for e, p in epochs if known is None or e <= known]
    errors = []
    for i, (epoch, ck) in enumerate(candidates):
        if not ck.is_file():
            errors.append(f"{ck}: checkpoint named by state.json is missing")
            continue
        try:
            model = keras.models.load_model(ck, custom_objects=custom_objects, compile=True)
        except Exception as e:  # noqa: BLE001 - report which file failed, try an older one
            errors.append(
                f"{ck}: cannot load checkpoint ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
            )
            continue
        if notes or errors:
            notes += errors
            notes.append(f"resuming from the newest intact checkpoint {ck} ({epoch} epochs done)")
        # Dropout's random state is not in the .keras file; state.json holds it for the checkpoint it names
        if i == 0 and seeds is not None and not restore_seed_generator_states(model, seeds):
            notes.append(f"{sf}: random-generator state does not match the model's layers; not restored")
        elif (i > 0 or seeds is None) and _seed_layers(model):
            notes.append(
                "dropout random state not restored (not in this checkpoint): the resumed run will not "
                "repeat an uninterrupted one bit for bit"
            )
        return ResumeState(model=model, initial_epoch=epoch, path=ck, notes=notes)
    problems = "; ".join(notes + errors)
    where = candidates[0][1] if candidates else sf
    raise DataError(where, f"no intact checkpoint to resume from ({problems})")


class MetricsLogger(keras.callbacks.Callback):
    """Append each epoch's logs to ``history`` (continuing a resumed run's), write them atomically to
    ``json_path`` and draw the training-curve PNG ``plot_path`` (if given). Every metric's list has one
    entry per epoch; ``None`` where the epoch did not log it (validation only every few epochs).
    ``epoch_wall_s`` is each epoch's wall time from the end of the previous one (or the start of
    training), so it holds the steps, validation and every callback: the time users wait.

    ``history.json`` is written every epoch; the PNG (a matplotlib figure: ~0.2-0.6 s on 2 cores, 3-10% of a
    default descriptor epoch) after the first epoch, then once at least ``plot_every_s`` seconds have passed
    since the last drawing, and always when training ends (``plot_every_s=0``: every epoch)."""

    def __init__(
        self,
        json_path,
        plot_path=None,
        history: dict | None = None,
        extra: dict | None = None,
        plot_every_s: float = 30.0,
        levels: dict | None = None,
    ):
        super().__init__()
        self.json_path, self.plot_path = Path(json_path), (Path(plot_path) if plot_path else None)
        self.history = {k: list(v) for k, v in (history or {}).items()}
        self.extra = dict(extra or {})
        #: ``{metric: (value, label)}`` reference lines of the curves plot (e.g. the collapse level), also
        #: written to history.json as ``reference_levels``
        self.levels = dict(levels or {})
        self.plot_every_s = float(plot_every_s)
        self._last = None
        self._drawn_at = None  # perf_counter of the last drawing
        self._undrawn = False  # epochs logged since the last drawing

    def on_train_begin(self, logs=None):
        self._last = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        done = len(self.history.get("epoch", []))  # epochs logged before this one
        scalars = {k: float(v) for k, v in (logs or {}).items() if np.ndim(v) == 0}
        now = time.perf_counter()
        if self._last is not None:
            scalars["epoch_wall_s"] = now - self._last
        self._last = now
        # Every list stays aligned with "epoch": a metric missing from an epoch's logs (val_* between
        # validations, see ``--val-every``) is logged as None (JSON null), one first seen late is front-padded.
        for k in [k for k in self.history if k != "epoch"] + [k for k in scalars if k not in self.history]:
            col = self.history.setdefault(k, [])
            col.extend([None] * (done - len(col)))
            col.append(scalars.get(k))
        self.history.setdefault("epoch", []).append(epoch + 1)
        levels = (
            {"reference_levels": {k: {"value": float(v), "label": lab} for k, (v, lab) in self.levels.items()}}
            if self.levels
            else {}
        )
        atomic_write_json(self.json_path, {**self.extra, **levels, "history": self.history})
        self._undrawn = True
        if self._drawn_at is None or now - self._drawn_at >= self.plot_every_s:
            self._draw()  # counted in the next epoch's wall time, as every callback after this one

    def on_train_end(self, logs=None):
        if self._undrawn or (self.plot_path is not None and self.history.get("epoch")):
            self._draw(vector=True)  # the PDF twin once, at the end (it costs as much as the PNG)

    def _draw(self, vector: bool = False):
        if self.plot_path is not None:
            from ..plots.training import plot_training_curves

            plot_training_curves(self.history, self.plot_path, levels=self.levels, vector=vector)
        self._drawn_at = time.perf_counter()
        self._undrawn = False
