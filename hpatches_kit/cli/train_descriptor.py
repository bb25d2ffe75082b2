"""``hpatches-train descriptor``: train an L2-Net/HardNet-style descriptor on S x K track batches.

Defaults: the embedded HPatches dataset resized to 32x32, L2-Net (128-d), batch-hard triplet loss
(margin 1), Adam 1e-3, batches of 1024 patches = 512 tracks x 2 views, split ``a`` test sequences held out
for validation and the final evaluation. ``--denoiser FILE`` trains (and evaluates) on denoised input.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from ._train_common import (add_common_args, make_callbacks, maybe_resume, resolve_data, save_final, setup_run,
                            split_names, steps_or_default, try_evaluation)

LOSSES = ("batch-hard", "batch-all", "curriculum", "random-triplet", "semi-hard", "soft-hard")


def configure(p):
    add_common_args(p, model="l2net", models=("l2net",), loss="batch-hard", losses=LOSSES, batch_size=1024,
                    epochs=10, lr=1e-3, kind="hpatches")
    g = p.add_argument_group("descriptor")
    g.add_argument("--views", type=int, default=2, help="K views per track in a batch (default: 2)")
    g.add_argument("--patch-size", type=int, default=32, help="resize patches to this size (default: 32)")
    g.add_argument("--dim", type=int, default=128, help="descriptor size (default: 128)")
    g.add_argument("--dropout", type=float, default=0.3, help="dropout before the last conv (default: 0.3)")
    g.add_argument("--margin", type=float, default=1.0, help="triplet margin (default: 1.0)")
    g.add_argument("--global-mining", action="store_true",
                   help="mine hardest negatives over the global batch of all replicas (all_gather)")
    g.add_argument("--curriculum-warmup", type=int, default=1,
                   help="--loss curriculum: batch-all epochs before ramping to batch-hard (default: 1)")
    g.add_argument("--geometric", action="store_true", help="also one random flip/rot90 per track (all views)")
    g.add_argument("--noisy", action="store_true", help="train on the *_noise twins (N-HPatches data)")
    g.add_argument("--denoiser", default=None, help="a denoiser .keras applied to every input patch first")
    g.add_argument("--collapse", default="warn", choices=("warn", "stop", "off"),
                   help="on descriptor collapse (loss pinned at the margin, spread ~ 0): warn or stop")


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
    for vi, var in enumerate("eht"):
        accs = []
        for j in range(1 + 5 * vi, 6 + 5 * vi):
            dist = (ref ** 2).sum(1)[:, None] - 2 * ref @ d[:, j].T + (d[:, j] ** 2).sum(1)[None]
            accs.append(float((dist.argmin(1) == np.arange(t)).mean()))
        out[var] = float(np.mean(accs))
    out["mean"] = float(np.mean([out[v] for v in "eht"]))
    out["tracks"] = int(t)
    return out


def _loss(args, strategy):
    from ..training.mining import BatchAllLoss, BatchHardLoss, CurriculumTripletLoss, ReplicaLoss

    name = args.loss
    if name == "batch-hard":
        loss = BatchHardLoss(args.margin)
    elif name == "batch-all":
        loss = BatchAllLoss(args.margin)
    elif name == "curriculum":
        loss = CurriculumTripletLoss(args.margin, hard_weight=0.0)
    else:
        try:
            from ..losses import triplet as T

            loss = (T.TripletSemiHardLoss(margin=args.margin) if name == "semi-hard"
                    else T.TripletHardLoss(margin=args.margin, soft=True))
        except (ImportError, AttributeError) as e:
            raise SystemExit(f"--loss {name} needs hpatches_kit.losses.triplet (not available here: {e})")
        return ReplicaLoss(loss, global_batch=args.global_mining)
    if args.global_mining:
        return ReplicaLoss(loss, global_batch=True)
    return loss


def _random_triplet_model(net, margin):
    import keras

    from ..training.mining import RandomTripletLoss

    s = net.input_shape[1:]
    ins = [keras.Input(s, name=n) for n in ("anchor", "positive", "negative")]
    out = keras.layers.Concatenate(name="apn")([net(i) for i in ins])
    return keras.Model(ins, out, name="triplet_net"), RandomTripletLoss(margin)


def run(args) -> int:
    import keras

    from ..data import load_dataset
    from ..models import l2net
    from ..training import (CollapseDetector, MiningCurriculum, check_tracks_per_replica, descriptor_dataset,
                            triplet_dataset)

    ctx = setup_run(args, "descriptor")
    root = resolve_data(args, "hpatches")
    train_names, test_names, how = split_names(args, root)
    print(f"[data] {root}: {len(train_names)} train / {len(test_names)} held-out sequences ({how})", file=sys.stderr)
    ds_train = load_dataset(root, sequences=train_names, size=args.patch_size, progress=args.verbose > 0)
    tracks, _ = ds_train.all_tracks(noisy=args.noisy)
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
    if triplets:
        if args.global_mining:
            raise SystemExit("--global-mining does not apply to --loss random-triplet")
        train = triplet_dataset(tracks, batch_size=args.batch_size, seed=args.seed)
    else:
        train = descriptor_dataset(tracks, S, K, seed=args.seed, augment=args.augment, geometric=args.geometric)
    steps = steps_or_default(args, len(tracks) // S)

    model, initial_epoch, history = maybe_resume(args, ctx)
    with ctx.strategy.scope():
        if model is None:
            net = l2net(input_size=args.patch_size, dim=args.dim, dropout=args.dropout)
            if triplets:
                model, loss = _random_triplet_model(net, args.margin)
            else:
                model, loss = net, _loss(args, ctx.strategy)
            optimizer = keras.optimizers.Adam(args.lr)
        else:  # resumed: keep the optimizer (state, step count), take loss/jit from this command line
            if triplets != (model.name == "triplet_net"):
                raise SystemExit("--resume: the checkpoint was trained with a different --loss family "
                                 "(random-triplet vs S x K mining)")
            loss = _random_triplet_model(model.get_layer("l2net"), args.margin)[1] if triplets else _loss(args, ctx.strategy)
            optimizer = model.optimizer
        model.compile(optimizer=optimizer, loss=loss, jit_compile=ctx.jit)
    net = model.get_layer("l2net") if triplets else model
    if initial_epoch >= args.epochs:
        print(f"[resume] already trained {initial_epoch} >= --epochs {args.epochs} epochs", file=sys.stderr)
    train = train.skip(initial_epoch * steps) if initial_epoch else train

    val, val_steps = None, None
    if test_tracks is not None and not triplets:
        sv = min(S, (len(test_tracks) // ctx.strategy.num_replicas_in_sync) * ctx.strategy.num_replicas_in_sync)
        if sv >= 2:
            val = descriptor_dataset(test_tracks, sv, K, seed=args.seed + 1, augment=False)
            val_steps = max(1, min(len(test_tracks) // sv, 20))
    extra = []
    if args.collapse != "off" and not triplets:
        probe_src = test_tracks if test_tracks is not None and len(test_tracks) >= 2 else tracks
        probe = probe_src[: min(256, len(probe_src)), 0, :, :, None].astype(np.float32)
        extra.append(CollapseDetector(probe, margin=args.margin, action=args.collapse))
    if args.loss == "curriculum":
        lossobj = model.loss.loss if hasattr(model.loss, "global_batch") else model.loss
        extra.append(MiningCurriculum(lossobj, warmup=args.curriculum_warmup, ramp=1))
    t0 = time.time()
    if initial_epoch < args.epochs:
        model.fit(train, steps_per_epoch=steps, epochs=args.epochs, initial_epoch=initial_epoch,
                  validation_data=val, validation_steps=val_steps, verbose=args.verbose,
                  callbacks=make_callbacks(ctx, history, extra))
    train_s = time.time() - t0

    metrics = {"data": str(root), "split": how, "train_sequences": len(train_names),
               "test_sequences": len(test_names), "train_tracks": int(len(tracks)), "tracks_per_batch": S,
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
        ds_eval = load_dataset(root, sequences=test_names, progress=False)
        res, text = try_evaluation(ctx.out / "model.keras", ds_eval, denoiser=args.denoiser)
        metrics["evaluation"] = res
        save_final(net, ctx, metrics, write_model=False)
        print(text)
    print(f"[done] {ctx.out / 'model.keras'}", file=sys.stderr)
    return 0
