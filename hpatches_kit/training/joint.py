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

__all__ = ["DEFAULT_RECON_WEIGHT", "compile_joint", "load_joint_start", "train_joint", "unet_lr_optimizer"]

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


def unet_lr_optimizer(model, learning_rate, unet_lr_scale: float = 1.0, unet_warmup_steps: int = 0):
    """Adam whose U-Net steps are ``unet_lr_scale`` x the descriptor's, ramped up linearly over the first
    ``unet_warmup_steps`` steps (a per-variable-group learning rate; gradient scaling would not do, since Adam's
    update does not depend on the gradient's scale).

    Step ``t`` (from 0) updates a U-Net weight with ``lr(t) * unet_lr_scale * min(1, (t + 1) / warmup)``, a
    descriptor weight with ``lr(t)``.

    Args:
        model: a :func:`~hpatches_kit.models.joint.denoise_describe` model; its nested ``denoiser``'s variables
            form the U-Net group.
        learning_rate: the descriptor's learning rate (a float or a Keras schedule).
        unet_lr_scale: the U-Net's multiplier, ``>= 0`` (0 freezes it, 1 with no warm-up is plain Adam).
        unet_warmup_steps: linear warm-up of the U-Net's multiplier, ``>= 0`` steps.

    Returns:
        A ``keras.optimizers.Adam`` subclass (:class:`GroupScaledAdam`).

    Example:
        >>> opt = unet_lr_optimizer(joint, 1e-3, unet_lr_scale=0.1, unet_warmup_steps=25)
    """
    from ..models.joint import joint_parts

    s, w = float(unet_lr_scale), int(unet_warmup_steps)
    if not np.isfinite(s) or s < 0:
        raise ValueError(f"unet_lr_scale must be a finite number >= 0, got {unet_lr_scale}")
    if w < 0:
        raise ValueError(f"unet_warmup_steps must be >= 0, got {unet_warmup_steps}")
    opt = _group_scaled_adam_class()(learning_rate, group_scale=s, group_warmup_steps=w)
    opt.set_group(joint_parts(model)[0].trainable_variables)
    return opt


_GROUP_ADAM = None


def _group_scaled_adam_class():
    global _GROUP_ADAM
    if _GROUP_ADAM is not None:
        return _GROUP_ADAM
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="hpatches_kit")
    class GroupScaledAdam(keras.optimizers.Adam):
        """Adam with a learning-rate multiplier (and linear warm-up) for one group of variables
        (:func:`unet_lr_optimizer`). The group is given by :meth:`set_group` before the first step; it is
        not serialised (a reloaded optimizer scales no variable until ``set_group`` is called again)."""

        def __init__(self, learning_rate=0.001, group_scale=1.0, group_warmup_steps=0, **kwargs):
            super().__init__(learning_rate=learning_rate, **kwargs)
            self.group_scale = float(group_scale)
            self.group_warmup_steps = int(group_warmup_steps)
            self._group_ids = set()
            self._group_index = set()

        def set_group(self, variables):
            self._group_ids = {id(v) for v in variables}

        def build(self, var_list):
            super().build(var_list)
            self._group_index = {i for i, v in enumerate(var_list) if id(v) in self._group_ids}
            if self._group_ids and not self._group_index:
                raise ValueError("GroupScaledAdam: none of the group's variables is being trained")

        def group_multiplier(self, dtype="float32"):
            """The group's multiplier at the current step (a scalar tensor)."""
            m = ops.cast(self.group_scale, dtype)
            if self.group_warmup_steps > 0:
                t = ops.cast(self.iterations + 1, dtype)
                m = m * ops.minimum(ops.cast(1.0, dtype), t / float(self.group_warmup_steps))
            return m

        def update_step(self, gradient, variable, learning_rate):
            if self._get_variable_index(variable) in self._group_index:
                learning_rate = ops.cast(learning_rate, variable.dtype) * self.group_multiplier(variable.dtype)
            return super().update_step(gradient, variable, learning_rate)

        def get_config(self):
            return {
                **super().get_config(),
                "group_scale": self.group_scale,
                "group_warmup_steps": self.group_warmup_steps,
            }

    _GROUP_ADAM = GroupScaledAdam
    return GroupScaledAdam


def compile_joint(
    model, loss, recon_weight: float = DEFAULT_RECON_WEIGHT, optimizer="adam", jit_compile=False, training_model=None
):
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
    tm.compile(
        optimizer=optimizer,
        loss={DESCRIPTOR: loss, DENOISED: "mae"},
        loss_weights={DESCRIPTOR: 1.0, DENOISED: w},
        jit_compile=jit_compile,
    )
    return tm


def train_joint(
    noisy,
    clean,
    model,
    *,
    loss="batch-hard",
    margin: float = 1.0,
    distance: str = "L2",
    recon_weight: float = DEFAULT_RECON_WEIGHT,
    tracks_per_batch: int = 128,
    views: int = 2,
    epochs: int = 1,
    steps_per_epoch: int | None = None,
    lr: float = 1e-3,
    lr_schedule: str = "constant",
    seed: int = 0,
    augment: bool = True,
    geometric: bool = False,
    callbacks=(),
    verbose: int = 0,
    jit_compile: bool = False,
    unet_lr_scale: float = 1.0,
    unet_warmup_steps: int = 0,
):
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
        unet_lr_scale, unet_warmup_steps: the U-Net's learning rate is ``unet_lr_scale`` x ``lr`` (x the
            schedule), ramped up linearly over ``unet_warmup_steps`` steps (:func:`unet_lr_optimizer`); the
            defaults (1, 0) train both with one plain Adam.

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
    lossobj = (
        losses.get(loss, margin=margin, distance_metric=distance, views_per_track=views)
        if isinstance(loss, str)
        else loss
    )
    keras.utils.set_random_seed(seed)
    opt = make_optimizer(lr, lr_schedule, epochs, steps)
    if unet_lr_scale != 1.0 or unet_warmup_steps:
        from .schedules import cosine_decay

        opt = unet_lr_optimizer(
            model, cosine_decay(lr, epochs, steps) if lr_schedule == "cosine" else lr, unet_lr_scale, unet_warmup_steps
        )
    tm = compile_joint(model, lossobj, recon_weight, opt, jit_compile)
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
