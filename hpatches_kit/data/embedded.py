"""The embedded default dataset: HPatches-format sequences synthesised from the photos scikit-image ships.

Built on first use into a user cache directory (``$HPATCHES_KIT_HOME``, else ``$XDG_CACHE_HOME/hpatches-kit``,
else ``~/.cache/hpatches-kit``); every command uses it when no ``--data`` is given.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_NAME = "embedded-v1"
DEFAULT_SEED = 0


def cache_dir() -> Path:
    env = os.environ.get("HPATCHES_KIT_HOME")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "hpatches-kit"


def default_data_dir() -> Path:
    """Where the embedded default dataset lives (whether or not it is built yet)."""
    return cache_dir() / DEFAULT_NAME


def is_built(path=None) -> bool:
    path = Path(path) if path is not None else default_data_dir()
    return (path / "COMPLETE").is_file()


def ensure_default(progress: bool = True) -> Path:
    """Return the embedded dataset's folder, building it first if needed (atomically: a build that is
    interrupted leaves no half dataset behind)."""
    path = default_data_dir()
    if not is_built(path):
        from .synth import build_default_dataset

        build_default_dataset(path, seed=DEFAULT_SEED, progress=progress)
    return path
