"""Reading HPatches-family datasets.

Layout (``hpatches-release``): one folder per sequence (``i_*`` illumination, ``v_*`` viewpoint), each
holding 16 greyscale PNGs -- ``ref.png``, ``e1..e5.png``, ``h1..h5.png``, ``t1..t5.png`` -- in which the
patches (65x65 in HPatches, 32x32 in N-HPatches) are stacked vertically. Patch ``i`` of every image of a
sequence shows the same scene point: the 16 patches form one *correspondence track*. N-HPatches also has a
``<type>_noise.png`` noisy twin of every image.

In memory a sequence is one ``uint8`` array of shape ``(N, 16, P, P)`` (track-major), so the full dataset
resized to 32x32 (about 2.5 M patches) takes about 2.5 GB.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator
from collections.abc import Sequence as Seq
from pathlib import Path

import numpy as np

from ..layout import (  # noqa: F401  (re-exported: the public names of this module since v0.1)
    HPATCHES_PATCH_SIZE,
    NHPATCHES_PATCH_SIZE,
    NOISE_SUFFIX,
    TYPE_INDEX,
    TYPES,
    VARIANTS,
    sequence_kind,
    type_index,
)
from .errors import DataError
from .sequences import (  # noqa: F401  (re-exported: the public names of this module since v0.1)
    Sequence,
    default_workers,
    find_sequence_dirs,
    is_sequence_dir,
    iter_load_sequences,
    load_sequence,
    png_size,
    read_patch_image,
    resize_patches,
    write_patch_image,
)
from .splits import split_sequences


class HPatchesDataset:
    """An ordered collection of :class:`Sequence` objects."""

    def __init__(self, sequences: Iterable[Sequence], root=None):
        self.sequences: OrderedDict[str, Sequence] = OrderedDict((s.name, s) for s in sequences)
        self.root = str(root) if root is not None else None
        sizes = {s.patch_size for s in self.sequences.values()}
        if len(sizes) > 1:
            raise DataError(root, f"sequences have different patch sizes: {sorted(sizes)}")

    # -- container protocol -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.sequences)

    def __iter__(self) -> Iterator[Sequence]:
        return iter(self.sequences.values())

    def __getitem__(self, name: str) -> Sequence:
        try:
            return self.sequences[name]
        except KeyError:
            raise KeyError(f"sequence {name!r} is not in the dataset {self.root or ''}") from None

    def __contains__(self, name) -> bool:
        return name in self.sequences

    @property
    def names(self) -> list[str]:
        return list(self.sequences)

    @property
    def patch_size(self) -> int | None:
        for s in self.sequences.values():
            return s.patch_size
        return None

    @property
    def has_noise(self) -> bool:
        return bool(self.sequences) and all(s.noisy is not None for s in self.sequences.values())

    @property
    def num_tracks(self) -> int:
        return sum(s.num_patches for s in self.sequences.values())

    def subset(self, names: Seq[str]) -> HPatchesDataset:
        """The sequences in ``names`` (in that order); unknown names raise naming the sequence."""
        unknown = [n for n in names if n not in self.sequences]
        if unknown:
            raise DataError(
                self.root, f"unknown sequences: {', '.join(unknown[:10])}{' ...' if len(unknown) > 10 else ''}"
            )
        return HPatchesDataset([self.sequences[n] for n in names], root=self.root)

    def split(self, name: str = "full", subset: str = "test", splits_file=None) -> HPatchesDataset:
        """The sequences of an official split (see :func:`hpatches_kit.data.splits.split_sequences`)."""
        return self.subset(split_sequences(name, self.names, subset=subset, splits_file=splits_file, root=self.root))

    def ref_patches(self, names: Seq[str] | None = None) -> dict[str, np.ndarray]:
        """``{name: (N, P, P) uint8}``: the ``ref`` patches of the sequences (views, nothing copied)."""
        return {n: self[n].tracks[:, 0] for n in (self.names if names is None else names)}

    def all_tracks(self, noisy: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """All tracks concatenated: ``(T, 16, P, P) uint8`` and the sequence index of each track."""
        arrs = [(s.noisy if noisy else s.tracks) for s in self.sequences.values()]
        if noisy and any(a is None for a in arrs):
            raise DataError(self.root, "dataset has no noisy images")
        seq_ids = (
            np.concatenate([np.full(a.shape[0], i, np.int32) for i, a in enumerate(arrs)])
            if arrs
            else np.zeros(0, np.int32)
        )
        return (np.concatenate(arrs) if arrs else np.zeros((0, len(TYPES), 0, 0), np.uint8)), seq_ids

    def summary(self) -> dict:
        kinds = {"illum": 0, "view": 0, "unknown": 0}
        for s in self.sequences.values():
            kinds[s.kind] += 1
        return {
            "root": self.root,
            "sequences": len(self),
            "illum_sequences": kinds["illum"],
            "view_sequences": kinds["view"],
            "tracks": self.num_tracks,
            "patches": self.num_tracks * len(TYPES),
            "patch_size": self.patch_size,
            "noisy": self.has_noise,
        }

    def __repr__(self) -> str:
        s = self.summary()
        return f"HPatchesDataset({s['sequences']} sequences, {s['tracks']} tracks, {s['patch_size']}px, root={self.root!r})"


def select_sequence_dirs(root, split=None, subset: str = "test", splits_file=None, sequences=None) -> list[Path]:
    """The sequence folders under ``root`` chosen by an official ``split``/``subset`` and/or explicit
    ``sequences`` names (in that order); unknown names raise a :class:`DataError` naming them."""
    dirs = find_sequence_dirs(root)
    if split is not None:
        keep = set(split_sequences(split, [d.name for d in dirs], subset=subset, splits_file=splits_file, root=root))
        dirs = [d for d in dirs if d.name in keep]
    if sequences is not None:
        by_name = {d.name: d for d in dirs}
        unknown = [n for n in sequences if n not in by_name]
        if unknown:
            raise DataError(root, f"unknown sequences: {', '.join(unknown)}")
        dirs = [by_name[n] for n in sequences]
    return dirs


#: hooks ``f(root, **load_dataset options) -> HPatchesDataset | None`` that :func:`load_dataset` asks first
#: (:mod:`.formats` installs the registry's: this module stays below it, no import cycle)
DATASET_OPENERS: list = []


def load_dataset(
    root=None,
    sequences: Seq[str] | None = None,
    split: str | None = None,
    subset: str = "test",
    splits_file=None,
    size: int | None = None,
    noise: bool | None = None,
    progress: bool = True,
    workers: int | None = None,
    cache: str | None = "off",
) -> HPatchesDataset:
    """Load an HPatches-format dataset, or any data a registered reader opens (:mod:`.formats`: a packed
    cache folder, a format registered from outside the package).

    ``root=None`` uses the embedded default dataset (built on first use). ``split``/``subset`` select
    sequences of an official split; ``sequences`` names them explicitly. ``size`` resizes every patch.
    ``workers``: threads decoding sequences in parallel (``None``: :func:`default_workers`; 1: serial).

    Args:
        root: dataset folder (``hpatches-release`` layout: one folder per sequence with ``ref.png``,
            ``e1..e5``, ``h1..h5``, ``t1..t5``), or ``None`` for the embedded default.
        sequences: load only these sequence names.
        split: ``"a"``/``"b"``/``"c"`` (official splits; need a splits file), ``"illum"``, ``"view"``,
            ``"full"``, or ``None`` for every sequence.
        subset: ``"test"`` or ``"train"`` sequences of ``split``.
        splits_file: the official ``splits.json`` (default: the one the dataset carries, if any).
        size: resize every patch to ``size x size`` (e.g. 32 for N-HPatches-size models).
        noise: also load the ``*_noise.png`` twins (``None``: when present).
        progress: show a progress bar.
        workers: decoding threads.
        cache: ``"auto"`` reads HPatches folders through their packed cache (:mod:`.cache`: built on first
            use, memory-mapped afterwards), ``None`` follows ``$HPATCHES_KIT_CACHE`` (default auto), ``"off"``
            (the default of this function) decodes the PNGs.

    Returns:
        An :class:`HPatchesDataset`: its sequences hold ``tracks`` of shape ``(N, 16, P, P)`` uint8.

    Raises:
        DataError: a missing folder, a corrupt or missing PNG, a wrong patch width, missing image types, or
            images of one sequence with different patch counts (the message names the file).

    Shape:
        - ``dataset[name].tracks``: :math:`(N, 16, P, P)`, patch ``i`` of every image type ``TYPES[j]`` at
          ``[i, j]``.

    Examples:
        >>> import tempfile, pathlib, cv2, numpy as np
        >>> root = pathlib.Path(tempfile.mkdtemp()) / "i_demo"
        >>> root.mkdir()
        >>> for t in TYPES:  # 3 patches of 65x65 stacked vertically in each image
        ...     _ = cv2.imwrite(str(root / f"{t}.png"), np.full((3 * 65, 65), 128, np.uint8))
        >>> ds = load_dataset(root.parent, progress=False)
        >>> ds.names, ds["i_demo"].tracks.shape
        (['i_demo'], (3, 16, 65, 65))
    """
    from tqdm.auto import tqdm

    if root is None:
        from .embedded import ensure_default

        root = ensure_default(progress=progress)
    for opener in DATASET_OPENERS:  # data/formats.py: packed caches, registered formats, the packed-cache path
        ds = opener(
            root,
            sequences=sequences,
            split=split,
            subset=subset,
            splits_file=splits_file,
            size=size,
            noise=noise,
            progress=progress,
            cache=cache,
        )
        if ds is not None:
            return ds
    dirs = select_sequence_dirs(root, split=split, subset=subset, splits_file=splits_file, sequences=sequences)
    it = iter_load_sequences(dirs, size=size, noise=noise, workers=workers)
    it = tqdm(
        it, total=len(dirs), desc="loading sequences", unit="seq", disable=not progress or len(dirs) < 2, leave=False
    )
    return HPatchesDataset(list(it), root=root)


class DatasetIndex:
    """The sequence folders of a dataset, nothing decoded: names, folders, patch counts from the PNG
    headers, and :meth:`ref_patches` decoding only the ``ref.png`` images (in parallel) when asked.

    What an evaluation of precomputed descriptors needs from a dataset: which sequences exist and how many
    patches each holds; task generation also needs the ``ref`` patches (the official std filter)."""

    def __init__(self, dirs: Iterable, root=None):
        self.dirs: OrderedDict[str, Path] = OrderedDict((Path(d).name, Path(d)) for d in dirs)
        self.root = str(root) if root is not None else None
        self._refs: dict[str, np.ndarray] = {}

    @property
    def names(self) -> list[str]:
        return list(self.dirs)

    def __len__(self) -> int:
        return len(self.dirs)

    def __contains__(self, name) -> bool:
        return name in self.dirs

    def num_patches(self, name: str) -> int:
        """Patches per image of a sequence, from ``ref.png``'s header (height / width)."""
        f = self.dirs[name] / "ref.png"
        if not f.is_file():
            raise DataError(self.dirs[name], "sequence is missing image types: ref")
        w, h = png_size(f)
        if w == 0 or h % w:
            raise DataError(f, f"image height {h} is not a multiple of the patch size {w}")
        return h // w

    def ref_patches(self, names: Seq[str] | None = None, workers: int | None = None) -> dict[str, np.ndarray]:
        """``{name: (N, P, P) uint8}`` ``ref`` patches, decoded once (in threads) and kept."""
        from concurrent.futures import ThreadPoolExecutor

        names = self.names if names is None else list(names)
        todo = [n for n in names if n not in self._refs]
        workers = default_workers() if workers is None else max(1, int(workers))
        with ThreadPoolExecutor(max_workers=workers) as ex:
            for n, arr in zip(todo, ex.map(lambda n: read_patch_image(self.dirs[n] / "ref.png"), todo)):
                self._refs[n] = arr
        return {n: self._refs[n] for n in names}

    def __repr__(self) -> str:
        return f"DatasetIndex({len(self)} sequences, root={self.root!r})"


def index_dataset(
    root=None,
    sequences: Seq[str] | None = None,
    split: str | None = None,
    subset: str = "test",
    splits_file=None,
    progress: bool = True,
) -> DatasetIndex:
    """A :class:`DatasetIndex` of a dataset folder (``None``: the embedded default), selected as by
    :func:`load_dataset`, without decoding any image."""
    if root is None:
        from .embedded import ensure_default

        root = ensure_default(progress=progress)
    dirs = select_sequence_dirs(root, split=split, subset=subset, splits_file=splits_file, sequences=sequences)
    return DatasetIndex(dirs, root=root)
