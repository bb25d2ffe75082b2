"""``hpatches-train descriptor``: train an L2-Net/HardNet-style descriptor on S x K track batches.

Defaults: the embedded HPatches dataset resized to 32x32, L2-Net (128-d), batch-hard triplet loss
(margin 1), Adam 1e-3 (constant; ``--lr-schedule cosine`` decays it), batches of 1024 patches = 512 tracks x
2 views, 27 epochs validated after the last, split ``a`` test sequences held out for validation and the final
evaluation. The budget is sized for 15 minutes on 2 CPU cores, dataset build included; the model it trains
beats SIFT and RootSIFT on real photographs (``models/l2net-embedded.md``, ``benchmarks/real_validation.py``).
``--denoiser FILE`` trains (and evaluates) on denoised input; ``--init FILE`` starts from a trained descriptor.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from ._train_common import (add_common_args, make_callbacks, make_optimizer, maybe_resume, replan_schedule,
                            resolve_data, save_final, setup_run, split_names, steps_or_default, try_evaluation,
                            validation_epochs)

LOSSES = ("batch-hard", "batch-all", "semi-hard", "soft-margin", "hardnet", "curriculum", "random-triplet")
DISTANCES = ("L2", "squared-L2", "angular")


def configure(p):
    add_common_args(p, model="l2net", models=("l2net",), loss="batch-hard", losses=LOSSES, batch_size=1024,
                    epochs=27, lr=1e-3, kind="hpatches", val_every=27)
    g = p.add_argument_group("descriptor")
    g.add_argument("--views", type=int, default=2, help="K views per track in a batch (default: 2)")
    g.add_argument("--patch-size", type=int, default=32, help="resize patches to this size (default: 32)")
    g.add_argument("--dim", type=int, default=128, help="descriptor size (default: 128)")
    g.add_argument("--dropout", type=float, default=0.3, help="dropout before the last conv (default: 0.3)")
    g.add_argument("--margin", type=float, default=1.0, help="triplet margin (default: 1.0; unused by soft-margin)")
    g.add_argument("--distance", default="L2", choices=DISTANCES,
                   help="descriptor distance the loss mines and penalises (default: L2)")
    g.add_argument("--koleo", type=float, default=0.0, metavar="WEIGHT",
                   help="add WEIGHT x KoLeo entropy regulariser on one view per track (default: 0 = off; "
                        "not with random-triplet)")
    g.add_argument("--global-mining", action="store_true",
                   help="mine hardest negatives over the global batch of all replicas (all_gather)")
    g.add_argument("--curriculum-warmup", type=int, default=1,
                   help="--loss curriculum: batch-all epochs before ramping to batch-hard (default: 1)")
    g.add_argument("--geometric", action="store_true", help="also one random flip/rot90 per track (all views)")
    g.add_argument("--noisy", action="store_true", help="train on the *_noise twins (N-HPatches data)")
    g.add_argument("--denoiser", default=None, help="a denoiser .keras applied to every input patch first")
    g.add_argument("--collapse", default="warn", choices=("warn", "stop", "off"),
                   help="on descriptor collapse (loss pinned at the margin, spread ~ 0): warn or stop")
    g.add_argument("--format", default="hpatches", choices=("hpatches", "brown"),
                   help="--data layout: HPatches sequences (default) or one Brown/UBC PhotoTour subset folder "
                        "(tracks = 3-D points with >= 2 patches on 16 view slots; 5%% of the points held out for "
                        "validation unless --split none)")
    g.add_argument("--init", default=None, metavar="MODEL.keras",
                   help="start from the weights of this trained descriptor (same architecture and sizes), e.g. "
                        "fine-tune models/l2net-embedded.keras on noisy or denoised patches")


def brown_training_tracks(args):
    """``(root, train, held_out, how)`` tracks of the Brown subset ``--data`` (see :func:`hpatches_kit.data.brown.
    brown_tracks` for how points become 16-slot tracks)."""
    from pathlib import Path

    from ..data.brown import brown_tracks
    from ..data.errors import DataError

    if not args.data:
        raise DataError(None, "--format brown needs --data DIR (a Brown subset folder, e.g. .../liberty)")
    if args.noisy:
        raise SystemExit("--noisy: Brown data has no noisy twins")
    holdout = 0.0 if args.split == "none" else 0.05
    tracks, held = brown_tracks(args.data, size=args.patch_size, seed=args.seed, holdout=holdout,
                                progress=args.verbose > 0)
    how = f"brown: {len(tracks)} train / {0 if held is None else len(held)} held-out 3-D points"
    print(f"[data] {args.data}: {how}", file=sys.stderr)
    return Path(args.data), tracks, held, how


def denoise_tracks(tracks: np.ndarray, denoiser, batch_size: int = 1024) -> np.ndarray:
    """Apply a denoiser (model or ``.keras`` path) to ``(T, 16, P, P) uint8`` tracks; returns uint8."""
    import keras

    from ..data.errors import DataError

    path = None
    if not isinstance(denoiser, keras.Model):
        path = denoiser
        try:
            denoiser = keras.models.load_model(denoiser, compile=False)
        except Exception as e:  # noqa: BLE001
            raise DataError(path, f"cannot load denoiser: {e}") from e
    p = tracks.shape[-1]
    if tuple(denoiser.input_shape[1:3]) != (p, p):
        raise DataError(path or denoiser.name, f"denoiser expects {denoiser.input_shape[1:3]} patches, data has {p}x{p}")
    flat = tracks.reshape(-1, p, p, 1).astype(np.float32)
    out = denoiser.predict(flat, batch_size=batch_size, verbose=0)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(tracks.shape)


def init_weights(net, path) -> None:
    """Copy the weights of the descriptor saved at ``path`` into ``net`` (``--init``); a file that does not
    load, or a model of another architecture or size, raises ``DataError`` naming the file and the mismatch."""
    import keras

    from ..data.errors import DataError

    try:
        src = keras.models.load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001
        raise DataError(path, f"cannot load --init model: {e}") from e
    if src.name == "triplet_net":  # a random-triplet checkpoint: take its shared branch
        src = src.get_layer("l2net")
    mine, theirs = [w.shape for w in net.get_weights()], [w.shape for w in src.get_weights()]
    if tuple(src.input_shape[1:]) != tuple(net.input_shape[1:]) or mine != theirs:
        raise DataError(path, f"--init model does not match: input {src.input_shape[1:]} and output "
                              f"{src.output_shape[1:]} vs this run's {net.input_shape[1:]} and {net.output_shape[1:]} "
                              f"(check --patch-size and --dim)")
    net.set_weights(src.get_weights())


def heldout_matching(model, tracks: np.ndarray, max_tracks: int = 500, seed: int = 0) -> dict:
    """Nearest-neighbour matching accuracy on held-out tracks: for each target view, the fraction of
    reference patches whose nearest target descriptor (L2) is the same track; averaged per variant e/h/t."""
    rng = np.random.default_rng(seed)
    if len(tracks) > max_tracks:
        tracks = tracks[np.sort(rng.choice(len(tracks), max_tracks, replace=False))]
    t, _, p, _ = tracks.shape
    d = model.predict(tracks.reshape(-1, p, p, 1).astype(np.float32), batch_size=512, verbose=0).reshape(t, 16, -1)
    ref = d[:, 0]
    out = {}
    from ..layout import VARIANTS, target_indices

    for var in VARIANTS:
        accs = []
        for j in target_indices(var):
            dist = (ref ** 2).sum(1)[:, None] - 2 * ref @ d[:, j].T + (d[:, j] ** 2).sum(1)[None]
            accs.append(float((dist.argmin(1) == np.arange(t)).mean()))
        out[var] = float(np.mean(accs))
    out["mean"] = float(np.mean([out[v] for v in VARIANTS]))
    out["tracks"] = int(t)
    return out


def make_loss(name: str, margin: float = 1.0, distance: str = "L2", views: int = 2, global_mining: bool = False,
              koleo: float = 0.0):
    """The Keras loss for ``--loss name`` (see :data:`LOSSES`) on S x K track-major batches with ``views``
    views per track. ``koleo > 0`` adds that weight of KoLeo (:class:`~hpatches_kit.training.mining.
    KoLeoRegularised`); ``global_mining`` wraps the result in :class:`~hpatches_kit.training.mining.GlobalBatchLoss`."""
    from .. import losses
    from ..training.mining import GlobalBatchLoss, KoLeoRegularised

    if koleo < 0:
        raise SystemExit(f"--koleo must be >= 0, got {koleo}")
    if name == "random-triplet" and (global_mining or koleo):
        raise SystemExit("--global-mining and --koleo do not apply to --loss random-triplet")
    if name not in LOSSES:
        raise SystemExit(f"unknown --loss {name!r}; expected one of {', '.join(LOSSES)}")
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


def _loss(args):
    return make_loss(args.loss, args.margin, args.distance, args.views, args.global_mining, args.koleo)


def _random_triplet_model(net):
    """Three weight-sharing branches; output ``(B, 3, D)`` = (anchor, positive, negative) descriptors, the
    layout :class:`hpatches_kit.losses.RandomTripletLoss` expects."""
    import keras

    s = net.input_shape[1:]
    d = net.output_shape[-1]
    ins = [keras.Input(s, name=n) for n in ("anchor", "positive", "negative")]
    rows = [keras.layers.Reshape((1, d), name=f"{n}_row")(net(i)) for n, i in zip(("a", "p", "n"), ins)]
    out = keras.layers.Concatenate(axis=1, name="apn")(rows)
    return keras.Model(ins, out, name="triplet_net")


def run(args) -> int:
    import keras

    from ..data import load_dataset
    from ..models import l2net
    from ..training import (CollapseDetector, MiningCurriculum, check_tracks_per_replica, descriptor_dataset,
                            triplet_dataset)

    if args.views < 2 and args.loss != "random-triplet":
        raise SystemExit(f"--views must be >= 2 (positives need two views of a track), got {args.views}")
    if args.dim < 1 or args.patch_size < 1:
        raise SystemExit(f"--dim and --patch-size must be >= 1, got {args.dim} and {args.patch_size}")
    ctx = setup_run(args, "descriptor")
    if args.format == "brown":
        root, tracks, test_tracks, how = brown_training_tracks(args)
        train_names, test_names = [], []
    else:
        root = resolve_data(args, "hpatches")
        train_names, test_names, how = split_names(args, root)
        print(f"[data] {root}: {len(train_names)} train / {len(test_names)} held-out sequences ({how})", file=sys.stderr)
        ds_train = load_dataset(root, sequences=train_names, size=args.patch_size, progress=args.verbose > 0)
        tracks, _ = ds_train.all_tracks(noisy=args.noisy)
        del ds_train  # the concatenated copy is all training needs: keep one host copy, not two
        test_tracks = None
        if test_names:
            ds_test = load_dataset(root, sequences=test_names, size=args.patch_size, progress=args.verbose > 0)
            test_tracks = ds_test.all_tracks(noisy=args.noisy)[0]
    if args.denoiser:
        tracks = denoise_tracks(tracks, args.denoiser)
        test_tracks = denoise_tracks(test_tracks, args.denoiser) if test_tracks is not None else None
    K = args.views
    S = args.batch_size // K
    check_tracks_per_replica(S, ctx.strategy)
    if S * K != args.batch_size:
        print(f"[note] batch size {args.batch_size} -> {S} tracks x {K} views = {S * K}", file=sys.stderr)
    if len(tracks) < S:
        raise SystemExit(f"only {len(tracks)} training tracks: fewer than one batch of {S} tracks; lower --batch-size")
    triplets = args.loss == "random-triplet"
    _loss(args)  # validate the loss options before any work
    if triplets:
        train = triplet_dataset(tracks, batch_size=args.batch_size, seed=args.seed)
    else:
        train = descriptor_dataset(tracks, S, K, seed=args.seed, augment=args.augment, geometric=args.geometric)
    steps = steps_or_default(args, len(tracks) // S)
    num_train_tracks = len(tracks)
    probe_src = test_tracks if test_tracks is not None and len(test_tracks) >= 2 else tracks
    probe = np.ascontiguousarray(probe_src[: min(256, len(probe_src)), 0, :, :, None]).astype(np.float32)
    del tracks, probe_src  # the pipeline holds the tracks now (one in-graph copy)

    model, initial_epoch, history = maybe_resume(args, ctx)
    with ctx.strategy.scope():
        if model is None:
            net = l2net(input_size=args.patch_size, dim=args.dim, dropout=args.dropout)
            if args.init:
                init_weights(net, args.init)
            model = _random_triplet_model(net) if triplets else net
            loss = _loss(args)
            optimizer = make_optimizer(args, steps)
        else:  # resumed: keep the optimizer (state, step count), take loss/jit from this command line
            if triplets != (model.name == "triplet_net"):
                raise SystemExit("--resume: the checkpoint was trained with a different --loss family "
                                 "(random-triplet vs S x K mining)")
            loss = _loss(args)
            optimizer = model.optimizer
            replan_schedule(optimizer, args, steps)
        model.compile(optimizer=optimizer, loss=loss, jit_compile=ctx.jit)
    net = model.get_layer("l2net") if triplets else model
    if initial_epoch >= args.epochs:
        print(f"[resume] already trained {initial_epoch} >= --epochs {args.epochs} epochs", file=sys.stderr)
    train = train.skip(initial_epoch * steps) if initial_epoch else train

    val, val_steps = None, None
    if test_tracks is not None and not triplets:
        sv = min(S, (len(test_tracks) // ctx.strategy.num_replicas_in_sync) * ctx.strategy.num_replicas_in_sync)
        if sv >= 2:
            val_steps = max(1, min(len(test_tracks) // sv, 20))
            # the same val_steps batches at every validation (cached): a reshuffling stream would give each
            # validation other batches, and a resumed run (a fresh stream) other ones again than an
            # uninterrupted run -- val_loss would neither compare across epochs nor reproduce after --resume
            val = descriptor_dataset(test_tracks, sv, K, seed=args.seed + 1, augment=False).take(val_steps).cache().repeat()
    extra = []
    if args.collapse != "off" and not triplets:
        extra.append(CollapseDetector(probe, margin=collapse_level(args.loss, args.margin, args.koleo), action=args.collapse))
    if args.loss == "curriculum":
        lossobj = model.loss
        while not hasattr(lossobj, "hard_weight"):  # unwrap GlobalBatchLoss / KoLeoRegularised
            lossobj = lossobj.loss
        extra.append(MiningCurriculum(lossobj, warmup=args.curriculum_warmup, ramp=1))
    t0 = time.time()
    if initial_epoch < args.epochs:
        model.fit(train, steps_per_epoch=steps, epochs=args.epochs, initial_epoch=initial_epoch,
                  validation_data=val, validation_steps=val_steps,
                  validation_freq=validation_epochs(args.epochs, args.val_every), verbose=args.verbose,
                  callbacks=make_callbacks(ctx, history, extra))
    train_s = time.time() - t0

    metrics = {"data": str(root), "split": how, "train_sequences": len(train_names),
               "test_sequences": len(test_names), "train_tracks": int(num_train_tracks), "tracks_per_batch": S,
               "views": K, "steps_per_epoch": steps, "train_seconds": train_s}
    import json

    hp = ctx.out / "history.json"
    if hp.is_file():
        metrics["history"] = json.loads(hp.read_text()).get("history", {})
    if test_tracks is not None and len(test_tracks) >= 2:
        metrics["heldout_nn_matching"] = heldout_matching(net, test_tracks, seed=args.seed)
        print(f"[held-out] NN matching accuracy ref->target: " + ", ".join(
            f"{k} {v:.3f}" for k, v in metrics["heldout_nn_matching"].items() if k != "tracks"), file=sys.stderr)
    save_final(net, ctx, metrics)
    if args.evaluate and test_names:
        res, text = try_evaluation(ctx.out / "model.keras", load_dataset(root, sequences=test_names, noise=args.noisy or None,
                                                                         progress=False),
                                   denoiser=args.denoiser, noisy=args.noisy, progress=args.verbose > 0)
        metrics["evaluation"] = res
        save_final(net, ctx, metrics, write_model=False)
        print(text)
    print(f"[done] {ctx.out / 'model.keras'}", file=sys.stderr)
    return 0
