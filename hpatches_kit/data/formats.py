"""Data-format readers: one registry that training and evaluation share.

A *format* is a name plus two functions: ``detect(path) -> bool`` (is ``path`` data of this format?) and
``open(path, **options) -> TrackSource`` (a common source of 16-view correspondence tracks). ``hpatches-train``
(``--format NAME``, default: detected) and evaluation (:func:`hpatches_kit.data.load_dataset`) open every
dataset through it, so a new format is one function plus one :func:`register` call -- also from a module
outside the package (import it first, e.g. with ``--import MODULE``), then ``--format NAME`` takes it. The
registry (:data:`REGISTRY`) is the toolkit's one registry shape (:class:`hpatches_kit.registry.Registry`):
``register`` / ``unregister`` / ``get`` / ``names`` / ``entries``, entry-point group ``hpatches_kit.formats``.

Registered here, detected in this order:

===============  ==========================================================================================
``packed``       a packed cache folder (``manifest.json``; :mod:`hpatches_kit.data.pack`), memory-mapped
``n-hpatches``   HPatches-format sequences whose every image has a ``*_noise.png`` twin (N-HPatches)
``hpatches``     ``hpatches-release``-format sequence folders (``i_*``/``v_*`` with 16 PNGs); read through
                 the packed cache (:mod:`hpatches_kit.data.cache`), built on first use
``brown``        a Brown/UBC PhotoTour subset folder (``info.txt`` + ``patches*.bmp``): 3-D points as tracks
===============  ==========================================================================================

Example:
    >>> from hpatches_kit.data import formats
    >>> def detect(path):
    ...     return (Path(path) / "tracks.npz").is_file()
    >>> @formats.register("npz", detect=detect)
    ... def open_npz(path, **options):
    ...     z = np.load(Path(path) / "tracks.npz")
    ...     return formats.ArraySource(path, "npz", {n: z[n] for n in z.files})
    >>> formats.names()
    ('packed', 'n-hpatches', 'hpatches', 'brown', 'npz')
    >>> formats.unregister("npz")
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..registry import Registry
from .errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataFormat:
    """A registered format: ``detect(path) -> bool`` and ``open(path, **options) -> TrackSource``.

    Attributes:
        name: the ``--format`` name.
        detect: ``detect(path) -> bool``; must not raise for other data.
        open: ``open(path, *, size, noisy, cache, progress, seed, rows) -> TrackSource`` (extra keywords ignored
            with ``**options``).
        description: one line for listings.
        embedded: a run without ``--data`` reads the embedded HPatches dataset (N-HPatches with ``--noisy``) in
            this format; ``False``: the format needs ``--data``.
        unit: what one track of this data is, in the training log (``"3-D points"`` for Brown).
    """

    name: str
    detect: Callable
    open: Callable
    description: str = ""
    embedded: bool = False
    unit: str = "tracks"


def _make(name: str, open: Callable, *, detect: Callable, description: str = "", **fields) -> DataFormat:
    """The :class:`DataFormat` of the reader ``open`` (``detect`` and the other fields by keyword)."""
    if not callable(open) or not callable(detect):
        raise TypeError(f"data format {name!r}: open and detect must be callable")
    return DataFormat(name, detect, open, description or (open.__doc__ or "").strip().split("\n")[0], **fields)


def _never(path) -> bool:
    return False


def _reference(ref: str, obj) -> DataFormat:
    """``--format MODULE:FUNCTION``: a :class:`DataFormat`, or a reader ``open(path, **options)`` (never detected)."""
    if isinstance(obj, DataFormat):
        return obj
    return _make(ref, obj, detect=_never)


def detect_format(path) -> str | None:
    """The first registered format whose ``detect`` accepts ``path`` (``None``: none does)."""
    for fmt in REGISTRY.entries():
        try:
            if fmt.detect(path):
                return fmt.name
        except (OSError, ValueError, DataError):
            continue
    return None


def open_source(path, format: str = "auto", **options) -> TrackSource:
    """Open ``path`` with the reader of ``format`` (``"auto"``: :func:`detect_format`).

    Args:
        path: the data.
        format: a registered name or ``"auto"``.
        options: ``size`` (patch size of the tracks), ``noisy``, ``cache`` (``"auto"``/``"off"``),
            ``progress``, ``seed``; passed to the reader.

    Returns:
        A :class:`TrackSource`.

    Raises:
        DataError: no reader recognises ``path`` (the formats tried are named).
    """
    if format == "auto":
        if path is not None and not Path(path).exists():
            raise DataError(path, "data folder does not exist")
        format = detect_format(path)
        if format is None:
            raise DataError(
                path,
                f"no data-format reader recognises this (tried {', '.join(REGISTRY.names())}); "
                "expected HPatches sequences (i_*/, v_*/ with ref.png ...), a packed cache, "
                "a Brown subset, or a format registered with formats.register",
            )
    return REGISTRY.get(format).open(path, **options)


# -- the common track source ----------------------------------------------------------------------------------


class TrackSource:
    """What a reader returns: 16-view tracks, by sequence when the data has sequences.

    Attributes:
        root: the data's folder (what runs record and the final evaluation reads).
        format: the reader's name.
        names: the sequences, in order (empty for data without sequences, e.g. Brown).
        splits_root: where to look for a ``splits.json`` (default ``root``).
    """

    root: Path
    format: str
    names: list
    splits_root: Path | None = None

    def tracks(self, names=None, noisy: bool = False):
        """``(T, 16, P, P) uint8`` tracks of the sequences ``names`` (default all), in order: an ndarray or an
        array-like that streams (:class:`~hpatches_kit.data.cache.StreamedTracks`)."""
        raise NotImplementedError

    def dataset(self, names=None):
        """An :class:`~hpatches_kit.data.hpatches.HPatchesDataset` of the sequences ``names`` (evaluation)."""
        raise NotImplementedError

    def holdout(self, fraction: float, seed: int = 0):
        """``(train, held_out)`` tracks for data without sequences (held-out ``None`` when ``fraction`` is 0)."""
        raise DataError(self.root, f"{self.format} data has sequences; split it by sequence names")


class ArraySource(TrackSource):
    """Tracks held in memory, by sequence: ``{name: (N, 16, P, P) uint8}`` (optional noisy twins).

    Example:
        >>> src = ArraySource("mine", "npz", {"i_a": np.zeros((4, 16, 32, 32), np.uint8)})
        >>> src.tracks().shape
        (4, 16, 32, 32)
    """

    def __init__(self, root, format: str, sequences: dict, noisy: dict | None = None, size: int | None = None):
        from .hpatches import resize_patches

        self.root, self.format = Path(root), format
        self.names = list(sequences)
        fix = (lambda a: resize_patches(np.asarray(a, np.uint8), size)) if size else (lambda a: np.asarray(a, np.uint8))
        self._seq = {n: fix(a) for n, a in sequences.items()}
        self._noisy = {n: fix(a) for n, a in noisy.items()} if noisy else None
        for n, a in self._seq.items():
            if a.ndim != 4 or a.shape[1] != 16 or a.shape[2] != a.shape[3]:
                raise DataError(self.root, f"sequence {n}: expected (N, 16, P, P) tracks, got {a.shape}")

    def tracks(self, names=None, noisy: bool = False):
        src = self._noisy if noisy else self._seq
        if src is None:
            raise DataError(self.root, "this data has no noisy twins")
        names = self.names if names is None else names
        return np.concatenate([src[n] for n in names]) if names else np.zeros((0, 16, 1, 1), np.uint8)

    def dataset(self, names=None):
        from .hpatches import HPatchesDataset, Sequence

        names = self.names if names is None else names
        return HPatchesDataset(
            [
                Sequence(
                    name=n,
                    tracks=self._seq[n],
                    noisy=None if self._noisy is None else self._noisy[n],
                    path=str(self.root),
                )
                for n in names
            ],
            root=self.root,
        )


class PackedSource(TrackSource):
    """A packed cache, memory-mapped; training streams its tracks from the row store."""

    def __init__(self, path, root=None, format: str = "packed"):
        from .cache import packed_source_root
        from .packed import load_packed

        self.packed = load_packed(path, verify="quick")
        self.format = format
        self.names = list(self.packed.seq_names)
        src = packed_source_root(self.packed)
        self.root = Path(root) if root is not None else Path(path)
        self.splits_root = src or Path(path)

    def _rows(self, names) -> np.ndarray:
        if names is None:
            return np.arange(self.packed.num_tracks, dtype=np.int64)
        unknown = [n for n in names if n not in self.names]
        if unknown:
            raise DataError(self.packed.path, f"unknown sequences: {', '.join(unknown[:5])}")
        return (
            np.concatenate([np.arange(sl.start, sl.stop) for sl in map(self.packed.sequence_slice, names)]).astype(
                np.int64
            )
            if names
            else np.zeros(0, np.int64)
        )

    def tracks(self, names=None, noisy: bool = False):
        from .cache import StreamedTracks

        return StreamedTracks(self.packed, self._rows(names), noisy=noisy)

    def dataset(self, names=None):
        ds = self.packed.to_dataset()
        return ds if names is None else ds.subset(list(names))


class BrownSource(TrackSource):
    """A Brown/UBC PhotoTour subset: 3-D points laid on 16 view slots (:func:`~hpatches_kit.data.brown.brown_tracks`)."""

    def __init__(self, path, size: int = 32, progress: bool = False):
        self.root, self.format, self.names, self.size, self.progress = Path(path), "brown", [], size, progress

    def holdout(self, fraction: float, seed: int = 0):
        from .brown import brown_tracks

        return brown_tracks(self.root, size=self.size, seed=seed, holdout=fraction, progress=self.progress)

    def tracks(self, names=None, noisy: bool = False):
        if noisy:
            raise DataError(self.root, "Brown data has no noisy twins")
        return self.holdout(0.0)[0]


# -- the readers -----------------------------------------------------------------------------------------------


def _is_hpatches(path) -> bool:
    from .hpatches import find_sequence_dirs

    return path is not None and Path(path).is_dir() and bool(find_sequence_dirs(path))


def _is_nhpatches(path) -> bool:
    from ..layout import NOISE_SUFFIX, TYPES
    from .hpatches import find_sequence_dirs

    if not _is_hpatches(path):
        return False
    dirs = find_sequence_dirs(path)
    return all((d / f"{t}{NOISE_SUFFIX}.png").is_file() for d in dirs for t in TYPES)


def _is_packed(path) -> bool:
    from .cache import is_packed_cache

    return path is not None and is_packed_cache(path)


def _is_brown(path) -> bool:
    return path is not None and (Path(path) / "info.txt").is_file() and any(Path(path).glob("patches*.bmp"))


def open_packed(path, size: int | None = None, **options) -> PackedSource:
    """A packed cache folder, memory-mapped (``size`` must be its patch size or ``None``)."""
    src = PackedSource(path)
    if size is not None and int(size) != src.packed.patch_size:
        raise DataError(
            path,
            f"packed cache holds {src.packed.patch_size}x{src.packed.patch_size} patches, "
            f"{size}x{size} asked (use --patch-size {src.packed.patch_size}, or pass the "
            "dataset folder: its cache at that size is built on first use)",
        )
    return src


def open_hpatches(
    path,
    size: int | None = None,
    cache: str | None = None,
    progress: bool = True,
    rows: bool = False,
    format: str = "hpatches",
    **options,
) -> TrackSource:
    """HPatches-format sequence folders, through their packed cache at ``size`` (built on first use; see
    :mod:`hpatches_kit.data.cache`), or decoded into memory with ``cache="off"``. ``rows``: the cache carries
    the row store training streams from."""
    from .cache import cache_mode, ensure_packed

    if cache_mode(cache) == "auto":
        return PackedSource(ensure_packed(path, size=size, rows=rows, progress=progress), root=path, format=format)
    from .hpatches import find_sequence_dirs, iter_load_sequences

    dirs = find_sequence_dirs(path)
    seqs = list(iter_load_sequences(dirs, size=size, noise=None))
    return ArraySource(
        path,
        format,
        {s.name: s.tracks for s in seqs},
        noisy={s.name: s.noisy for s in seqs} if all(s.noisy is not None for s in seqs) else None,
    )


def open_nhpatches(path, **options) -> TrackSource:
    """N-HPatches: HPatches-format sequences with ``*_noise.png`` twins (read as ``hpatches``)."""
    return open_hpatches(path, **{**options, "format": "n-hpatches"})


def open_brown_source(path, size: int = 32, progress: bool = False, **options) -> BrownSource:
    """A Brown/UBC PhotoTour subset folder."""
    return BrownSource(path, size=size or 32, progress=progress)


#: every data-format reader by name, in detection order (:class:`~hpatches_kit.registry.Registry` of
#: :class:`DataFormat`): ``register(name, open, detect=, description=, embedded=, unit=, first=False)``, also a
#: decorator of ``open``; ``--format MODULE:FUNCTION`` names a reader ``open`` directly (never detected)
REGISTRY = Registry(
    "data format",
    builtin={
        "packed": _make("packed", open_packed, detect=_is_packed),
        "n-hpatches": _make("n-hpatches", open_nhpatches, detect=_is_nhpatches, embedded=True),
        "hpatches": _make("hpatches", open_hpatches, detect=_is_hpatches, embedded=True),
        "brown": _make(
            "brown",
            open_brown_source,
            detect=_is_brown,
            unit="3-D points",
            description="a Brown/UBC PhotoTour subset folder, e.g. .../liberty",
        ),
    },
    group="hpatches_kit.formats",
    make=_make,
    entry_type=DataFormat,
    reference=_reference,
    flag="--format",
)
register, unregister, get, names, entries = REGISTRY.verbs()


def _open_for_load_dataset(
    root, sequences=None, split=None, subset="test", splits_file=None, size=None, noise=None, progress=True, cache="off"
):
    """:func:`~hpatches_kit.data.hpatches.load_dataset` through the registry: a packed cache or any registered
    non-HPatches format always, an HPatches folder through its packed cache when ``cache`` resolves to auto;
    ``None`` lets ``load_dataset`` decode the PNGs."""
    from .cache import cache_mode
    from .hpatches import HPatchesDataset, Sequence, resize_patches
    from .splits import split_sequences

    fmt = detect_format(root) if root is not None and Path(root).is_dir() else None
    if fmt is None or (fmt in ("hpatches", "n-hpatches") and cache_mode(cache) != "auto"):
        return None
    if split is not None and fmt in ("hpatches", "n-hpatches"):
        # a bad split (or a split file naming missing sequences) is refused before the cache is built
        from .hpatches import find_sequence_dirs

        split_sequences(
            split, [d.name for d in find_sequence_dirs(root)], subset=subset, splits_file=splits_file, root=root
        )
    src = REGISTRY.get(fmt).open(root, size=None if fmt == "packed" else size, cache=cache, progress=progress)
    if not src.names:
        raise DataError(root, f"{fmt} data has no sequences to evaluate on")
    names = list(src.names)
    if split is not None:
        keep = set(
            split_sequences(
                split, names, subset=subset, splits_file=splits_file, root=getattr(src, "splits_root", None) or root
            )
        )
        names = [n for n in names if n in keep]
    if sequences is not None:
        unknown = [n for n in sequences if n not in names]
        if unknown:
            raise DataError(root, f"unknown sequences: {', '.join(unknown)}")
        names = list(sequences)
    ds = src.dataset(names)
    if noise and not ds.has_noise:
        raise DataError(root, "noise=True but the dataset has no noisy images")
    if size is not None and ds.patch_size != size:
        ds = HPatchesDataset(
            [
                Sequence(
                    name=s.name,
                    tracks=resize_patches(np.asarray(s.tracks), size),
                    noisy=None if s.noisy is None else resize_patches(np.asarray(s.noisy), size),
                    path=s.path,
                )
                for s in ds
            ],
            root=ds.root,
        )
    return ds


def _install():
    from . import hpatches

    if _open_for_load_dataset not in hpatches.DATASET_OPENERS:
        hpatches.DATASET_OPENERS.append(_open_for_load_dataset)


_install()
