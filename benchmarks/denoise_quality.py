"""Denoise -> describe on the embedded N-HPatches default: does a U-Net trained *for the descriptor* help?

Held-out split-``a`` test sequences (never trained on), official protocol (verification / matching / retrieval
mAP), one script, in-process (library functions only, ``hpatches_kit.training``):

1. **U-Net learning curves**: shallow and deep U-Net trained for MAE at equal budgets, held-out and training-set
   MAE / PSNR at epochs 3, 10 and 20 (constant learning rate, so the epoch-3 and epoch-10 points are exactly
   what shorter runs would give). The better one at the last epoch is the MAE denoiser of step 2.
2. **Three descriptors at equal budget** (same start, steps, batch, learning rate, seed, augmentation), each
   fine-tuned from the clean-trained descriptor (``--descriptor``, default ``models/l2net-embedded.keras``):
   * ``noisy``: the descriptor trained and evaluated on the noisy patches;
   * ``MAE U-Net + descriptor``: trained and evaluated on patches the MAE U-Net denoised (8-bit rounded);
   * ``joint``: U-Net (from the MAE one) + descriptor trained end to end, triplet loss through both plus
     ``--recon-weight`` x MAE (:func:`hpatches_kit.training.joint.train_joint`); one ``.keras``, evaluated
     on the raw noisy patches.
3. The joint U-Net's MAE / PSNR after joint training next to the MAE U-Net's, and a PNG of examples (rows
   noisy / clean / MAE-denoised / joint-denoised).

Prints ``PASS`` when the joint pipeline beats the noisy-trained descriptor on all three tasks, else ``FAIL`` and
the measurements. The default budget (printed at the start: U-Nets 20 epochs x 8 steps x 128 pairs; descriptors
3 x 25 steps of 128 x 2 patches on a 3,200-track subset) ran in 9.8 minutes on 2 CPU cores shared with other
jobs (load average 2-3; 25.8 minutes at 5-9; ``nice -n 5``); ``--quick`` is a smoke run (numbers meaningless). ``--unets deep_unet
--curves-only --unet-epochs 3,10,20,40`` runs longer curves of one U-Net alone.

    nice -n 5 python benchmarks/denoise_quality.py --out runs/bench-denoise --png docs/denoise_examples.png

Measured results and what they mean: README.md ("Denoising"), docs/training.md ("Joint denoiser + descriptor").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

TASKS = ("verification", "matching", "retrieval")


def _args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench-denoise")
    ap.add_argument("--png", default=None, help="also write the examples PNG here (e.g. docs/denoise_examples.png)")
    ap.add_argument("--unet-epochs", default="3,10,20", help="epochs at which the U-Nets' MAE is measured")
    ap.add_argument("--unet-steps", type=int, default=8, help="U-Net steps per epoch (batch 128)")
    ap.add_argument("--unets", default="shallow_unet,deep_unet", help="the U-Nets of the curves")
    ap.add_argument("--deep-bn-momentum", type=float, default=0.99, help="deep U-Net: batch-norm momentum")
    ap.add_argument("--curves-only", action="store_true", help="stop after the U-Net curves")
    ap.add_argument("--denoiser", default=None, help="skip the U-Net curves; use this MAE-trained U-Net .keras")
    ap.add_argument("--descriptor", default="models/l2net-embedded.keras", help="the clean-trained start")
    ap.add_argument("--desc-epochs", type=int, default=3)
    ap.add_argument("--desc-steps", type=int, default=25, help="descriptor steps per epoch, every arm")
    ap.add_argument("--desc-tracks", type=int, default=3200, help="the descriptor arms train on this seeded "
                    "random subset of the training tracks (0: all), the same for every arm")
    ap.add_argument("--tracks-per-batch", type=int, default=128, help="S (batch = S x --views patches)")
    ap.add_argument("--views", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--recon-weight", type=float, default=None, help="joint: weight of the MAE regulariser "
                    "(default: hpatches_kit.training.joint.DEFAULT_RECON_WEIGHT)")
    ap.add_argument("--mae-patches", type=int, default=2000, help="patches for each MAE/PSNR point of the curves")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="tiny budgets (smoke test, numbers meaningless)")
    a = ap.parse_args(argv)
    if a.quick:
        a.unet_epochs, a.unet_steps, a.desc_epochs, a.desc_steps, a.mae_patches = "1,2", 3, 1, 3, 500
    a.unet_epochs = sorted({int(e) for e in str(a.unet_epochs).split(",")})
    a.unets = [u.strip() for u in a.unets.split(",")]
    return a


def _headline(res: dict) -> dict:
    return {"headline": {t: res[t]["headline"]["value"] for t in TASKS if t in res}}


def unet_curves(a, noisy, clean, test_n, test_c, out: Path) -> dict:
    """Shallow and deep U-Net, MAE at each of ``a.unet_epochs``; saves ``<out>/unet-<name>.keras``."""
    import keras

    from hpatches_kit.models import deep_unet, shallow_unet
    from hpatches_kit.training import denoise_dataset
    from hpatches_kit.training.denoise import heldout_denoise_metrics as denoise_metrics

    curves = {}
    for name, build in (("shallow_unet", shallow_unet), ("deep_unet", deep_unet)):
        if name not in a.unets:
            continue
        keras.utils.set_random_seed(a.seed)
        model = build(noisy.shape[-1]) if name == "shallow_unet" else build(noisy.shape[-1], bn_momentum=a.deep_bn_momentum)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mae")
        points, t0 = [], time.time()

        class Probe(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch + 1 in a.unet_epochs:
                    held, _ = denoise_metrics(model, test_n, test_c, a.mae_patches, seed=a.seed)
                    train, _ = denoise_metrics(model, noisy, clean, a.mae_patches, seed=a.seed)
                    points.append({"epoch": epoch + 1, "heldout": held, "train": train,
                                   "fit_loss": float(logs["loss"]), "wall_s": time.time() - t0})
                    print(f"  {name} epoch {epoch + 1}: held-out MAE {held['mae_denoised']:.2f} / train MAE "
                          f"{train['mae_denoised']:.2f} (inference mode) / this epoch's training-mode loss "
                          f"{logs['loss']:.2f}", flush=True)

        model.fit(denoise_dataset(noisy, clean, batch_size=128, seed=a.seed), steps_per_epoch=a.unet_steps,
                  epochs=max(a.unet_epochs), verbose=0, callbacks=[Probe()])
        model.save(out / f"unet-{name}.keras")
        curves[name] = {"params": int(model.count_params()), "points": points, "wall_s": time.time() - t0}
    return curves


def _start(path):
    """A fresh copy of the clean-trained descriptor (fused batch norm, as ``l2net()`` builds it)."""
    import keras

    from hpatches_kit.models import with_fused_batch_norm

    return with_fused_batch_norm(keras.models.load_model(path, compile=False))


def _fit_descriptor(a, tracks, path: Path):
    import keras

    from hpatches_kit import losses
    from hpatches_kit.training import descriptor_dataset

    keras.utils.set_random_seed(a.seed)
    net = _start(a.descriptor)
    net.compile(optimizer=keras.optimizers.Adam(a.lr), loss=losses.get("batch-hard", views_per_track=a.views))
    t0 = time.time()
    h = net.fit(descriptor_dataset(tracks, a.tracks_per_batch, a.views, seed=a.seed), steps_per_epoch=a.desc_steps,
                epochs=a.desc_epochs, verbose=0)
    net.save(path)
    return {"train_seconds": time.time() - t0, "loss": [float(v) for v in h.history["loss"]]}


def main(argv=None) -> int:
    a = _args(argv)
    import keras

    import hpatches_kit.models  # noqa: F401
    from hpatches_kit.data import ensure_default, load_dataset
    from hpatches_kit.models.joint import joint_parts
    from hpatches_kit.plots.training import plot_patch_rows
    from hpatches_kit.training.evaluate import evaluate_saved
    from hpatches_kit.training.denoise import heldout_denoise_metrics as denoise_metrics
    from hpatches_kit.training.joint import DEFAULT_RECON_WEIGHT, load_joint_start, train_joint
    from hpatches_kit.training.tracks import denoise_tracks
    from hpatches_kit.training.split_policy import train_test_names

    w = DEFAULT_RECON_WEIGHT if a.recon_weight is None else a.recon_weight
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.time()
    root = ensure_default("n-hpatches")
    train_names, test_names, how = train_test_names(root, "a", None)
    if a.quick:
        test_names = test_names[:3]
    ds = load_dataset(root, sequences=train_names, noise=True, progress=False)
    clean, noisy = ds.all_tracks()[0], ds.all_tracks(noisy=True)[0]
    del ds
    test = load_dataset(root, sequences=test_names, noise=True, progress=False)
    test_c, test_n = test.all_tracks()[0], test.all_tracks(noisy=True)[0]
    S, K = a.tracks_per_batch, a.views
    if a.desc_tracks and a.desc_tracks < len(noisy):
        sub = np.sort(np.random.default_rng(a.seed).choice(len(noisy), a.desc_tracks, replace=False))
        d_noisy, d_clean = noisy[sub], clean[sub]
    else:
        d_noisy, d_clean = noisy, clean
    print(f"data: {root} ({how}): {len(train_names)} train sequences, {len(noisy)} tracks; {len(test_names)} "
          f"held-out sequences, {len(test_c)} tracks")
    print(f"budget: U-Nets {max(a.unet_epochs)} epochs x {a.unet_steps} steps x 128 pairs "
          f"({max(a.unet_epochs) * a.unet_steps * 128:,} pairs), MAE at epochs {a.unet_epochs} on {a.mae_patches} "
          f"patches; descriptors {a.desc_epochs} epochs x {a.desc_steps} steps x {S}x{K} patches "
          f"({a.desc_epochs * a.desc_steps * S * K:,} patches) each on {len(d_noisy)} training tracks, Adam {a.lr:g} constant, batch-hard, seed {a.seed}, "
          f"all fine-tuned from {a.descriptor}; joint recon_weight {w:g}", flush=True)
    results = {"budget": {k: v for k, v in vars(a).items()}, "recon_weight": w}

    if a.denoiser is None:
        print("\n[1/3] U-Net learning curves (MAE)", flush=True)
        curves = unet_curves(a, noisy, clean, test_n, test_c, out)
        results["unet_curves"] = curves
        best = min(curves, key=lambda k: curves[k]["points"][-1]["heldout"]["mae_denoised"])
        den_path = out / f"unet-{best}.keras"
        if a.curves_only:
            (out / "curves.json").write_text(json.dumps(curves, indent=1))
            return 0
    else:
        curves, den_path = None, Path(a.denoiser)
    mae_unet = keras.models.load_model(den_path, compile=False)
    print(f"\n[2/3] descriptors at equal budget (MAE U-Net: {den_path})", flush=True)
    arms = {}
    arms["noisy"] = _fit_descriptor(a, d_noisy, out / "desc-noisy.keras")
    arms["noisy"]["eval"], _ = evaluate_saved(out / "desc-noisy.keras", test, _headline, noisy=True)
    print(f"  noisy: {arms['noisy']}", flush=True)
    t0 = time.time()
    den_train = denoise_tracks(d_noisy, mae_unet)
    arms["mae"] = _fit_descriptor(a, den_train, out / "desc-mae-denoised.keras")
    arms["mae"]["denoise_seconds"] = time.time() - t0 - arms["mae"]["train_seconds"]
    del den_train
    arms["mae"]["eval"], _ = evaluate_saved(out / "desc-mae-denoised.keras", test, _headline, denoiser=den_path,
                                            noisy=True)
    print(f"  MAE U-Net + descriptor: {arms['mae']}", flush=True)
    keras.utils.set_random_seed(a.seed)
    joint = load_joint_start(den_path, _start(a.descriptor))
    joint, hist = train_joint(d_noisy, d_clean, joint, recon_weight=w, tracks_per_batch=S, views=K, epochs=a.desc_epochs,
                              steps_per_epoch=a.desc_steps, lr=a.lr, seed=a.seed)
    joint.save(out / "joint.keras")
    arms["joint"] = {"train_seconds": hist["train_seconds"], "loss": hist["loss"],
                     "descriptor_loss": hist["descriptor_loss"], "denoised_mae": hist["denoised_loss"]}
    arms["joint"]["eval"], _ = evaluate_saved(out / "joint.keras", test, _headline, noisy=True)
    print(f"  joint: {arms['joint']}", flush=True)
    results["arms"] = arms

    print("\n[3/3] pixel fidelity after joint training", flush=True)
    m_mae, (n_flat, d_mae, c_flat) = denoise_metrics(mae_unet, test_n, test_c, 8000, seed=a.seed)
    m_joint, (_, d_joint, _) = denoise_metrics(joint_parts(joint)[0], test_n, test_c, 8000, seed=a.seed)
    results["fidelity"] = {"mae_unet": m_mae, "joint_unet": m_joint}
    pick = np.random.default_rng(a.seed).choice(len(n_flat), 10, replace=False)
    rows = {"noisy": n_flat[pick], "clean": c_flat[pick], "MAE U-Net": d_mae[pick], "joint U-Net": d_joint[pick]}
    for png in [out / "denoise_examples.png"] + ([Path(a.png)] if a.png else []):
        plot_patch_rows(rows, png, n=10)
    results["wall_s"] = time.time() - t_all
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    report(results, curves, den_path)
    return 0


def report(r: dict, curves, den_path) -> None:
    b = r["budget"]
    print(f"\n==== results (held-out split-a test sequences; whole benchmark {r['wall_s'] / 60:.1f} min wall) ====")
    if curves:
        print(f"\nU-Net learning curves: MAE (grey levels) at equal epochs of {b['unet_steps']} steps x 128 pairs, "
              f"Adam 1e-3 constant")
        eps = [p["epoch"] for p in next(iter(curves.values()))["points"]]
        print(f"{'model':<14}{'params':>9}" + "".join(f"{'ep ' + str(e) + ' held/train':>20}" for e in eps)
              + f"{'wall s':>9}")
        for name, c in curves.items():
            cells = "".join(f"{p['heldout']['mae_denoised']:>12.2f} /{p['train']['mae_denoised']:>6.2f}"
                            for p in c["points"])
            print(f"{name:<14}{c['params']:>9}{cells}{c['wall_s']:>9.0f}")
        p0 = next(iter(curves.values()))["points"][-1]["heldout"]
        print(f"noisy input: MAE {p0['mae_noisy']:.2f}, PSNR {p0['psnr_noisy']:.2f} dB")
    print(f"\nDescriptors at equal budget ({b['desc_epochs']} x {b['desc_steps']} steps of "
          f"{b['tracks_per_batch']}x{b['views']}), fine-tuned from {Path(b['descriptor']).name}, official protocol, mAP %")
    print(f"{'arm':<28}{'verification':>14}{'matching':>10}{'retrieval':>11}{'train s':>9}")
    names = {"noisy": "noisy-trained", "mae": f"MAE U-Net ({Path(den_path).stem}) + desc", "joint": "joint (one .keras)"}
    heads = {}
    for k, arm in r["arms"].items():
        h = arm["eval"].get("headline")
        if not h:
            print(f"{names[k]:<28} evaluation failed: {arm['eval']}")
            continue
        heads[k] = h
        print(f"{names[k]:<28}{h['verification']:>14.2f}{h['matching']:>10.2f}{h['retrieval']:>11.2f}"
              f"{arm['train_seconds']:>9.0f}")
    f = r["fidelity"]
    print(f"\nU-Net pixel fidelity on {f['mae_unet']['patches']} held-out patches: noisy MAE {f['mae_unet']['mae_noisy']:.2f} / "
          f"PSNR {f['mae_unet']['psnr_noisy']:.2f} dB; MAE U-Net {f['mae_unet']['mae_denoised']:.2f} / "
          f"{f['mae_unet']['psnr_denoised']:.2f} dB; after joint training (recon_weight {r['recon_weight']:g}) "
          f"{f['joint_unet']['mae_denoised']:.2f} / {f['joint_unet']['psnr_denoised']:.2f} dB")
    if {"noisy", "joint"} <= set(heads):
        diffs = {t: heads["joint"][t] - heads["noisy"][t] for t in TASKS}
        print("joint - noisy-trained: " + ", ".join(f"{t} {d:+.2f}" for t, d in diffs.items()))
        if "mae" in heads:
            print("joint - MAE U-Net + desc: " + ", ".join(f"{t} {heads['joint'][t] - heads['mae'][t]:+.2f}" for t in TASKS))
        ok = all(d > 0 for d in diffs.values())
        print("joint beats the noisy-trained descriptor on all three tasks: " + ("PASS" if ok else "FAIL"))
    else:
        print("FAIL: an evaluation failed (see above)")


if __name__ == "__main__":
    sys.exit(main())
