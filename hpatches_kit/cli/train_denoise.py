"""``hpatches-train denoise``: train a U-Net denoiser on N-HPatches-style (noisy, clean) patch pairs.

Defaults: the embedded N-HPatches dataset (32x32 with ``*_noise`` twins), the shallow U-Net, Adam 1e-3,
mean absolute error in grey levels, batches of 128 pairs, 3 epochs, split ``a`` test sequences held out. At the end:
held-out MAE / PSNR of the denoised vs the noisy input, and a PNG of denoising examples.
The training itself is :func:`hpatches_kit.training.denoise.train_denoiser`; this module parses flags.
"""

from __future__ import annotations

from ..training.denoise import LOSSES
from ._train_common import add_common_args


def configure(p):
    from ..models import registry

    add_common_args(
        p,
        model="shallow_unet",
        models=registry.REGISTRY.choices("denoiser"),
        loss="mae",
        losses=LOSSES,
        batch_size=128,
        epochs=3,
        lr=1e-3,
        kind="n-hpatches",
    )
    g = p.add_argument_group("denoiser")
    g.add_argument("--base", type=int, default=16, help="deep_unet: filters of the first level (default: 16)")
    g.add_argument("--depth", type=int, default=4, help="deep_unet: levels (default: 4)")
    g.add_argument("--max-eval-patches", type=int, default=20000, help="held-out patches for MAE/PSNR")


def run(args) -> int:
    from ..training.denoise import DenoiseOptions, train_denoiser
    from ._errors import options_as_flags

    with options_as_flags():
        train_denoiser(DenoiseOptions.from_namespace(args), arguments=vars(args))
    return 0
