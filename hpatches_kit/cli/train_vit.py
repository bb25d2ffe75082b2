"""``hpatches-train vit-adapter``: train Houlsby bottleneck adapters of a frozen ViT for image-pair matching.

Outputs in ``--out``: ``model.keras`` (the embedding model), ``checkpoints/epoch_NNN.keras`` (siamese model with
optimizer state, every epoch; ``--resume`` continues from the newest), ``metrics.json`` (per-epoch loss, LR and
held-out pair-matching accuracy, parameter counts); all written atomically.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import numpy as np

LOSSES = ("contrastive", "cosine", "irt", "infonce")


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="vit-mini", help="ViT preset (vit-b16 with --weights for real use; "
                                                        "vit-mini runs on a CPU)")
    p.add_argument("--weights", default=None, help="Hugging Face ViT safetensors checkpoint (file or folder); "
                                                   "without it the frozen backbone is random-initialised")
    p.add_argument("--bottleneck", type=int, default=64, help="adapter bottleneck width m")
    p.add_argument("--loss", default="contrastive", choices=LOSSES,
                   help="contrastive: symmetric in-batch; cosine: PyTorch CosineEmbeddingLoss with shuffled "
                        "negatives; irt: IRT contrastive + KoLeo; infonce: symmetric InfoNCE (softmax over the batch)")
    p.add_argument("--temperature", type=float, default=0.05, help="infonce: softmax temperature")
    p.add_argument("--margin", type=float, default=0.0, help="negative margin (contrastive / cosine)")
    p.add_argument("--lr", type=float, default=1e-3, help="(peak) learning rate")
    p.add_argument("--lr-schedule", default="onecycle", choices=["onecycle", "none"])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--image-size", type=int, default=None, help="input size (default: the preset's)")
    p.add_argument("--pooling", default="cls", choices=["cls", "mean", "gem"])
    p.add_argument("--head", type=int, default=None, help="add a trainable projection head of this width")
    p.add_argument("--train-layernorms", action="store_true", help="also train the LayerNorms")
    p.add_argument("--data", default=None, help="stereo folder (MPI Sintel / left+right); default: embedded pairs")
    p.add_argument("--passes", default="clean", choices=["clean", "final", "both"])
    p.add_argument("--test-fraction", type=float, default=0.3, help="held-out share of sources (by group)")
    p.add_argument("--train-pairs-per-photo", type=int, default=100,
                   help="embedded default: training pairs drawn from each training photo")
    p.add_argument("--eval-pairs-per-photo", type=int, default=10,
                   help="embedded default: held-out pairs of each held-out photo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/vit-adapter", help="output folder")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--verbose", type=int, default=1, help="0 silent, 1 progress bar, 2 one line per epoch")


def _loss(args):
    from hpatches_kit import losses

    return losses.get(args.loss, margin=args.margin, temperature=args.temperature)


def _latest_checkpoint(ckdir: Path):
    best = None
    for p in ckdir.glob("epoch_*.keras"):
        m = re.fullmatch(r"epoch_(\d+)\.keras", p.name)
        if m and (best is None or int(m.group(1)) > best[0]):
            best = (int(m.group(1)), p)
    return best


def run(args) -> int:
    import json

    if args.temperature <= 0:
        raise SystemExit(f"--temperature must be > 0, got {args.temperature}")
    if args.train_pairs_per_photo < 1 or args.eval_pairs_per_photo < 1:
        raise SystemExit("--train-pairs-per-photo and --eval-pairs-per-photo must be >= 1")

    import keras

    from hpatches_kit.data.stereo import embedded_split, load_stereo_pairs, split_pairs
    from hpatches_kit.evaluation.pair_matching import evaluate_pairs
    from hpatches_kit.io import atomic_path, atomic_write_json
    from hpatches_kit.models.vit import find_backbone, get_preset, parameter_report, vit_adapter
    from hpatches_kit.models.vit.training import OneCycle, PairBatches, siamese

    out = Path(args.out)
    ckdir = out / "checkpoints"
    keras.utils.set_random_seed(args.seed)
    size = args.image_size or get_preset(args.preset).image_size
    if args.data is None:  # embedded default: many training views of the training photos, held-out photos
        train, test = embedded_split(size, args.seed, args.test_fraction, args.train_pairs_per_photo,
                                     args.eval_pairs_per_photo)
    else:
        pairs = load_stereo_pairs(args.data, size=size, passes=args.passes, seed=args.seed)
        train, test = split_pairs(pairs, args.test_fraction, args.seed)
    def make_batches(epoch):
        return PairBatches(train.left, train.right, args.batch_size, negatives=args.loss == "cosine",
                           seed=args.seed, epoch=epoch)

    steps = len(make_batches(0)) * args.epochs

    metrics = {"config": {k: v for k, v in vars(args).items() if not k.startswith("_")}, "epochs": []}
    start = 0
    latest = _latest_checkpoint(ckdir) if args.resume else None
    if args.resume and latest is None:
        print(f"--resume: no checkpoint in {ckdir}, starting from scratch")
    if latest is not None:
        import hpatches_kit.losses.embedding  # noqa: F401  (registers the losses)

        start, path = latest
        model = keras.models.load_model(path)
        backbone = find_backbone(model)
        if (out / "metrics.json").is_file():
            old = json.loads((out / "metrics.json").read_text())
            metrics["epochs"] = [e for e in old.get("epochs", []) if e["epoch"] <= start]
            metrics["frozen"] = old.get("frozen")
        print(f"resuming from {path} (epoch {start})")
    else:
        backbone = vit_adapter(args.preset, bottleneck=args.bottleneck, train_layernorms=args.train_layernorms,
                               head=args.head, pooling=args.pooling, image_size=args.image_size,
                               weights=args.weights)
        model = siamese(backbone)
        lr = OneCycle(args.lr, max(1, steps)) if args.lr_schedule == "onecycle" else args.lr
        model.compile(optimizer=keras.optimizers.Adam(lr), loss=_loss(args))
        metrics["frozen"] = _eval(evaluate_pairs, backbone, test)
    if not args.weights:
        print("note: no --weights: the frozen backbone is random-initialised (no pretrained weights offline)")
    rep = parameter_report(backbone)
    metrics["parameters"] = rep
    metrics["pairs"] = {"train": len(train), "test": len(test), "test_sources": sorted(set(test.groups)),
                        "data": test.source, "image_size": size}
    print(f"trainable {rep['trainable']:,} of {rep['total']:,} parameters (adapters {rep['adapters']:,}, "
          f"{100 * rep['adapter_overhead']:.2f}% of the backbone); {len(train)} train / {len(test)} held-out pairs")
    print(f"frozen backbone + identity adapters: held-out accuracy {metrics['frozen']['accuracy']}")

    class Epochs(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.time()

        def on_epoch_end(self, epoch, logs=None):
            e = epoch + 1
            opt = self.model.optimizer
            lr = opt.learning_rate
            lr = float(lr(opt.iterations) if callable(lr) else keras.ops.convert_to_numpy(lr))
            ev = _eval(evaluate_pairs, backbone, test)
            metrics["epochs"].append({"epoch": e, "loss": float(logs.get("loss", float("nan"))), "lr": lr,
                                      "seconds": round(time.time() - self.t0, 2), "heldout": ev})
            with atomic_path(ckdir / f"epoch_{e:03d}.keras") as tmp:
                self.model.save(tmp)
            atomic_write_json(out / "metrics.json", metrics)
            if args.verbose:
                print(("\n" if args.verbose == 1 else "") + f"epoch {e}: loss {metrics['epochs'][-1]['loss']:.4f} held-out row acc "
                      f"{ev['accuracy']['row']:.3f} (assignment {ev['accuracy']['assignment']:.3f})")

    if start < args.epochs:
        model.fit(make_batches(start), epochs=args.epochs, initial_epoch=start, callbacks=[Epochs()], shuffle=False,
                  verbose=min(args.verbose, 2))
    with atomic_path(out / "model.keras") as tmp:
        backbone.save(tmp)
    metrics["final"] = _eval(evaluate_pairs, backbone, test)
    atomic_write_json(out / "metrics.json", metrics)
    print(f"held-out accuracy: frozen {metrics['frozen']['accuracy']['row']:.3f} -> trained "
          f"{metrics['final']['accuracy']['row']:.3f} (row; chance {metrics['final']['chance']:.3f}); "
          f"model: {out / 'model.keras'}")
    return 0


def _eval(evaluate_pairs, backbone, test) -> dict:
    r = evaluate_pairs(backbone, test)
    return {"accuracy": r["accuracy"], "chance": r["chance"], "mean_rank": r["mean_rank"], "n_pairs": r["n_pairs"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="hpatches-train vit-adapter", description=__doc__.splitlines()[0])
    configure(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    import sys

    sys.exit(main())
