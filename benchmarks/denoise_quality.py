"""Denoise -> describe on the embedded N-HPatches default: does denoising help the descriptor, over seeds?

Held-out split-``a`` test sequences (never trained on), official protocol (verification / matching / retrieval
mAP), one script, in-process (library functions only, ``hpatches_kit.training``):

1. **U-Net learning curves** (skipped with ``--denoiser``): shallow and deep U-Net trained for MAE at equal
   budgets on the training noise, held-out and training-set MAE at ``--unet-epochs`` (constant learning rate).
   The better one at the last epoch is the MAE denoiser of step 2 (``<out>/unet-<name>.keras``).
2. **Pipelines at equal budget**, each for ``--seeds`` seeds (a seed sets the batch order and the random
   state; start, data subset, steps, batch and learning rate are the same), all fine-tuned from the
   clean-trained descriptor (``--descriptor``, default ``models/l2net-embedded.keras``):
   * ``noisy``: the descriptor trained and evaluated on the noisy patches;
   * ``mae``: trained and evaluated on patches the MAE U-Net denoised (8-bit rounded; denoised once);
   * ``joint``: U-Net (from the MAE one) + descriptor trained end to end, triplet loss through both plus
     ``--recon-weights`` x MAE (:func:`hpatches_kit.training.joint.train_joint`); one ``.keras`` on raw patches;
   * ``joint-lr``: the same with the U-Net's own learning rate, ``--unet-lr-scale`` x the descriptor's with a
     ``--unet-warmup``-step linear warm-up (:func:`hpatches_kit.training.joint.unet_lr_optimizer`).
   Every trained model is evaluated with its batch-norm moving statistics as trained and/or re-estimated over
   ``--bn-patches`` of its own training inputs (``--bn``; :func:`hpatches_kit.training.batchnorm.
   reestimate_batch_norm`); ``--bn-compare-seeds K`` evaluates only the first K seeds both ways.
3. The report: per pipeline mean ± standard deviation over seeds per task; paired per-seed differences (each
   denoising pipeline - noisy-trained, re-estimated - as trained, joint-lr - joint, joint - MAE) with their mean
   and t-based 95% interval (``scipy.stats.t``); the verdict per pipeline and task: ``better`` / ``worse`` when
   the interval excludes 0, else ``no difference shown``. ``PASS`` when a denoising pipeline is ``better`` on all
   three tasks, else ``FAIL``.

``--noise F`` sets the noise: 1 (default) is N-HPatches' stored ``*_noise`` twins (sigma 10 / 20 / 30 for
ref+e / h / t); any other value regenerates train and test noise at F x those levels (fixed seeds; without
``--denoiser`` the curves train the MAE U-Net at that level). Results go to ``<out>/results.json`` after every
run; rerunning the same command resumes (finished seeds are kept). ``--quick`` is a smoke run (numbers
meaningless). The issue-29 runs of README.md ("Denoising"; 2 shared CPU cores, ``nice -n 15``; not all
finished: rerunning resumes them; seeds can also run in parallel invocations with ``--seed`` and ``--out``,
then ``--report-only --merge``):

    python benchmarks/denoise_quality.py --seeds 5 --arms noisy,mae,joint,joint-lr --bn reestimate
        --bn-compare-seeds 1 --test-sequences 5 --denoiser models/unet-shallow-embedded.keras --out runs/dq-n1
    python benchmarks/denoise_quality.py --noise 2 --seeds 3 --arms noisy,mae,joint --bn reestimate
        --test-sequences 5 --unets shallow_unet --unet-epochs 10,20 --out runs/dq-n2
    python benchmarks/denoise_quality.py --curves-only     # the U-Net learning-curve table

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
    ap.add_argument("--out", default="runs/bench-denoise", help="results.json (resumable) and the U-Nets")
    ap.add_argument("--png", default=None, help="also write an examples PNG here (e.g. docs/denoise_examples.png)")
    ap.add_argument("--seeds", type=int, default=1, help="seeds per pipeline (batch order, initialisation)")
    ap.add_argument("--seed", type=int, default=0, help="the first seed (seeds are --seed .. --seed + --seeds - 1)")
    ap.add_argument(
        "--noise",
        type=float,
        default=1.0,
        help="noise level as a multiple of N-HPatches' sigma "
        "10/20/30 (ref+e/h/t): 1 uses the dataset's stored *_noise twins; any other value regenerates "
        "train and test noise (fixed seeds) at that multiple, e.g. 2 for 20/40/60",
    )
    ap.add_argument(
        "--arms",
        default="noisy,mae,joint",
        help="pipelines: noisy (descriptor on noisy patches), "
        "mae (MAE U-Net, then descriptor), joint (end to end), joint-lr (joint with the U-Net's own "
        "learning rate: --unet-lr-scale, --unet-warmup)",
    )
    ap.add_argument(
        "--recon-weights",
        default=None,
        help="joint arms: comma-separated --recon-weight values "
        "(default: hpatches_kit.training.joint.DEFAULT_RECON_WEIGHT)",
    )
    ap.add_argument("--recon-weight", type=float, default=None, help="one recon weight (same as --recon-weights W)")
    ap.add_argument("--unet-lr-scale", type=float, default=0.1, help="joint-lr: U-Net learning rate / descriptor's")
    ap.add_argument("--unet-warmup", type=int, default=25, help="joint-lr: linear warm-up steps of the U-Net's rate")
    ap.add_argument(
        "--bn",
        default="as-trained,reestimate",
        help="evaluate each trained model with its batch-norm "
        "moving statistics as trained and/or re-estimated over --bn-patches training patches",
    )
    ap.add_argument("--bn-patches", type=int, default=16384)
    ap.add_argument(
        "--bn-compare-seeds",
        type=int,
        default=0,
        help="with --bn reestimate: the first K seeds are "
        "also evaluated as trained (the batch-norm check at a fraction of the evaluations)",
    )
    ap.add_argument(
        "--test-sequences",
        type=int,
        default=0,
        help="evaluate on this many of the held-out "
        "sequences, evenly spaced in their sorted list (0: all 14); the same for every pipeline and seed",
    )
    ap.add_argument(
        "--merge",
        default=None,
        help="also read the finished runs of these --out folders (comma-"
        "separated; the same budget), e.g. seeds run in parallel by another invocation with --seed",
    )
    ap.add_argument("--report-only", action="store_true", help="train nothing: report the finished runs")
    ap.add_argument("--keep-models", action="store_true", help="keep every trained .keras in --out")
    ap.add_argument("--unet-epochs", default="3,10,20", help="epochs at which the U-Nets' MAE is measured")
    ap.add_argument("--unet-steps", type=int, default=8, help="U-Net steps per epoch (batch 128)")
    ap.add_argument("--unets", default="shallow_unet,deep_unet", help="the U-Nets of the curves")
    ap.add_argument(
        "--deep-bn-momentum",
        type=float,
        default=None,
        help="deep U-Net: batch-norm momentum (default: deep_unet's, 0.9)",
    )
    ap.add_argument("--curves-only", action="store_true", help="stop after the U-Net curves")
    ap.add_argument("--denoiser", default=None, help="skip the U-Net curves; use this MAE-trained U-Net .keras")
    ap.add_argument("--descriptor", default="models/l2net-embedded.keras", help="the clean-trained start")
    ap.add_argument("--desc-epochs", type=int, default=3)
    ap.add_argument("--desc-steps", type=int, default=25, help="descriptor steps per epoch, every arm")
    ap.add_argument(
        "--desc-tracks",
        type=int,
        default=3200,
        help="the descriptor arms train on this fixed random "
        "subset of the training tracks (0: all), the same for every arm and seed",
    )
    ap.add_argument("--tracks-per-batch", type=int, default=128, help="S (batch = S x --views patches)")
    ap.add_argument("--views", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--mae-patches", type=int, default=2000, help="patches for each MAE/PSNR point")
    ap.add_argument("--quick", action="store_true", help="tiny budgets (smoke test, numbers meaningless)")
    a = ap.parse_args(argv)
    if a.quick:
        a.unet_epochs, a.unet_steps, a.desc_epochs, a.desc_steps, a.mae_patches = "1,2", 3, 1, 3, 500
        a.bn_patches = min(a.bn_patches, 1024)
    from hpatches_kit.training.joint import DEFAULT_RECON_WEIGHT

    if a.recon_weights is None:
        a.recon_weights = str(DEFAULT_RECON_WEIGHT if a.recon_weight is None else a.recon_weight)
    try:
        a.recon_weights = [float(w) for w in a.recon_weights.split(",")]
        a.unet_epochs = sorted({int(e) for e in str(a.unet_epochs).split(",")})
    except ValueError as e:
        ap.error(f"--recon-weights / --unet-epochs: {e}")
    a.unets = [u.strip() for u in a.unets.split(",")]
    a.arms = [x.strip() for x in a.arms.split(",")]
    a.bn = sorted({x.strip() for x in a.bn.split(",")}, key=lambda x: x != "as-trained")  # as trained first
    bad = [x for x in a.arms if x not in ("noisy", "mae", "joint", "joint-lr")]
    if bad or not a.arms:
        ap.error(f"--arms: unknown pipeline(s) {', '.join(bad)}; expected noisy, mae, joint, joint-lr")
    if any(x not in ("as-trained", "reestimate") for x in a.bn):
        ap.error(f"--bn: expected as-trained and/or reestimate, got {','.join(a.bn)}")
    a.bn_all = a.bn if "as-trained" in a.bn or not a.bn_compare_seeds else ["as-trained"] + a.bn
    if a.seeds < 1 or a.noise < 0 or any(w < 0 for w in a.recon_weights):
        ap.error("--seeds must be >= 1, --noise and --recon-weights >= 0")
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
        if name == "shallow_unet":
            model = build(noisy.shape[-1])
        else:
            kw = {} if a.deep_bn_momentum is None else {"bn_momentum": a.deep_bn_momentum}
            model = build(noisy.shape[-1], **kw)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mae")
        points, t0 = [], time.time()

        class Probe(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch + 1 in a.unet_epochs:
                    held, _ = denoise_metrics(model, test_n, test_c, a.mae_patches, seed=a.seed)
                    train, _ = denoise_metrics(model, noisy, clean, a.mae_patches, seed=a.seed)
                    points.append(
                        {
                            "epoch": epoch + 1,
                            "heldout": held,
                            "train": train,
                            "fit_loss": float(logs["loss"]),
                            "wall_s": time.time() - t0,
                        }
                    )
                    print(
                        f"  {name} epoch {epoch + 1}: held-out MAE {held['mae_denoised']:.2f} / train MAE "
                        f"{train['mae_denoised']:.2f} (inference mode) / this epoch's training-mode loss "
                        f"{logs['loss']:.2f}",
                        flush=True,
                    )

        model.fit(
            denoise_dataset(noisy, clean, batch_size=128, seed=a.seed),
            steps_per_epoch=a.unet_steps,
            epochs=max(a.unet_epochs),
            verbose=0,
            callbacks=[Probe()],
        )
        model.save(out / f"unet-{name}.keras")
        curves[name] = {"params": int(model.count_params()), "points": points, "wall_s": time.time() - t0}
    return curves


def _start(path):
    """A fresh copy of the clean-trained descriptor (fused batch norm, as ``l2net()`` builds it)."""
    import keras

    from hpatches_kit.models import with_fused_batch_norm

    return with_fused_batch_norm(keras.models.load_model(path, compile=False))


def _bn_batches(tracks, a, seed):
    """The patches batch-norm re-estimation passes over: ``a.bn_patches`` training patches (of the arm's own
    input), drawn with ``seed``, in chunks of 256."""
    p = tracks.shape[-1]
    flat = tracks.reshape(-1, p, p)
    idx = np.sort(np.random.default_rng(seed).choice(len(flat), min(a.bn_patches, len(flat)), replace=False))
    x = flat[idx].astype(np.float32)[..., None]
    return [x[i : i + 256] for i in range(0, len(x), 256)]


def _fit_descriptor(a, tracks, seed):
    import keras

    from hpatches_kit import losses
    from hpatches_kit.training import descriptor_dataset

    keras.utils.set_random_seed(seed)
    net = _start(a.descriptor)
    net.compile(optimizer=keras.optimizers.Adam(a.lr), loss=losses.get("batch-hard", views_per_track=a.views))
    t0 = time.time()
    h = net.fit(
        descriptor_dataset(tracks, a.tracks_per_batch, a.views, seed=seed),
        steps_per_epoch=a.desc_steps,
        epochs=a.desc_epochs,
        verbose=0,
    )
    return net, {"train_seconds": time.time() - t0, "loss": [float(v) for v in h.history["loss"]]}


def _arm_specs(a) -> list[dict]:
    """The pipelines to run: ``{"name", "kind", "recon_weight", "unet_lr_scale", "unet_warmup"}``."""
    specs = []
    for kind in a.arms:
        if kind in ("noisy", "mae"):
            specs.append({"name": kind, "kind": kind})
            continue
        for w in a.recon_weights:
            spec = {"kind": "joint", "recon_weight": w, "unet_lr_scale": 1.0, "unet_warmup": 0}
            if kind == "joint-lr":
                spec.update(unet_lr_scale=a.unet_lr_scale, unet_warmup=a.unet_warmup)
            spec["name"] = f"{kind} w={w:g}"
            specs.append(spec)
    return specs


def _budget_key(a) -> dict:
    """What must match for ``--out``'s earlier runs to be reused (resume)."""
    keys = (
        "descriptor",
        "desc_epochs",
        "desc_steps",
        "desc_tracks",
        "tracks_per_batch",
        "views",
        "lr",
        "noise",
        "unet_lr_scale",
        "unet_warmup",
        "bn_patches",
        "quick",
        "test_sequences",
    )
    return {k: getattr(a, k) for k in keys}


def _same_budget(key: dict, a) -> bool:
    """Whether a results file's ``key`` is this invocation's budget (keys it lacks count as equal: older files)."""
    mine = json.loads(json.dumps(_budget_key(a)))
    return all(key.get(k, v) == v for k, v in mine.items())


def _save_json(path: Path, obj) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    tmp.replace(path)


def _with_noisy(test, make):
    """A copy of the dataset ``test`` whose noisy patches are ``make(sequence)``."""
    import dataclasses

    from hpatches_kit.data.hpatches import HPatchesDataset

    return HPatchesDataset([dataclasses.replace(s, noisy=make(s)) for s in test], root=test.root)


def run_arm(a, spec, seed, data, mae_unet) -> dict:
    """Train one pipeline with one seed and evaluate it as trained and/or with re-estimated batch norm."""
    import keras

    from hpatches_kit.models.joint import joint_parts
    from hpatches_kit.training.batchnorm import reestimate_batch_norm
    from hpatches_kit.training.denoise import heldout_denoise_metrics
    from hpatches_kit.training.evaluate import evaluate_saved
    from hpatches_kit.training.joint import load_joint_start, train_joint

    out, rec = Path(a.out), {"spec": spec, "seed": seed}
    if spec["kind"] == "joint":
        keras.utils.set_random_seed(seed)
        model = load_joint_start(mae_unet, _start(a.descriptor))
        model, hist = train_joint(
            data["d_noisy"],
            data["d_clean"],
            model,
            recon_weight=spec["recon_weight"],
            tracks_per_batch=a.tracks_per_batch,
            views=a.views,
            epochs=a.desc_epochs,
            steps_per_epoch=a.desc_steps,
            lr=a.lr,
            seed=seed,
            unet_lr_scale=spec["unet_lr_scale"],
            unet_warmup_steps=spec["unet_warmup"],
        )
        rec.update(
            train_seconds=hist["train_seconds"],
            loss=hist["loss"],
            descriptor_loss=hist["descriptor_loss"],
            denoised_mae=hist["denoised_loss"],
        )
        train_in, test = data["d_noisy"], data["test"]
    else:
        train_in = data["d_noisy"] if spec["kind"] == "noisy" else data["den_train"]
        test = data["test"] if spec["kind"] == "noisy" else data["test_mae"]
        model, h = _fit_descriptor(a, train_in, seed)
        rec.update(h)
    rec["eval"] = {}
    tag = f"{spec['name'].replace(' ', '_').replace('=', '')}-seed{seed}"
    for bn in a.bn_all if seed < a.seed + a.bn_compare_seeds else a.bn:
        if bn == "reestimate":
            t0 = time.time()
            reestimate_batch_norm(model, _bn_batches(train_in, a, seed))
            rec["bn_seconds"] = time.time() - t0
        path = out / f"{tag}-{bn}.keras"
        model.save(path)
        res, _ = evaluate_saved(path, test, _headline, noisy=True)
        rec["eval"][bn] = res.get("headline", res)
        if spec["kind"] == "joint":
            m, _ = heldout_denoise_metrics(joint_parts(model)[0], data["test_n"], data["test_c"], a.mae_patches, seed=0)
            rec.setdefault("joint_unet_heldout", {})[bn] = m
        if not a.keep_models:
            path.unlink()
    return rec


def load_data(a):
    """Training tracks (noisy at ``--noise``, their clean twins, the descriptor subset) and the held-out set."""
    from hpatches_kit.data import ensure_default, load_dataset
    from hpatches_kit.data.noise import noisy_tracks
    from hpatches_kit.training.split_policy import train_test_names

    root = ensure_default("n-hpatches")
    train_names, test_names, how = train_test_names(root, "a", None)
    if a.quick:
        test_names = test_names[:3]
    if a.test_sequences and a.test_sequences < len(test_names):
        names = sorted(test_names)
        test_names = [
            names[i] for i in sorted({round(float(x)) for x in np.linspace(0, len(names) - 1, a.test_sequences)})
        ]
    ds = load_dataset(root, sequences=train_names, noise=True, progress=False)
    clean = ds.all_tracks()[0]
    if a.noise == 1.0:  # N-HPatches' own noisy twins
        noisy = ds.all_tracks(noisy=True)[0]
        test = load_dataset(root, sequences=test_names, noise=True, progress=False)
    else:  # regenerated at a.noise x the N-HPatches levels, fixed realisations (train and test differ)
        noisy = noisy_tracks(clean, np.random.default_rng(1000), a.noise)
        rng = np.random.default_rng(2000)
        test = _with_noisy(
            load_dataset(root, sequences=test_names, noise=True, progress=False),
            lambda s: noisy_tracks(s.tracks, rng, a.noise),
        )
    del ds
    d = {
        "root": root,
        "how": how,
        "train_names": train_names,
        "test_names": test_names,
        "noisy": noisy,
        "clean": clean,
        "test": test,
        "test_c": test.all_tracks()[0],
        "test_n": test.all_tracks(noisy=True)[0],
    }
    if a.desc_tracks and a.desc_tracks < len(noisy):
        sub = np.sort(np.random.default_rng(0).choice(len(noisy), a.desc_tracks, replace=False))
        d["d_noisy"], d["d_clean"] = noisy[sub], clean[sub]
    else:
        d["d_noisy"], d["d_clean"] = noisy, clean
    return d


def _collect(a, out: Path) -> dict:
    """The results so far: ``<out>/results.json`` when it holds this budget (resume), plus ``--merge``'s runs."""
    results = {"budget": vars(a), "key": _budget_key(a), "runs": {}}
    rpath = out / "results.json"
    if rpath.exists():
        old = json.loads(rpath.read_text())
        if _same_budget(old.get("key", {}), a):
            results["runs"] = old.get("runs", {})
            results.update({k: old[k] for k in ("unet_curves", "mae_unet_heldout", "denoiser") if k in old})
            print(f"resuming: {len(results['runs'])} finished runs in {rpath}", flush=True)
        else:
            print(f"{rpath} holds another budget: starting over (it is replaced)", flush=True)
    for other in a.merge.split(",") if a.merge else []:
        op = Path(other) / "results.json"
        if not op.exists():
            print(f"--merge: {op} does not exist (skipped)", flush=True)
            continue
        old = json.loads(op.read_text())
        if not _same_budget(old.get("key", {}), a):
            print(f"--merge: {op} holds another budget (skipped)", flush=True)
            continue
        new = {k: v for k, v in old.get("runs", {}).items() if k not in results["runs"]}
        results["runs"].update(new)
        print(f"--merge: {len(new)} finished runs from {op}", flush=True)

    return results


def main(argv=None) -> int:
    a = _args(argv)
    import keras

    import hpatches_kit.models  # noqa: F401
    from hpatches_kit.training.denoise import heldout_denoise_metrics
    from hpatches_kit.training.tracks import denoise_tracks

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.time()
    if a.report_only:
        results = _collect(a, out)
        results["wall_s"] = time.time() - t_all
        return report(a, results, _arm_specs(a), list(range(a.seed, a.seed + a.seeds)))
    data = load_data(a)
    noisy, clean = data["noisy"], data["clean"]
    S, K = a.tracks_per_batch, a.views
    specs = _arm_specs(a)
    seeds = list(range(a.seed, a.seed + a.seeds))
    print(
        f"data: {data['root']} ({data['how']}): {len(data['train_names'])} train sequences, {len(noisy)} tracks; "
        f"{len(data['test_names'])} held-out sequences ({', '.join(data['test_names'])}), {len(data['test_c'])} "
        f"tracks; noise {a.noise:g} x "
        f"N-HPatches (sigma {10 * a.noise:g}/{20 * a.noise:g}/{30 * a.noise:g} "
        f"for ref+e/h/t{'; the stored *_noise twins' if a.noise == 1.0 else '; regenerated, fixed realisation'})"
    )
    print(
        f"budget: descriptors {a.desc_epochs} epochs x {a.desc_steps} steps x {S}x{K} patches "
        f"({a.desc_epochs * a.desc_steps * S * K:,} patches) each on {len(data['d_noisy'])} training tracks, "
        f"Adam {a.lr:g} constant, batch-hard, all fine-tuned from {a.descriptor}; pipelines "
        f"{', '.join(s['name'] for s in specs)}; joint-lr: U-Net lr x {a.unet_lr_scale:g}, warm-up "
        f"{a.unet_warmup} steps; batch norm {' and '.join(a.bn)} (re-estimated over {a.bn_patches} training "
        f"patches); seeds {seeds[0]}..{seeds[-1]}",
        flush=True,
    )

    results = _collect(a, out)
    rpath = out / "results.json"
    if a.denoiser is None:
        print("\n[1/3] U-Net learning curves (MAE)", flush=True)
        curves = unet_curves(a, noisy, clean, data["test_n"], data["test_c"], out)
        results["unet_curves"] = curves
        best = min(curves, key=lambda k: curves[k]["points"][-1]["heldout"]["mae_denoised"])
        den_path = out / f"unet-{best}.keras"
        if a.curves_only:
            _save_json(out / "curves.json", curves)
            report_curves(a, curves)
            return 0
    else:
        den_path = Path(a.denoiser)
    mae_unet = keras.models.load_model(den_path, compile=False)
    results["denoiser"] = str(den_path)
    m_mae, _ = heldout_denoise_metrics(mae_unet, data["test_n"], data["test_c"], a.mae_patches, seed=0)
    results["mae_unet_heldout"] = m_mae
    print(
        f"MAE U-Net {den_path}: held-out MAE {m_mae['mae_noisy']:.2f} -> {m_mae['mae_denoised']:.2f}, PSNR "
        f"{m_mae['psnr_noisy']:.2f} -> {m_mae['psnr_denoised']:.2f} dB",
        flush=True,
    )
    if any(s["kind"] == "mae" for s in specs):
        t0 = time.time()
        data["den_train"] = denoise_tracks(data["d_noisy"], mae_unet)
        data["test_mae"] = _with_noisy(data["test"], lambda s: denoise_tracks(s.noisy, mae_unet))
        results["denoise_seconds"] = time.time() - t0
    print(f"\n[2/3] {len(specs)} pipelines x {len(seeds)} seeds at equal budget", flush=True)
    for seed in seeds:  # seed-major: an interrupted run still has every pipeline for the seeds it finished
        for spec in specs:
            key = f"{spec['name']}|{seed}"
            if key in results["runs"]:
                continue
            t0 = time.time()
            rec = run_arm(a, spec, seed, data, mae_unet)
            rec["wall_s"] = time.time() - t0
            results["runs"][key] = rec
            _save_json(rpath, results)
            cells = "; ".join(
                f"{bn}: " + " / ".join(f"{rec['eval'][bn].get(t, float('nan')):.2f}" for t in TASKS)
                for bn in rec["eval"]
            )
            print(f"  seed {seed} {spec['name']}: {cells} ({rec['wall_s']:.0f} s)", flush=True)
    results["wall_s"] = time.time() - t_all
    _save_json(rpath, results)
    if a.png:
        _examples_png(a, data, mae_unet, specs, out)
    return report(a, results, specs, seeds)


def _examples_png(a, data, mae_unet, specs, out):
    """Rows noisy / clean / MAE U-Net / joint U-Net (the first joint pipeline, first seed, retrained as trained)."""
    import keras

    from hpatches_kit.models.joint import joint_parts
    from hpatches_kit.plots.training import plot_patch_rows
    from hpatches_kit.training.denoise import heldout_denoise_metrics
    from hpatches_kit.training.joint import load_joint_start, train_joint

    joint_spec = next((s for s in specs if s["kind"] == "joint"), None)
    _, (n_flat, d_mae, c_flat) = heldout_denoise_metrics(mae_unet, data["test_n"], data["test_c"], 2000, seed=0)
    rows = {"noisy": n_flat, "clean": c_flat, "MAE U-Net": d_mae}
    if joint_spec is not None:
        keras.utils.set_random_seed(a.seed)
        j = load_joint_start(mae_unet, _start(a.descriptor))
        j, _ = train_joint(
            data["d_noisy"],
            data["d_clean"],
            j,
            recon_weight=joint_spec["recon_weight"],
            tracks_per_batch=a.tracks_per_batch,
            views=a.views,
            epochs=a.desc_epochs,
            steps_per_epoch=a.desc_steps,
            lr=a.lr,
            seed=a.seed,
            unet_lr_scale=joint_spec["unet_lr_scale"],
            unet_warmup_steps=joint_spec["unet_warmup"],
        )
        _, (_, d_joint, _) = heldout_denoise_metrics(joint_parts(j)[0], data["test_n"], data["test_c"], 2000, seed=0)
        rows[f"{joint_spec['name']} U-Net"] = d_joint
    pick = np.random.default_rng(a.seed).choice(len(n_flat), 10, replace=False)
    plot_patch_rows({k: v[pick] for k, v in rows.items()}, Path(a.png), n=10)


def paired(x, y, confidence: float = 0.95) -> dict:
    """Paired comparison of per-seed results ``x - y``: the differences, their mean, standard deviation and the
    t-based ``confidence`` interval of the mean (``scipy.stats.t``, ``n - 1`` degrees of freedom; ``None`` for
    one seed)."""
    from scipy import stats

    d = np.asarray(x, np.float64) - np.asarray(y, np.float64)
    n = len(d)
    out = {"n": n, "diffs": d.tolist(), "mean": float(d.mean()) if n else float("nan"), "std": None, "ci": None}
    if n >= 2:
        sd = float(d.std(ddof=1))
        half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / np.sqrt(n))
        out.update(std=sd, ci=(out["mean"] - half, out["mean"] + half))
    return out


def verdict(cmp: dict) -> str:
    """``better`` / ``worse`` when the interval excludes 0, else ``no difference shown`` (or ``one seed``)."""
    if cmp["ci"] is None:
        return "one seed: no interval"
    lo, hi = cmp["ci"]
    return "better" if lo > 0 else "worse" if hi < 0 else "no difference shown"


def report_curves(a, curves) -> None:
    print(
        f"\nU-Net learning curves: MAE (grey levels) at equal epochs of {a.unet_steps} steps x 128 pairs, "
        f"Adam 1e-3 constant"
    )
    eps = [p["epoch"] for p in next(iter(curves.values()))["points"]]
    print(
        f"{'model':<14}{'params':>9}" + "".join(f"{'ep ' + str(e) + ' held/train':>20}" for e in eps) + f"{'wall s':>9}"
    )
    for name, c in curves.items():
        cells = "".join(
            f"{p['heldout']['mae_denoised']:>12.2f} /{p['train']['mae_denoised']:>6.2f}" for p in c["points"]
        )
        print(f"{name:<14}{c['params']:>9}{cells}{c['wall_s']:>9.0f}")
    p0 = next(iter(curves.values()))["points"][-1]["heldout"]
    print(f"noisy input: MAE {p0['mae_noisy']:.2f}, PSNR {p0['psnr_noisy']:.2f} dB")


def report(a, r: dict, specs, seeds) -> int:
    """Print the per-pipeline means and spreads, the paired comparisons and the verdict; returns 0."""
    runs = r["runs"]
    print(
        f"\n==== results: held-out split-a test sequences, noise {a.noise:g} x N-HPatches, official protocol mAP % "
        f"(this invocation {r['wall_s'] / 60:.1f} min wall) ===="
    )
    if r.get("unet_curves"):
        report_curves(a, r["unet_curves"])
    m = r.get("mae_unet_heldout") or {"mae_denoised": float("nan")}
    if "mae_noisy" in m:
        print(
            f"MAE U-Net ({Path(r['denoiser']).name}): held-out MAE {m['mae_noisy']:.2f} -> "
            f"{m['mae_denoised']:.2f} grey levels, PSNR {m['psnr_noisy']:.2f} -> {m['psnr_denoised']:.2f} dB"
        )

    def series(name, bn):
        vals = {t: [] for t in TASKS}
        got = []
        for s in seeds:
            rec = runs.get(f"{name}|{s}")
            if rec is None or bn not in rec["eval"] or any(t not in rec["eval"][bn] for t in TASKS):
                continue
            got.append(s)
            for t in TASKS:
                vals[t].append(rec["eval"][bn][t])
        return got, vals

    print(
        f"\nper pipeline: mean ± standard deviation over seeds ({a.desc_epochs} x {a.desc_steps} steps of "
        f"{a.tracks_per_batch}x{a.views} each)"
    )
    print(f"{'pipeline':<26}{'batch norm':<12}{'n':>3}" + "".join(f"{t:>18}" for t in TASKS) + f"{'train s':>9}")
    for spec in specs:
        for bn in a.bn_all:
            got, v = series(spec["name"], bn)
            if not got:
                continue
            cells = "".join(
                f"{np.mean(v[t]):>10.2f} ± {np.std(v[t], ddof=1) if len(got) > 1 else 0:>5.2f}" for t in TASKS
            )
            ts = np.mean([runs[f"{spec['name']}|{s}"]["train_seconds"] for s in got])
            print(f"{spec['name']:<26}{bn:<12}{len(got):>3}{cells}{ts:>9.0f}")
    joint = [s for s in specs if s["kind"] == "joint"]
    for spec in joint:
        for bn in a.bn_all:
            h = [
                runs[f"{spec['name']}|{s}"].get("joint_unet_heldout", {}).get(bn)
                for s in seeds
                if f"{spec['name']}|{s}" in runs
            ]
            h = [x for x in h if x]
            if h:
                print(
                    f"  {spec['name']} U-Net after joint training ({bn}): held-out MAE "
                    f"{np.mean([x['mae_denoised'] for x in h]):.2f}, PSNR "
                    f"{np.mean([x['psnr_denoised'] for x in h]):.2f} dB (MAE U-Net: {m['mae_denoised']:.2f})"
                )

    def compare(label, xa, xb):
        """Paired per-task comparison of two (pipeline, bn) series over the seeds both finished."""
        (ga, va), (gb, vb) = series(*xa), series(*xb)
        common = [s for s in ga if s in gb]
        if not common:
            return None
        res = {}
        for t in TASKS:
            x = [va[t][ga.index(s)] for s in common]
            y = [vb[t][gb.index(s)] for s in common]
            res[t] = paired(x, y)
        print(
            f"{label:<58}"
            + "".join(
                f"{res[t]['mean']:>+8.2f} "
                + (f"[{res[t]['ci'][0]:+.2f}, {res[t]['ci'][1]:+.2f}]" if res[t]["ci"] else "[n = 1]").ljust(17)
                for t in TASKS
            )
            + f" n={len(common)}"
        )
        return res

    best_bn = "reestimate" if "reestimate" in a.bn else a.bn[0]
    print(
        "\npaired differences (mean over seeds, t-based 95% interval), mAP points: "
        + "".join(f"{t:>26}" for t in TASKS)
    )
    comparisons = {}
    for bn in a.bn_all:
        for spec in specs:
            if spec["kind"] != "noisy":
                c = compare(f"{spec['name']} - noisy-trained [{bn}]", (spec["name"], bn), ("noisy", bn))
                if c:
                    comparisons[(spec["name"], bn)] = c
    if "reestimate" in a.bn_all and "as-trained" in a.bn_all:
        for spec in specs:
            compare(
                f"{spec['name']}: BN re-estimated - as trained",
                (spec["name"], "reestimate"),
                (spec["name"], "as-trained"),
            )
    for spec in joint:
        if spec["name"].startswith("joint-lr"):
            base = f"joint w={spec['recon_weight']:g}"
            if any(s["name"] == base for s in specs):
                compare(f"{spec['name']} - {base} [{best_bn}]", (spec["name"], best_bn), (base, best_bn))
        if any(s["kind"] == "mae" for s in specs):
            compare(f"{spec['name']} - MAE U-Net + desc [{best_bn}]", (spec["name"], best_bn), ("mae", best_bn))

    print(
        f"\nverdict per denoising pipeline vs the noisy-trained descriptor (batch norm: {best_bn}; 95% interval "
        "of the paired difference above / below 0):"
    )
    winners = []
    for spec in specs:
        c = comparisons.get((spec["name"], best_bn))
        if spec["kind"] == "noisy" or c is None:
            continue
        v = {t: verdict(c[t]) for t in TASKS}
        print(f"  {spec['name']:<24}" + ", ".join(f"{t} {v[t]}" for t in TASKS))
        if all(x == "better" for x in v.values()):
            winners.append(spec["name"])
    if winners:
        print(
            f"a denoising pipeline beats the noisy-trained descriptor on all three tasks (95% interval above 0): "
            f"PASS ({', '.join(winners)})"
        )
    else:
        print("a denoising pipeline beats the noisy-trained descriptor on all three tasks (95% interval above 0): FAIL")
    return 0


if __name__ == "__main__":
    sys.exit(main())
