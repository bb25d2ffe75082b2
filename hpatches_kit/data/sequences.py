"""Sequences on disk: the stacked-patch PNGs of one sequence folder, and loading them.

The low level of :mod:`hpatches_kit.data.hpatches`: reading and writing one stacked-patch image, resizing
patches, finding and loading sequence folders (also in threads). Imports nothing above it in ``data/``, so
the synthetic-dataset builder can use it without a cycle.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..io import atomic_write_png
from ..layout import NOISE_SUFFIX, TYPES, sequence_kind, type_index
from .errors import DataError
from .fsio import read_image


def read_patch_image(path, patch_size: int | None = None) -> np.ndarray:
    """Read one stacked-patch PNG and return ``(N, P, P) uint8``.

    ``patch_size`` is the expected patch width; ``None`` takes the image width. Raises :class:`DataError`
    naming the file when it is missing, cannot be decoded, or its shape is not a vertical stack of squares.
    """
    path = Path(path)
    img = read_image(path, cv2.IMREAD_UNCHANGED)
    if img.ndim == 3:
        if img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY)
        else:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    if img.dtype != np.uint8:
        if img.dtype == np.uint16:
            img = (img // 257).astype(np.uint8)
        else:
            raise DataError(path, f"unsupported pixel type {img.dtype}")
    h, w = img.shape
    p = w if patch_size is None else int(patch_size)
    if w != p:
        raise DataError(path, f"patch width is {w} px, expected {p}")
    if h == 0 or h % p:
        raise DataError(path, f"image height {h} is not a multiple of the patch size {p}")
    return np.ascontiguousarray(img.reshape(h // p, p, p))


def resize_patches(patches: np.ndarray, size: int) -> np.ndarray:
    """Resize ``(..., P, P)`` uint8 patches to ``size x size`` (area interpolation, as for N-HPatches)."""
    p = patches.shape[-1]
    if p == size:
        return patches
    flat = patches.reshape(-1, p, p)
    interp = cv2.INTER_AREA if size < p else cv2.INTER_LINEAR
    out = np.empty((flat.shape[0], size, size), np.uint8)
    if interp == cv2.INTER_AREA:
        # Patches are stacked vertically exactly as on disk; resizing them in one call is much faster than a
        # loop. Area cells of a downscale end exactly on patch boundaries, so no row mixes two patches.
        chunk = 4096
        for s in range(0, flat.shape[0], chunk):
            block = flat[s : s + chunk]
            tall = block.reshape(-1, p)
            r = cv2.resize(tall, (size, size * block.shape[0]), interpolation=interp)
            out[s : s + chunk] = r.reshape(-1, size, size)
    else:
        # Linear upscaling reads the neighbouring source row, so stacked patches would bleed into each other
        # at their boundaries: resize the patches as the channels of one image instead (128 at a time: OpenCV
        # 5 takes no more channels in resize).
        chunk = 128
        for s in range(0, flat.shape[0], chunk):
            block = np.ascontiguousarray(flat[s : s + chunk].transpose(1, 2, 0))
            r = cv2.resize(block, (size, size), interpolation=interp)
            out[s : s + chunk] = r.reshape(size, size, -1).transpose(2, 0, 1)
    return out.reshape(patches.shape[:-2] + (size, size))


def write_patch_image(path, patches: np.ndarray) -> None:
    """Write ``(N, P, P) uint8`` patches as one vertically stacked PNG, atomically."""
    patches = np.asarray(patches)
    if patches.ndim != 3 or patches.shape[1] != patches.shape[2] or patches.dtype != np.uint8:
        raise ValueError(f"expected (N, P, P) uint8 patches, got {patches.shape} {patches.dtype}")
    atomic_write_png(path, patches.reshape(-1, patches.shape[2]))


@dataclass
class Sequence:
    """One HPatches sequence: ``tracks[i, j]`` is patch ``i`` of image type ``TYPES[j]``."""

    name: str
    tracks: np.ndarray  # (N, 16, P, P) uint8
    noisy: np.ndarray | None = None  # same shape: the N-HPatches *_noise twins
    path: str | None = None

    @property
    def kind(self) -> str:
        """``"illum"`` for ``i_*`` sequences, ``"view"`` for ``v_*``."""
        return sequence_kind(self.name)

    @property
    def num_patches(self) -> int:
        return int(self.tracks.shape[0])

    @property
    def patch_size(self) -> int:
        return int(self.tracks.shape[-1])

    def patches(self, t: str, noisy: bool = False) -> np.ndarray:
        """``(N, P, P)`` patches of image type ``t`` (``"ref"``, ``"e1"``, ...)."""
        src = self.noisy if noisy else self.tracks
        if src is None:
            raise DataError(self.path or self.name, "sequence has no noisy (*_noise.png) images")
        return src[:, type_index(t)]


def is_sequence_dir(path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / "ref.png").is_file()


def find_sequence_dirs(root) -> list[Path]:
    """Sequence folders under ``root`` (the root itself, its children, or one level deeper, e.g.
    ``hpatches-release/`` inside a download folder), sorted by name."""
    root = Path(root)
    if not root.exists():
        raise DataError(root, "dataset folder does not exist")
    if is_sequence_dir(root):
        return [root]
    seqs = sorted(p for p in root.iterdir() if p.is_dir() and (p.name.startswith(("i_", "v_")) or is_sequence_dir(p)))
    if not seqs:
        for sub in sorted(p for p in root.iterdir() if p.is_dir()):
            inner = sorted(
                q for q in sub.iterdir() if q.is_dir() and (q.name.startswith(("i_", "v_")) or is_sequence_dir(q))
            )
            if inner:
                return inner
        raise DataError(
            root, "no HPatches sequences found (expected folders like i_*/ or v_* with ref.png, e1.png, ...)"
        )
    return seqs


def load_sequence(path, size: int | None = None, noise: bool | None = None, patch_size: int | None = None) -> Sequence:
    """Load one sequence folder.

    ``size`` resizes patches (e.g. 32 for the HPatches -> N-HPatches-size convention). ``noise``: ``True``
    requires the ``*_noise.png`` twins, ``None`` loads them when present, ``False`` ignores them. Every
    type file must exist and hold the same number of patches; errors name the file.
    """
    path = Path(path)
    if not path.is_dir():
        raise DataError(path, "sequence folder does not exist")
    missing = [t for t in TYPES if not (path / f"{t}.png").is_file()]
    if missing:
        raise DataError(path, f"sequence is missing image types: {', '.join(missing)}")
    ref = read_patch_image(path / "ref.png", patch_size)
    p = ref.shape[-1]
    n = ref.shape[0]
    has_noise = all((path / f"{t}{NOISE_SUFFIX}.png").is_file() for t in TYPES)
    if noise and not has_noise:
        miss = [f"{t}{NOISE_SUFFIX}.png" for t in TYPES if not (path / f"{t}{NOISE_SUFFIX}.png").is_file()]
        raise DataError(path, f"noisy images missing: {', '.join(miss)}")
    load_noise = has_noise if noise is None else bool(noise)
    out_p = size or p
    tracks = np.empty((n, len(TYPES), out_p, out_p), np.uint8)
    noisy = np.empty_like(tracks) if load_noise else None
    for j, t in enumerate(TYPES):
        for suffix, dst in (("", tracks), (NOISE_SUFFIX, noisy)):
            if dst is None:
                continue
            f = path / f"{t}{suffix}.png"
            arr = ref if (j == 0 and not suffix) else read_patch_image(f, p)
            if arr.shape[0] != n:
                raise DataError(
                    f, f"holds {arr.shape[0]} patches but ref.png holds {n}: type files must have equal patch counts"
                )
            dst[:, j] = resize_patches(arr, out_p)
    return Sequence(name=path.name, tracks=tracks, noisy=noisy, path=str(path))


def png_size(path) -> tuple[int, int]:
    """``(width, height)`` of a PNG from its header, without decoding it (errors name the file)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError as e:
        raise DataError(path, f"cannot read: {e}") from None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise DataError(path, "not a PNG file (bad header)")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def default_workers() -> int:
    """Threads for parallel loading: ``$HPATCHES_LOAD_WORKERS``, else ``min(4, cpu count)``."""
    env = os.environ.get("HPATCHES_LOAD_WORKERS")
    return max(1, int(env)) if env else max(1, min(4, os.cpu_count() or 1))


def iter_load_sequences(
    dirs, size: int | None = None, noise: bool | None = None, workers: int | None = None
) -> Iterator[Sequence]:
    """Yield :func:`load_sequence` of each folder, in order, decoding up to ``workers`` sequences at once in
    threads (OpenCV releases the GIL while decoding/resizing). At most ``2 * workers`` loaded sequences wait
    to be consumed, so memory stays bounded when the consumer streams (as ``pack_dataset`` does)."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    dirs = list(dirs)
    workers = default_workers() if workers is None else max(1, int(workers))
    if workers == 1 or len(dirs) < 2:
        for d in dirs:
            yield load_sequence(d, size=size, noise=noise)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hpatches-load") as ex:
        pending: deque = deque()
        it = iter(dirs)
        try:
            for d in it:
                pending.append(ex.submit(load_sequence, d, size=size, noise=noise))
                if len(pending) >= 2 * workers:
                    break
            while pending:
                seq = pending.popleft().result()  # re-raises the DataError of a bad sequence, in order
                for d in it:
                    pending.append(ex.submit(load_sequence, d, size=size, noise=noise))
                    break
                yield seq
        finally:
            for f in pending:
                f.cancel()
