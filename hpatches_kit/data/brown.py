"""Brown / UBC PhotoTour patch data (Liberty, Notre Dame, Yosemite): a memory-bounded reader of the real layout.

Layout of one subset folder (as published at ``matthewalunbrown.com/patchdata``; the readers of torchvision's
``PhotoTour`` and ducha-aiki's ``brown_phototour_revisited`` read the same files):

* ``patches0000.bmp, patches0001.bmp, ...``: 1024x1024 greyscale sheets, each a 16x16 grid of 64x64 patches,
  ordered left to right, top to bottom; patch ``i`` is on sheet ``i // 256`` at grid cell ``i % 256``. The
  last sheet is padded: only the first ``len(info.txt)`` patches exist.
* ``info.txt``: one line per patch; the first number is the 3-D point id (patches with the same id are
  projections of the same 3-D point), the second is unused.
* ``interest.txt`` (optional here): one line per patch; the first number is the id of the reference image of
  the interest point. The "revisited" mAP protocol ranks within one reference image.
* ``m50_<n>_<n>_0.txt``: pair lists, ``m50_100000_100000_0.txt`` being the standard 100k test pairs (50%
  matches). Seven integer columns per line: patch id, 3-D point id, unused, patch id, 3-D point id, unused,
  unused; a pair is a match when the two point ids are equal.

Memory: :func:`read_patches` decodes one sheet at a time and keeps only the requested patches, optionally
resized, so reading Liberty's 450k patches at 32x32 holds ~460 MB, never the 1.8 GB of all 64x64 patches.

Training tracks (:func:`brown_tracks`): a track is a 3-D point with at least 2 patches. The training pipeline
takes ``(T, 16, P, P)`` tracks and draws K distinct view *slots* of 16, so every point is laid out on 16
slots: a point with ``n >= 16`` patches gets 16 of them drawn without replacement; one with ``n < 16``
patches gets all of them, in a random order, repeated cyclically (every patch fills ``16 // n`` or
``16 // n + 1`` slots). Two distinct slots of a point with ``n`` patches then hold the same patch with
probability about ``(16 / n - 1) / 15`` (photometric augmentation still makes the two views differ); points
with one patch are dropped (no positive pair).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .errors import DataError

__all__ = [
    "SUBSETS",
    "PATCHES_PER_SHEET",
    "BROWN_PATCH_SIZE",
    "BrownSubset",
    "open_brown",
    "read_info",
    "read_interest",
    "read_matches",
    "read_patches",
    "brown_tracks",
]

SUBSETS = ("liberty", "notredame", "yosemite")
BROWN_PATCH_SIZE = 64
GRID = 16
PATCHES_PER_SHEET = GRID * GRID
TEST_PAIRS = "m50_100000_100000_0.txt"


def _read_int_columns(path: Path, what: str, min_cols: int, exact: int | None = None) -> np.ndarray:
    """Integer table of a whitespace-separated text file; ``DataError`` naming the file and the bad line."""
    if not path.is_file():
        raise DataError(path, f"missing {what}")
    rows = []
    with open(path) as f:
        for ln, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < min_cols or (exact is not None and len(parts) != exact):
                want = f"{exact}" if exact is not None else f"at least {min_cols}"
                raise DataError(path, f"line {ln}: expected {want} columns ({what}), found {len(parts)}")
            try:
                rows.append([int(v) for v in parts[: exact or min_cols]])
            except ValueError:
                raise DataError(path, f"line {ln}: expected integers ({what}), got {line.strip()!r}") from None
    if not rows:
        raise DataError(path, f"empty {what}")
    return np.asarray(rows, np.int64)


def read_info(root) -> np.ndarray:
    """3-D point id of every patch (first column of ``info.txt``).

    Args:
        root: the subset folder.

    Returns:
        ``(N,) int64`` point ids, one per patch, in patch order.
    """
    return _read_int_columns(Path(root) / "info.txt", "info.txt: 3-D point id, unused", 1)[:, 0]


def read_interest(root) -> np.ndarray | None:
    """Reference-image id of every patch (first column of ``interest.txt``), or ``None`` without the file."""
    p = Path(root) / "interest.txt"
    return _read_int_columns(p, "interest.txt: image id, x, y, orientation, scale", 1)[:, 0] if p.is_file() else None


def read_matches(path, point_ids: np.ndarray | None = None) -> np.ndarray:
    """Read an ``m50_*.txt`` pair file.

    Args:
        path: the match file (seven integer columns: patch id, point id, unused, patch id, point id, unused,
            unused).
        point_ids: ``info.txt`` point ids; when given, patch ids must be in range and the point ids of the
            file must agree with them.

    Returns:
        ``(M, 3) int64``: patch id 1, patch id 2, 1 for a match (equal point ids) else 0.
    """
    path = Path(path)
    a = _read_int_columns(path, "patch id, point id, unused, patch id, point id, unused, unused", 7, exact=7)
    if point_ids is not None:
        n = len(point_ids)
        for c in (0, 3):
            bad = np.nonzero((a[:, c] < 0) | (a[:, c] >= n))[0]
            if len(bad):
                raise DataError(
                    path, f"line {bad[0] + 1}: patch id {a[bad[0], c]} out of range (info.txt has {n} patches)"
                )
            wrong = np.nonzero(point_ids[a[:, c]] != a[:, c + 1])[0]
            if len(wrong):
                i = wrong[0]
                raise DataError(
                    path,
                    f"line {i + 1}: patch {a[i, c]} has point id {point_ids[a[i, c]]} in info.txt, {a[i, c + 1]} here",
                )
    return np.stack([a[:, 0], a[:, 3], (a[:, 1] == a[:, 4]).astype(np.int64)], 1)


def _sheets(root: Path, n: int) -> list[Path]:
    need = -(-n // PATCHES_PER_SHEET)
    found = {int(m.group(1)): p for p in root.glob("patches*.bmp") if (m := re.fullmatch(r"patches(\d+)\.bmp", p.name))}
    if not found:
        raise DataError(root, "no patches*.bmp sheets (Brown layout: patches0000.bmp, patches0001.bmp, ...)")
    out = []
    for k in range(need):
        if k not in found:
            raise DataError(
                root / f"patches{k:04d}.bmp", f"missing patch sheet {k} of {need} (info.txt lists {n} patches)"
            )
        out.append(found[k])
    return out


def read_patches(
    root, indices=None, size: int | None = None, progress: bool = False, num_patches: int | None = None
) -> np.ndarray:
    """Patches of a Brown subset, decoding one sheet at a time (memory: only the requested patches).

    Args:
        root: the subset folder.
        indices: patch ids to read (any order, repeats allowed); ``None`` reads all patches of ``info.txt``.
        size: resize every patch to ``size x size`` (area interpolation); ``None`` keeps 64x64.
        progress: show a progress bar over the sheets.
        num_patches: the number of patches when already known (skips re-reading ``info.txt``).

    Returns:
        ``(len(indices), size, size) uint8`` patches in the order of ``indices``.

    Example:
        >>> import tempfile, numpy as np, cv2, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "info.txt").write_text("0 0\\n0 0\\n1 0\\n")
        >>> sheet = np.zeros((1024, 1024), np.uint8); sheet[:64, 64:128] = 200
        >>> _ = cv2.imwrite(str(d / "patches0000.bmp"), sheet)
        >>> read_patches(d, [1, 0]).mean(axis=(1, 2)).tolist()
        [200.0, 0.0]
    """
    import cv2
    from tqdm.auto import tqdm

    root = Path(root)
    n = len(read_info(root)) if num_patches is None else int(num_patches)
    idx = np.arange(n) if indices is None else np.asarray(indices, np.int64).ravel()
    if len(idx) and (idx.min() < 0 or idx.max() >= n):
        raise DataError(root, f"patch id {int(idx.max() if idx.max() >= n else idx.min())} out of range ({n} patches)")
    sheets = _sheets(root, n)
    p = size or BROWN_PATCH_SIZE
    out = np.empty((len(idx), p, p), np.uint8)
    sheet_of = idx // PATCHES_PER_SHEET
    order = np.argsort(sheet_of, kind="stable")
    bounds = np.searchsorted(sheet_of[order], np.arange(len(sheets) + 1))
    for k in tqdm(range(len(sheets)), desc="reading sheets", unit="sheet", disable=not progress, leave=False):
        sel = order[bounds[k] : bounds[k + 1]]
        if not len(sel):
            continue
        img = cv2.imread(str(sheets[k]), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise DataError(sheets[k], "cannot decode patch sheet")
        if img.shape != (GRID * BROWN_PATCH_SIZE, GRID * BROWN_PATCH_SIZE):
            raise DataError(sheets[k], f"patch sheet is {img.shape[1]}x{img.shape[0]}, expected 1024x1024")
        # (16, 64, 16, 64) -> (256, 64, 64): cell r*16+c = img[64r:64r+64, 64c:64c+64]
        cells = (
            img.reshape(GRID, BROWN_PATCH_SIZE, GRID, BROWN_PATCH_SIZE)
            .transpose(0, 2, 1, 3)
            .reshape(PATCHES_PER_SHEET, BROWN_PATCH_SIZE, BROWN_PATCH_SIZE)
        )
        got = cells[idx[sel] % PATCHES_PER_SHEET]
        if p != BROWN_PATCH_SIZE:
            got = np.stack([cv2.resize(g, (p, p), interpolation=cv2.INTER_AREA) for g in got])
        out[sel] = got
    return out


class BrownSubset:
    """One Brown subset folder: point ids, optional image ids and lazily read patches.

    Args:
        root: the subset folder, or its parent when ``subset`` names it (``DIR/liberty``).
        subset: ``liberty``, ``notredame``, ``yosemite`` (or any sub-folder name); ``None``: ``root`` itself.
    """

    def __init__(self, root, subset: str | None = None):
        root = Path(root)
        if subset and (root / subset).is_dir():
            root = root / subset
        elif subset and root.name != subset and not (root / "info.txt").is_file():
            raise DataError(root / subset, f"Brown subset folder {subset!r} not found")
        if not root.is_dir():
            raise DataError(root, "Brown data folder does not exist")
        self.root = root
        self.name = subset or root.name
        self.point_ids = read_info(root)
        self.image_ids = read_interest(root)
        _sheets(root, len(self.point_ids))  # fail now, naming the first missing sheet

    def __len__(self) -> int:
        return len(self.point_ids)

    def pairs(self, name: str = TEST_PAIRS) -> np.ndarray:
        """``(M, 3)`` pairs of a match file of this subset (default: the standard 100k test pairs)."""
        return read_matches(self.root / name, self.point_ids)

    def patches(self, indices=None, size: int | None = None, progress: bool = False) -> np.ndarray:
        return read_patches(self.root, indices, size, progress, num_patches=len(self.point_ids))


def open_brown(root, subset: str | None = None) -> BrownSubset:
    """Open a Brown subset (see :class:`BrownSubset`); errors are :class:`DataError` naming the file."""
    return BrownSubset(root, subset)


def brown_tracks(
    root,
    size: int = 32,
    subset: str | None = None,
    min_patches: int = 2,
    seed: int = 0,
    holdout: float = 0.0,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Training tracks of a Brown subset: 3-D points with ``>= min_patches`` patches laid on 16 view slots.

    Args:
        root: subset folder (or its parent with ``subset``).
        size: patch size of the tracks.
        subset: subset name (see :class:`BrownSubset`).
        min_patches: minimum patches per point (>= 2).
        seed: seed of the slot layout and of the held-out draw.
        holdout: fraction of points held out as validation tracks (0: none).
        progress: progress bar while reading sheets.

    Returns:
        ``(train, held_out)``: ``(T, 16, size, size) uint8`` tracks and the held-out tracks (``None`` when
        ``holdout`` is 0). See the module docstring for the slot layout.

    Shape:
        - train: :math:`(T, 16, P, P)`, ``T`` = number of points kept minus the held-out ones.
    """
    if min_patches < 2:
        raise ValueError(f"min_patches must be >= 2, got {min_patches}")
    ds = BrownSubset(root, subset)
    rng = np.random.default_rng(seed)
    order = np.argsort(ds.point_ids, kind="stable")
    uniq, start, count = np.unique(ds.point_ids[order], return_index=True, return_counts=True)
    keep = np.nonzero(count >= min_patches)[0]
    if len(keep) < 2:
        raise DataError(ds.root / "info.txt", f"only {len(keep)} 3-D points have >= {min_patches} patches")
    slots = np.empty((len(keep), 16), np.int64)
    for t, k in enumerate(keep):
        members = order[start[k] : start[k] + count[k]]
        if len(members) >= 16:
            slots[t] = rng.choice(members, 16, replace=False)
        else:
            slots[t] = np.resize(rng.permutation(members), 16)  # cyclic repeat
    patches = ds.patches(np.unique(slots), size=size, progress=progress)
    lookup = np.searchsorted(np.unique(slots), slots)
    held = None
    if holdout > 0:
        n_held = max(1, int(round(holdout * len(keep))))
        perm = rng.permutation(len(keep))
        held_idx, train_idx = np.sort(perm[:n_held]), np.sort(perm[n_held:])
        held = patches[lookup[held_idx]]
        lookup = lookup[train_idx]
    return patches[lookup], held
