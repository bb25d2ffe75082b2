"""Image pairs for pair matching: stereo datasets on disk and an embedded default built from scikit-image photos.

Layouts read by :func:`load_stereo_pairs` (pairs are matched by their path relative to the left/right folder):

* MPI Sintel stereo: ``<root>/training/{clean,final}_{left,right}/<seq>/frame_%04d.png`` (``<root>`` may also
  be the ``training`` folder itself); ``passes`` picks ``clean``, ``final`` or both.
* generic: ``<root>/left/...`` and ``<root>/right/...`` with the same relative file names.

Preprocessing (as the reference pipeline): RGB, resize to ``size x size`` (bilinear), scale to ``[-1, 1]``.
Every error names the offending file (:class:`~hpatches_kit.data.DataError`).

The embedded default (:func:`default_pairs`, used when no folder is given) needs no download: the real
Middlebury pair ``skimage.data.stereo_motorcycle()`` plus pairs synthesised from other photos scikit-image
ships -- two overlapping views of one region (regions of one photo taken from distinct grid cells), with a small shift, crop and perspective change and a
photometric change (gain, bias, gamma, noise) on the right view. Deterministic under ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .errors import DataError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
SINTEL_PASSES = ("clean", "final")


@dataclass
class StereoPairs:
    """``left``/``right``: ``(N, S, S, 3) float32`` in ``[-1, 1]``; ``names``: one id per pair; ``groups``:
    the source (Sintel sequence / photo) of each pair, used to split without leakage."""

    left: np.ndarray
    right: np.ndarray
    names: list[str]
    groups: list[str] = field(default_factory=list)
    source: str = ""

    def __post_init__(self):
        if self.left.shape != self.right.shape:
            raise ValueError(f"left {self.left.shape} and right {self.right.shape} differ in shape")
        if len(self.names) != len(self.left):
            raise ValueError("one name per pair expected")
        if not self.groups:
            self.groups = list(self.names)

    def __len__(self) -> int:
        return len(self.left)

    def subset(self, idx) -> StereoPairs:
        idx = np.asarray(idx, dtype=int)
        return StereoPairs(
            self.left[idx], self.right[idx], [self.names[i] for i in idx], [self.groups[i] for i in idx], self.source
        )


def preprocess(image_rgb: np.ndarray, size: int = 224) -> np.ndarray:
    """uint8 ``(H, W, 3)`` RGB (or ``(H, W)`` grey) -> ``(size, size, 3) float32`` in ``[-1, 1]`` (bilinear)."""
    img = np.asarray(image_rgb)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.shape[:2] != (size, size):
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)
    return img.astype(np.float32) / 127.5 - 1.0


def read_rgb(path) -> np.ndarray:
    """Read an image file as uint8 RGB; :class:`DataError` names the file when it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "missing file")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise DataError(path, "cannot decode image (corrupt or unsupported format)")
    if img.dtype == np.uint16:
        img = (img // 257).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise DataError(path, f"unsupported pixel type {img.dtype}")
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=2)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    if img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    raise DataError(path, f"unsupported channel count {img.shape[2]}")


def _images_under(folder: Path) -> dict[str, Path]:
    return {
        p.relative_to(folder).as_posix(): p
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.suffix.lower() in IMAGE_EXTS
    }


def _pair_folders(left_dir: Path, right_dir: Path, tag: str = "") -> list[tuple[Path, Path, str, str]]:
    if not right_dir.is_dir():
        raise DataError(right_dir, f"missing folder (the counterpart of {left_dir})")
    lefts, rights = _images_under(left_dir), _images_under(right_dir)
    for rel, p in lefts.items():
        if rel not in rights:
            raise DataError(p, f"unpaired: no matching right image {right_dir / rel}")
    for rel, p in rights.items():
        if rel not in lefts:
            raise DataError(p, f"unpaired: no matching left image {left_dir / rel}")
    if not lefts:
        raise DataError(left_dir, "no images found")
    out = []
    for rel in sorted(lefts):
        group = rel.rsplit("/", 1)[0] if "/" in rel else rel
        out.append((lefts[rel], rights[rel], f"{tag}{rel}", f"{tag}{group}"))
    return out


def find_pairs(root, passes=("clean",)) -> tuple[str, list[tuple[Path, Path, str, str]]]:
    """Detect the layout under ``root`` and list ``(left, right, name, group)`` files. Returns (layout, pairs)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "pair folder not found")
    if isinstance(passes, str):
        passes = SINTEL_PASSES if passes == "both" else (passes,)
    for p in passes:
        if p not in SINTEL_PASSES:
            raise ValueError(f"unknown Sintel pass {p!r}; expected clean, final or both")
    base = root / "training" if (root / "training").is_dir() else root
    if any((base / f"{p}_left").is_dir() for p in SINTEL_PASSES):
        pairs = []
        for p in passes:
            ld = base / f"{p}_left"
            if not ld.is_dir():
                raise DataError(ld, f"missing Sintel folder for pass {p!r}")
            pairs += _pair_folders(ld, base / f"{p}_right", tag=f"{p}/" if len(passes) > 1 else "")
        return "sintel", pairs
    if (root / "left").is_dir() or (root / "right").is_dir():
        if not (root / "left").is_dir():
            raise DataError(root / "left", "missing folder (the counterpart of right/)")
        return "generic", _pair_folders(root / "left", root / "right")
    raise DataError(
        root,
        "no stereo layout found: expected training/clean_left + clean_right (MPI Sintel) or left/ + right/ folders",
    )


def load_stereo_pairs(
    root=None, size: int = 224, passes=("clean",), limit: int | None = None, seed: int = 0
) -> StereoPairs:
    """Read and preprocess the pairs under ``root`` (see module docstring); ``root=None`` -> :func:`default_pairs`."""
    if root is None:
        return default_pairs(size=size, seed=seed)
    layout, files = find_pairs(root, passes)
    if limit is not None:
        files = files[:limit]
    left = np.stack([preprocess(read_rgb(l), size) for l, _, _, _ in files])
    right = np.stack([preprocess(read_rgb(r), size) for _, r, _, _ in files])
    return StereoPairs(left, right, [f[2] for f in files], [f[3] for f in files], source=f"{layout}:{root}")


# ------------------------------------------------------------------------------------------- embedded default

PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "camera",
    "coins",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "page",
    "text",
    "brick",
    "grass",
    "gravel",
    "colorwheel",
    "retina",
    "clock",
    "cell",
    "logo",
)


def _photo(name: str) -> np.ndarray:
    import skimage.data

    img = np.asarray(getattr(skimage.data, name)())
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.shape[2] == 4:
        img = img[..., :3]
    return np.ascontiguousarray(img.astype(np.uint8))


def _view(img, quad, size, rng=None, photometric=False):
    dst = np.float32([[0, 0], [size - 1, 0], [size - 1, size - 1], [0, size - 1]])
    H = cv2.getPerspectiveTransform(np.float32(quad), dst)
    out = cv2.warpPerspective(img, H, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    if photometric:
        f = out.astype(np.float32) / 255.0
        f = np.power(np.clip(f, 0, 1), rng.uniform(0.75, 1.33))
        f = f * rng.uniform(0.75, 1.25) + rng.uniform(-0.08, 0.08)
        f = f * rng.uniform(0.9, 1.1, size=3)[None, None]  # slight colour cast
        f = f + rng.normal(0, 0.015, size=f.shape)
        out = np.clip(f * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return out


def default_pairs_u8(seed: int = 0, pairs_per_photo: int = 3, size: int = 224):
    """uint8 RGB ``(left, right, names, groups)`` of the embedded default (see module docstring)."""
    import skimage.data

    rng = np.random.default_rng(seed)
    lefts, rights, names, groups = [], [], [], []
    ml, mr, _ = skimage.data.stereo_motorcycle()
    sources = [("motorcycle", ml, mr)] + [(n, _photo(n), None) for n in PHOTOS]
    for name, img, other in sources:
        h, w = img.shape[:2]
        # windows of one photo come from distinct cells of a grid, so they do not overlap (until a photo
        # runs out of cells): pairs of the same photo show different content, not near-duplicates
        side = rng.uniform(0.4, 0.5) * min(h, w)
        nx, ny = max(1, int(w // side)), max(1, int(h // side))
        cells = [(cx, cy) for cy in range(ny) for cx in range(nx)]
        cells = [cells[i] for i in rng.permutation(len(cells))]
        cw, ch = w / nx, h / ny
        for k in range(pairs_per_photo):
            cx, cy = cells[k % len(cells)]
            x0 = cx * cw + rng.uniform(0, max(0.0, cw - side))
            y0 = cy * ch + rng.uniform(0, max(0.0, ch - side))
            sq = np.array([[x0, y0], [x0 + side, y0], [x0 + side, y0 + side], [x0, y0 + side]])
            if other is not None:  # real stereo pair: same window in both views (disparity does the rest)
                l, r = _view(img, sq, size), _view(other, sq, size, rng, photometric=False)
            else:
                shift = rng.uniform(-0.08, 0.08, size=2) * side
                jitter = rng.uniform(-0.06, 0.06, size=(4, 2)) * side
                scale = rng.uniform(0.9, 1.1)
                c = sq.mean(0)
                q2 = c + (sq - c) * scale + shift + jitter
                l, r = _view(img, sq, size), _view(img, q2, size, rng, photometric=True)
            lefts.append(l)
            rights.append(r)
            names.append(f"{name}_{k}.png")
            groups.append(name)
    return np.stack(lefts), np.stack(rights), names, groups


def default_pairs(size: int = 224, seed: int = 0, pairs_per_photo: int = 3) -> StereoPairs:
    """The embedded default pairs, preprocessed (``(N, size, size, 3)`` in ``[-1, 1]``)."""
    l, r, names, groups = default_pairs_u8(seed, pairs_per_photo)
    return StereoPairs(
        np.stack([preprocess(x, size) for x in l]),
        np.stack([preprocess(x, size) for x in r]),
        names,
        groups,
        source=f"embedded:skimage(seed={seed})",
    )


def split_pairs(pairs: StereoPairs, test_fraction: float = 0.3, seed: int = 0):
    """Split into (train, test) by ``groups`` (all pairs of a source on one side: held-out sources are unseen)."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    uniq = sorted(set(pairs.groups))
    if len(uniq) < 2:
        raise ValueError("need at least two groups (sources) to split pairs")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(uniq))
    n_test = min(len(uniq) - 1, max(1, int(round(test_fraction * len(uniq)))))
    test_groups = {uniq[i] for i in order[:n_test]}
    te = [i for i, g in enumerate(pairs.groups) if g in test_groups]
    tr = [i for i, g in enumerate(pairs.groups) if g not in test_groups]
    return pairs.subset(tr), pairs.subset(te)


def embedded_split(
    size: int = 224,
    seed: int = 0,
    test_fraction: float = 0.3,
    train_pairs_per_photo: int = 100,
    eval_pairs_per_photo: int = 10,
):
    """``(train, test)`` on the embedded default, split by source photo (held-out photos are never seen).

    The held-out pairs are ``eval_pairs_per_photo`` pairs of each test photo from the fixed evaluation draw
    (``seed=0``); the training pairs are a separate, larger draw (``seed=1000 + seed``: other windows, other
    distortions) of the training photos only, so that the adapters see many views of few photos."""
    evalset = default_pairs(size=size, seed=0, pairs_per_photo=eval_pairs_per_photo)
    _, test = split_pairs(evalset, test_fraction, seed=seed)
    held = set(test.groups)
    big = default_pairs(size=size, seed=1000 + seed, pairs_per_photo=train_pairs_per_photo)
    train = big.subset([i for i, g in enumerate(big.groups) if g not in held])
    return train, test
