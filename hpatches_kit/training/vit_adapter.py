"""Train Houlsby bottleneck adapters of a frozen ViT for image-pair matching: what ``hpatches-train
vit-adapter`` runs.

The run folder is a :class:`~hpatches_kit.training.run.TrainingRun`'s (``run_args.json``, ``checkpoints/``
with the siamese model and optimizer state every epoch, ``history.json``, ``model.keras`` = the embedding
model), and ``metrics.json`` holds per-epoch loss, LR and held-out pair-matching accuracy, the frozen
baseline, the final accuracy and the parameter counts.

Examples:
    >>> from hpatches_kit.training.vit_adapter import VitAdapterOptions, train_vit_adapter
    >>> m = train_vit_adapter(VitAdapterOptions(epochs=2, out="runs/v"))  # doctest: +SKIP
    >>> m["final"]["accuracy"]["row"] > m["frozen"]["accuracy"]["row"]  # doctest: +SKIP
    True
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass

from ..errors import OptionError
from .run import OptionsFromNamespace

log = logging.getLogger(__name__)


@dataclass
class VitAdapterOptions(OptionsFromNamespace):
    """Every option of a ViT-adapter run (the flags of ``hpatches-train vit-adapter``, same names)."""

    preset: str = "vit-mini"
    weights: str | None = None
    bottleneck: int = 64
    loss: str = "contrastive"
    temperature: float = 0.05
    margin: float = 0.0
    lr: float = 1e-3
    lr_schedule: str = "onecycle"
    epochs: int = 10
    batch_size: int = 16
    image_size: int | None = None
    pooling: str = "cls"
    head: int | None = None
    train_layernorms: bool = False
    data: str | None = None
    passes: str = "clean"
    test_fraction: float = 0.3
    train_pairs_per_photo: int = 100
    eval_pairs_per_photo: int = 10
    seed: int = 0
    out: str | None = "runs/vit-adapter"
    resume: bool = False
    verbose: int = 1


def check_options(o: VitAdapterOptions) -> None:
    """Raise :class:`~hpatches_kit.errors.OptionError` naming the options that cannot run."""
    if o.temperature <= 0:
        raise OptionError(f"{{temperature}} must be > 0, got {o.temperature}", "temperature")
    if o.train_pairs_per_photo < 1 or o.eval_pairs_per_photo < 1:
        raise OptionError(
            "{train_pairs_per_photo} and {eval_pairs_per_photo} must be >= 1",
            "train_pairs_per_photo",
            "eval_pairs_per_photo",
        )
    if o.epochs < 1 or o.batch_size < 2 or o.lr <= 0:
        raise OptionError("{epochs} must be >= 1, {batch_size} >= 2 and {lr} > 0", "epochs", "batch_size", "lr")
    from ..losses import registry

    try:
        kind = registry.entry(o.loss).kind
    except ValueError:
        kind = None
    if kind != "pair":
        raise OptionError(
            f"{{loss}} {o.loss!r} is no image-pair loss; expected one of {', '.join(registry.names('pair'))}", "loss"
        )


def _eval(backbone, test) -> dict:
    from ..evaluation.pair_matching import evaluate_pairs

    r = evaluate_pairs(backbone, test)
    return {"accuracy": r["accuracy"], "chance": r["chance"], "mean_rank": r["mean_rank"], "n_pairs": r["n_pairs"]}


def train_vit_adapter(o: VitAdapterOptions, arguments: dict | None = None) -> dict:
    """Train the adapters and write the run folder.

    Args:
        o: the options.
        arguments: what to record in ``run_args.json`` (default: the options).

    Returns:
        ``metrics.json``'s content with ``"model"``: the path of ``model.keras``.

    Raises:
        ValueError: options that cannot run; ``DataError`` for bad data or output folders.
    """
    check_options(o)
    from .run import start_and_train

    return start_and_train(
        "vit-adapter", o, arguments, lambda run: _train(o, run), strategy="default", precision="float32", jit="off"
    )


def _train(o: VitAdapterOptions, run) -> dict:
    import json

    import keras

    from .. import losses
    from ..data.stereo import embedded_split, load_stereo_pairs, split_pairs
    from ..models.vit import find_backbone, get_preset, parameter_report, vit_adapter
    from ..models.vit.siamese import siamese
    from .one_cycle import OneCycle
    from .pairs import PairBatches

    size = o.image_size or get_preset(o.preset).image_size
    if o.data is None:  # embedded default: many training views of the training photos, held-out photos
        train, test = embedded_split(size, o.seed, o.test_fraction, o.train_pairs_per_photo, o.eval_pairs_per_photo)
    else:
        pairs = load_stereo_pairs(o.data, size=size, passes=o.passes, seed=o.seed)
        train, test = split_pairs(pairs, o.test_fraction, o.seed)

    def make_batches(epoch):
        return PairBatches(
            train.left,
            train.right,
            o.batch_size,
            negatives=losses.entry(o.loss).extra.get("negatives", False),
            seed=o.seed,
            epoch=epoch,
        )

    steps = len(make_batches(0)) * o.epochs
    metrics = {"config": dataclasses.asdict(o), "epochs": []}
    model, start, history = run.resume_state()
    if model is not None:
        backbone = find_backbone(model)
        mp = run.out / "metrics.json"
        if mp.is_file():
            old = json.loads(mp.read_text())
            metrics["epochs"] = [e for e in old.get("epochs", []) if e["epoch"] <= start]
            metrics["frozen"] = old.get("frozen")
        log.info(f"resuming from {run.checkpoints} (epoch {start})")
    else:
        backbone = vit_adapter(
            o.preset,
            bottleneck=o.bottleneck,
            train_layernorms=o.train_layernorms,
            head=o.head,
            pooling=o.pooling,
            image_size=o.image_size,
            weights=o.weights,
        )
        model = siamese(backbone)
        lr = OneCycle(o.lr, max(1, steps)) if o.lr_schedule == "onecycle" else o.lr
        model.compile(
            optimizer=keras.optimizers.Adam(lr), loss=losses.get(o.loss, margin=o.margin, temperature=o.temperature)
        )
        metrics["frozen"] = _eval(backbone, test)
    if not o.weights:
        log.info("note: no --weights: the frozen backbone is random-initialised (no pretrained weights offline)")
    rep = parameter_report(backbone)
    metrics["parameters"] = rep
    metrics["pairs"] = {
        "train": len(train),
        "test": len(test),
        "test_sources": sorted(set(test.groups)),
        "data": test.source,
        "image_size": size,
    }
    log.info(
        f"trainable {rep['trainable']:,} of {rep['total']:,} parameters (adapters {rep['adapters']:,}, "
        f"{100 * rep['adapter_overhead']:.2f}% of the backbone); {len(train)} train / {len(test)} held-out pairs"
    )
    log.info(f"frozen backbone + identity adapters: held-out accuracy {metrics['frozen']['accuracy']}")

    class HeldOut(keras.callbacks.Callback):
        """Per epoch: held-out pair matching, loss, LR and wall seconds into ``metrics.json``."""

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.time()

        def on_epoch_end(self, epoch, logs=None):
            opt = self.model.optimizer
            lr = opt.learning_rate
            lr = float(lr(opt.iterations) if callable(lr) else keras.ops.convert_to_numpy(lr))
            ev = _eval(backbone, test)
            metrics["epochs"].append(
                {
                    "epoch": epoch + 1,
                    "loss": float(logs.get("loss", float("nan"))),
                    "lr": lr,
                    "seconds": round(time.time() - self.t0, 2),
                    "heldout": ev,
                }
            )
            run.write_metrics(metrics)
            if o.verbose:
                log.info(
                    ("\n" if o.verbose == 1 else "") + f"epoch {epoch + 1}: loss {metrics['epochs'][-1]['loss']:.4f} "
                    f"held-out row acc {ev['accuracy']['row']:.3f} (assignment {ev['accuracy']['assignment']:.3f})"
                )

    if start < o.epochs:
        # the held-out record first: the checkpoint's state.json, written last, then marks a complete epoch
        model.fit(
            make_batches(start),
            epochs=o.epochs,
            initial_epoch=start,
            shuffle=False,
            callbacks=[HeldOut()] + run.callbacks(history),
            verbose=min(o.verbose, 2),
        )
    metrics["final"] = _eval(backbone, test)
    path = run.save_final(backbone, metrics)
    log.info(
        f"held-out accuracy: frozen {metrics['frozen']['accuracy']['row']:.3f} -> trained "
        f"{metrics['final']['accuracy']['row']:.3f} (row; chance {metrics['final']['chance']:.3f}); model: {path}"
    )
    return {**run.info, **metrics, "model": path}
