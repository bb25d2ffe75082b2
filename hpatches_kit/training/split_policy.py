"""Which sequences a training run trains on and which it holds out (the split policy of ``hpatches-train``)."""

from __future__ import annotations

import warnings
from pathlib import Path

from ..data.errors import DataError


def train_test_names(
    root, split: str, splits_file=None, names=None, splits_root=None
) -> tuple[list[str], list[str], str]:
    """``(train, test, how)`` sequence names of the dataset at ``root``.

    Args:
        root: the dataset folder.
        split: ``"none"`` (train = test = all sequences), ``"a"``/``"b"``/``"c"`` (the official HPatches
            splits) or ``"full"`` etc. as :func:`hpatches_kit.data.splits.split_sequences` accepts. Without a
            ``splits.json`` for ``a``/``b``/``c``, every 4th sequence is held out (with a warning).
        splits_file: a ``splits.json``; default: the one next to the dataset, if any.
        names: the dataset's sequence names (default: the sequence folders under ``root``), e.g. a packed
            cache's (:class:`hpatches_kit.data.formats.TrackSource`).
        splits_root: where to look for the default ``splits.json`` (default ``root``).

    Returns:
        ``(train_names, test_names, how)``, ``how`` a short description for the run log.

    Raises:
        DataError: the split leaves no training sequences.

    Examples:
        >>> train, test, how = train_test_names(root, "none")  # doctest: +SKIP
    """
    from ..data import find_sequence_dirs
    from ..data.splits import default_splits_file, split_sequences

    root = Path(root)
    if names is None:
        names = [d.name for d in find_sequence_dirs(root)]
        seq_root = find_sequence_dirs(root)[0].parent
    else:
        names = list(names)
        seq_root = Path(splits_root or root)
    if split == "none":
        return names, names, "none (train = test = all sequences)"
    look = Path(splits_root or root)
    splits_file = splits_file or default_splits_file(look) or default_splits_file(seq_root)
    if split in ("a", "b", "c") and splits_file is None:
        test = names[::4] if len(names) > 1 else []
        warnings.warn(
            f"{root}: no splits.json; holding out every 4th sequence ({len(test)}) instead of split {split!r}",
            stacklevel=3,
        )
        return [n for n in names if n not in test], test, "every-4th fallback"
    test = split_sequences(split, names, subset="test", splits_file=splits_file, root=root)
    train = [n for n in names if n not in set(test)]
    if not train:
        raise DataError(root, f"split {split!r} leaves no training sequences")
    return train, test, f"split {split} ({splits_file or 'by name'})"
