"""Train a U-Net denoiser on N-HPatches-style (noisy, clean) patch pairs: what ``hpatches-train denoise`` runs.

Defaults (:class:`DenoiseOptions`): the embedded N-HPatches dataset (32x32 with ``*_noise`` twins), the
shallow U-Net, Adam 1e-3, mean absolute error in grey levels, batches of 128 pairs, 3 epochs, split ``a`` test
sequences held out. At the end: held-out MAE / PSNR of the denoised vs the noisy input, and a PNG of examples.

Examples:
    >>> from hpatches_kit.training.denoise import DenoiseOptions, train_denoiser
    >>> train_denoiser(DenoiseOptions(epochs=1, out="runs/u"))["heldout"]["mae_denoised"]  # doctest: +SKIP
    9.81
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from ..data.errors import DataError
from ..errors import OptionError
from .run import OptionsFromNamespace

log = logging.getLogger(__name__)

LOSSES = ("mae", "mse")


@dataclass
class DenoiseOptions(OptionsFromNamespace):
    """Every option of a denoiser run (the flags of ``hpatches-train denoise``, same names)."""

    data: str | None = None
    split: str = "a"
    splits_file: str | None = None
    model: str = "shallow_unet"
    base: int = 16
    depth: int = 4
    loss: str = "mae"
    batch_size: int = 128
    epochs: int = 3
    steps_per_epoch: int | None = None
    lr: float = 1e-3
    lr_schedule: str = "constant"
    seed: int = 0
    augment: bool = True
    val_every: int = 1
    max_eval_patches: int = 20000
    strategy: str = "auto"
    mixed_precision: str = "auto"
    jit: str = "auto"
    out: str | None = None
    resume: bool = False
    verbose: int = 1
    evaluate: bool = True


def psnr(a, b) -> float:
    """Peak signal-to-noise ratio in dB of grey-level images ``a`` vs ``b`` (peak 255; ``inf`` when equal)."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def heldout_denoise_metrics(model, noisy, clean, max_patches=20000, seed=0):
    """MAE and PSNR of the denoised and of the noisy patches against the clean ones.

    Args:
        model: the denoiser, ``(N, P, P, 1) -> (N, P, P, 1)`` grey levels.
        noisy, clean: ``(..., P, P)`` patches (e.g. tracks); at most ``max_patches`` (drawn with ``seed``).

    Returns:
        ``(metrics, (noisy, denoised, clean))``: ``metrics`` has ``patches``, ``mae_denoised``, ``mae_noisy``,
        ``psnr_denoised``, ``psnr_noisy``; the arrays are the ``(N, P, P)`` patches used.
    """
    p = clean.shape[-1]
    n_flat, c_flat = noisy.reshape(-1, p, p), clean.reshape(-1, p, p)
    if len(n_flat) > max_patches:
        idx = np.sort(np.random.default_rng(seed).choice(len(n_flat), max_patches, replace=False))
        n_flat, c_flat = n_flat[idx], c_flat[idx]
    den = model.predict(n_flat[..., None].astype(np.float32), batch_size=512, verbose=0)[..., 0]
    den = np.clip(den, 0, 255)
    return {
        "patches": int(len(n_flat)),
        "mae_denoised": float(np.abs(den - c_flat).mean()),
        "mae_noisy": float(np.abs(n_flat.astype(np.float64) - c_flat).mean()),
        "psnr_denoised": psnr(den, c_flat),
        "psnr_noisy": psnr(n_flat, c_flat),
    }, (n_flat, den, c_flat)


def train_denoiser(o: DenoiseOptions, arguments: dict | None = None) -> dict:
    """Train a denoiser as ``hpatches-train denoise`` does and write the run folder (see
    :mod:`hpatches_kit.training.run`).

    Args:
        o: the options.
        arguments: what to record in ``run_args.json`` (default: the options).

    Returns:
        The run's metrics (as in ``metrics.json``) with ``"model"``: the path of ``model.keras``.

    Raises:
        ValueError: options that cannot run (the flag is named); ``DataError`` for bad data or output folders.
    """
    from .run import check_schedule, start_and_train

    check_schedule(o.epochs, o.batch_size, o.lr, o.val_every)
    from ..models import registry

    if o.model not in registry.REGISTRY.choices("denoiser"):
        raise OptionError(
            f"unknown {{model}} {o.model!r}; expected one of {', '.join(registry.names('denoiser'))}", "model"
        )
    return start_and_train("denoise", o, arguments, lambda run: _train(o, run))


def _train(o: DenoiseOptions, run) -> dict:
    from ..data import load_dataset
    from ..models import registry
    from ..plots.training import plot_denoise_examples
    from .pipelines import denoise_dataset
    from .run import resolve_data, validation_epochs
    from .schedules import make_optimizer, replan_schedule
    from .split_policy import train_test_names

    root = resolve_data(o.data, "n-hpatches")
    train_names, test_names, how = train_test_names(root, o.split, o.splits_file)
    log.info(f"[data] {root}: {len(train_names)} train / {len(test_names)} held-out sequences ({how})")
    ds_train = load_dataset(root, sequences=train_names, noise=True, progress=o.verbose > 0)
    clean, _ = ds_train.all_tracks()
    noisy, _ = ds_train.all_tracks(noisy=True)
    del ds_train
    if len(clean) == 0:
        raise DataError(root, "no training tracks")
    p = clean.shape[-1]
    n_pairs = clean.shape[0] * clean.shape[1]
    bs = o.batch_size
    if bs % run.replicas:
        raise OptionError(f"{{batch_size}} {bs} must be divisible by the {run.replicas} replicas", "batch_size")
    if n_pairs < bs:
        raise ValueError(f"only {n_pairs} training patch pairs: fewer than one batch of {bs}")
    steps = o.steps_per_epoch or n_pairs // bs
    train = denoise_dataset(noisy, clean, batch_size=bs, seed=o.seed, augment=o.augment)

    model, initial_epoch, history = run.resume_state()
    with run.strategy.scope():
        if model is None:
            model = registry.get(o.model, input_size=p, base=o.base, depth=o.depth)
            optimizer = make_optimizer(o.lr, o.lr_schedule, o.epochs, steps)
        else:  # resumed: keep the optimizer state and step count
            optimizer = model.optimizer
            replan_schedule(optimizer, o.lr, o.lr_schedule, o.epochs, steps)
        model.compile(optimizer=optimizer, loss=o.loss, jit_compile=run.jit)
    train = train.skip(initial_epoch * steps) if initial_epoch else train

    val, val_steps, test = None, None, None
    if test_names:
        ds_test = load_dataset(root, sequences=test_names, noise=True, progress=o.verbose > 0)
        test = (ds_test.all_tracks(noisy=True)[0], ds_test.all_tracks()[0])
        n_test = test[0].shape[0] * 16
        vb = min(bs, n_test)
        if vb >= 1:
            val = denoise_dataset(test[0], test[1], batch_size=vb, seed=o.seed + 1, augment=False)
            val_steps = max(1, min(n_test // vb, 50))
    t0 = time.time()
    if initial_epoch < o.epochs:
        model.fit(
            train,
            steps_per_epoch=steps,
            epochs=o.epochs,
            initial_epoch=initial_epoch,
            validation_data=val,
            validation_steps=val_steps,
            validation_freq=validation_epochs(o.epochs, o.val_every),
            verbose=o.verbose,
            callbacks=run.callbacks(history),
        )
    metrics = {
        "data": str(root),
        "split": how,
        "train_sequences": len(train_names),
        "test_sequences": len(test_names),
        "train_pairs": int(n_pairs),
        "steps_per_epoch": steps,
        "train_seconds": time.time() - t0,
    }
    hist = run.history()
    if hist:
        metrics["history"] = hist
    eval_src = test if test is not None else (noisy, clean)
    m, (n_flat, den, c_flat) = heldout_denoise_metrics(model, *eval_src, max_patches=o.max_eval_patches, seed=o.seed)
    metrics["heldout" if test is not None else "train_set"] = m
    plot_denoise_examples(n_flat, den, c_flat, run.out / "denoise_examples.png")
    path = run.save_final(model, metrics)
    log.info(
        f"[held-out] MAE noisy {m['mae_noisy']:.2f} -> denoised {m['mae_denoised']:.2f} grey levels; "
        f"PSNR {m['psnr_noisy']:.2f} -> {m['psnr_denoised']:.2f} dB ({m['patches']} patches)"
    )
    log.info(f"[done] {path}")
    return {**metrics, "model": path}
