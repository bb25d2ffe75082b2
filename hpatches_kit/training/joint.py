"""Train a denoiser and a descriptor end to end (task-driven denoising), and measure a denoiser's pixel error.

The joint objective, on S x K batches of (noisy patch, clean patch, track label) (:func:`~hpatches_kit.training.
pipelines.joint_dataset`)::

    loss = triplet(labels, descriptor(clip(unet(noisy)))) + recon_weight * mean |unet(noisy) - clean|

The triplet loss (any S x K loss of :mod:`hpatches_kit.losses`, batch-hard by default) is taken through both
models, so the U-Net learns what the descriptor needs; the reconstruction loss (MAE in grey levels of the U-Net's
unclipped output) is a regulariser that keeps the U-Net a denoiser. ``recon_weight=0`` is pure task training.
The model trained is a :func:`hpatches_kit.models.joint.denoise_describe` model; its two-output training twin
(:func:`~hpatches_kit.models.joint.joint_training_model`) shares its weights and carries the two losses, so a
plain ``model.fit`` (callbacks, checkpoints) runs it.
"""

from __future__ import annotations

import time

import numpy as np

from ..data.errors import DataError
from ..models.joint import DENOISED, DESCRIPTOR, denoise_describe, joint_training_model

__all__ = ["compile_joint", "train_joint", "load_joint_start", "DEFAULT_RECON_WEIGHT"]

DEFAULT_RECON_WEIGHT = 0.05  # 0.05 x MAE (about 5 grey levels after MAE training) ~ 0.25, next to a triplet loss ~ 0.5


def load_joint_start(denoiser, descriptor):
    """The :func:`~hpatches_kit.models.joint.denoise_describe` model a joint run starts from.

    Args:
        denoiser: a trained U-Net (model or ``.keras`` path), e.g. ``models/unet-shallow-embedded.keras``.
        descriptor: a trained descriptor (model or ``.keras`` path), e.g. ``models/l2net-embedded.keras``.

    Returns:
        The joint model (copies of both, same weights).

    Raises:
        DataError: naming the file that does not load or whose patch size does not fit the other's.
    """
    from ..models.io import load_model
    from ..models.registry import descriptor_branch

    den = load_model(denoiser, "the denoiser")
    desc = descriptor_branch(load_model(descriptor, "the descriptor"))  # a random-triplet checkpoint: its branch
    try:
        return denoise_describe(den, desc)
    except ValueError as e:
        where = descriptor if isinstance(descriptor, (str, bytes)) or hasattr(descriptor, "__fspath__") else None
        raise DataError(where, str(e)) from None


def compile_joint(model, loss, recon_weight: float = DEFAULT_RECON_WEIGHT, optimizer="adam", jit_compile=False,
                  training_model=None):
    """Compile the two-output training twin of a joint model with ``loss + recon_weight * MAE``.

    Args:
        model: a :func:`~hpatches_kit.models.joint.denoise_describe` model.
        loss: the descriptor loss, a Keras loss on ``(labels, embeddings)`` (e.g. ``losses.get("batch-hard")``).
        recon_weight: weight of the reconstruction MAE (grey levels); ``>= 0``.
        optimizer: a Keras optimizer (or its name).
        jit_compile: XLA.
        training_model: compile this training twin (e.g. one loaded by ``--resume``) instead of a new one.

    Returns:
        The compiled training model (outputs ``descriptor`` and ``denoised``; it shares ``model``'s weights).
        Its ``fit`` logs ``loss`` (the weighted total), ``descriptor_loss`` and ``denoised_loss`` (the unweighted
        MAE).

    Examples:
        >>> tm = compile_joint(joint, losses.get("batch-hard"), recon_weight=0.05)
        >>> tm.fit(joint_dataset(noisy, clean, 128, 2), steps_per_epoch=10)
    """
    w = float(recon_weight)
    if not np.isfinite(w) or w < 0:
        raise ValueError(f"recon_weight must be a finite number >= 0, got {recon_weight}")
    tm = joint_training_model(model) if training_model is None else training_model
    tm.compile(optimizer=optimizer, loss={DESCRIPTOR: loss, DENOISED: "mae"},
               loss_weights={DESCRIPTOR: 1.0, DENOISED: w}, jit_compile=jit_compile)
    return tm


def train_joint(noisy, clean, model, *, loss="batch-hard", margin: float = 1.0, distance: str = "L2",
                recon_weight: float = DEFAULT_RECON_WEIGHT, tracks_per_batch: int = 128, views: int = 2,
                epochs: int = 1, steps_per_epoch: int | None = None, lr: float = 1e-3, lr_schedule: str = "constant",
                seed: int = 0, augment: bool = True, geometric: bool = False, callbacks=(), verbose: int = 0,
                jit_compile: bool = False):
    """Train a joint denoiser + descriptor on noisy tracks with their clean twins.

    Args:
        noisy, clean: ``(T, 16, P, P) uint8`` training tracks (noisy twins, clean originals; same order).
        model: a :func:`~hpatches_kit.models.joint.denoise_describe` model (:func:`load_joint_start` builds one
            from a MAE-trained U-Net and a clean-trained descriptor); trained in place.
        loss: a descriptor loss name (:func:`hpatches_kit.losses.get`, ``margin``/``distance``/``views`` passed
            on) or a Keras loss object.
        recon_weight: weight of the reconstruction MAE; 0 trains for the task alone.
        tracks_per_batch, views: S and K (batches of S*K patches).
        epochs, steps_per_epoch: the budget (default steps: one pass over the tracks, ``T // S``).
        lr, lr_schedule: Adam learning rate, ``"constant"`` or ``"cosine"`` (to 0 over the run).
        seed, augment, geometric: the pipeline's (:func:`~hpatches_kit.training.pipelines.joint_dataset`).
        callbacks: Keras callbacks for ``fit`` (they see the training twin).
        verbose: Keras progress.
        jit_compile: XLA.

    Returns:
        ``(model, history)``: the trained joint model (the same object) and ``{metric: [per epoch]}`` plus
        ``epoch_wall_s`` and ``train_seconds``.

    Examples:
        >>> joint = load_joint_start("models/unet-shallow-embedded.keras", "models/l2net-embedded.keras")
        >>> joint, hist = train_joint(noisy, clean, joint, recon_weight=0.05, epochs=2, steps_per_epoch=50)
        >>> joint.save("joint.keras")   # hpatches-eval --model joint.keras --noisy
    """
    import keras

    from .. import losses
    from .pipelines import joint_dataset
    from .schedules import make_optimizer

    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    steps = steps_per_epoch or len(noisy) // tracks_per_batch
    if steps < 1:
        raise ValueError(f"only {len(noisy)} tracks: fewer than one batch of {tracks_per_batch} tracks")
    data = joint_dataset(noisy, clean, tracks_per_batch, views, seed=seed, augment=augment, geometric=geometric)
    lossobj = losses.get(loss, margin=margin, distance_metric=distance, views_per_track=views) if isinstance(loss, str) else loss
    keras.utils.set_random_seed(seed)
    tm = compile_joint(model, lossobj, recon_weight, make_optimizer(lr, lr_schedule, epochs, steps), jit_compile)
    walls = []

    class _Wall(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.time()

        def on_epoch_end(self, epoch, logs=None):
            walls.append(time.time() - self.t)

    t0 = time.time()
    h = tm.fit(data, steps_per_epoch=steps, epochs=epochs, verbose=verbose, callbacks=[*callbacks, _Wall()])
    hist = {k: [float(v) for v in vals] for k, vals in h.history.items()}
    hist["epoch_wall_s"] = walls
    hist["train_seconds"] = time.time() - t0
    return model, hist

