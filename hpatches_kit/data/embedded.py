"""The embedded default dataset: HPatches-format sequences synthesised from the photos scikit-image ships.

Built on first use into a user cache directory (``$HPATCHES_KIT_HOME``, else ``$XDG_CACHE_HOME/hpatches-kit``,
else ``~/.cache/hpatches-kit``); every command uses it when no ``--data`` is given.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_NAME = "embedded-v2"
DEFAULT_SEED = 0


def cache_dir() -> Path:
    env = os.environ.get("HPATCHES_KIT_HOME")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "hpatches-kit"


KINDS = ("hpatches", "n-hpatches")


def default_root() -> Path:
    """The folder holding both flavours of the embedded default."""
    return cache_dir() / DEFAULT_NAME


def default_data_dir(kind: str = "hpatches") -> Path:
    """Where the embedded default dataset lives (whether or not it is built yet).

    ``kind="hpatches"``: 65x65 clean patches (HPatches layout); ``kind="n-hpatches"``: the same tracks at
    32x32 with ``*_noise.png`` twins (N-HPatches layout). Both are built together.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return default_root() / kind


def is_built() -> bool:
    return (default_root() / "COMPLETE").is_file()


def ensure_default(kind: str = "hpatches", progress: bool = True) -> Path:
    """Return the embedded dataset's folder, building it first if needed (atomically: a build that is
    interrupted leaves no half dataset behind; ``COMPLETE`` is written last)."""
    if not is_built():
        from .synth import build_default_dataset

        build_default_dataset(default_root(), seed=DEFAULT_SEED, progress=progress)
    return default_data_dir(kind)
