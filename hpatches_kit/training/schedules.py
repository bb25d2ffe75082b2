"""Learning-rate schedules and the optimiser of ``hpatches-train denoise`` / ``descriptor``."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def cosine_decay(lr: float, epochs: int, steps_per_epoch: int):
    """Cosine decay from ``lr`` to 0 over ``epochs x steps_per_epoch`` steps (at least 1).

    Returns:
        A ``keras.optimizers.schedules.CosineDecay``.

    Examples:
        >>> cosine_decay(1e-3, 2, 5).decay_steps
        10
    """
    import keras

    return keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, epochs * steps_per_epoch), alpha=0.0)


def make_optimizer(lr: float, schedule: str, epochs: int, steps_per_epoch: int):
    """Adam at ``lr``, constant (``schedule="constant"``) or cosine-decayed to 0 over the whole run
    (``"cosine"``, ``epochs x steps_per_epoch`` steps).

    Returns:
        A ``keras.optimizers.Adam``.
    """
    import keras

    return keras.optimizers.Adam(cosine_decay(lr, epochs, steps_per_epoch) if schedule == "cosine" else lr)


def replan_schedule(optimizer, lr: float, schedule: str, epochs: int, steps_per_epoch: int) -> bool:
    """On resume with a cosine schedule: a checkpoint's cosine schedule planned for another number of epochs is
    re-planned over ``epochs x steps_per_epoch`` (the step count carries on, so resuming with the same epochs
    changes nothing and a longer run continues the decay from where it now stands).

    Returns:
        Whether the schedule was replaced.
    """
    if schedule != "cosine":
        return False
    cfg = optimizer.get_config().get("learning_rate")
    new = cosine_decay(lr, epochs, steps_per_epoch)
    same = isinstance(cfg, dict) and cfg.get("class_name") == "CosineDecay"
    if same and cfg["config"].get("decay_steps") == new.decay_steps:
        return False
    log.info(f"[resume] cosine learning-rate schedule re-planned over {new.decay_steps} steps")
    optimizer.learning_rate = new
    return True
