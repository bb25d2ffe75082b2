"""Extract HPatches-format patches from homography sequences (the HPatches extraction procedure).

For each sequence (a reference image, five target images and the ground-truth homographies ref -> target):

1. detect regions in the reference with three detectors: DoG (OpenCV SIFT keypoints), multi-scale Harris
   (``goodFeaturesToTrack`` with the Harris measure over a sqrt(2) image pyramid) and Hessian
   (scale-normalised determinant-of-Hessian maxima over a Gaussian scale space, written here);
2. measurement region = a disk of radius ``5 x`` the detected scale; detections whose regions overlap by more
   than 50% (intersection over union) are clustered to one (greedy, best-ranked first);
3. keep regions whose patch square lies fully inside the reference and, reprojected, inside every target;
4. one dominant gradient orientation per region (36-bin histogram, as in SIFT);
5. for every target image and variant (easy ``e``, hard ``h``, tough ``t``) draw an affine jitter
   (rotation, anisotropic scale, translation relative to the region) calibrated so that the median overlap
   of the jittered vs un-jittered measurement ellipse (in the reference frame) is 0.85 / 0.72 / 0.60;
6. sample 65x65 patches by warping each image with the composed map patch -> normalised region -> jitter
   -> reference frame -> homography (one ``warpPerspective`` per patch, anti-aliased by pre-blurring when
   the patch minifies the image).

Source layouts: ``hpatches-sequences-release`` (``1.ppm .. 6.ppm``, ``H_1_2 .. H_1_6``) and Oxford affine
(``img1 .. img6`` with any of .ppm/.pgm/.png/.jpg, ``H1to2p .. H1to6p``, optionally with a ``.txt`` suffix).

``jitter_scale`` multiplies the calibrated jitter magnitudes: 1 is HPatches' geometric noise, ``1/3`` the
"small noise" regime (patches nearly exact reprojections, where SIFT's precise gradient histograms shine); the
real-validation benchmark builds both.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from ..layout import HPATCHES_PATCH_SIZE, TYPES, VARIANTS
from . import geometry as G
from .detect import (  # noqa: F401  (re-exported)
    DETECTORS,
    MAGNIFICATION,
    cluster_regions,
    detect_regions,
    dominant_orientation,
)
from .errors import DataError
from .writer import (  # noqa: F401  (re-exported: public names of this module since v0.1)
    GENERATOR_VERSION,
    build_dataset_folder,
    make_splits,
    overlap_summary,
    write_dataset_meta,
    write_sequence,
    write_stack_png,
)

__all__ = [
    "extract_dataset",
    "extract_sequence",
    "read_source_sequence",
    "find_source_sequences",
    "detect_regions",
    "make_splits",
    "MAGNIFICATION",
]

IMAGE_EXTS = (".ppm", ".pgm", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
NUM_TARGETS = 5


# -- reading sources ---------------------------------------------------------------------------------------
def _oxford_homography(folder: Path, i: int) -> Path | None:
    """``H1to{i}p`` or the common variant ``H1to{i}p.txt`` of an Oxford-layout folder (``None`` if neither)."""
    for name in (f"H1to{i}p", f"H1to{i}p.txt"):
        if (folder / name).is_file():
            return folder / name
    return None


def _find_image(folder: Path, stem: str) -> Path | None:
    for ext in IMAGE_EXTS:
        for cand in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
            if cand.is_file():
                return cand
    return None


def source_layout(folder) -> str | None:
    """``"hpatches"``, ``"oxford"`` or ``None`` for a folder that is not a homography sequence."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    if _find_image(folder, "1") is not None or (folder / "H_1_2").is_file():
        return "hpatches"
    if _find_image(folder, "img1") is not None or _oxford_homography(folder, 2) is not None:
        return "oxford"
    return None


def find_source_sequences(src) -> list[Path]:
    """The sequence folders of ``src`` (``src`` itself or its sub-folders), sorted by name."""
    src = Path(src)
    if not src.exists():
        raise DataError(src, "source folder does not exist")
    if source_layout(src):
        return [src]
    seqs = sorted(p for p in src.iterdir() if source_layout(p))
    if not seqs:
        raise DataError(
            src, "no homography sequences found (expected 1.ppm..6.ppm + H_1_2..H_1_6, or img1..img6 + H1to2p..H1to6p)"
        )
    return seqs


def read_image_grey(path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "missing image")
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None or img.size == 0:
        raise DataError(path, "cannot decode image (corrupt or unsupported format)")
    return img


def read_homography(path) -> np.ndarray:
    """A 3x3 homography stored as 9 whitespace-separated numbers; :class:`DataError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "missing homography file")
    try:
        vals = [float(v) for v in path.read_text().split()]
    except (ValueError, UnicodeDecodeError):
        raise DataError(path, "malformed homography: expected 9 numbers (3x3 matrix)") from None
    if len(vals) != 9:
        raise DataError(path, f"malformed homography: expected 9 numbers (3x3 matrix), found {len(vals)}")
    H = np.array(vals, np.float64).reshape(3, 3)
    if not np.all(np.isfinite(H)) or abs(np.linalg.det(H)) < 1e-12 or H[2, 2] == 0:
        raise DataError(path, "malformed homography: not finite or singular")
    return H / H[2, 2]


MIN_IMAGES = 2


def read_source_sequence(folder) -> tuple[str, list[np.ndarray], list[np.ndarray]]:
    """``(name, [2..6 grey images], [homographies ref -> target])`` of one source sequence folder.

    Images are read in order (``1``, ``2``, ... or ``img1``, ``img2``, ...) up to the first missing one, at most
    six; a sequence needs at least two (a real image pair with ``H1to2p`` counts). Each target image needs its
    homography file; a missing image followed by later images or by its own homography is an error (a gap). The name gets an ``i_`` prefix when all homographies are the identity, else ``v_``, unless
    the folder name already has one (a guess; :func:`read_scene_kinds` lets the user name the kind).
    """
    folder = Path(folder)
    layout = source_layout(folder)
    if layout is None:
        raise DataError(folder, "not a homography sequence (no 1.ppm/H_1_2 or img1/H1to2p)")
    images, Hs = [], []
    for i in range(1, NUM_TARGETS + 2):
        stem = str(i) if layout == "hpatches" else f"img{i}"
        p = _find_image(folder, stem)
        if p is None:
            later = [str(j) if layout == "hpatches" else f"img{j}" for j in range(i + 1, NUM_TARGETS + 2)]
            hfile = (folder / f"H_1_{i}").is_file() if layout == "hpatches" else _oxford_homography(folder, i)
            after = [st for st in later if _find_image(folder, st)]
            if i > MIN_IMAGES and not hfile and not after:
                break  # a shorter sequence, not a gap
            if i > MIN_IMAGES:  # a gap: what is there names the problem, not the minimum count
                there = ", ".join(f"{st}.*" for st in after) or ("its homography" if hfile else "")
                raise DataError(
                    folder / f"{stem}.ppm",
                    f"missing image {stem}.* while {there} exist{'s' if len(after) <= 1 else ''}: a gap in the "
                    f"sequence ({layout} layout; images are numbered without gaps)",
                )
            raise DataError(
                folder / f"{stem}.ppm",
                f"missing image {stem}.* ({layout} layout; a sequence needs at least {MIN_IMAGES} images)",
            )
        images.append(read_image_grey(p))
        if i > 1:
            hp = (
                folder / f"H_1_{i}" if layout == "hpatches" else (_oxford_homography(folder, i) or folder / f"H1to{i}p")
            )
            Hs.append(read_homography(hp))
    name = folder.name
    if not name.startswith(("i_", "v_")):
        ident = all(np.allclose(H, np.eye(3), atol=1e-6) for H in Hs)
        name = ("i_" if ident else "v_") + name
    return name, images, Hs


# -- patch sampling ----------------------------------------------------------------------------------------
_BLURS = (0.0, 0.5, 0.8, 1.2, 1.7, 2.4, 3.4, 4.8)


class _BlurStack:
    """An image at a few pre-blur levels, so that minifying warps can pick an anti-aliased source."""

    def __init__(self, img):
        self.img = np.ascontiguousarray(img)
        self._levels: dict[int, np.ndarray] = {0: self.img}

    def for_scale(self, f: float) -> np.ndarray:
        want = 0.5 * math.sqrt(max(f * f - 1.0, 0.0))  # residual blur needed for minification factor f
        k = max(i for i, s in enumerate(_BLURS) if s <= want + 1e-9)
        if k not in self._levels:
            self._levels[k] = cv2.GaussianBlur(self.img, (0, 0), _BLURS[k])
        return self._levels[k]


def _local_scale(M, p: int) -> float:
    """sqrt |det J| of the patch->image homography ``M`` at the patch centre (image px per patch px)."""
    c = (p - 1) / 2.0
    q = M @ np.array([c, c, 1.0])
    w = q[2]
    J = (M[:2, :2] * w - np.outer(q[:2], M[2, :2])) / (w * w)
    return math.sqrt(abs(J[0, 0] * J[1, 1] - J[0, 1] * J[1, 0]))


def _sample(stack: _BlurStack, M, p: int) -> np.ndarray:
    src = stack.for_scale(_local_scale(M, p))
    return cv2.warpPerspective(
        src, M, (p, p), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
    )


def _inside(pts, shape, margin=0.5) -> bool:
    h, w = shape[:2]
    return bool(
        np.all(np.isfinite(pts))
        and pts[:, 0].min() >= margin
        and pts[:, 1].min() >= margin
        and pts[:, 0].max() <= w - 1 - margin
        and pts[:, 1].max() <= h - 1 - margin
    )


_SQUARE = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1], [0, -1], [1, 0], [0, 1], [-1, 0]], np.float64)


def _square_ok(frame, Hs, images) -> bool:
    """The patch square of ``frame`` (ref coords) lies inside the reference and, through each H, its target."""
    pts = G.apply_homography(frame, _SQUARE)
    if not _inside(pts, images[0].shape):
        return False
    return all(_inside(G.apply_homography(H, pts), im.shape) for H, im in zip(Hs, images[1:]))


def _squares_inside(frames, Hs, images) -> np.ndarray:
    """For ``(K, 3, 3)`` ref-frame patch frames (one per target k): is the square inside the reference and,
    through ``Hs[k]``, inside target ``k``?"""
    sq = np.concatenate([_SQUARE, np.ones((len(_SQUARE), 1))], 1).T  # (3, 8)
    pr = frames @ sq  # (K, 3, 8)
    ok = np.empty(len(frames), bool)
    h0, w0 = images[0].shape[:2]
    for k in range(len(frames)):
        p = pr[k, :2] / pr[k, 2]
        if not (p.min() >= 0.5 and p[0].max() <= w0 - 1.5 and p[1].max() <= h0 - 1.5):
            ok[k] = False
            continue
        t = Hs[k] @ pr[k]
        if np.any(t[2] <= 0):
            ok[k] = False
            continue
        t = t[:2] / t[2]
        h, w = images[k + 1].shape[:2]
        ok[k] = bool(t.min() >= 0.5 and t[0].max() <= w - 1.5 and t[1].max() <= h - 1.5)
    return ok


def _view_noise_frames(rng, view_noise, n: int) -> np.ndarray:
    """``(n, 3, 3)`` rotations x scalings (normalised coordinates) drawn from a detector's measured orientation
    and scale error (:class:`~hpatches_kit.data.view_noise.ViewNoise`): the frame a detector would have given."""
    a, s = view_noise.sample_numpy(n, rng)
    a, r = np.radians(a), np.exp2(s)
    out = np.zeros((n, 3, 3))
    out[:, 0, 0], out[:, 0, 1] = r * np.cos(a), -r * np.sin(a)
    out[:, 1, 0], out[:, 1, 1] = r * np.sin(a), r * np.cos(a)
    out[:, 2, 2] = 1.0
    return out


def _sample_jitter(rng, magnitude, n, view_noise=None):
    J = G.sample_jitter(rng, magnitude, n)
    return J if view_noise is None or not view_noise.active else J @ _view_noise_frames(rng, view_noise, n)


def _draw_jitters(rng, magnitude, A, Hs, images, redraws, view_noise=None):
    """One jitter per target whose jittered patch square stays inside the images (redrawn up to
    ``redraws`` times); ``None`` when that fails. ``view_noise``: each target's frame also turned and scaled by a
    draw of a detector's orientation and scale error."""
    J = _sample_jitter(rng, magnitude, NUM_TARGETS, view_noise)
    ok = _squares_inside(A[None] @ J, Hs, images)
    for _ in range(redraws):
        if ok.all():
            return J
        bad = np.nonzero(~ok)[0]
        J[bad] = _sample_jitter(rng, magnitude, len(bad), view_noise)
        ok[bad] = _squares_inside(A[None] @ J[bad], [Hs[k] for k in bad], [images[0]] + [images[k + 1] for k in bad])
    return J if ok.all() else None


def resolve_jitter(jitter, scale: float = 1.0, view_noise=None) -> dict:
    """Jitter spec -> ``{"targets": {v: overlap or None}, "magnitudes": {v: m}, "scale": scale, "view_noise": vn}``.

    ``view_noise``: a detector's orientation and scale error added to every target's frame (a preset name or
    table of :func:`hpatches_kit.data.view_noise.resolve_view_noise`; ``None``: none).

    ``"hpatches"``: the HPatches targets (0.85 / 0.72 / 0.60 median overlap); ``"none"``/``None``/``0``: no
    jitter (every variant is an exact reprojection); a dict ``{"e": 0.85, "h": 0.72, "t": 0.6}`` of target
    median overlaps. ``scale`` multiplies the calibrated magnitudes (``targets`` then name the overlaps at
    scale 1; the measured overlaps go to ``dataset.json``).
    """
    from .view_noise import resolve_view_noise

    scale = float(scale)
    if not (math.isfinite(scale) and scale >= 0):
        raise ValueError(f"jitter scale must be a finite number >= 0, got {scale}")
    vn = resolve_view_noise(view_noise) if view_noise is not None else None
    vn = vn if vn is not None and vn.active else None
    if jitter in (None, "none", 0, False):
        return {
            "targets": {v: None for v in VARIANTS},
            "magnitudes": {v: 0.0 for v in VARIANTS},
            "scale": scale,
            "view_noise": vn,
        }
    if isinstance(jitter, str):
        if jitter != "hpatches":
            raise ValueError(f"jitter must be 'hpatches', 'none' or a dict of target overlaps, got {jitter!r}")
        targets = dict(G.JITTER_TARGETS)
    elif isinstance(jitter, dict):
        targets = {v: float(jitter[v]) for v in VARIANTS}
    else:
        raise ValueError(f"jitter must be 'hpatches', 'none' or a dict of target overlaps, got {jitter!r}")
    return {
        "targets": targets,
        "magnitudes": {v: scale * G.calibrate_jitter(t) for v, t in targets.items()},
        "scale": scale,
        "view_noise": vn,
    }


def extract_sequence(
    images,
    Hs,
    rng: np.random.Generator,
    max_patches=None,
    jitter="hpatches",
    patch_size: int = HPATCHES_PATCH_SIZE,
    per_detector: int = 1000,
    redraws: int = 6,
):
    """Extract the tracks of one sequence (2 to 6 images; with fewer than 5 targets the target slots
    ``e/h/t k`` cycle through the targets: a pair's five slots all come from its second image, jittered
    independently).

    Returns ``(tracks (N, 16, P, P) uint8, overlaps {variant: (N, 5) float}, info)``; ``info["frames"]`` holds
    the ``(N, 3, 3)`` reference-frame region of each track (unit disk -> measurement disk).
    """
    if not MIN_IMAGES <= len(images) <= NUM_TARGETS + 1 or len(Hs) != len(images) - 1:
        raise ValueError(f"expected 2 to 6 images and one homography per target, got {len(images)} and {len(Hs)}")
    if len(Hs) < NUM_TARGETS:  # fewer targets (e.g. an image pair): the five target slots cycle through them,
        # each with its own jitter draw
        images = [images[0]] + [images[1 + k % len(Hs)] for k in range(NUM_TARGETS)]
        Hs = [Hs[k % len(Hs)] for k in range(NUM_TARGETS)]
    spec = jitter if isinstance(jitter, dict) and "magnitudes" in jitter else resolve_jitter(jitter)
    ref = images[0]
    det = detect_regions(ref, per_detector=per_detector)
    # prefilter on the un-jittered, orientation-free circumscribed square (radius r*sqrt2 disk)
    ring = np.stack(
        [np.cos(np.linspace(0, 2 * np.pi, 16, endpoint=False)), np.sin(np.linspace(0, 2 * np.pi, 16, endpoint=False))],
        1,
    ) * math.sqrt(2.0)
    ok = []
    for i, (x, y, s, _) in enumerate(det):
        r = MAGNIFICATION * s
        pts = ring * r + [x, y]
        if _inside(pts, ref.shape) and all(
            _inside(G.apply_homography(H, pts), im.shape) for H, im in zip(Hs, images[1:])
        ):
            ok.append(i)
    det = det[ok]
    n_detected = len(det)
    order = rng.permutation(len(det))
    gx = cv2.Sobel(ref.astype(np.float32), cv2.CV_32F, 1, 0, ksize=1)
    gy = cv2.Sobel(ref.astype(np.float32), cv2.CV_32F, 0, 1, ksize=1)
    mag, ang = np.hypot(gx, gy), np.mod(np.arctan2(gy, gx), 2 * np.pi)
    N = G.patch_to_norm(patch_size)
    stacks = [_BlurStack(im) for im in images]
    tracks, overlaps, frames = [], {v: [] for v in VARIANTS}, []
    limit = len(det) if max_patches is None else min(int(max_patches), len(det))
    for i in order:
        if len(tracks) >= limit:
            break
        x, y, s, _ = det[i]
        A = G.region_frame(x, y, MAGNIFICATION * s, dominant_orientation(mag, ang, x, y, s))
        if not _square_ok(A, Hs, images):
            continue
        jit = {}
        good = True
        for v in VARIANTS:
            js = _draw_jitters(rng, spec["magnitudes"][v], A, Hs, images, redraws, spec.get("view_noise"))
            if js is None:
                good = False
                break
            jit[v] = js
        if not good:
            continue
        views = [_sample(stacks[0], A @ N, patch_size)]
        for v in VARIANTS:
            for k in range(NUM_TARGETS):
                views.append(_sample(stacks[k + 1], Hs[k] @ A @ jit[v][k] @ N, patch_size))
        tracks.append(np.stack(views))
        frames.append(A)
        for v in VARIANTS:
            overlaps[v].append(np.stack(jit[v]))
    P = patch_size
    out = np.stack(tracks) if tracks else np.zeros((0, len(TYPES), P, P), np.uint8)
    ov = {}
    for v in VARIANTS:
        if overlaps[v]:
            js = np.stack(overlaps[v])  # (N, 5, 3, 3)
            ov[v] = G.jitter_overlaps(js.reshape(-1, 3, 3), 512).reshape(len(js), NUM_TARGETS)
        else:
            ov[v] = np.zeros((0, NUM_TARGETS))
    info = {
        "detections_in_bounds": int(n_detected),
        "tracks": int(len(out)),
        "frames": np.stack(frames) if frames else np.zeros((0, 3, 3)),
    }
    return out, ov, info


def extract_dataset(
    src,
    out_dir,
    seed: int = 0,
    max_patches=None,
    jitter="hpatches",
    progress: bool = True,
    patch_size: int = HPATCHES_PATCH_SIZE,
    per_detector: int = 1000,
    jitter_scale: float = 1.0,
    view_noise=None,
) -> Path:
    """Extract an HPatches-format dataset from homography sequences (see the module docstring).

    ``view_noise``: also turn and scale every target's frame by a draw of a detector's measured orientation and
    scale error (a :mod:`hpatches_kit.data.view_noise` preset such as ``"dog"``, or a table); default none.

    ``max_patches`` caps the tracks per sequence (a random subset of the valid regions). Writes the sequence
    folders, ``dataset.json`` and ``splits.json`` into a temporary folder next to ``out_dir`` and renames it
    into place, so an interrupted run leaves nothing half-made. Returns ``out_dir``.
    """
    from tqdm.auto import tqdm

    from ..checks import check_options

    check_options(seed=seed, max_patches=max_patches, jitter_scale=jitter_scale, patch_size=patch_size)
    out_dir = Path(out_dir)
    seq_dirs = find_source_sequences(src)
    spec = resolve_jitter(jitter, jitter_scale, view_noise)
    with build_dataset_folder(out_dir, inputs={"src": src}) as tmp:
        per_seq, overlaps, infos = {}, [], {}
        for idx, d in enumerate(tqdm(seq_dirs, desc="extracting", unit="seq", disable=not progress)):
            name, images, Hs = read_source_sequence(d)
            if name in per_seq:
                raise DataError(d, f"duplicate sequence name {name!r}")
            rng = np.random.default_rng([int(seed), idx])
            tracks, ov, info = extract_sequence(
                images, Hs, rng, max_patches=max_patches, jitter=spec, patch_size=patch_size, per_detector=per_detector
            )
            if len(tracks) == 0:
                raise DataError(d, "no region fits inside every image of the sequence: cannot extract patches")
            write_sequence(tmp, name, tracks)
            per_seq[name] = len(tracks)
            overlaps.append(ov)
            infos[name] = {k: v for k, v in info.items() if k != "frames"}
        params = extraction_parameters(spec, max_patches, patch_size, per_detector)
        params["source"] = str(Path(src).resolve())
        write_dataset_meta(tmp, "hpatches_kit.data.extract", seed, params, per_seq, overlaps)
    return out_dir


def extraction_parameters(spec, max_patches, patch_size, per_detector) -> dict:
    """The extraction parameters recorded in ``dataset.json`` (``spec`` from :func:`resolve_jitter`)."""
    return {
        "patch_size": int(patch_size),
        "magnification": MAGNIFICATION,
        "detectors": list(DETECTORS),
        "per_detector": int(per_detector),
        "max_overlap_cluster": 0.5,
        "max_patches": max_patches,
        "jitter_target_overlap": spec["targets"],
        "jitter_magnitude": spec["magnitudes"],
        "jitter_scale": spec.get("scale", 1.0),
        "jitter_shape": dict(G.JITTER_SHAPE),
        "view_noise": None if spec.get("view_noise") is None else spec["view_noise"].to_json(),
    }
