"""``hpatches-train descriptor --noisy --denoiser U --joint``: the joint denoiser + descriptor run in a run folder.

The objective and the model are :mod:`hpatches_kit.training.joint` and :mod:`hpatches_kit.models.joint`; this
module runs them as a descriptor run (:class:`~hpatches_kit.training.descriptor.DescriptorOptions` with
``joint=True``): run folder, checkpoints and ``--resume`` (:class:`~hpatches_kit.training.run.TrainingRun`),
held-out validation, one ``model.keras`` and the official evaluation on the held-out noisy patches.

Examples:
    >>> from hpatches_kit.training.descriptor import DescriptorOptions
    >>> from hpatches_kit.training.joint_run import train_joint_descriptor
    >>> o = DescriptorOptions(noisy=True, denoiser="models/unet-shallow-embedded.keras", joint=True,
    ...                       init="models/l2net-embedded.keras", recon_weight=0.05, out="runs/joint")
    >>> train_joint_descriptor(o)["model"]  # doctest: +SKIP
    PosixPath('runs/joint/model.keras')
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

from ..models.joint import denoise_describe
from .joint import DEFAULT_RECON_WEIGHT, compile_joint, load_joint_start

log = logging.getLogger(__name__)

__all__ = ["train_joint_descriptor", "run_joint", "joint_tracks"]


def train_joint_descriptor(o, arguments: dict | None = None) -> dict:
    """Check the options, start the run folder and train (:func:`run_joint`).

    Args:
        o: :class:`~hpatches_kit.training.descriptor.DescriptorOptions` with ``joint=True``, ``noisy=True`` and
            ``denoiser`` (the U-Net to start from); ``recon_weight=None`` takes :data:`DEFAULT_RECON_WEIGHT`.
        arguments: what to record in ``run_args.json`` (default: the options).

    Returns:
        The run's metrics (as in ``metrics.json``) with ``"model"``: the path of ``model.keras``.

    Raises:
        ValueError: options that cannot run (the flag is named); ``DataError`` for bad data, models or folders.
    """
    from .descriptor import check_options
    from .run import start_and_train

    if not o.joint:
        raise ValueError("train_joint_descriptor: the options do not ask for --joint")
    check_options(o)
    if o.recon_weight is None:
        o = dataclasses.replace(o, recon_weight=DEFAULT_RECON_WEIGHT)
    from .descriptor import resolve_budget

    return start_and_train("descriptor", o, arguments, lambda run: run_joint(resolve_budget(o, run.precision), run))


def joint_tracks(root, split: str = "a", splits_file=None, size: int = 32, progress: bool = False):
    """``(split, train_clean, test_clean)``: a :class:`~hpatches_kit.training.tracks.TrackSplit` of the *noisy*
    tracks of the N-HPatches-format dataset at ``root`` and the clean twins of its train and test tracks (same
    order); each side's images are read once."""
    from ..data import load_dataset
    from .split_policy import train_test_names
    from .tracks import TrackSplit

    root = Path(root)
    train_names, test_names, how = train_test_names(root, split, splits_file)
    log.info(f"[data] {root}: {len(train_names)} train / {len(test_names)} held-out sequences ({how})")
    sides = []
    for names in (train_names, test_names):
        if not names:
            sides.append((None, None))
            continue
        ds = load_dataset(root, sequences=names, size=size, noise=True, progress=progress)
        sides.append((ds.all_tracks(noisy=True)[0], ds.all_tracks()[0]))
        del ds
    (tr_n, tr_c), (te_n, te_c) = sides
    return TrackSplit(root, tr_n, te_n, list(train_names), list(test_names), how), tr_c, te_c


def run_joint(o, run) -> dict:
    """The body of ``hpatches-train descriptor --noisy --denoiser U --joint [--recon-weight W] [--init D]``:
    a :func:`~hpatches_kit.models.joint.denoise_describe` model started from the U-Net ``o.denoiser`` and the
    descriptor (``--model`` from the model registry, with ``o.init``'s weights when given), trained end to end in the run folder of ``run``
    (checkpoints, ``--resume``, history), saved as one ``model.keras`` (noisy patch in, descriptor out) and
    evaluated on the held-out noisy patches with the official protocol.

    Args:
        o: :class:`hpatches_kit.training.descriptor.DescriptorOptions` with ``joint=True``.
        run: the started :class:`hpatches_kit.training.run.TrainingRun`.

    Returns:
        The metrics written to ``metrics.json`` plus ``"model"`` (the path of ``model.keras``); besides the
        descriptor run's keys, ``heldout_denoise`` holds the joint U-Net's held-out MAE / PSNR.
    """
    from ..models.joint import joint_parts
    from .denoise import heldout_denoise_metrics
    from .descriptor import build_model, options_loss
    from .distribute import check_tracks_per_replica, worker_info
    from .pipelines import joint_dataset
    from .run import resolve_data, validation_epochs
    from .schedules import make_optimizer, replan_schedule
    from .tracks import heldout_matching

    if worker_info(run.strategy)["workers"] > 1:
        raise ValueError(
            "--joint runs on one worker (several replicas of one process are fine); multi-worker "
            "sharding of the joint batches is not implemented"
        )
    data, train_clean, test_clean = joint_tracks(
        resolve_data(o.data, "n-hpatches"), o.split, o.splits_file, size=o.patch_size, progress=o.verbose > 0
    )
    noisy, test_noisy = data.train, data.test
    K = o.views
    S = o.batch_size // K
    check_tracks_per_replica(S, run.strategy)
    if len(noisy) < S:
        raise ValueError(f"only {len(noisy)} training tracks: fewer than one batch of {S} tracks; lower --batch-size")
    steps = o.steps_per_epoch or len(noisy) // S
    train = joint_dataset(noisy, train_clean, S, K, seed=o.seed, augment=o.augment, geometric=o.geometric)
    num_train = len(noisy)
    del data.train, noisy, train_clean  # the pipeline holds them now
    loaded, initial_epoch, history = run.resume_state()
    with run.strategy.scope():
        if loaded is None:
            joint = load_joint_start(o.denoiser, build_model(o))  # --model from the registry, --init checked
            tm, optimizer = None, make_optimizer(o.lr, o.lr_schedule, o.epochs, steps)
        else:  # the checkpoint is the compiled training twin: rebuild the joint model on its (shared) layers
            joint = denoise_describe(loaded.get_layer("denoiser"), loaded.get_layer("descriptor"))
            tm, optimizer = loaded, loaded.optimizer
            replan_schedule(optimizer, o.lr, o.lr_schedule, o.epochs, steps)
        tm = compile_joint(joint, options_loss(o), o.recon_weight, optimizer, run.jit, training_model=tm)
    train = train.skip(initial_epoch * steps) if initial_epoch else train
    val, val_steps = None, None
    if test_noisy is not None:
        sv = min(S, (len(test_noisy) // run.replicas) * run.replicas)
        if sv >= 2:
            val_steps = max(1, min(len(test_noisy) // sv, 20))
            val = (
                joint_dataset(test_noisy, test_clean, sv, K, seed=o.seed + 1, augment=False)
                .take(val_steps)
                .cache()
                .repeat()
            )
    t0 = time.time()
    if initial_epoch < o.epochs:
        tm.fit(
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
        "data": str(data.root),
        "split": data.how,
        "train_sequences": len(data.train_names),
        "test_sequences": len(data.test_names),
        "train_tracks": int(num_train),
        "tracks_per_batch": S,
        "views": K,
        "epochs": o.epochs,
        "steps_per_epoch": steps,
        "train_seconds": time.time() - t0,
        "joint": {"denoiser_start": o.denoiser, "descriptor_start": o.init, "recon_weight": o.recon_weight},
    }
    hist = run.history()
    if hist:
        metrics["history"] = hist
    if test_noisy is not None and len(test_noisy) >= 2:
        metrics["heldout_nn_matching"] = heldout_matching(joint, test_noisy, seed=o.seed)
        metrics["heldout_denoise"], _ = heldout_denoise_metrics(
            joint_parts(joint)[0], test_noisy, test_clean, seed=o.seed
        )
        h = metrics["heldout_denoise"]
        log.info(
            f"[held-out] joint U-Net: MAE noisy {h['mae_noisy']:.2f} -> {h['mae_denoised']:.2f} grey levels, PSNR "
            f"{h['psnr_noisy']:.2f} -> {h['psnr_denoised']:.2f} dB"
        )
    path = run.save_final(joint, metrics)
    if o.evaluate and data.test_names:
        from ..data import load_dataset
        from .evaluate import evaluate_saved

        res, text = evaluate_saved(
            path,
            load_dataset(data.root, sequences=data.test_names, noise=True, progress=False),
            noisy=True,
            progress=o.verbose > 0,
        )
        metrics["evaluation"] = res
        run.write_metrics(metrics)
        print(text)
    log.info(f"[done] {path} (one model: noisy patch in, descriptor out; hpatches-eval --model {path} --noisy)")
    return {**metrics, "model": path}
