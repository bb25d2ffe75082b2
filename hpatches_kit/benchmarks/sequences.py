"""``sequences``: full-image matching on homography sequences (detect, describe, mutual NN; MMA and homography
accuracy)."""

from __future__ import annotations

from pathlib import Path

from .describe import add_describer_arguments, describer_from_options
from .registry import Benchmark


def add_arguments(p) -> None:
    p.add_argument("--data", required=True, help="a sequence folder or a folder of sequences")
    add_describer_arguments(p)
    p.add_argument("--detector", default="dog", choices=("dog", "harris", "hessian"))
    p.add_argument("--max-keypoints", type=int, default=2000, help="keypoints per image (default: 2000)")
    p.add_argument("--patch-size", type=int, default=65, help="patch size handed to the descriptor (default: 65)")
    p.add_argument("--method", default="ransac", choices=("ransac", "usac"), help="homography estimator")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--orientation",
        default="dominant",
        choices=("dominant", "upright", "detector"),
        help="patch orientation: the dominant gradient orientation (default), none, or the detector's own "
        "(several per location for DoG)",
    )
    p.add_argument(
        "--magnification",
        type=float,
        default=None,
        help="measurement region radius in units of the keypoint scale (default: the extractor's)",
    )
    p.add_argument("--ratio", type=float, default=None, help="also apply Lowe's ratio test at this ratio (e.g. 0.8)")
    p.add_argument("--no-mutual", action="store_true", help="nearest neighbours without the mutual check")
    p.add_argument(
        "--kinds",
        default=None,
        metavar="SCENE=KIND,...",
        help="scene kinds (i = illumination, v = viewpoint), overriding a scene-kinds.txt beside the data",
    )


def run(o) -> dict:
    """The result of :func:`hpatches_kit.evaluation.image_matching.evaluate_sequences` (``meta.descriptor``,
    ``meta.data`` added)."""
    from ..evaluation.image_matching import evaluate_sequences

    describer, label = describer_from_options(o)
    res = evaluate_sequences(
        o.data,
        describer,
        detector=o.detector,
        max_keypoints=o.max_keypoints,
        patch_size=o.patch_size,
        method=o.method,
        seed=o.seed,
        progress=o.progress,
        orientation=o.orientation,
        magnification=o.magnification,
        mutual=not o.no_mutual,
        ratio=o.ratio,
        kinds=o.kinds,
    )
    res["meta"]["descriptor"] = label
    res["meta"]["data"] = str(o.data)
    return res


def format_results(res: dict) -> str:
    from ..evaluation.image_matching import format_sequences

    return format_sequences(res)


def plots(res: dict, out_dir) -> list:
    from ..plots.benchmarks import plot_mma

    return [plot_mma([res], Path(out_dir) / "mma_vs_threshold.png")]


BENCHMARK = Benchmark(
    name="sequences",
    run=run,
    add_arguments=add_arguments,
    format=format_results,
    plots=plots,
    help="full-image matching: MMA at 1..10 px and homography accuracy",
    description="Full-image matching: detect (--detector), describe (--model or --baseline), mutual-NN match; "
    "MMA at 1..10 px (overall / illumination / viewpoint) and homography accuracy at 1/3/5 px "
    "(--method ransac|usac).",
    aliases=(("benchmark", "sequences"),),
)
