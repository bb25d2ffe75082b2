"""The official HPatches splits.

``illum`` (all ``i_*``), ``view`` (all ``v_*``) and ``full`` (every sequence) follow from sequence names;
``a``, ``b``, ``c`` (76 train / 40 test sequences each) come from the benchmark's ``splits.json``
(``{"a": {"name": "a", "train": [...], "test": [...]}, ...}``), given by path. A dataset built by
hpatches-kit writes its own ``splits.json`` (same format) next to its sequences, which is used when no
file is given.
"""

from __future__ import annotations

import os
from collections.abc import Sequence as Seq
from pathlib import Path

from ..layout import sequence_kind
from .errors import DataError
from .fsio import read_json

SPLIT_NAMES = ("a", "b", "c", "illum", "view", "full")
NAME_SPLITS = ("illum", "view", "full")


def load_splits(path) -> dict[str, dict[str, list[str]]]:
    """Parse a ``splits.json``; returns ``{split: {"train": [...], "test": [...]}}``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "splits file not found")
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise DataError(path, "expected a JSON object mapping split names to {train, test} lists")
    out = {}
    for name, entry in raw.items():
        if not isinstance(entry, dict) or "test" not in entry:
            raise DataError(path, f"split {name!r} has no 'test' list")
        test = _name_list(path, name, "test", entry["test"])
        train = _name_list(path, name, "train", entry.get("train", []))
        overlap = set(test) & set(train)
        if overlap:
            raise DataError(path, f"split {name!r}: sequences in both train and test: {sorted(overlap)[:5]}")
        out[str(name)] = {"train": train, "test": test}
    return out


def _name_list(path, split, key: str, value) -> list[str]:
    """``value`` as a list of distinct sequence names, or a :class:`DataError` naming the file, split and key
    (``null``, a string instead of a list, a non-string or a repeated name)."""
    if not isinstance(value, list):
        raise DataError(
            path,
            f"split {split!r}: {key!r} must be a list of sequence names, got "
            f"{'null' if value is None else type(value).__name__ + ' ' + repr(value)[:40]}",
        )
    if not all(isinstance(s, str) for s in value):
        raise DataError(path, f"split {split!r}: sequence names must be strings")
    seen, dup = set(), []
    for s in value:
        if s in seen and s not in dup:
            dup.append(s)
        seen.add(s)
    if dup:
        raise DataError(path, f"split {split!r}: {key!r} lists {', '.join(dup[:5])} more than once")
    return list(value)


def default_splits_file(root=None):
    """``$HPATCHES_SPLITS``, else ``<root>/splits.json`` or ``<root>/../splits.json`` when the dataset carries
    one, else ``<root>/../hpatches-benchmark/splits.json`` (where ``hpatches-data download --what
    benchmark-tasks`` puts it beside ``hpatches-release/``), else ``None``."""
    env = os.environ.get("HPATCHES_SPLITS")
    if env:
        return Path(env)
    if root is not None:
        for cand in (
            Path(root) / "splits.json",
            Path(root).parent / "splits.json",
            Path(root).parent / "hpatches-benchmark" / "splits.json",
        ):  # where download puts it
            if cand.is_file():
                return cand
    return None


def split_sequences(name: str, available: Seq[str], subset: str = "test", splits_file=None, root=None) -> list[str]:
    """Sequence names of split ``name`` (``subset`` "test" or "train") among ``available``.

    ``illum``/``view``/``full`` are decided by name over ``available`` (their official lists are exactly
    the i_*/v_*/all sequences of the release). ``a``/``b``/``c`` need a splits file; every sequence they list
    must be available, else a :class:`DataError` names the missing ones.
    """
    if name not in SPLIT_NAMES and splits_file is None:
        raise ValueError(f"unknown split {name!r}; expected one of {', '.join(SPLIT_NAMES)}")
    if subset not in ("test", "train"):
        raise ValueError(f"subset must be 'test' or 'train', got {subset!r}")
    available = list(available)
    if name in NAME_SPLITS:
        if subset == "train":
            return []
        if name == "full":
            return available
        return [s for s in available if sequence_kind(s) == name]
    path = splits_file if splits_file is not None else default_splits_file(root)
    if path is None:
        raise DataError(
            None, f"split {name!r} needs a splits file (--splits-file, $HPATCHES_SPLITS, or <data>/splits.json)"
        )
    splits = load_splits(path)
    if name not in splits:
        raise DataError(path, f"no split named {name!r} (has: {', '.join(sorted(splits))})")
    wanted = splits[name][subset]
    have = set(available)
    missing = [s for s in wanted if s not in have]
    if missing:
        raise DataError(
            path,
            f"split {name!r} ({subset}) lists {len(missing)} sequences not in the dataset, e.g. {', '.join(missing[:5])}",
        )
    return wanted
