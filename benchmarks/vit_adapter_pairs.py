"""Benchmark: does adapter training improve image-pair matching over the frozen backbone? (CPU-sized)

Embedded default pairs (scikit-image photos + the Middlebury motorcycle pair), split *by source photo*:
the held-out photos are never seen in training. Training pairs are drawn from the training photos only
(more crops per photo than the evaluation set: ``--train-pairs-per-photo``). The backbone is
**random-initialised** (no pretrained ViT weights offline) and frozen; only the adapters train.

Prints held-out accuracy (row / both axes / assignment, chance) of the frozen backbone (adapters at their
near-identity init) and after training, for each split seed, and the mean gain.

    python benchmarks/vit_adapter_pairs.py               # vit-mini, 64x64, 3 split seeds (a few minutes on CPU)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def run_seed(seed, args):
    import keras

    from hpatches_kit.data.stereo import default_pairs, embedded_split
    from hpatches_kit.evaluation.pair_matching import evaluate_pairs
    from hpatches_kit.losses.embedding import InfoNCELoss, IRTLoss, SymmetricContrastiveLoss
    from hpatches_kit.models.vit import parameter_report, vit_adapter
    from hpatches_kit.models.vit.siamese import siamese
    from hpatches_kit.training.one_cycle import OneCycle
    from hpatches_kit.training.pairs import PairBatches

    keras.utils.set_random_seed(seed)
    if args.split == "photos":  # held-out photos: never seen in training (what hpatches-train vit-adapter does)
        train, test = embedded_split(
            args.image_size, seed, args.test_fraction, args.train_pairs_per_photo, args.eval_pairs_per_photo
        )
    else:  # held-out pairs: new crops of all photos (other windows, other distortions) vs training crops
        test = default_pairs(size=args.image_size, seed=0, pairs_per_photo=args.eval_pairs_per_photo)
        train = default_pairs(size=args.image_size, seed=1000 + seed, pairs_per_photo=args.train_pairs_per_photo)
    model = vit_adapter(
        args.preset,
        bottleneck=args.bottleneck,
        image_size=args.image_size,
        pooling=args.pooling,
        train_layernorms=args.train_layernorms,
    )
    before = evaluate_pairs(model, test)
    batches = PairBatches(train.left, train.right, args.batch_size, seed=seed)
    net = siamese(model)
    loss = {"irt": IRTLoss, "infonce": InfoNCELoss, "contrastive": SymmetricContrastiveLoss}[args.loss]()
    net.compile(optimizer=keras.optimizers.Adam(OneCycle(args.lr, len(batches) * args.epochs)), loss=loss)
    t0 = time.time()
    net.fit(batches, epochs=args.epochs, verbose=0, shuffle=False)
    train_s = time.time() - t0
    after = evaluate_pairs(model, test)
    rep = parameter_report(model)
    return before, after, len(train), len(test), train_s, rep


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="vit-mini")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--bottleneck", type=int, default=32)
    p.add_argument("--pooling", default="mean")
    p.add_argument("--loss", default="infonce", choices=["contrastive", "irt", "infonce"])
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--train-pairs-per-photo", type=int, default=100)
    p.add_argument("--eval-pairs-per-photo", type=int, default=10)
    p.add_argument(
        "--split",
        default="photos",
        choices=["photos", "pairs"],
        help="photos: held-out photos; pairs: held-out pairs (new crops) of the training photos",
    )
    p.add_argument("--train-layernorms", action="store_true")
    p.add_argument("--test-fraction", type=float, default=0.3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = p.parse_args(argv)
    print(
        f"ViT adapters, pair matching on held-out {args.split}: {args.preset} {args.image_size}x{args.image_size}, "
        f"bottleneck {args.bottleneck}{' + LayerNorms' if args.train_layernorms else ''}, {args.loss} loss, {args.epochs} epochs, RANDOM-INIT frozen backbone "
        "(no pretrained weights offline). CPU timings are noisy (shared machine)."
    )
    gains = {m: [] for m in ("row", "both_axes", "assignment")}
    ranks = []
    for seed in args.seeds:
        before, after, ntr, nte, secs, rep = run_seed(seed, args)
        print(
            f"seed {seed}: {ntr} train pairs, {nte} held-out pairs (chance {before['chance']:.3f}), "
            f"trainable {rep['trainable']:,} / {rep['total']:,}, training {secs:.0f}s"
        )
        for m in gains:
            b, a = before["accuracy"][m], after["accuracy"][m]
            gains[m].append(a - b)
            print(f"    {m:<11s} frozen {b:.3f} -> adapters {a:.3f}  ({a - b:+.3f})")
        print(
            f"    mean rank   frozen {before['mean_rank']:.2f} -> adapters {after['mean_rank']:.2f}; "
            f"top-5 {before['top5']:.3f} -> {after['top5']:.3f}"
        )
        ranks.append(after["mean_rank"] - before["mean_rank"])
    print(
        "mean accuracy gain over seeds: "
        + ", ".join(f"{m} {np.mean(g):+.3f}" for m, g in gains.items())
        + f"; mean-rank change {np.mean(ranks):+.2f} (lower is better)"
    )


if __name__ == "__main__":
    main()
