"""``hpatches-eval --task pair-matching``: image-pair matching accuracy of a ViT (or any Keras image embedder).

Embeds all left and right images, builds the cosine similarity matrix and reports accuracy by row, by both
axes and by optimal one-to-one assignment, with chance level; optional JSON (atomic) and plots.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hpatches-eval --task pair-matching", description=__doc__.splitlines()[0])
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default="pair-matching", choices=["pair-matching"])
    p.add_argument("--data", default=None, help="stereo folder (MPI Sintel or left/ + right/); default: embedded "
                                                "scikit-image pairs")
    p.add_argument("--passes", default="clean", choices=["clean", "final", "both"], help="Sintel pass(es)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N pairs")
    p.add_argument("--split", default="all", choices=["all", "test", "train"],
                   help="evaluate all pairs or one side of the by-source split (--test-fraction, --seed)")
    p.add_argument("--test-fraction", type=float, default=0.3)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--model", default=None, help="trained .keras model (e.g. hpatches-train vit-adapter output)")
    g.add_argument("--preset", default=None, help="build a ViT from a preset (vit-b16, vit-tiny, ...)")
    p.add_argument("--weights", default=None, help="Hugging Face ViT safetensors checkpoint for --preset")
    p.add_argument("--bottleneck", type=int, default=0, help="adapters for --preset (0: plain backbone)")
    p.add_argument("--pooling", default="cls", choices=["cls", "mean", "gem"])
    p.add_argument("--image-size", type=int, default=None, help="input size (default: the model's / preset's)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--temperature", type=float, default=0.1, help="dual-softmax temperature of --both-axes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the result here (atomically)")
    p.add_argument("--plots", default=None, help="write the similarity/confusion matrix plot into this folder")


def load_model(args):
    import keras

    import hpatches_kit.models.vit  # noqa: F401  (registers the custom layers)

    keras.utils.set_random_seed(args.seed)
    if args.model:
        return keras.models.load_model(args.model), f"model:{args.model}"
    from hpatches_kit.models.vit import vit_adapter

    preset = args.preset or "vit-tiny"
    model = vit_adapter(preset, bottleneck=args.bottleneck, pooling=args.pooling, image_size=args.image_size,
                        weights=args.weights)
    desc = f"preset:{preset}" + (f"+{args.weights}" if args.weights else " (random init)")
    return model, desc


def run(args) -> dict:
    from hpatches_kit.data.stereo import load_stereo_pairs, split_pairs
    from hpatches_kit.evaluation.pair_matching import evaluate_pairs

    model, desc = load_model(args)
    size = int(model.input_shape[1])
    t0 = time.time()
    pairs = load_stereo_pairs(args.data, size=size, passes=args.passes, limit=args.limit, seed=args.seed)
    if args.split != "all":
        tr, te = split_pairs(pairs, args.test_fraction, args.seed)
        pairs = te if args.split == "test" else tr
    if len(pairs) < 2:
        raise SystemExit(f"need at least 2 pairs to match, got {len(pairs)}")
    res = evaluate_pairs(model, pairs, batch_size=args.batch_size, temperature=args.temperature)
    res.update(task="pair-matching", model=desc, data=pairs.source, split=args.split, image_size=size,
               seconds=round(time.time() - t0, 2))
    sim = res.pop("similarity")
    if res["n_pairs"] <= 300:
        res["similarity"] = np.round(sim, 5).tolist()
    print(f"pair matching: {res['n_pairs']} pairs from {pairs.source}, {desc}, {size}x{size}")
    for m, a in res["accuracy"].items():
        print(f"  {m:<11s} accuracy {a:6.3f}")
    print(f"  chance      accuracy {res['chance']:6.3f}   mean rank {res['mean_rank']:.2f}   top-5 {res['top5']:.3f}")
    if args.plots:
        from pathlib import Path

        from hpatches_kit.plots.pairs import plot_similarity_matrix

        out = Path(args.plots) / "pair_matching_confusion.png"
        plot_similarity_matrix(sim, out, names=[n.rsplit(".", 1)[0] for n in res["names"]],
                               predictions=res["predictions"]["row"],
                               title=f"pair matching ({desc}) row acc {res['accuracy']['row']:.2f}")
        res["plots"] = [str(out)]
        print(f"  plot: {out}")
    if args.json:
        from hpatches_kit.io import atomic_write_json

        atomic_write_json(args.json, res)
        print(f"  json: {args.json}")
    return res


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from ._errors import run_command

    def pairs(args) -> int:
        from hpatches_kit.checks import check_options
        from hpatches_kit.data.fsio import check_outputs, input_paths

        check_options(args)
        check_outputs(files={"--json": args.json}, folders={"--plots": args.plots}, inputs=input_paths(args))
        run(args)
        return 0

    return run_command("hpatches-eval", pairs, args)


if __name__ == "__main__":
    sys.exit(main())
