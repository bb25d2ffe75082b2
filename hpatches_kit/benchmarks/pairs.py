"""``pairs``: image-pair matching accuracy of a ViT (or any Keras image embedder).

Embeds all left and right images, builds the cosine similarity matrix and reports accuracy by row, by both
axes and by optimal one-to-one assignment, with chance level (:mod:`hpatches_kit.evaluation.pair_matching`).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .registry import Benchmark


def add_arguments(p) -> None:
    p.add_argument(
        "--data",
        default=None,
        help="stereo folder (MPI Sintel or left/ + right/); default: embedded scikit-image pairs",
    )
    p.add_argument("--passes", default="clean", choices=["clean", "final", "both"], help="Sintel pass(es)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N pairs")
    p.add_argument(
        "--split",
        default="all",
        choices=["all", "test", "train"],
        help="evaluate all pairs or one side of the by-source split (--test-fraction, --seed)",
    )
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


def load_model(o):
    """``(model, description)``: ``o.model`` loaded, or a ViT built from ``o.preset`` (default vit-tiny)."""
    import keras

    import hpatches_kit.models.vit  # noqa: F401  (registers the custom layers)

    keras.utils.set_random_seed(o.seed)
    if o.model:
        return keras.models.load_model(o.model), f"model:{o.model}"
    from hpatches_kit.models.vit import vit_adapter

    preset = o.preset or "vit-tiny"
    model = vit_adapter(preset, bottleneck=o.bottleneck, pooling=o.pooling, image_size=o.image_size, weights=o.weights)
    desc = f"preset:{preset}" + (f"+{o.weights}" if o.weights else " (random init)")
    return model, desc


def run(o) -> dict:
    """The scores of :func:`hpatches_kit.evaluation.pair_matching.evaluate_pairs` with the run's description;
    the similarity matrix in the JSON up to 300 pairs (rounded), in full as ``_similarity`` for the plot."""
    from hpatches_kit.data.stereo import load_stereo_pairs, split_pairs
    from hpatches_kit.evaluation.pair_matching import evaluate_pairs

    model, desc = load_model(o)
    size = int(model.input_shape[1])
    t0 = time.time()
    pairs = load_stereo_pairs(o.data, size=size, passes=o.passes, limit=o.limit, seed=o.seed)
    if o.split != "all":
        tr, te = split_pairs(pairs, o.test_fraction, o.seed)
        pairs = te if o.split == "test" else tr
    if len(pairs) < 2:
        raise ValueError(f"need at least 2 pairs to match, got {len(pairs)}")
    res = evaluate_pairs(model, pairs, batch_size=o.batch_size, temperature=o.temperature)
    res.update(
        task="pair-matching",
        model=desc,
        data=pairs.source,
        split=o.split,
        image_size=size,
        seconds=round(time.time() - t0, 2),
    )
    sim = res.pop("similarity")
    if res["n_pairs"] <= 300:
        res["similarity"] = np.round(sim, 5).tolist()
    res["_similarity"] = sim
    return res


def format_results(res: dict) -> str:
    size = res["image_size"]
    lines = [f"pair matching: {res['n_pairs']} pairs from {res['data']}, {res['model']}, {size}x{size}"]
    lines += [f"  {m:<11s} accuracy {a:6.3f}" for m, a in res["accuracy"].items()]
    lines.append(
        f"  chance      accuracy {res['chance']:6.3f}   mean rank {res['mean_rank']:.2f}   top-5 {res['top5']:.3f}"
    )
    return "\n".join(lines)


def plots(res: dict, out_dir) -> list:
    from hpatches_kit.plots.pairs import plot_similarity_matrix

    sim = res["_similarity"] if "_similarity" in res else np.asarray(res["similarity"])
    out = Path(out_dir) / "pair_matching_confusion.png"
    plot_similarity_matrix(
        sim,
        out,
        names=[n.rsplit(".", 1)[0] for n in res["names"]],
        predictions=res["predictions"]["row"],
        title=f"pair matching ({res['model']}) row acc {res['accuracy']['row']:.2f}",
    )
    return [out]


BENCHMARK = Benchmark(
    name="pairs",
    run=run,
    add_arguments=add_arguments,
    format=format_results,
    plots=plots,
    help="image-pair matching accuracy of a ViT (or any Keras image embedder)",
    description="Image-pair matching accuracy of a ViT (or any Keras image embedder): embeds all left and right "
    "images, builds the cosine similarity matrix and reports accuracy by row, by both axes and by "
    "optimal one-to-one assignment, with chance level.",
    aliases=(("task", "pair-matching"),),
)
