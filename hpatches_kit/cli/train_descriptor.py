"""``hpatches-train descriptor``: train a descriptor (any architecture of the model registry, or
``--model MODULE:FUNCTION``) with any descriptor loss of the loss registry (or ``--loss MODULE:FUNCTION``).

Defaults: the embedded HPatches dataset resized to 32x32, L2-Net (128-d), batch-hard triplet loss
(margin 1), Adam 1e-3 (constant; ``--lr-schedule cosine`` decays it), batches of 1024 patches = 512 tracks x
2 views, 40 epochs in mixed_bfloat16 (AMX CPUs, GPU, TPU) or 27 in float32, validated after the last, split ``a`` test sequences held out for validation and the final
evaluation. The budget is sized for 15 minutes on 2 CPU cores, dataset build included; the model it trains
beats SIFT and RootSIFT on real photographs (``models/l2net-embedded.md``, ``benchmarks/real_validation.py``).
``--denoiser FILE`` trains (and evaluates) on denoised input; ``--init FILE`` starts from a trained descriptor.
The training itself is :func:`hpatches_kit.training.descriptor.train_descriptor`; this module parses flags.
"""

from __future__ import annotations

from ..training.descriptor import BF16_EPOCHS, DISTANCES, FLOAT32_EPOCHS
from ._train_common import add_common_args


def _loss_arg(text: str) -> str:
    """``--loss-arg`` as typed, once its ``KEY=VALUE`` form is checked (the loss checks the key when built)."""
    import argparse

    from ..losses.registry import parse_setting

    try:
        parse_setting(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def configure(p):
    from ..data import formats
    from ..losses import registry as losses
    from ..models import registry as models

    add_common_args(
        p,
        model="l2net",
        models=models.REGISTRY.choices("descriptor"),
        loss="batch-hard",
        losses=losses.REGISTRY.choices("descriptor"),
        batch_size=1024,
        model_help="(a builder `f(input_size=, dim=, dropout=) -> keras.Model` taking (P, P, 1) grey "
        "levels in [0, 255]) ",
        loss_help="(a loss function (y_true, y_pred, **kw) on S x K track batches, or a factory "
        "returning a keras Loss) ",
        epochs=None,
        lr=1e-3,
        kind="hpatches",
        val_every=None,
        epochs_help=f"epochs (default: {BF16_EPOCHS} with mixed_bfloat16, as on AMX CPUs, GPUs and TPUs; "
        f"{FLOAT32_EPOCHS} in float32: the 15-minute budget of a 2-core CPU)",
    )
    g = p.add_argument_group("descriptor")
    g.add_argument(
        "--loss-arg",
        action="append",
        default=None,
        type=_loss_arg,
        metavar="KEY=VALUE",
        help="a setting of the loss itself, passed to its factory as a keyword argument (repeatable; the value "
        "is read as int, float, true/false or text), e.g. --loss MODULE:FUNCTION --loss-arg hard_ratio=0.02",
    )
    g.add_argument("--views", type=int, default=2, help="K views per track in a batch, 2..16 (default: 2)")
    g.add_argument("--patch-size", type=int, default=32, help="resize patches to this size (default: 32)")
    g.add_argument("--dim", type=int, default=128, help="descriptor size (default: 128)")
    g.add_argument("--dropout", type=float, default=0.3, help="dropout before the last conv (default: 0.3)")
    g.add_argument("--margin", type=float, default=1.0, help="triplet margin (default: 1.0; unused by soft-margin)")
    g.add_argument(
        "--distance",
        default="L2",
        choices=DISTANCES,
        help="descriptor distance the loss mines and penalises (default: L2)",
    )
    g.add_argument(
        "--koleo",
        type=float,
        default=0.0,
        metavar="WEIGHT",
        help="add WEIGHT x KoLeo entropy regulariser on one view per track (default: 0 = off; not with random-triplet)",
    )
    g.add_argument(
        "--global-mining",
        action="store_true",
        help="mine hardest negatives over the global batch of all replicas (all_gather)",
    )
    g.add_argument(
        "--xbm",
        type=int,
        default=0,
        metavar="SIZE",
        help="cross-batch memory: mine --loss batch-hard/hardnet over the batch + the last SIZE "
        "embeddings of earlier steps (global batch under distribution; default: 0 = off)",
    )
    g.add_argument(
        "--xbm-start",
        type=int,
        default=0,
        metavar="STEP",
        help="--xbm: training steps before the memory is filled and used (default: 0)",
    )
    g.add_argument(
        "--pca-dim",
        type=int,
        default=None,
        metavar="D",
        help="after training, reduce descriptors to D dimensions by PCA fitted on training patches, "
        "then L2-normalise; saved inside model.keras (default: off)",
    )
    g.add_argument(
        "--curriculum-warmup",
        type=int,
        default=1,
        help="--loss curriculum: batch-all epochs before ramping to batch-hard (default: 1)",
    )
    g.add_argument("--geometric", action="store_true", help="also one random flip/rot90 per track (all views)")
    from ..data.view_noise import PRESETS as VIEW_NOISE

    g.add_argument(
        "--view-noise",
        default="none",
        metavar="{" + ",".join(VIEW_NOISE) + "} or FILE.json",
        help="rotate and rescale every view but a track's first by a draw of a detector's measured orientation and "
        "scale error (dog: DoG's, docs/orientation-noise.md; default: none)",
    )
    g.add_argument(
        "--view-noise-strength",
        type=float,
        default=1.0,
        metavar="F",
        help="multiply the --view-noise angles and log-scales by F (default: 1)",
    )
    g.add_argument("--noisy", action="store_true", help="train on the *_noise twins (N-HPatches data)")
    g.add_argument("--denoiser", default=None, help="a denoiser .keras applied to every input patch first")
    g.add_argument(
        "--collapse",
        default="warn",
        choices=("warn", "stop", "off"),
        help="on descriptor collapse (loss pinned at the margin, spread ~ 0): warn or stop",
    )
    g.add_argument(
        "--format",
        default="hpatches",
        choices=formats.REGISTRY.choices(),
        metavar="NAME|MODULE:FUNCTION",
        help="--data layout: a registered data-format reader (" + ", ".join(formats.names()) + ", or one a "
        "module of --import registers) or a reader MODULE:FUNCTION; default hpatches: HPatches sequences, "
        "N-HPatches or a packed cache, detected. brown: one Brown/UBC PhotoTour subset folder (tracks = 3-D "
        "points with >= 2 patches on 16 view slots; 5%% of the points held out for validation unless --split none)",
    )
    g.add_argument(
        "--init",
        default=None,
        metavar="MODEL.keras",
        help="start from the weights of this trained descriptor (same architecture and sizes), e.g. "
        "fine-tune models/l2net-embedded.keras on noisy or denoised patches",
    )
    g.add_argument(
        "--joint",
        action="store_true",
        help="train the --denoiser U-Net and the descriptor end to end (triplet loss through both, "
        "needs --noisy); the saved model.keras is one model taking the raw noisy patch "
        "(hpatches-eval --model model.keras --noisy, no --denoiser)",
    )
    g.add_argument(
        "--recon-weight",
        type=float,
        default=None,
        metavar="W",
        help="--joint: add W x MAE (grey levels) of the U-Net's output vs the clean patch "
        "(default: 0.05; 0 = the triplet loss alone)",
    )


def run(args) -> int:
    from ..training.descriptor import DescriptorOptions, train_descriptor
    from ._errors import options_as_flags

    o = DescriptorOptions.from_namespace(args)
    if o.joint:
        from ..training.joint_run import train_joint_descriptor as train_descriptor  # noqa: F811
    with options_as_flags():  # the library names options (epochs), the user typed flags (--epochs)
        train_descriptor(o, arguments=vars(args))
    return 0
