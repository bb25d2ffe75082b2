"""``hpatches-data``: build, inspect, pack and download HPatches-format datasets.

Subcommands: ``synth`` (synthesise a dataset / the embedded default), ``extract`` (cut patches from
image sequences), ``info`` (inspect and validate), ``pack`` (memory-mapped + TFRecord cache), ``download``
(the real HPatches data and the benchmark's task files). Bad input exits with status 2 and a message
naming the file and the problem.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..log import add_verbosity_arguments, setup_cli_logging, verbosity

log = logging.getLogger("hpatches_kit.cli.data")  # not __name__: "__main__" under python -m


def _print_dataset_summary(root) -> None:
    from hpatches_kit.data.validate import inspect_dataset

    print(inspect_dataset(root).format(max_rows=20))


# -- synth ----------------------------------------------------------------------------------------------
def _synth(args) -> int:
    if args.out is None:
        from hpatches_kit.data import ensure_default
        from hpatches_kit.data.embedded import default_data_dir, default_root

        ensure_default(progress=not args.quiet)
        print(f"embedded default dataset: {default_root()}")
        for kind in ("hpatches", "n-hpatches"):
            print(f"\n[{kind}]")
            _print_dataset_summary(default_data_dir(kind))
        return 0
    from hpatches_kit.data.synth import synthesize

    js = args.jitter_scale[0] if len(args.jitter_scale) == 1 else tuple(args.jitter_scale)
    if len(args.jitter_scale) > 2:
        raise ValueError("--jitter-scale takes one number or a LOW HIGH range")
    synthesize(
        args.out,
        photos=args.photos,
        num_illum=args.num_illum,
        num_view=args.num_view,
        max_patches=args.max_patches,
        noise=args.noise,
        seed=args.seed,
        progress=not args.quiet,
        num_zoom=args.num_zoom,
        num_blur=args.num_blur,
        jitter_scale=js,
        workers=args.workers,
        rescale=args.rescale,
        size=args.size,
        test_fraction=args.test_fraction,
        **({"tracks": args.tracks} if args.tracks != "hpatches" else {}),
        **({"view_noise": args.view_noise} if args.view_noise != "none" else {}),
    )
    log.info("wrote %s", args.out)
    _print_dataset_summary(args.out)
    return 0


def _add_view_noise(p) -> None:
    from hpatches_kit.data.view_noise import PRESETS

    p.add_argument(
        "--view-noise",
        default="none",
        metavar="{" + ",".join(PRESETS) + "} or FILE.json",
        help="also turn and scale every target's frame by a draw of a detector's measured orientation and scale "
        "error (dog: DoG's, docs/orientation-noise.md; default: none)",
    )


# -- extract --------------------------------------------------------------------------------------------
def _extract(args) -> int:
    from hpatches_kit.data.extract import extract_dataset

    extract_dataset(
        args.src,
        args.out,
        seed=args.seed,
        max_patches=args.max_patches,
        progress=not args.quiet,
        jitter_scale=args.jitter_scale,
        **({"view_noise": args.view_noise} if args.view_noise != "none" else {}),
    )
    log.info("wrote %s", args.out)
    _print_dataset_summary(args.out)
    return 0


# -- info -----------------------------------------------------------------------------------------------
def _info(args) -> int:
    from hpatches_kit.data.fsio import check_outputs, input_paths
    from hpatches_kit.data.validate import inspect_dataset

    root = args.data
    if root is None:
        from hpatches_kit.data import ensure_default

        root = ensure_default(progress=not args.quiet)
    check_outputs(files={"--json": args.json}, inputs=input_paths(args, data=root))
    report = inspect_dataset(root, patch_size=args.patch_size, progress=not args.quiet)
    if not report.sequences:  # not a dataset at all: an error (exit 2), not a report of one with problems
        from hpatches_kit.data.errors import DataError

        first = report.problems[0] if report.problems else None
        raise DataError(first.path if first else root, first.problem if first else "no HPatches sequences found")
    print(report.format())
    if args.json:
        from hpatches_kit.io import atomic_write_json

        atomic_write_json(args.json, report.to_dict())
        log.info("wrote %s", args.json)
    return 0 if report.ok or not args.strict else 1


# -- pack -----------------------------------------------------------------------------------------------
def _pack(args) -> int:
    from hpatches_kit.data.pack import load_packed, pack_dataset

    if args.splits_file and not args.split:
        raise SystemExit("hpatches-data pack: --splits-file needs --split")
    out = pack_dataset(
        args.data,
        args.out,
        size=args.size or None,  # 0: the source's patch size (as --help says)
        shards=args.shards,
        split=args.split,
        subset=args.subset,
        splits_file=args.splits_file,
        noise=False if args.no_noise else None,
        tfrecords=not args.no_tfrecords,
        progress=not args.quiet,
    )
    pk = load_packed(out, verify="full")
    m = pk.manifest
    print(
        f"packed {len(pk.seq_names)} sequences, {pk.num_tracks} tracks ({m['num_patches']} patches) at "
        f"{pk.patch_size}x{pk.patch_size}{' + noisy twins' if pk.noisy is not None else ''} into {out}"
    )
    print(f"  arrays: {', '.join(a['file'] for a in m['arrays'].values())}; TFRecord shards: {len(m['shards'])}")
    return 0


# -- download -------------------------------------------------------------------------------------------
def _download(args) -> int:
    from hpatches_kit.data.download import download

    what = args.what or ["hpatches-release", "benchmark-tasks"]
    res = download(
        what,
        args.out,
        base_url=args.base_url,
        force=args.force,
        keep_archives=args.keep_archives,
        progress=not args.quiet,
        retries=args.retries,
    )
    for name, paths in res.items():
        print(
            f"{name}: "
            + ", ".join(str(p) for p in paths[:4])
            + (f" (+{len(paths) - 4} more)" if len(paths) > 4 else "")
        )
    if "benchmark-tasks" in res:
        bench = Path(args.out) / "hpatches-benchmark"
        print(
            f"splits.json: {bench / 'splits.json'} (found automatically for --data {Path(args.out) / 'hpatches-release'})"
        )
        print(
            f"task files: {bench / 'tasks'} (--tasks-dir); the verification pairs are generated at the official size "
            "on first use, draw for draw as the official tasks.py (seed 42), and cached"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    from hpatches_kit.data.download import SOURCES

    parser = argparse.ArgumentParser(prog="hpatches-data", description=__doc__.splitlines()[0])
    add_verbosity_arguments(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, help_):
        p = sub.add_parser(name, help=help_, description=help_)
        add_verbosity_arguments(p, suppress_defaults=True)  # -q: also no progress bars
        return p

    p = add("synth", "synthesise an HPatches-format dataset (no --out: build/show the embedded default)")
    p.add_argument("--out", type=Path, help="output folder (default: build the embedded default dataset)")
    p.add_argument("--photos", nargs="+", help="source photos (default: the photos scikit-image ships)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise", action="store_true", help="also write N-HPatches *_noise.png twins")
    p.add_argument("--num-illum", type=int, default=12, help="illumination (i_*) sequences")
    p.add_argument("--num-view", type=int, default=12, help="viewpoint (v_*) sequences")
    p.add_argument("--num-zoom", type=int, default=0, help="zoom + rotation (v_zoom-*) sequences (default: 0)")
    p.add_argument(
        "--num-blur", type=int, default=0, help="defocus/Gaussian/motion blur (i_blur-*) sequences (default: 0)"
    )
    p.add_argument(
        "--jitter-scale",
        type=float,
        nargs="+",
        default=[1.0],
        metavar="S",
        help="HPatches' geometric jitter x S, or a LOW HIGH range drawn per sequence (default: 1)",
    )
    p.add_argument(
        "--rescale",
        action="store_true",
        help="also rotate photos by 90-degree steps and downscale them at random (large training sets)",
    )
    p.add_argument("--size", type=int, default=None, help="output patch size (default: 65, or 32 with --noise)")
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default: 1; output is identical)")
    p.add_argument(
        "--test-fraction",
        type=float,
        default=40 / 116,
        help="share of sequences in the test half of the a/b/c splits (default: 40/116 as in HPatches)",
    )
    p.add_argument("--max-patches", type=int, help="cap on patches per sequence")
    p.add_argument(
        "--tracks",
        choices=("hpatches", "detector"),
        default="hpatches",
        help="hpatches: reprojected regions + HPatches jitter (default); detector: DoG keypoints "
        "detected independently in every view, matched by reprojection + overlap and cut as the "
        "image-matching benchmark cuts them (detector noise; --max-patches caps tracks per sequence)",
    )
    _add_view_noise(p)
    p.set_defaults(func=_synth)

    p = add("extract", "extract HPatches-format patches from image sequences (hpatches-sequences or Oxford layout)")
    p.add_argument(
        "src",
        type=Path,
        help="folder of image sequences (each with 1.ppm..6.ppm and H_1_2..H_1_6, or "
        "img1..img6 and H1to2p..H1to6p[.txt]; 2 to 6 images)",
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-patches", type=int, help="cap on patches per sequence")
    p.add_argument(
        "--jitter-scale",
        type=float,
        default=1.0,
        metavar="S",
        help="multiply HPatches' calibrated e/h/t geometric jitter by S (1 = HPatches' noise levels, "
        "0.333 = small noise, 0 = exact reprojections; default: 1)",
    )
    _add_view_noise(p)
    p.set_defaults(func=_extract)

    p = add("info", "inspect a dataset: sequences, patch counts, sizes, noisy twins, builder metadata, problems")
    p.add_argument("--data", type=Path, help="dataset folder (default: the embedded default)")
    p.add_argument("--json", type=Path, help="also write the report as JSON to this file")
    p.add_argument("--patch-size", type=int, help="expected patch width (default: the most common ref.png width)")
    p.add_argument("--strict", action="store_true", help="exit with status 1 when problems are found")
    p.set_defaults(func=_info)

    p = add("pack", "pack a dataset into a memory-mapped .npy + TFRecord cache")
    p.add_argument("--data", type=Path, help="dataset folder (default: the embedded default)")
    p.add_argument("--out", type=Path, required=True, help="cache folder (written atomically)")
    p.add_argument(
        "--size", type=int, default=32, help="patch size of the cache, 1..1024 (default 32; 0 keeps the source size)"
    )
    p.add_argument("--shards", type=int, help="number of TFRecord shards (default: ~256 MiB each)")
    p.add_argument("--split", help="pack only this split's sequences (a, b, c, illum, view, full)")
    p.add_argument("--subset", choices=("train", "test"), default="test")
    p.add_argument("--splits-file", type=Path, help="splits.json for a/b/c (default: <data>/splits.json)")
    p.add_argument("--no-noise", action="store_true", help="do not pack the *_noise.png twins")
    p.add_argument("--no-tfrecords", action="store_true", help="write only the .npy arrays")
    p.set_defaults(func=_pack)

    p = add("download", "download the real HPatches data and the benchmark's split/task files")
    p.add_argument("--out", type=Path, default=Path("data"), help="output folder (default: ./data)")
    p.add_argument(
        "--what",
        nargs="+",
        choices=list(SOURCES),
        help="what to fetch (default: hpatches-release benchmark-tasks): "
        + "; ".join(f"{k}: {v.description}" for k, v in SOURCES.items()),
    )
    p.add_argument("--base-url", help="replace the base URL of every source (mirror; also $HPATCHES_DOWNLOAD_BASE_URL)")
    p.add_argument("--force", action="store_true", help="fetch again even if present")
    p.add_argument("--keep-archives", action="store_true", help="keep the .tar.gz after extracting")
    p.add_argument("--retries", type=int, default=3, help="resume attempts after a dropped connection")
    p.set_defaults(func=_download)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "size", None) == 0:
        args.size = None
    setup_cli_logging(verbosity(args))
    from ..checks import check_options
    from ._errors import run_command

    def command(args):
        check_options(args)  # every numeric option, before any work (the libraries check theirs again)
        return args.func(args)

    return run_command(f"hpatches-data {args.command}", command, args)


if __name__ == "__main__":
    sys.exit(main())
