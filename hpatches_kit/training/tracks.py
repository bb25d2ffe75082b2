"""The training and held-out tracks of a run: HPatches-format sequences split by a split policy, or a
Brown/UBC PhotoTour subset; optionally denoised first.

A track is the 16 views of one patch (``ref, e1..e5, h1..h5, t1..t5``): ``(T, 16, P, P) uint8``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class TrackSplit:
    """Attributes:
    root: the dataset folder.
    train: ``(T, 16, P, P) uint8`` training tracks.
    test: held-out tracks (same layout) or ``None``.
    train_names, test_names: the sequences of each side (empty for Brown data).
    how: a short description of the split, for the log and ``metrics.json``.
    """

    root: Path
    train: np.ndarray
    test: np.ndarray | None
    train_names: list
    test_names: list
    how: str


def load_track_split(
    data=None,
    format: str = "auto",
    split: str = "a",
    splits_file=None,
    size: int = 32,
    noisy: bool = False,
    seed: int = 0,
    cache: str | None = None,
    progress: bool = False,
    denoiser=None,
    stream: bool = True,
) -> TrackSplit:
    """The training and held-out tracks of a run, from any registered data format
    (:mod:`hpatches_kit.data.formats`): what ``hpatches-train`` reads.

    HPatches-format folders are packed on first use (:mod:`hpatches_kit.data.cache`) and the tracks come back
    as :class:`~hpatches_kit.data.cache.StreamedTracks` that the S x K pipeline streams from (nothing decoded
    twice, no table in memory); a packed cache folder is read the same way; other formats give arrays.

    Args:
        data: the data folder (``None``: the embedded default of ``hpatches`` or ``n-hpatches``).
        format: a registered format name, ``"auto"`` (detected) or ``"hpatches"`` (detected among the
            HPatches-family formats: folders, N-HPatches, packed caches).
        split: sequence split (:func:`~hpatches_kit.training.split_policy.train_test_names`); for data
            without sequences (Brown) ``"none"`` holds nothing out, anything else 5% of the points.
        splits_file, size, noisy, seed, progress: as the trainer's flags.
        cache: ``"auto"``/``"off"`` (default ``$HPATCHES_KIT_CACHE`` or auto).
        denoiser: a denoiser (model or path) applied to the tracks (they are then held in memory).
        stream: keep packed tracks streaming (``False``: read them into memory).

    Returns:
        A :class:`TrackSplit`.

    Raises:
        DataError: unreadable or unrecognised data (the path is named).
    """
    from ..data import formats
    from .run import resolve_data
    from .split_policy import train_test_names

    entry = None if format == "auto" else formats.get(format)
    if not data:
        if entry is not None and not entry.embedded:
            raise DataError(None, f"--format {format} needs --data DIR ({entry.description})")
        data = resolve_data(None, "n-hpatches" if noisy else "hpatches")
    # the HPatches family (formats with an embedded default) is detected: folders, N-HPatches twins, packed caches
    fmt = "auto" if entry is None or entry.embedded else format
    src = formats.open_source(
        data, fmt, size=size, noisy=noisy, cache=cache, progress=progress, seed=seed, rows=stream and denoiser is None
    )
    if not src.names:
        train, test = src.holdout(0.0 if split == "none" else 0.05, seed=seed)
        unit = formats.get(src.format).unit if src.format in formats.REGISTRY else "tracks"
        how = f"{src.format}: {len(train)} train / {0 if test is None else len(test)} held-out {unit}"
        log.info("[data] %s: %s", data, how)
        out = TrackSplit(Path(src.root), train, test, [], [], how)
    else:
        train_names, test_names, how = train_test_names(
            src.root, split, splits_file, names=src.names, splits_root=src.splits_root
        )
        log.info("[data] %s: %d train / %d held-out sequences (%s)", data, len(train_names), len(test_names), how)
        train = src.tracks(train_names, noisy=noisy)
        test = src.tracks(test_names, noisy=noisy) if test_names else None
        if not stream:
            train, test = np.asarray(train), None if test is None else np.asarray(test)
        out = TrackSplit(Path(src.root), train, test, list(train_names), list(test_names), how)
    if denoiser:
        out.train = denoise_tracks(np.asarray(out.train), denoiser)
        out.test = denoise_tracks(np.asarray(out.test), denoiser) if out.test is not None else None
    return out


def denoise_tracks(tracks: np.ndarray, denoiser, batch_size: int = 1024) -> np.ndarray:
    """Apply a denoiser to tracks.

    Args:
        tracks: ``(T, 16, P, P) uint8``.
        denoiser: a Keras model or the path of a ``.keras`` file (mapping ``(N, P, P, 1)`` grey levels to
            grey levels).
        batch_size: patches per prediction batch.

    Returns:
        The denoised tracks, rounded and clipped to ``uint8``, same shape.

    Raises:
        DataError: the file does not load, or the denoiser expects another patch size.
    """
    from ..evaluation.describers import check_denoiser
    from ..models.io import load_model as load_model_file

    path = denoiser if isinstance(denoiser, (str, os.PathLike)) else None
    denoiser = load_model_file(denoiser, "the denoiser")
    p = tracks.shape[-1]
    check_denoiser(denoiser, path or denoiser.name)
    if tuple(denoiser.input_shape[1:3]) != (p, p):
        raise DataError(
            path or denoiser.name, f"denoiser expects {denoiser.input_shape[1:3]} patches, data has {p}x{p}"
        )
    flat = tracks.reshape(-1, p, p, 1).astype(np.float32)
    out = denoiser.predict(flat, batch_size=batch_size, verbose=0)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(tracks.shape)


def heldout_matching(model, tracks: np.ndarray, max_tracks: int = 500, seed: int = 0) -> dict:
    """Nearest-neighbour matching accuracy on held-out tracks: for each target view, the fraction of
    reference patches whose nearest target descriptor (exact L2, first index on ties, as the evaluation's
    :func:`~hpatches_kit.evaluation.matching.nearest_neighbours`) is the same track; averaged per variant.

    Args:
        model: a descriptor, ``(N, P, P, 1) -> (N, D)``.
        tracks: ``(T, 16, P, P)`` held-out tracks; at most ``max_tracks`` of them (drawn with ``seed``) are used.

    Returns:
        ``{"e", "h", "t", "mean": accuracy in [0, 1], "tracks": number used}``.
    """
    from ..evaluation.matching import nearest_neighbours
    from ..layout import VARIANTS, target_indices

    rng = np.random.default_rng(seed)
    if len(tracks) > max_tracks:
        tracks = tracks[np.sort(rng.choice(len(tracks), max_tracks, replace=False))]
    t, _, p, _ = tracks.shape
    d = model.predict(tracks.reshape(-1, p, p, 1).astype(np.float32), batch_size=512, verbose=0).reshape(t, 16, -1)
    ref = np.ascontiguousarray(d[:, 0])
    out = {}
    for var in VARIANTS:
        accs = [
            float((nearest_neighbours(ref, np.ascontiguousarray(d[:, j]), "L2")[0] == np.arange(t)).mean())
            for j in target_indices(var)
        ]
        out[var] = float(np.mean(accs))
    out["mean"] = float(np.mean([out[v] for v in VARIANTS]))
    out["tracks"] = int(t)
    return out
