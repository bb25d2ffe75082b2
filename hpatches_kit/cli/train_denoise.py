"""``hpatches-train denoise``: train a U-Net denoiser on N-HPatches-style (noisy, clean) patch pairs.

Defaults: the embedded N-HPatches dataset (32x32 with ``*_noise`` twins), the shallow U-Net, Adam 1e-3,
mean absolute error in grey levels, batches of 128 pairs, 3 epochs, split ``a`` test sequences held out. At the end:
held-out MAE / PSNR of the denoised vs the noisy input, and a PNG of denoising examples.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from ._train_common import (add_common_args, make_callbacks, make_optimizer, maybe_resume, replan_schedule,
                            resolve_data, save_final, setup_run, split_names, steps_or_default, validation_epochs)

MODELS = ("shallow_unet", "deep_unet")
LOSSES = ("mae", "mse")


def configure(p):
    add_common_args(p, model="shallow_unet", models=MODELS, loss="mae", losses=LOSSES, batch_size=128,
                    epochs=3, lr=1e-3, kind="n-hpatches")
    g = p.add_argument_group("denoiser")
    g.add_argument("--base", type=int, default=16, help="deep_unet: filters of the first level (default: 16)")
    g.add_argument("--depth", type=int, default=4, help="deep_unet: levels (default: 4)")
    g.add_argument("--max-eval-patches", type=int, default=20000, help="held-out patches for MAE/PSNR")


def psnr(a, b) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def heldout_denoise_metrics(model, noisy, clean, max_patches=20000, seed=0):
    p = clean.shape[-1]
    n_flat, c_flat = noisy.reshape(-1, p, p), clean.reshape(-1, p, p)
    if len(n_flat) > max_patches:
        idx = np.sort(np.random.default_rng(seed).choice(len(n_flat), max_patches, replace=False))
        n_flat, c_flat = n_flat[idx], c_flat[idx]
    den = model.predict(n_flat[..., None].astype(np.float32), batch_size=512, verbose=0)[..., 0]
    den = np.clip(den, 0, 255)
    return {"patches": int(len(n_flat)),
            "mae_denoised": float(np.abs(den - c_flat).mean()), "mae_noisy": float(np.abs(n_flat.astype(np.float64) - c_flat).mean()),
            "psnr_denoised": psnr(den, c_flat), "psnr_noisy": psnr(n_flat, c_flat)}, (n_flat, den, c_flat)


def run(args) -> int:
    import keras

    from ..data import load_dataset
    from ..data.errors import DataError
    from ..models import deep_unet, shallow_unet
    from ..plots.training import plot_denoise_examples
    from ..training import denoise_dataset

    ctx = setup_run(args, "denoise")
    root = resolve_data(args, "n-hpatches")
    train_names, test_names, how = split_names(args, root)
    print(f"[data] {root}: {len(train_names)} train / {len(test_names)} held-out sequences ({how})", file=sys.stderr)
    ds_train = load_dataset(root, sequences=train_names, noise=True, progress=args.verbose > 0)
    clean, _ = ds_train.all_tracks()
    noisy, _ = ds_train.all_tracks(noisy=True)
    if len(clean) == 0:
        raise DataError(root, "no training tracks")
    p = clean.shape[-1]
    n_pairs = clean.shape[0] * clean.shape[1]
    bs = args.batch_size
    if bs % ctx.strategy.num_replicas_in_sync:
        raise SystemExit(f"--batch-size {bs} must be divisible by the {ctx.strategy.num_replicas_in_sync} replicas")
    if n_pairs < bs:
        raise SystemExit(f"only {n_pairs} training patch pairs: fewer than one batch of {bs}")
    steps = steps_or_default(args, n_pairs // bs)
    train = denoise_dataset(noisy, clean, batch_size=bs, seed=args.seed, augment=args.augment)

    model, initial_epoch, history = maybe_resume(args, ctx)
    with ctx.strategy.scope():
        if model is None:
            model = (shallow_unet(p) if args.model == "shallow_unet"
                     else deep_unet(p, base=args.base, depth=args.depth))
            optimizer = make_optimizer(args, steps)
        else:  # resumed: keep the optimizer state and step count
            optimizer = model.optimizer
            replan_schedule(optimizer, args, steps)
        model.compile(optimizer=optimizer, loss=args.loss, jit_compile=ctx.jit)
    train = train.skip(initial_epoch * steps) if initial_epoch else train

    val, val_steps, test = None, None, None
    if test_names:
        ds_test = load_dataset(root, sequences=test_names, noise=True, progress=args.verbose > 0)
        test = (ds_test.all_tracks(noisy=True)[0], ds_test.all_tracks()[0])
        n_test = test[0].shape[0] * 16
        vb = min(bs, n_test)
        if vb >= 1:
            val = denoise_dataset(test[0], test[1], batch_size=vb, seed=args.seed + 1, augment=False)
            val_steps = max(1, min(n_test // vb, 50))
    t0 = time.time()
    if initial_epoch < args.epochs:
        model.fit(train, steps_per_epoch=steps, epochs=args.epochs, initial_epoch=initial_epoch,
                  validation_data=val, validation_steps=val_steps,
                  validation_freq=validation_epochs(args.epochs, args.val_every), verbose=args.verbose,
                  callbacks=make_callbacks(ctx, history))
    metrics = {"data": str(root), "split": how, "train_sequences": len(train_names),
               "test_sequences": len(test_names), "train_pairs": int(n_pairs), "steps_per_epoch": steps,
               "train_seconds": time.time() - t0}
    hp = ctx.out / "history.json"
    if hp.is_file():
        metrics["history"] = json.loads(hp.read_text()).get("history", {})
    eval_src = test if test is not None else (noisy, clean)
    m, (n_flat, den, c_flat) = heldout_denoise_metrics(model, *eval_src, max_patches=args.max_eval_patches, seed=args.seed)
    metrics["heldout" if test is not None else "train_set"] = m
    plot_denoise_examples(n_flat, den, c_flat, ctx.out / "denoise_examples.png")
    save_final(model, ctx, metrics)
    print(f"[held-out] MAE noisy {m['mae_noisy']:.2f} -> denoised {m['mae_denoised']:.2f} grey levels; "
          f"PSNR {m['psnr_noisy']:.2f} -> {m['psnr_denoised']:.2f} dB ({m['patches']} patches)")
    print(f"[done] {ctx.out / 'model.keras'}", file=sys.stderr)
    return 0
