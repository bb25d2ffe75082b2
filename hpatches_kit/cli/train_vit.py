"""``hpatches-train vit-adapter``: train Houlsby bottleneck adapters of a frozen ViT for image-pair matching.

Outputs in ``--out``: ``model.keras`` (the embedding model), ``checkpoints/`` (the siamese model with optimizer
state every epoch, as every ``hpatches-train`` run: ``epoch-XXXX.keras``, ``last.keras``, ``state.json``;
``--resume`` continues from the newest intact one), ``run_args.json``, ``history.json``, ``metrics.json``
(per-epoch loss, LR and held-out pair-matching accuracy, parameter counts); all written atomically.
The training itself is :func:`hpatches_kit.training.vit_adapter.train_vit_adapter`; this module parses flags.
"""

from __future__ import annotations

import argparse


def configure(p: argparse.ArgumentParser) -> None:
    from ..losses import registry

    p.add_argument(
        "--preset", default="vit-mini", help="ViT preset (vit-b16 with --weights for real use; vit-mini runs on a CPU)"
    )
    p.add_argument(
        "--weights",
        default=None,
        help="Hugging Face ViT safetensors checkpoint (file or folder); "
        "without it the frozen backbone is random-initialised",
    )
    p.add_argument("--bottleneck", type=int, default=64, help="adapter bottleneck width m")
    p.add_argument(
        "--loss",
        default="contrastive",
        choices=registry.REGISTRY.choices("pair"),
        metavar="NAME|MODULE:FUNCTION",
        help="an image-pair loss of the registry (" + ", ".join(registry.names("pair")) + ") or MODULE:FUNCTION. "
        "contrastive: symmetric in-batch; cosine: PyTorch CosineEmbeddingLoss with shuffled "
        "negatives; irt: IRT contrastive + KoLeo; infonce: symmetric InfoNCE (softmax over the batch)",
    )
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
    p.add_argument(
        "--train-pairs-per-photo",
        type=int,
        default=100,
        help="embedded default: training pairs drawn from each training photo",
    )
    p.add_argument(
        "--eval-pairs-per-photo", type=int, default=10, help="embedded default: held-out pairs of each held-out photo"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/vit-adapter", help="output folder")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--verbose", type=int, default=1, help="0 silent, 1 progress bar, 2 one line per epoch")


def run(args) -> int:
    from ..training.vit_adapter import VitAdapterOptions, train_vit_adapter
    from ._errors import options_as_flags

    with options_as_flags():
        train_vit_adapter(VitAdapterOptions.from_namespace(args), arguments=vars(args))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="hpatches-train vit-adapter", description=__doc__.splitlines()[0])
    configure(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    import sys

    sys.exit(main())
