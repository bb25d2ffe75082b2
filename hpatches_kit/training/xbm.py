"""What ``hpatches-train descriptor --xbm SIZE [--xbm-start STEP]`` and ``--pca-dim D`` add to a run: the XBM
loss for a ``--loss`` name, its callback (validation read-only, the memory saved beside the checkpoints as
``checkpoints/xbm-epoch-XXXX.npz`` and restored on ``--resume``), and the PCA step after training.

The trainer calls :func:`xbm_loss_for` from ``make_loss``, :func:`run_extras` once after compiling, and
:func:`pca_sample` / :func:`finish` around ``fit``; everything else lives in :mod:`hpatches_kit.losses.xbm` and
:mod:`hpatches_kit.models.pca`.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["XBM_KINDS", "xbm_loss_for", "run_extras", "pca_sample", "finish"]

#: ``--loss`` names that ``--xbm`` mines over batch + memory, and the XBM loss each becomes
XBM_KINDS = {"batch-hard": "batch-hard", "hardnet": "hardnet"}


def xbm_loss_for(
    name: str, size: int, start: int = 0, dim: int = 128, margin: float = 1.0, distance: str = "L2", koleo: float = 0.0
):
    """The :class:`~hpatches_kit.losses.xbm.XBMLoss` for ``--loss name --xbm size --xbm-start start``.

    Raises:
        ValueError: naming the flag: a loss ``--xbm`` does not apply to, ``--koleo``, a negative size/start.
    """
    from ..losses.xbm import XBMLoss

    if size < 1 or start < 0:
        raise ValueError(f"--xbm must be >= 1 and --xbm-start >= 0, got {size} and {start}")
    if name not in XBM_KINDS:
        raise ValueError(
            f"--xbm mines over batch + memory for --loss {' or '.join(XBM_KINDS)} (the contrastive "
            f"and InfoNCE memory losses: hpatches_kit.losses.XBMLoss), not --loss {name}"
        )
    if koleo:
        raise ValueError("--koleo does not combine with --xbm")
    # under tf.distribute XBMLoss always mines the global batch (--global-mining is implied)
    # the trainer's pipelines label tracks by their dataset-wide id under --xbm (descriptor_dataset(labels="track")),
    # so a track drawn again is a positive of its own memory entries, never a negative
    return XBMLoss(
        XBM_KINDS[name],
        memory_size=size,
        dim=dim,
        start=start,
        margin=margin,
        distance_metric=distance,
        batch_labels=False,
    )


def run_extras(model, run, initial_epoch: int) -> list:
    """Callbacks a compiled run needs for its XBM loss (none without one); on ``--resume`` the memory saved
    after ``initial_epoch`` epochs is restored first (a missing file is logged: the memory restarts empty)."""
    from ..losses.xbm import find_xbm, memory_file, restore_memory

    xbm = find_xbm(model.loss)
    if xbm is None:
        return []
    if initial_epoch > 0:
        if restore_memory(xbm, run.checkpoints, initial_epoch):
            log.info(
                "[resume] XBM memory restored from %s (step %d)",
                memory_file(run.checkpoints, initial_epoch),
                int(xbm.memory.steps.numpy()),
            )
        else:
            log.warning(
                "[resume] %s: missing; the XBM memory restarts empty (step 0)",
                memory_file(run.checkpoints, initial_epoch),
            )
    return [xbm.callback(directory=run.checkpoints if run.chief else None)]


def pca_sample(tracks, pca_dim, max_patches: int = 20000, seed: int = 0):
    """Up to ``max_patches`` training patches ``(N, P, P, 1)`` float32 (one random view of random tracks) to fit
    ``--pca-dim`` on, or ``None`` without it; taken before the trainer hands the tracks to the pipeline."""
    if not pca_dim:
        return None
    n = min(len(tracks), max_patches)
    if n <= pca_dim:  # checked before training: the PCA is fitted after it, and a resume may not change --pca-dim
        from ..errors import OptionError

        raise OptionError(
            f"{{pca_dim}} {pca_dim} needs more than {pca_dim} training patches to fit the PCA on, and the training "
            f"set has {len(tracks)} tracks: use {{pca_dim}} < {n} or more training data",
            "pca_dim",
        )
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(tracks), n, replace=False))
    views = rng.integers(0, tracks.shape[1], n)
    return np.ascontiguousarray(tracks[idx, views, :, :, None]).astype(np.float32)


def finish(net, sample, pca_dim):
    """``net`` followed by the PCA to ``pca_dim`` fitted on ``sample`` and L2 normalisation (``--pca-dim``),
    or ``net`` itself without it."""
    if not pca_dim:
        return net
    from ..models.pca import with_pca

    log.info("[pca] fitting PCA %d -> %d on %d training patches", net.output_shape[-1], pca_dim, len(sample))
    return with_pca(net, sample, pca_dim)
