"""Train an L2-Net/HardNet-style descriptor on S x K track batches: what ``hpatches-train descriptor`` runs.

Defaults (:class:`DescriptorOptions`): the embedded HPatches dataset resized to 32x32, L2-Net (128-d),
batch-hard triplet loss (margin 1), Adam 1e-3, batches of 1024 patches = 512 tracks x 2 views, 40 epochs in
``mixed_bfloat16`` (the automatic precision on AMX CPUs, GPUs and TPUs) or 27 in float32, validated after the last, split ``a`` test sequences held out for validation and the final evaluation.

Examples:
    >>> from hpatches_kit.training.descriptor import DescriptorOptions, train_descriptor
    >>> result = train_descriptor(DescriptorOptions(epochs=3, out="runs/d"))  # doctest: +SKIP
    >>> result["model"]  # doctest: +SKIP
    PosixPath('runs/d/model.keras')
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass

import numpy as np

from ..data.errors import DataError
from .run import OptionsFromNamespace

# The default budget: 15 minutes for the whole command on a 2-core CPU. bf16 (auto on AMX CPUs) runs the step
# 1.6-2.5x faster, so its default trains 40 epochs where float32 trains 27 (docs/training.md, "bf16 vs float32").
BF16_EPOCHS, FLOAT32_EPOCHS = 40, 27
LOSSES = ("batch-hard", "batch-all", "semi-hard", "soft-margin", "hardnet", "curriculum", "random-triplet")
DISTANCES = ("L2", "squared-L2", "angular")


@dataclass
class DescriptorOptions(OptionsFromNamespace):
    """Every option of a descriptor run (the flags of ``hpatches-train descriptor``, same names)."""

    data: str | None = None
    split: str = "a"
    splits_file: str | None = None
    format: str = "hpatches"
    noisy: bool = False
    denoiser: str | None = None
    model: str = "l2net"
    loss: str = "batch-hard"
    margin: float = 1.0
    distance: str = "L2"
    koleo: float = 0.0
    global_mining: bool = False
    curriculum_warmup: int = 1
    batch_size: int = 1024
    views: int = 2
    patch_size: int = 32
    dim: int = 128
    dropout: float = 0.3
    epochs: int | None = None  # None: BF16_EPOCHS or FLOAT32_EPOCHS, by the precision the run resolves
    steps_per_epoch: int | None = None
    lr: float = 1e-3
    lr_schedule: str = "constant"
    seed: int = 0
    augment: bool = True
    geometric: bool = False
    val_every: int | None = None  # None: validate after the last epoch only
    collapse: str = "warn"
    init: str | None = None
    joint: bool = False
    recon_weight: float | None = None
    strategy: str = "auto"
    mixed_precision: str = "auto"
    jit: str = "auto"
    out: str | None = None
    resume: bool = False
    verbose: int = 1
    evaluate: bool = True



def make_loss(name: str, margin: float = 1.0, distance: str = "L2", views: int = 2, global_mining: bool = False,
              koleo: float = 0.0):
    """The Keras loss for ``name`` (see :data:`LOSSES`) on S x K track-major batches with ``views`` views per
    track. ``koleo > 0`` adds that weight of KoLeo (:class:`~hpatches_kit.training.mining.KoLeoRegularised`);
    ``global_mining`` wraps the result in :class:`~hpatches_kit.training.mining.GlobalBatchLoss`.

    Raises:
        ValueError: unknown name, negative ``koleo``, or an option that does not apply to ``random-triplet``.
    """
    from .. import losses
    from .mining import GlobalBatchLoss, KoLeoRegularised

    if koleo < 0:
        raise ValueError(f"--koleo must be >= 0, got {koleo}")
    if name == "random-triplet" and (global_mining or koleo):
        raise ValueError("--global-mining and --koleo do not apply to --loss random-triplet")
    if name not in LOSSES:
        raise ValueError(f"unknown --loss {name!r}; expected one of {', '.join(LOSSES)}")
    loss = losses.get(name, margin=margin, distance_metric=distance, views_per_track=views)
    if name == "random-triplet":
        return loss
    if koleo:
        loss = KoLeoRegularised(loss, weight=koleo, views_per_track=views)
    return GlobalBatchLoss(loss) if global_mining else loss


def collapse_level(name: str, margin: float, koleo: float = 0.0, eps: float = 1e-8) -> float:
    """The loss value of a collapsed descriptor (all distances 0): the margin, or softplus(0) = ln 2, plus
    ``koleo * -log(eps)`` (KoLeo of coincident embeddings)."""
    base = float(np.log(2.0)) if name == "soft-margin" else float(margin)
    return base + float(koleo) * float(-np.log(eps))


def options_loss(o: DescriptorOptions):
    """:func:`make_loss` for the options' loss flags."""
    return make_loss(o.loss, o.margin, o.distance, o.views, o.global_mining, o.koleo)


def init_weights(net, path) -> None:
    """Copy the weights of the descriptor saved at ``path`` into ``net`` (``--init``); a file that does not
    load, or a model of another architecture or size, raises ``DataError`` naming the file and the mismatch."""
    from ..evaluation.describers import load_model_file

    src = load_model_file(path, "the --init model")
    if src.name == "triplet_net":  # a random-triplet checkpoint: take its shared branch
        src = src.get_layer("l2net")
    mine, theirs = [w.shape for w in net.get_weights()], [w.shape for w in src.get_weights()]
    if tuple(src.input_shape[1:]) != tuple(net.input_shape[1:]) or mine != theirs:
        raise DataError(path, f"--init model does not match: input {src.input_shape[1:]} and output "
                              f"{src.output_shape[1:]} vs this run's {net.input_shape[1:]} and {net.output_shape[1:]} "
                              f"(check --patch-size and --dim)")
    net.set_weights(src.get_weights())


def random_triplet_model(net):
    """Three weight-sharing branches; output ``(B, 3, D)`` = (anchor, positive, negative) descriptors, the
    layout :class:`hpatches_kit.losses.RandomTripletLoss` expects."""
    import keras

    s = net.input_shape[1:]
    d = net.output_shape[-1]
    ins = [keras.Input(s, name=n) for n in ("anchor", "positive", "negative")]
    rows = [keras.layers.Reshape((1, d), name=f"{n}_row")(net(i)) for n, i in zip(("a", "p", "n"), ins)]
    out = keras.layers.Concatenate(axis=1, name="apn")(rows)
    return keras.Model(ins, out, name="triplet_net")


def check_options(o: DescriptorOptions) -> None:
    """Raise ``ValueError`` naming the flag for options that cannot run (before any work)."""
    from .run import check_schedule

    if o.views < 2 and o.loss != "random-triplet":
        raise ValueError(f"--views must be >= 2 (positives need two views of a track), got {o.views}")
    if o.dim < 1 or o.patch_size < 1:
        raise ValueError(f"--dim and --patch-size must be >= 1, got {o.dim} and {o.patch_size}")
    check_schedule(1 if o.epochs is None else o.epochs, o.batch_size, o.lr, 1 if o.val_every is None else o.val_every)
    if o.format == "brown" and o.noisy:
        raise ValueError("--noisy: Brown data has no noisy twins")
    if o.recon_weight is not None and not o.joint:
        raise ValueError("--recon-weight applies to --joint training only")
    if o.joint:
        if not (o.noisy and o.denoiser) or o.format != "hpatches":
            raise ValueError("--joint trains a U-Net and the descriptor end to end on noisy patches: it needs "
                             "--noisy and --denoiser U.keras (the U-Net to start from) on N-HPatches-format data")
        if o.loss == "random-triplet":
            raise ValueError("--joint needs an S x K loss, not --loss random-triplet")
        if o.recon_weight is not None and not o.recon_weight >= 0:
            raise ValueError(f"--recon-weight must be >= 0, got {o.recon_weight}")
    options_loss(o)


def load_tracks(o: DescriptorOptions):
    """The run's :class:`~hpatches_kit.training.tracks.TrackSplit` (:func:`~.tracks.load_track_split`)."""
    from .tracks import load_track_split

    return load_track_split(o.data, o.format, o.split, o.splits_file, size=o.patch_size, noisy=o.noisy,
                            seed=o.seed, cache=getattr(o, "cache", None), progress=o.verbose > 0,
                            denoiser=o.denoiser)


def train_descriptor(o: DescriptorOptions, arguments: dict | None = None) -> dict:
    """Train a descriptor as ``hpatches-train descriptor`` does and write the run folder (see
    :mod:`hpatches_kit.training.run`).

    Args:
        o: the options.
        arguments: what to record in ``run_args.json`` (default: the options).

    Returns:
        The run's metrics (as written to ``metrics.json``) with ``"model"``: the path of ``model.keras``.

    Raises:
        ValueError: options that cannot run (the flag is named); ``DataError`` for bad data or output folders.
    """
    check_options(o)
    if o.joint:
        raise ValueError("--joint runs through hpatches_kit.training.joint_run.train_joint_descriptor")
    from .run import start_and_train

    return start_and_train("descriptor", o, arguments, lambda run: _train(resolve_budget(o, run.precision), run))


def resolve_budget(o: DescriptorOptions, precision: str) -> DescriptorOptions:
    """``o`` with ``epochs=None`` set by the precision (:data:`BF16_EPOCHS` / :data:`FLOAT32_EPOCHS`) and
    ``val_every=None`` set to validate after the last epoch only."""
    epochs = o.epochs if o.epochs is not None else (BF16_EPOCHS if precision == "mixed_bfloat16" else FLOAT32_EPOCHS)
    return dataclasses.replace(o, epochs=epochs, val_every=epochs if o.val_every is None else o.val_every)


def _train(o: DescriptorOptions, run) -> dict:
    from ..models import l2net
    from .callbacks import CollapseDetector, MiningCurriculum
    from .distribute import check_tracks_per_replica, distribute_sk_dataset, worker_info
    from .pipelines import descriptor_dataset, sharded_steps_per_epoch, triplet_dataset
    from .run import validation_epochs
    from .schedules import make_optimizer, replan_schedule
    from .tracks import heldout_matching

    data = load_tracks(o)
    tracks, test_tracks = data.train, data.test
    K = o.views
    S = o.batch_size // K
    check_tracks_per_replica(S, run.strategy)
    if S * K != o.batch_size:
        print(f"[note] batch size {o.batch_size} -> {S} tracks x {K} views = {S * K}", file=sys.stderr)
    if len(tracks) < S:
        raise ValueError(f"only {len(tracks)} training tracks: fewer than one batch of {S} tracks; lower --batch-size")
    triplets = o.loss == "random-triplet"
    workers = worker_info(run.strategy)["workers"]
    if triplets:
        train = triplet_dataset(tracks, batch_size=o.batch_size, seed=o.seed)
    # S x K: each worker of a multi-worker run reads its own share of the tracks (distribute_sk_dataset)
    steps = o.steps_per_epoch or sharded_steps_per_epoch(len(tracks), S, workers)
    if steps < 1:
        raise ValueError(f"not enough training data for one batch of {o.batch_size}")
    num_train_tracks = len(tracks)
    probe_src = test_tracks if test_tracks is not None and len(test_tracks) >= 2 else tracks
    probe = np.ascontiguousarray(probe_src[: min(256, len(probe_src)), 0, :, :, None]).astype(np.float32)
    del probe_src, data.train

    model, initial_epoch, history = run.resume_state()
    with run.strategy.scope():
        if model is None:
            net = l2net(input_size=o.patch_size, dim=o.dim, dropout=o.dropout)
            if o.init:
                init_weights(net, o.init)
            model = random_triplet_model(net) if triplets else net
            optimizer = make_optimizer(o.lr, o.lr_schedule, o.epochs, steps)
        else:  # resumed: keep the optimizer (state, step count), take loss/jit from these options
            if triplets != (model.name == "triplet_net"):
                raise ValueError("--resume: the checkpoint was trained with a different --loss family "
                                 "(random-triplet vs S x K mining)")
            optimizer = model.optimizer
            replan_schedule(optimizer, o.lr, o.lr_schedule, o.epochs, steps)
        model.compile(optimizer=optimizer, loss=options_loss(o), jit_compile=run.jit)
    net = model.get_layer("l2net") if triplets else model
    if initial_epoch >= o.epochs:
        print(f"[resume] already trained {initial_epoch} >= --epochs {o.epochs} epochs", file=sys.stderr)
    skip = initial_epoch * steps
    if triplets:
        train = train.skip(skip) if skip else train
    else:
        train = distribute_sk_dataset(run.strategy, lambda n, i, t=tracks: descriptor_dataset(
            t, S, K, seed=o.seed, augment=o.augment, geometric=o.geometric, num_shards=n,
            shard_index=i).skip(skip), S, K)
    del tracks  # the pipeline holds the tracks now (one in-graph copy)

    val, val_steps = None, None
    if test_tracks is not None and not triplets:
        sv = min(S, (len(test_tracks) // run.replicas) * run.replicas)
        if sv >= 2:
            val_steps = max(1, min(len(test_tracks) // sv, 20))
            # the same val_steps batches at every validation (cached): a reshuffling stream would give each
            # validation other batches, and a resumed run (a fresh stream) other ones again than an
            # uninterrupted run -- val_loss would neither compare across epochs nor reproduce after --resume
            val = distribute_sk_dataset(run.strategy, lambda n, i: descriptor_dataset(
                test_tracks, sv, K, seed=o.seed + 1, augment=False, num_shards=n,
                shard_index=i).take(val_steps).cache().repeat(), sv, K)
    extra = []
    if o.collapse != "off" and not triplets:
        extra.append(CollapseDetector(probe, margin=collapse_level(o.loss, o.margin, o.koleo), action=o.collapse))
    if o.loss == "curriculum":
        lossobj = model.loss
        while not hasattr(lossobj, "hard_weight"):  # unwrap GlobalBatchLoss / KoLeoRegularised
            lossobj = lossobj.loss
        extra.append(MiningCurriculum(lossobj, warmup=o.curriculum_warmup, ramp=1))
    t0 = time.time()
    if initial_epoch < o.epochs:
        model.fit(train, steps_per_epoch=steps, epochs=o.epochs, initial_epoch=initial_epoch,
                  validation_data=val, validation_steps=val_steps,
                  validation_freq=validation_epochs(o.epochs, o.val_every), verbose=o.verbose,
                  callbacks=run.callbacks(history, extra))
    metrics = {"data": str(data.root), "split": data.how, "train_sequences": len(data.train_names),
               "test_sequences": len(data.test_names), "train_tracks": int(num_train_tracks),
               "tracks_per_batch": S, "views": K, "epochs": o.epochs, "steps_per_epoch": steps,
               "train_seconds": time.time() - t0}
    hist = run.history()
    if hist:
        metrics["history"] = hist
    if test_tracks is not None and len(test_tracks) >= 2:
        metrics["heldout_nn_matching"] = heldout_matching(net, test_tracks, seed=o.seed)
        print("[held-out] NN matching accuracy ref->target: " + ", ".join(
            f"{k} {v:.3f}" for k, v in metrics["heldout_nn_matching"].items() if k != "tracks"), file=sys.stderr)
    path = run.save_final(net, metrics)
    if o.evaluate and data.test_names and run.chief:  # model.keras is the chief's
        from ..data import load_dataset
        from .evaluate import evaluate_saved

        res, text = evaluate_saved(path, load_dataset(data.root, sequences=data.test_names, noise=o.noisy or None,
                                                      progress=False),
                                   denoiser=o.denoiser, noisy=o.noisy, progress=o.verbose > 0)
        metrics["evaluation"] = res
        run.write_metrics(metrics)
        print(text)
    print(f"[done] {path}", file=sys.stderr)
    return {**metrics, "model": path}
