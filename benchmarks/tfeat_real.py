"""TFeat imported from PyTorch, on real validation, next to SIFT, RootSIFT and the committed L2-Net; and
whether fine-tuning it on the embedded (synthetic) data helps or hurts there.

    python benchmarks/tfeat_real.py                          # import + evaluate (no fine-tuning)
    python benchmarks/tfeat_real.py --finetune-steps 300     # also fine-tune 300 steps on embedded split-a train
    python benchmarks/tfeat_real.py --finetune-steps 300 --json tfeat.json --save-dir runs/tfeat

The checkpoint is ``../shared/pretrained/tfeat/tfeat-liberty.params`` (TFeat trained on real Liberty patches,
vbalnt/tfeat, MIT), converted with :func:`hpatches_kit.models.from_torch` (``arch="tfeat"``, input scaled
by 1/255) and checked against PyTorch's own output on the real patches before anything is reported. Real
validation is :func:`hpatches_kit.evaluation.real.compare_on_real` on ``../shared/real-sequences`` (official
protocol, both geometric-noise regimes; never trained on).

Fine-tuning (``--finetune-steps N``): the imported model is trained as it is (TFeat architecture, tanh
output) with ``model.fit`` on S x K batches of the embedded default dataset's split-``a`` training sequences
(32x32, photometric jitter), batch-hard triplet loss (margin 1, L2), Adam at ``--lr`` (default 1e-4), the
same data pipeline and loss as ``hpatches-train descriptor``. Then the fine-tuned model is evaluated the
same way and the difference to the imported one printed per task and regime.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TFEAT = SHARED / "pretrained" / "tfeat" / "tfeat-liberty.params"
REAL = SHARED / "real-sequences"


def torch_parity(model, ckpt, patches) -> float:
    """Max |Keras - PyTorch| of the TFeat outputs on ``patches`` ((N, 32, 32) float in [0, 255])."""
    import torch
    from torch import nn

    class TFeat(nn.Module):  # vbalnt/tfeat's TNet, as in ../shared/pretrained/README.md
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.InstanceNorm2d(1, affine=False),
                nn.Conv2d(1, 32, 7),
                nn.Tanh(),
                nn.MaxPool2d(2, 2),
                nn.Conv2d(32, 64, 6),
                nn.Tanh(),
            )
            self.descr = nn.Sequential(nn.Linear(64 * 8 * 8, 128), nn.Tanh())

        def forward(self, x):
            return self.descr(self.features(x).view(x.size(0), -1))

    net = TFeat()
    net.load_state_dict(torch.load(str(ckpt), map_location="cpu", weights_only=True))
    net.eval()
    with torch.no_grad():
        ref = net(torch.from_numpy((patches / 255.0).astype(np.float32)[:, None])).numpy()
    got = model.predict(patches[..., None].astype(np.float32), verbose=0)
    return float(np.abs(got - ref).max())


def finetune(model, steps: int, lr: float, seed: int, tracks_per_batch: int):
    import keras

    from hpatches_kit.data import ensure_default, load_dataset
    from hpatches_kit.losses import BatchHardTripletLoss
    from hpatches_kit.training import descriptor_dataset
    from hpatches_kit.training.split_policy import train_test_names

    root = ensure_default(kind="hpatches")
    train_names, _, how = train_test_names(Path(root), "a")
    tracks, _ = load_dataset(root, sequences=train_names, size=32, progress=False).all_tracks()
    print(
        f"[fine-tune] {len(tracks)} tracks of {len(train_names)} sequences ({how}), {steps} steps of "
        f"{tracks_per_batch} tracks x 2 views, Adam {lr:g}, batch-hard margin 1",
        file=sys.stderr,
    )
    ds = descriptor_dataset(tracks, tracks_per_batch, 2, seed=seed)
    keras.utils.set_random_seed(seed)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=BatchHardTripletLoss(margin=1.0))
    t0 = time.time()
    epochs = max(1, steps // 100)
    hist = model.fit(ds, steps_per_epoch=steps // epochs, epochs=epochs, verbose=2)
    return {
        "steps": (steps // epochs) * epochs,
        "seconds": time.time() - t0,
        "train_tracks": int(len(tracks)),
        "loss": [float(v) for v in hist.history["loss"]],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=TFEAT)
    ap.add_argument("--src", type=Path, default=REAL, help="folder of real homography sequences")
    ap.add_argument("--finetune-steps", type=int, default=0, help="fine-tune this many steps (0: do not)")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--tracks-per-batch", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save-dir", type=Path, help="write tfeat-liberty.keras (and the fine-tuned model) here")
    ap.add_argument("--json", type=Path, help="write the results here")
    a = ap.parse_args(argv)
    missing = [str(p) for p in (a.checkpoint, a.src) if not p.exists()]
    if missing:
        print(f"not found: {', '.join(missing)} (../shared is laid beside the checkout)", file=sys.stderr)
        return 2

    from hpatches_kit.data import load_dataset
    from hpatches_kit.evaluation import keras_describer
    from hpatches_kit.evaluation.real import TASKS, build_real_patches, compare_on_real
    from hpatches_kit.models import from_torch

    tfeat = from_torch(a.checkpoint, arch="tfeat", name="tfeat_liberty")
    real = load_dataset(build_real_patches(a.src, "hpatches", progress=False), size=32, progress=False)
    sample = np.concatenate([s.tracks[:64, j] for s in real for j in (0, 5, 15)]).astype(np.float32)
    err = torch_parity(tfeat, a.checkpoint, sample)
    print(f"TFeat import vs PyTorch on {len(sample)} real 32x32 patches: max |diff| = {err:.2e}")
    if err > 1e-5:
        print("parity FAILED", file=sys.stderr)
        return 1
    if a.save_dir:
        a.save_dir.mkdir(parents=True, exist_ok=True)
        tfeat.save(a.save_dir / "tfeat-liberty.keras")
    models = {
        "TFeat-liberty (imported)": keras_describer(tfeat),
        "l2net-embedded": str(REPO / "models" / "l2net-embedded.keras"),
    }
    ft_info = None
    if a.finetune_steps > 0:
        ft = from_torch(a.checkpoint, arch="tfeat", name="tfeat_liberty_ft")
        ft_info = finetune(ft, a.finetune_steps, a.lr, a.seed, a.tracks_per_batch)
        if a.save_dir:
            ft.save(a.save_dir / "tfeat-liberty-finetuned.keras")
        models["TFeat-liberty fine-tuned"] = keras_describer(ft)
    t0 = time.time()
    res = compare_on_real(a.src, models, progress=False)
    print(f"\nreal validation on {a.src} ({time.time() - t0:.0f} s; official protocol, mAP %, never trained on)")
    for regime, r in res.items():
        print(f"\n## {regime} geometric noise: {len(r['sequences'])} scenes, {r['tracks']} tracks")
        print(f"{'descriptor':<28}" + "".join(f"{t:>14}" for t in TASKS))
        for name, row in r["rows"].items():
            print(f"{name:<28}" + "".join(f"{row[t]:>14.2f}" for t in TASKS))
    if ft_info:
        print(
            f"\nfine-tuning: {ft_info['steps']} steps in {ft_info['seconds']:.0f} s, loss per 100 steps "
            + " ".join(f"{v:.3f}" for v in ft_info["loss"])
        )
        print("fine-tuned minus imported (points):")
        for regime, r in res.items():
            rows = r["rows"]
            d = {t: rows["TFeat-liberty fine-tuned"][t] - rows["TFeat-liberty (imported)"][t] for t in TASKS}
            print(f"  {regime:<10}" + "".join(f"{t} {v:+.2f}   " for t, v in d.items()))
    if a.json:
        from hpatches_kit.io import atomic_write_json

        atomic_write_json(
            a.json,
            {
                "results": res,
                "parity_max_abs": err,
                "finetune": ft_info,
                "argv": sys.argv[1:] if argv is None else list(argv),
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
