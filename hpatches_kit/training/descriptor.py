"""Train a descriptor on S x K track batches: what ``hpatches-train descriptor`` runs.

The architecture is any entry of the model registry (:mod:`hpatches_kit.models.registry`: ``l2net``, ``hardnet``,
``hardnet8``, ``sosnet``, ``tfeat``, one registered at run time, or a ``MODULE:FUNCTION`` builder); the loss any
entry of the loss registry (:mod:`hpatches_kit.losses.registry`), whose entry says what batch it needs (S x K
tracks, or the three-branch random triplets), its collapse level and the callbacks it needs: this module has
no branch on a model or loss name.

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
import logging
import time
from dataclasses import dataclass

import numpy as np

from ..data.errors import DataError
from .run import OptionsFromNamespace

log = logging.getLogger(__name__)

# The default budget: 15 minutes for the whole command on a 2-core CPU. bf16 (auto on AMX CPUs) runs the step
# 1.6-2.5x faster, so its default trains 40 epochs where float32 trains 27 (docs/training.md, "bf16 vs float32").
BF16_EPOCHS, FLOAT32_EPOCHS = 40, 27
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
    loss_arg: list | None = None  # the loss's own settings, "KEY=VALUE" (--loss-arg, repeatable)
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
    view_noise: str = "none"  # per-view orientation/scale noise: a hpatches_kit.data.view_noise preset or a .json
    view_noise_strength: float = 1.0
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
    xbm: int = 0  # cross-batch memory entries (0: off); training/xbm.py
    xbm_start: int = 0
    pca_dim: int | None = None  # PCA to this dimension after training, inside model.keras
    imports: list | None = None  # modules to import first (--import): the user's models, losses, layers


def loss_entry(name: str):
    """The loss registry's entry for ``--loss name`` (:func:`hpatches_kit.losses.entry`); a loss that does not
    train descriptors (an image-pair loss) raises ``ValueError`` naming the flag."""
    from .. import losses

    try:
        e = losses.entry(name)
    except ValueError as err:
        raise ValueError(f"--loss: {err}") from None
    if e.batch not in ("tracks", "triplets"):
        raise ValueError(
            f"--loss {name} is an image-pair loss (batch {e.batch!r}): descriptor losses are "
            f"{', '.join(losses.names('descriptor'))} or MODULE:FUNCTION"
        )
    return e


def make_loss(
    name: str,
    margin: float = 1.0,
    distance: str = "L2",
    views: int = 2,
    global_mining: bool = False,
    koleo: float = 0.0,
    xbm: int = 0,
    xbm_start: int = 0,
    dim: int = 128,
    settings=None,
):
    """The Keras loss for ``--loss name`` (a registered descriptor loss or ``MODULE:FUNCTION``) with ``views``
    views per track. ``koleo > 0`` adds that weight of KoLeo (:class:`~hpatches_kit.training.mining.
    KoLeoRegularised`); ``global_mining`` wraps the result in :class:`~hpatches_kit.training.mining.GlobalBatchLoss`
    (both only for losses whose entry is ``composable``, i.e. S x K track losses). ``xbm > 0``: the loss mined
    over batch + a cross-batch memory of ``xbm`` entries (:func:`.xbm.xbm_loss_for`). ``settings``: the loss's
    own keyword arguments (``--loss-arg KEY=VALUE``: a dict, or a list of ``"KEY=VALUE"`` strings), checked
    against what its factory takes (:func:`hpatches_kit.losses.registry.check_settings`).

    Raises:
        ValueError: unknown name, negative ``koleo``, an option that does not apply to the loss's batch, or a
            setting the loss does not take (naming ``--loss-arg``).
    """
    from ..checks import check_options
    from .mining import GlobalBatchLoss, KoLeoRegularised

    check_options(koleo=koleo, margin=margin)
    e = loss_entry(name)
    own = loss_settings(name, settings)
    if own and xbm:
        raise ValueError("--loss-arg does not combine with --xbm (the memory loss has its own settings)")
    if not e.composable and (global_mining or koleo):
        raise ValueError(f"--global-mining and --koleo do not apply to --loss {name} (batch {e.batch!r})")
    if xbm:
        from .xbm import xbm_loss_for

        return xbm_loss_for(name, xbm, xbm_start, dim, margin, distance, koleo)
    from ..losses.registry import get as build_loss

    loss = build_loss(name, margin=margin, distance_metric=distance, views_per_track=views, **own)  # errors name --loss
    if koleo:
        loss = KoLeoRegularised(loss, weight=koleo, views_per_track=views)
    return GlobalBatchLoss(loss) if global_mining else loss


#: settings of every loss that have their own flag: --loss-arg does not set them
_SETTING_FLAGS = {"margin": "--margin", "distance_metric": "--distance", "views_per_track": "--views"}


def loss_settings(name: str, settings=None) -> dict:
    """The loss's own settings (``--loss-arg``) as a dict, checked against its factory's parameters.

    Raises:
        ValueError: a malformed ``KEY=VALUE``, a setting that has its own flag, or one the loss does not take.
    """
    from ..losses.registry import check_settings, parse_setting

    if not settings:
        return {}
    if not isinstance(settings, dict):
        try:
            settings = dict(parse_setting(s) for s in settings)
        except ValueError as err:
            raise ValueError(f"--loss-arg: {err}") from None
    for key in settings:
        if key in _SETTING_FLAGS:
            raise ValueError(f"--loss-arg {key}: set it with {_SETTING_FLAGS[key]}")
    return check_settings(name, settings)


def collapse_level(name: str, margin: float, koleo: float = 0.0, eps: float = 1e-8) -> float:
    """The loss value of a collapsed descriptor (all distances 0): the loss entry's collapse level (the margin,
    or softplus(0) = ln 2 for the soft margin), plus ``koleo * -log(eps)`` (KoLeo of coincident embeddings)."""
    return loss_entry(name).collapse_level(margin) + float(koleo) * float(-np.log(eps))


def options_loss(o: DescriptorOptions):
    """:func:`make_loss` for the options' loss flags."""
    return make_loss(
        o.loss, o.margin, o.distance, o.views, o.global_mining, o.koleo, o.xbm, o.xbm_start, o.dim, o.loss_arg
    )


def build_model(o: DescriptorOptions):
    """The run's descriptor: ``--model`` from the model registry (or ``MODULE:FUNCTION``), its contract checked
    against ``--patch-size`` and ``--dim``, started from ``--init``'s weights when given.

    Raises:
        ValueError: a patch size or dimension the architecture does not have (naming the flags);
            ``DataError`` for an ``--init`` model that does not match (:func:`init_weights`).
    """
    from ..models.registry import build_descriptor

    net = build_descriptor(o.model, input_size=o.patch_size, dim=o.dim, dropout=o.dropout)
    if o.init:
        init_weights(net, o.init)
    return net


_NORM_CLASSES = ("Rescaling", "Normalization", "PatchStandardize", "InstanceNorm", "LayerNormalization")
_IGNORED_CONFIG = (
    "name",
    "trainable",
    "dtype",
    "rate",
    "seed",
    "momentum",
    "noise_shape",
    "synchronized",
    "build_config",
    "compile_config",
)


def _layer_class(layer) -> str:
    from ..models.layers import FusedBatchNorm

    return "BatchNormalization" if isinstance(layer, FusedBatchNorm) else type(layer).__name__


def _layer_config(layer) -> dict:
    """The parts of a layer's config that change what it computes (not its name, dtype, initialisers, dropout)."""
    try:
        cfg = layer.get_config()
    except Exception:
        return {}
    return {
        k: v
        for k, v in cfg.items()
        if k not in _IGNORED_CONFIG and not k.endswith(("_initializer", "_regularizer", "_constraint"))
    }


def _describe(layer) -> str:
    shapes = ", ".join(str(tuple(w.shape)) for w in layer.weights)
    return f"{layer.name!r} ({_layer_class(layer)}{', weights ' + shapes if shapes else ''})"


def _compute_layers(model) -> list:
    """The layers that compute something (not inputs, not dropout), in order; nested models flattened."""
    import keras

    out = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out.extend(_compute_layers(layer))
        elif not isinstance(layer, (keras.layers.InputLayer, keras.layers.Dropout)):
            out.append(layer)
    return out


def _input_normalisation(layers) -> list:
    """The layers before the first one with weights: the model's own input normalisation."""
    out = []
    for layer in layers:
        if layer.weights:
            break
        if _layer_class(layer) in _NORM_CLASSES:
            out.append(layer)
    return out


def _norm_text(layers) -> str:
    return (
        " -> ".join(f"{_layer_class(x)}({', '.join(f'{k}={v}' for k, v in _layer_config(x).items())})" for x in layers)
        or "none"
    )


def compare_architectures(net, src) -> str | None:
    """The first difference between two descriptors that would make copying ``src``'s weights into ``net`` compute
    something else, or ``None`` when they match.

    Checked in order: the input shape; the input normalisation (the layers before the first layer with weights:
    ``Rescaling``, ``PatchStandardize``, ``InstanceNorm``, ... with their settings); then layer by layer (dropout
    and input layers aside) the class (``FusedBatchNorm`` counts as ``BatchNormalization``), the weight shapes and
    the settings that change the computation (strides, padding, epsilon, activation, ...).

    Args:
        net: the run's model.
        src: the model whose weights would be copied (``--init``).

    Returns:
        A message naming the first mismatch, or ``None``.
    """
    if tuple(src.input_shape[1:]) != tuple(net.input_shape[1:]):
        return f"its input is {tuple(src.input_shape[1:])}, this run's model takes {tuple(net.input_shape[1:])}"
    a, b = _compute_layers(net), _compute_layers(src)
    na, nb = _input_normalisation(a), _input_normalisation(b)
    if [(_layer_class(x), _layer_config(x)) for x in na] != [(_layer_class(x), _layer_config(x)) for x in nb]:
        return (
            f"its input normalisation is {_norm_text(nb)}, this run's model's is {_norm_text(na)}: the copied "
            "weights would see other inputs than they were trained on"
        )
    for i, (x, y) in enumerate(zip(a, b)):
        if _layer_class(x) != _layer_class(y) or [tuple(w.shape) for w in x.weights] != [
            tuple(w.shape) for w in y.weights
        ]:
            return f"layer {i}: {_describe(y)} where this run's model has {_describe(x)}"
        cx, cy = _layer_config(x), _layer_config(y)
        if cx != cy:
            diff = sorted(k for k in set(cx) | set(cy) if cx.get(k) != cy.get(k))
            return (
                f"layer {i}: {_describe(y)} has "
                + ", ".join(f"{k}={cy.get(k)!r}" for k in diff)
                + f" where this run's {x.name!r} has "
                + ", ".join(f"{k}={cx.get(k)!r}" for k in diff)
            )
    if len(a) != len(b):
        longer, which = (a, "this run's model") if len(a) > len(b) else (b, "it")
        return (
            f"{which} has {abs(len(a) - len(b))} more layer(s), from layer {min(len(a), len(b))}: "
            f"{_describe(longer[min(len(a), len(b))])}"
        )
    return None


def init_weights(net, path) -> None:
    """Copy the weights of the descriptor saved at ``path`` into ``net`` (``--init``).

    The two must be the same network with the same input contract (:func:`compare_architectures`); a
    random-triplet checkpoint's shared branch is used.

    Raises:
        DataError: a file that does not load, or a model whose architecture or input normalisation differs
            (the message names the first mismatch and the flags to check).
    """
    from ..models.io import load_model
    from ..models.registry import descriptor_branch

    src = descriptor_branch(load_model(path, "the --init model"))
    problem = compare_architectures(net, src)
    if problem:
        raise DataError(
            path,
            f"--init model does not match --model: {problem} (another architecture or input contract than this run's: check --model, --patch-size, --dim)",
        )
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
    """Raise ``ValueError`` naming the flag for options that cannot run (before any work); the numeric ranges
    are :data:`hpatches_kit.checks.OPTION_RANGES`'."""
    from ..checks import check_options as check_ranges
    from ..errors import OptionError
    from ..plugins import import_modules
    from .run import check_schedule, flag_name

    import_modules(o.imports)
    entry = loss_entry(o.loss)
    if o.views < 2 and entry.batch == "tracks":
        raise ValueError(f"--views must be >= 2 (positives need two views of a track), got {o.views}")
    check_schedule(1 if o.epochs is None else o.epochs, o.batch_size, o.lr, 1 if o.val_every is None else o.val_every)
    try:
        check_ranges(o)
    except OptionError as e:  # this function's messages name the flags (the options are the flags)
        raise ValueError(e.render(flag_name)) from e
    from ..data.view_noise import resolve_view_noise

    try:
        resolve_view_noise(o.view_noise, o.view_noise_strength)
    except ValueError as e:
        raise ValueError(f"--view-noise: {e}") from e
    if o.format == "brown" and o.noisy:
        raise ValueError("--noisy: Brown data has no noisy twins")
    if o.recon_weight is not None and not o.joint:
        raise ValueError("--recon-weight applies to --joint training only")
    if o.joint:
        if not (o.noisy and o.denoiser) or o.format != "hpatches":
            raise ValueError(
                "--joint trains a U-Net and the descriptor end to end on noisy patches: it needs "
                "--noisy and --denoiser U.keras (the U-Net to start from) on N-HPatches-format data"
            )
        if entry.batch != "tracks":
            raise ValueError(f"--joint needs an S x K loss, not --loss {o.loss} (batch {entry.batch!r})")
    if o.pca_dim is not None and not 1 <= o.pca_dim <= o.dim:
        raise ValueError(f"--pca-dim must be in 1..--dim ({o.dim}), got {o.pca_dim}")
    if o.xbm and o.xbm < o.batch_size:
        raise ValueError(
            f"--xbm {o.xbm}: the memory must hold at least one (global) batch (--batch-size {o.batch_size})"
        )
    if o.xbm_start and not o.xbm:
        raise ValueError(f"--xbm-start {o.xbm_start} applies to the cross-batch memory only: give --xbm SIZE too")
    if o.joint and (o.xbm or o.pca_dim):
        raise ValueError("--xbm and --pca-dim apply to descriptor training, not --joint")
    options_loss(o)
    from ..models.registry import entry as model_entry

    try:
        m = model_entry(o.model)
    except ValueError as err:
        raise ValueError(f"--model: {err}") from None
    if m.input_size is not None and m.input_size != o.patch_size:
        raise ValueError(
            f"--model {o.model} takes {m.input_size}x{m.input_size} patches only: use --patch-size "
            f"{m.input_size}, not {o.patch_size}"
        )
    if m.dim is not None and m.dim != o.dim:
        raise ValueError(f"--model {o.model} outputs {m.dim}-d descriptors: use --dim {m.dim}, not {o.dim}")
    if m.input_size is None and o.patch_size % m.size_multiple:
        raise ValueError(
            f"--model {o.model} needs a --patch-size that is a multiple of {m.size_multiple}, got {o.patch_size}"
        )


def load_tracks(o: DescriptorOptions):
    """The run's :class:`~hpatches_kit.training.tracks.TrackSplit` (:func:`~.tracks.load_track_split`)."""
    from .tracks import load_track_split

    return load_track_split(
        o.data,
        o.format,
        o.split,
        o.splits_file,
        size=o.patch_size,
        noisy=o.noisy,
        seed=o.seed,
        cache=getattr(o, "cache", None),
        progress=o.verbose > 0,
        denoiser=o.denoiser,
    )


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
    from ..data.view_noise import resolve_view_noise
    from ..models.registry import descriptor_branch
    from .callbacks import CollapseDetector
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
        log.info(f"[note] batch size {o.batch_size} -> {S} tracks x {K} views = {S * K}")
    if len(tracks) < S:
        raise ValueError(f"only {len(tracks)} training tracks: fewer than one batch of {S} tracks; lower --batch-size")
    entry = loss_entry(o.loss)
    triplets = entry.batch == "triplets"
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
            net = build_model(o)
            model = random_triplet_model(net) if triplets else net
            optimizer = make_optimizer(o.lr, o.lr_schedule, o.epochs, steps)
        else:  # resumed: keep the optimizer (state, step count), take loss/jit from these options
            if triplets != (model.name == "triplet_net"):
                raise ValueError(
                    "--resume: the checkpoint was trained with a different --loss family "
                    "(random-triplet vs S x K mining)"
                )
            optimizer = model.optimizer
            replan_schedule(optimizer, o.lr, o.lr_schedule, o.epochs, steps)
        model.compile(optimizer=optimizer, loss=options_loss(o), jit_compile=run.jit)
    net = descriptor_branch(model)
    if initial_epoch >= o.epochs:
        log.info(f"[resume] already trained {initial_epoch} >= --epochs {o.epochs} epochs")
    skip = initial_epoch * steps
    if triplets:
        train = train.skip(skip) if skip else train
    else:
        view_noise = resolve_view_noise(o.view_noise, o.view_noise_strength)
        train = distribute_sk_dataset(
            run.strategy,
            lambda n, i, t=tracks, vn=view_noise: descriptor_dataset(
                t,
                S,
                K,
                seed=o.seed,
                augment=o.augment,
                geometric=o.geometric,
                num_shards=n,
                shard_index=i,
                view_noise=vn,
                labels="track" if o.xbm else "batch",
            ).skip(skip),
            S,
            K,
        )
    from .xbm import finish, pca_sample, run_extras

    pca_patches = pca_sample(tracks, o.pca_dim, seed=o.seed)
    del tracks  # the pipeline holds the tracks now (one in-graph copy)

    val, val_steps = None, None
    if test_tracks is not None and not triplets:
        sv = min(S, (len(test_tracks) // run.replicas) * run.replicas)
        if sv >= 2:
            val_steps = max(1, min(len(test_tracks) // sv, 20))
            # the same val_steps batches at every validation (cached): a reshuffling stream would give each
            # validation other batches, and a resumed run (a fresh stream) other ones again than an
            # uninterrupted run -- val_loss would neither compare across epochs nor reproduce after --resume
            val = distribute_sk_dataset(
                run.strategy,
                lambda n, i: (
                    descriptor_dataset(
                        test_tracks,
                        sv,
                        K,
                        seed=o.seed + 1,
                        augment=False,
                        num_shards=n,
                        shard_index=i,
                        labels="track" if o.xbm else "batch",
                    )
                    # --xbm: held-out tracks get ids -1, -2, ... that no training track (memory entry) has
                    .map(lambda x, y: (x, -1 - y) if o.xbm else (x, y))
                    .take(val_steps)
                    .cache()
                    .repeat()
                ),
                sv,
                K,
            )
    extra = []
    if o.collapse != "off" and not triplets:
        extra.append(CollapseDetector(probe, margin=collapse_level(o.loss, o.margin, o.koleo), action=o.collapse))
    extra.extend(entry.training_callbacks(model.loss, o))
    extra += run_extras(model, run, initial_epoch)  # --xbm: memory restored on --resume, saved every epoch
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
            callbacks=run.callbacks(history, extra),
        )
    metrics = {
        "data": str(data.root),
        "split": data.how,
        "train_sequences": len(data.train_names),
        "test_sequences": len(data.test_names),
        "train_tracks": int(num_train_tracks),
        "tracks_per_batch": S,
        "views": K,
        "epochs": o.epochs,
        "steps_per_epoch": steps,
        "train_seconds": time.time() - t0,
    }
    hist = run.history()
    if hist:
        metrics["history"] = hist
    net = finish(net, pca_patches, o.pca_dim)  # --pca-dim: PCA + L2 normalisation inside model.keras
    if test_tracks is not None and len(test_tracks) >= 2:
        metrics["heldout_nn_matching"] = heldout_matching(net, test_tracks, seed=o.seed)
        log.info(
            "[held-out] NN matching accuracy ref->target: "
            + ", ".join(f"{k} {v:.3f}" for k, v in metrics["heldout_nn_matching"].items() if k != "tracks")
        )
    path = run.save_final(net, metrics)
    if o.evaluate and data.test_names and run.chief:  # model.keras is the chief's
        from ..data import load_dataset
        from .evaluate import evaluate_saved

        res, text = evaluate_saved(
            path,
            load_dataset(data.root, sequences=data.test_names, noise=o.noisy or None, progress=False),
            denoiser=o.denoiser,
            noisy=o.noisy,
            progress=o.verbose > 0,
        )
        metrics["evaluation"] = res
        run.write_metrics(metrics)
        print(text)
    log.info(f"[done] {path}")
    return {**metrics, "model": path}
