"""Synthesise HPatches-format sequences from single photos, and build the embedded default dataset.

* Illumination sequences ``i_*``: identity homographies; images 2..6 are lighting changes of the photo of
  growing strength (colour-temperature shift before greyscale, smooth shading, soft cast shadows, exposure
  and gamma, then blur / sensor noise / JPEG) -- see :mod:`hpatches_kit.data.photometric`.
* Viewpoint sequences ``v_*``: the photo is a plane seen from a camera that orbits it (tilt about a random
  axis in the plane, roll, zoom, small pan), growing with the image index; the induced homography is
  ``K [r1 r2 D e3]`` (pinhole, plane at distance f); images are rendered 2x supersampled and area-averaged,
  with a mild photometric change.
* Zoom sequences ``v_zoom-*`` (zoom out up to 4x with roll) and blur sequences ``i_blur-*`` (defocus,
  Gaussian or motion blur): see :mod:`hpatches_kit.data.scenes`.

Then the extraction procedure of :mod:`hpatches_kit.data.extract` runs on each 6-image sequence, with the
HPatches jitter scaled by ``jitter_scale`` (a number, or a ``(low, high)`` range drawn per sequence, so that
training data holds both near-exact and HPatches-noisy correspondences). ``workers > 1`` builds sequences in
parallel processes; the output is byte-identical whatever the number of workers.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from ..io import atomic_write_json
from ..layout import HPATCHES_PATCH_SIZE, NHPATCHES_PATCH_SIZE, TYPES, VARIANTS
from . import extract as X
from .errors import DataError
from .fsio import build_then_swap, check_outputs, read_image, read_json
from .noise import NOISE_LEVELS, noise_level, noisy_tracks
from .photometric import camera_pipeline, illumination_change
from .scenes import blur_sequence, zoom_sequence
from .sequences import find_sequence_dirs, load_sequence, resize_patches
from .writer import DATASET_REFUSAL

__all__ = [
    "synthesize",
    "build_default_dataset",
    "make_nhpatches",
    "SKIMAGE_PHOTOS",
    "PACKAGE_PHOTOS",
    "load_photos",
    "illumination_sequence",
    "viewpoint_sequence",
    "viewpoint_homography",
    "KINDS",
]

#: Natural photos shipped with scikit-image that load offline (no pooch download). Text, document,
#: astronomy and microscopy images are left out: they are not what a descriptor meets in photographs.
SKIMAGE_PHOTOS = (
    "astronaut",
    "camera",
    "coffee",
    "chelsea",
    "rocket",
    "brick",
    "grass",
    "gravel",
    "coins",
    "clock",
    "stereo_motorcycle",
)
#: Natural photos other installed dependencies ship: (package, path inside the package).
PACKAGE_PHOTOS = (
    ("sklearn", "datasets/images/china.jpg"),
    ("sklearn", "datasets/images/flower.jpg"),
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
)
#: Sequence kinds: key -> sequence-name prefix (builders in ``_BUILDERS``).
KINDS = {"i": "i_", "v": "v_", "z": "v_zoom-", "b": "i_blur-"}
DEFAULT_NUM_ILLUM = 12
DEFAULT_NUM_VIEW = 12
DEFAULT_NUM_ZOOM = 8
DEFAULT_NUM_BLUR = 8
DEFAULT_MAX_PATCHES = 260
#: Per-sequence range of the jitter scale of the embedded default (1 = HPatches' geometric noise).
DEFAULT_JITTER_SCALE = (0.25, 1.0)
MAX_SIDE = 640
#: How tracks are made: reprojection + HPatches jitter, or independent detections (detector noise).
TRACK_MODES = ("hpatches", "detector")


def _to_float_rgb(img: np.ndarray, source) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3 or min(img.shape[:2]) < 64:
        raise DataError(source, f"unsupported photo shape {img.shape} (need an RGB or grey image of at least 64x64)")
    if img.dtype == np.uint8:
        f = img.astype(np.float32) / 255.0
    elif img.dtype == np.uint16:
        f = img.astype(np.float32) / 65535.0
    else:
        f = img.astype(np.float32)
        f = (f - f.min()) / max(float(f.max() - f.min()), 1e-6)
    h, w = f.shape[:2]
    if max(h, w) > MAX_SIDE:
        k = MAX_SIDE / max(h, w)
        f = cv2.resize(f, (int(round(w * k)), int(round(h * k))), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(f)


def load_photos(photos=None) -> list[tuple[str, np.ndarray]]:
    """``[(name, float32 RGB in [0, 1])]``: image files (paths) or, for ``None``, scikit-image's photos
    (those that need a download are skipped). Images are downscaled to at most 640 px on the long side."""
    out = []
    if photos is None:
        import importlib

        import skimage.data as skd

        for name in SKIMAGE_PHOTOS:
            try:
                img = getattr(skd, name)()
            except Exception:  # needs pooch / network: skip
                continue
            if isinstance(img, tuple):
                img = img[0]
            out.append((name, _to_float_rgb(img, f"skimage.data.{name}")))
        for pkg, rel in PACKAGE_PHOTOS:
            try:
                path = Path(importlib.import_module(pkg).__file__).parent / rel
            except ImportError:
                continue
            img = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
            if img is not None:
                out.append((path.stem, _to_float_rgb(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), path)))
        if not out:
            raise DataError("skimage.data", "no scikit-image photo could be loaded")
        return out
    for p in photos:
        p = Path(p)
        img = read_image(p, cv2.IMREAD_COLOR, "missing photo", "cannot decode photo (corrupt or unsupported format)")
        out.append((p.stem, _to_float_rgb(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), p)))
    if not out:
        raise DataError(None, "no photos given")
    return out


def _random_view(photo: np.ndarray, rng: np.random.Generator, rescale: bool = False) -> np.ndarray:
    """A random crop (70-100% of each side) and optional mirror of a photo, so re-used photos differ;
    ``rescale`` also rotates by a random multiple of 90 degrees and downscales by 1-1.6x (area filter)."""
    h, w = photo.shape[:2]
    ch, cw = int(h * rng.uniform(0.7, 1.0)), int(w * rng.uniform(0.7, 1.0))
    y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    out = photo[y0 : y0 + ch, x0 : x0 + cw]
    if rng.uniform() < 0.5:
        out = out[:, ::-1]
    if rescale:
        out = np.rot90(out, int(rng.integers(0, 4)))
        k = 1.0 / rng.uniform(1.0, 1.6)
        if min(out.shape[:2]) * k >= 128:
            out = cv2.resize(
                np.ascontiguousarray(out),
                (int(round(out.shape[1] * k)), int(round(out.shape[0] * k))),
                interpolation=cv2.INTER_AREA,
            )
    return np.ascontiguousarray(out)


def illumination_sequence(photo: np.ndarray, rng: np.random.Generator):
    """6 greyscale uint8 images (lighting changes growing with the index) and 5 identity homographies."""
    ref = camera_pipeline(photo, rng, blur=0.0, noise=1.0, jpeg=96)
    images = [ref]
    for k in range(1, 6):
        s = (k / 5.0) * rng.uniform(0.8, 1.1)
        lit = illumination_change(photo, s, rng)
        images.append(
            camera_pipeline(
                lit,
                rng,
                blur=rng.uniform(0.0, 0.7) * s,
                noise=1.0 + 2.0 * s,
                jpeg=int(round(96 - 30 * s * rng.uniform(0.5, 1.0))),
            )
        )
    return images, [np.eye(3) for _ in range(5)]


def viewpoint_homography(
    w: int, h: int, f: float, tilt_deg: float, tilt_axis: float, roll_deg: float, zoom: float, pan=(0.0, 0.0)
) -> np.ndarray:
    """Homography ref -> new view of a fronto-parallel plane (the reference image) seen by a camera that
    orbits the plane's centre: tilt ``tilt_deg`` about the in-plane axis at angle ``tilt_axis``, roll about
    the optical axis, distance ``zoom * f`` (``zoom < 1`` = closer), principal point shifted by ``pan`` px."""
    t = math.radians(tilt_deg)
    a = np.array([math.cos(tilt_axis), math.sin(tilt_axis), 0.0])
    Kx = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    R_tilt = np.eye(3) + math.sin(t) * Kx + (1 - math.cos(t)) * (Kx @ Kx)
    r = math.radians(roll_deg)
    R_roll = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    R = R_roll @ R_tilt
    D = zoom * f
    # plane points X = (u, v, f) for centred ref pixel coords (u, v); new camera: x ~ K (R X - R P0 + D e3)
    Hc = np.diag([f, f, 1.0]) @ np.column_stack([R[:, 0], R[:, 1], np.array([0.0, 0.0, D])])
    C = np.array([[1, 0, (w - 1) / 2.0], [0, 1, (h - 1) / 2.0], [0, 0, 1]])
    P = np.array([[1, 0, pan[0]], [0, 1, pan[1]], [0, 0, 1]])
    H = P @ C @ Hc @ np.linalg.inv(C)
    return H / H[2, 2]


def viewpoint_sequence(photo: np.ndarray, rng: np.random.Generator):
    """6 greyscale uint8 images of the photo as a plane seen from a moving camera, and the homographies."""
    h, w = photo.shape[:2]
    f = max(h, w) * rng.uniform(0.9, 1.6)
    tilt_max = rng.uniform(25.0, 55.0)
    axis = rng.uniform(0, np.pi)
    roll_max = rng.uniform(-35.0, 35.0)
    zoom_max = math.exp(rng.uniform(-0.35, 0.35))
    pan_max = rng.uniform(-0.06, 0.06, 2) * np.array([w, h])
    ref = camera_pipeline(photo, rng, blur=0.0, noise=1.0, jpeg=96)
    images, Hs = [ref], []
    S = np.array([[2.0, 0, 0.5], [0, 2.0, 0.5], [0, 0, 1]])  # 2x supersampling (pixel-centre aligned)
    for k in range(1, 6):
        s = k / 5.0
        H = viewpoint_homography(
            w,
            h,
            f,
            tilt_max * s,
            axis + rng.normal(0, 0.1),
            roll_max * s * rng.uniform(0.85, 1.15),
            zoom_max**s,
            pan_max * s,
        )
        big = cv2.warpPerspective(
            photo, S @ H, (2 * w, 2 * h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
        )
        view = cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA)
        lit = illumination_change(view, 0.15 * s, rng)  # mild photometric change
        images.append(
            camera_pipeline(
                lit, rng, blur=rng.uniform(0.0, 0.4), noise=1.0 + rng.uniform(0, 1.0), jpeg=int(rng.integers(85, 97))
            )
        )
        Hs.append(H)
    return images, Hs


def _plan(photos, num_illum: int, num_view: int, num_zoom: int = 0, num_blur: int = 0):
    """``[(name, kind, photo index)]``: illum sequences take photos in order, viewpoint ones start half-way
    through the list, zoom and blur ones a quarter and three quarters of the way, so a photo rarely serves
    two kinds; names get a counter when a photo is re-used."""
    n = len(photos)
    plan, used = [], {}
    for kind, count, start in (
        ("i", num_illum, 0),
        ("v", num_view, n // 2),
        ("z", num_zoom, n // 4),
        ("b", num_blur, (3 * n) // 4),
    ):
        for j in range(int(count)):
            pi = (start + j) % n
            base = f"{KINDS[kind]}{photos[pi][0]}"
            used[base] = used.get(base, 0) + 1
            plan.append((base if used[base] == 1 else f"{base}{used[base]}", kind, pi))
    return plan


_BUILDERS = {"i": illumination_sequence, "v": viewpoint_sequence, "z": zoom_sequence, "b": blur_sequence}


def _jitter_scale(js, rng: np.random.Generator) -> float:
    if isinstance(js, (tuple, list)):
        lo, hi = float(js[0]), float(js[1])
        if not 0 <= lo <= hi:
            raise ValueError(f"jitter_scale range must satisfy 0 <= low <= high, got {js}")
        return float(rng.uniform(lo, hi))
    return float(js)


def _build_one(job):
    """One planned sequence -> ``(tracks at psize, overlaps, jitter scale)``; runs in worker processes."""
    seed, idx, kind, photo, jitter, js, max_patches, per_detector, psize, rescale, mode, view_noise = job
    rng = np.random.default_rng([int(seed), idx, 1])
    view = _random_view(photo, rng, rescale=rescale)
    images, Hs = _BUILDERS[kind](view, rng)
    scale = _jitter_scale(js, np.random.default_rng([int(seed), idx, 4]))
    if mode == "detector":
        from .detector_tracks import detector_tracks

        tracks, _ = detector_tracks(images, Hs, max_tracks=max_patches, max_keypoints=per_detector)
        return (
            (resize_patches(tracks, psize) if len(tracks) else tracks),
            {v: np.zeros((0, X.NUM_TARGETS)) for v in VARIANTS},
            0.0,
        )
    spec = X.resolve_jitter(jitter, scale, view_noise)
    tracks, ov, _ = X.extract_sequence(images, Hs, rng, max_patches=max_patches, jitter=spec, per_detector=per_detector)
    return (resize_patches(tracks, psize) if len(tracks) else tracks), ov, scale


def _run_jobs(jobs, workers: int, progress: bool, desc: str):
    """Yield ``_build_one(job)`` for each job in order, ``workers`` processes at a time (spawned, so a parent
    that imported TensorFlow is safe)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc=desc, unit="seq", disable=not progress)
    try:
        if workers <= 1:
            for j in jobs:
                yield _build_one(j)
                bar.update(1)
            return
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as ex:
            for r in ex.map(_build_one, jobs):
                yield r
                bar.update(1)
    finally:
        bar.close()


def synthesize(
    out_dir,
    photos=None,
    num_illum: int = 12,
    num_view: int = 12,
    max_patches=None,
    noise: bool = False,
    seed: int = 0,
    progress: bool = True,
    size: int | None = None,
    jitter="hpatches",
    per_detector: int = 1000,
    num_zoom: int = 0,
    num_blur: int = 0,
    jitter_scale=1.0,
    workers: int = 1,
    rescale: bool = False,
    test_fraction: float = 40 / 116,
    tracks: str = "hpatches",
    view_noise=None,
) -> Path:
    """Synthesise an HPatches-format dataset from single photos (see the module docstring).

    Writes ``num_illum`` ``i_*``, ``num_view`` ``v_*``, ``num_zoom`` ``v_zoom-*`` and ``num_blur``
    ``i_blur-*`` sequences (65x65 patches, or ``size``), ``dataset.json`` and ``splits.json`` into
    ``out_dir`` (built in a temporary folder and renamed into place). ``noise=True`` writes the N-HPatches
    layout instead: ``size`` (default 32) px clean patches plus ``<type>_noise.png`` twins (ref: easy level,
    e/h/t: easy/hard/tough, see :mod:`hpatches_kit.data.noise`). ``jitter_scale``: a number or a
    ``(low, high)`` range drawn per sequence; ``rescale``: photos also randomly rotated by 90-degree steps and
    downscaled (more distinct views of few photos, for large training sets); ``workers``: processes;
    ``test_fraction``: the share of sequences in the test half of each ``splits.json`` split.
    ``tracks``: ``hpatches`` (reprojected reference regions + HPatches jitter, :mod:`.extract`) or
    ``detector`` (keypoints detected independently in every view and matched by reprojection + overlap, cut
    as the image-matching benchmark cuts them: detector noise instead of jitter, see
    :mod:`.detector_tracks`; ``per_detector`` = DoG keypoints per image, ``jitter*`` unused).
    ``view_noise``: every target's frame also turned and scaled by a draw of a detector's measured orientation
    and scale error (a :mod:`.view_noise` preset such as ``"dog"``, or a table; default none).
    """
    mode = tracks
    if mode not in TRACK_MODES:
        raise ValueError(f"unknown tracks mode {mode!r}; expected one of {', '.join(TRACK_MODES)}")
    from ..checks import check_options

    check_options(
        num_illum=num_illum,
        num_view=num_view,
        num_zoom=num_zoom,
        num_blur=num_blur,
        seed=seed,
        size=size,
        max_patches=max_patches,
        workers=workers,
        test_fraction=test_fraction,
        jitter_scale=jitter_scale,
    )
    if num_illum + num_view + num_zoom + num_blur < 1:
        raise ValueError("--num-illum, --num-view, --num-zoom and --num-blur are all 0: nothing to synthesise")
    out_dir = Path(out_dir)
    check_outputs(replaced={"--out": (out_dir, "dataset", DATASET_REFUSAL)}, inputs={"--photos": photos})
    plist = load_photos(photos)
    spec = X.resolve_jitter(jitter, 1.0, view_noise)
    vn = spec["view_noise"]
    psize = int(size) if size else (NHPATCHES_PATCH_SIZE if noise else HPATCHES_PATCH_SIZE)
    _jitter_scale(jitter_scale, np.random.default_rng(0))  # validate before any work
    with X.build_dataset_folder(out_dir, inputs={"--photos": photos}) as tmp:
        per_seq, overlaps, scales = {}, [], {}
        plan = _plan(plist, num_illum, num_view, num_zoom, num_blur)
        jobs = [
            (seed, idx, kind, plist[pi][1], jitter, jitter_scale, max_patches, per_detector, psize, rescale, mode, vn)
            for idx, (name, kind, pi) in enumerate(plan)
        ]
        for idx, (trk, ov, scale) in enumerate(_run_jobs(jobs, int(workers), progress, "synthesising")):
            name, _, pi = plan[idx]
            if len(trk) == 0:
                raise DataError(name, f"no patches could be extracted from photo {plist[pi][0]!r}")
            X.write_sequence(tmp, name, trk)
            if noise:
                _write_noisy(tmp / name, noisy_tracks(trk, np.random.default_rng([int(seed), idx, 2])))
            per_seq[name] = len(trk)
            overlaps.append(ov)
            scales[name] = round(scale, 6)
        params = X.extraction_parameters(spec, max_patches, HPATCHES_PATCH_SIZE, per_detector)
        params.update(
            {
                "photos": [p[0] for p in plist] if photos is None else [str(p) for p in photos],
                "num_illum": int(num_illum),
                "num_view": int(num_view),
                "num_zoom": int(num_zoom),
                "num_blur": int(num_blur),
                "output_patch_size": psize,
                "max_side": MAX_SIDE,
                "jitter_scale": list(jitter_scale) if isinstance(jitter_scale, (tuple, list)) else float(jitter_scale),
                "jitter_scale_per_sequence": scales,
                "rescale": bool(rescale),
                "tracks": mode,
            }
        )
        extra = {"noise": _noise_meta()} if noise else None
        X.write_dataset_meta(tmp, "hpatches_kit.data.synth", seed, params, per_seq, overlaps, extra, test_fraction)
    return out_dir


def _noise_meta() -> dict:
    return {
        "kind": "gaussian",
        "sigma_grey_levels": dict(NOISE_LEVELS),
        "per_type": {t: noise_level(t) for t in TYPES},
        "ref_level": "easy",
    }


def _write_noisy(seq_dir: Path, noisy: np.ndarray) -> None:
    X.write_sequence(seq_dir.parent, seq_dir.name, noisy, suffix="_noise")


def make_nhpatches(src_root, out_root, size: int = NHPATCHES_PATCH_SIZE, seed: int = 0) -> Path:
    """N-HPatches version of an HPatches-format dataset: patches resized to ``size`` (area interpolation)
    plus ``<type>_noise.png`` twins (ref: easy noise; e/h/t: easy/hard/tough). Copies ``splits.json`` and
    extends ``dataset.json``. Built in a temporary folder and renamed into place."""
    src_root, out_root = Path(src_root), Path(out_root)
    dirs = find_sequence_dirs(src_root)
    with X.build_dataset_folder(out_root, inputs={"src": src_root}) as tmp:
        counts = {}
        for idx, d in enumerate(dirs):
            seq = load_sequence(d, size=size, noise=False)
            X.write_sequence(tmp, seq.name, seq.tracks)
            _write_noisy(tmp / seq.name, noisy_tracks(seq.tracks, np.random.default_rng([int(seed), idx, 3])))
            counts[seq.name] = seq.num_patches
        src_meta = src_root / "dataset.json"
        meta = read_json(src_meta) if src_meta.is_file() else {}
        meta["n_hpatches"] = {
            "source": str(src_root),
            "patch_size": int(size),
            "seed": int(seed),
            "noise": _noise_meta(),
        }
        meta.setdefault(
            "counts", {"sequences": len(counts), "tracks": int(sum(counts.values())), "per_sequence": counts}
        )
        atomic_write_json(tmp / "dataset.json", meta)
        if (src_root / "splits.json").is_file():
            shutil.copyfile(src_root / "splits.json", tmp / "splits.json")
        else:
            atomic_write_json(tmp / "splits.json", X.make_splits(list(counts), seed))
    return out_root


def build_default_dataset(
    root,
    seed: int = 0,
    progress: bool = True,
    num_illum: int = DEFAULT_NUM_ILLUM,
    num_view: int = DEFAULT_NUM_VIEW,
    max_patches: int = DEFAULT_MAX_PATCHES,
    photos=None,
    num_zoom: int = DEFAULT_NUM_ZOOM,
    num_blur: int = DEFAULT_NUM_BLUR,
    jitter_scale=DEFAULT_JITTER_SCALE,
    workers: int | None = None,
) -> Path:
    """Build the embedded default: ``root/hpatches`` (65x65), ``root/n-hpatches`` (32x32 + noisy twins) and
    ``root/COMPLETE`` (written last). Everything is built in a temporary folder next to ``root`` and renamed
    into place, so an interrupted build leaves nothing half-made. Returns ``root``."""
    root = Path(root)
    with build_then_swap(
        root, "embedded", "folder exists and is not an embedded dataset; refusing to overwrite"
    ) as tmp:
        synthesize(
            tmp / "hpatches",
            photos=photos,
            num_illum=num_illum,
            num_view=num_view,
            max_patches=max_patches,
            seed=seed,
            progress=progress,
            num_zoom=num_zoom,
            num_blur=num_blur,
            jitter_scale=jitter_scale,
            workers=workers if workers is not None else min(2, os.cpu_count() or 1),
        )
        make_nhpatches(tmp / "hpatches", tmp / "n-hpatches", size=NHPATCHES_PATCH_SIZE, seed=seed)
        n_seq = len(find_sequence_dirs(tmp / "hpatches"))
        atomic_write_json(
            tmp / "COMPLETE", {"seed": int(seed), "sequences": n_seq, "generator": "hpatches_kit.data.synth"}
        )
    return root
