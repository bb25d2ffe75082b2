"""Loading the user's own code before a command builds its choices: ``--import MODULE`` (repeatable).

A module named on the command line is imported before the CLI reads its registries, so whatever it registers
(a benchmark, a model, a loss, a Keras layer for ``.keras`` loading) is there. ``MODULE`` is a dotted module
name, found on ``sys.path`` and, after it, in the current folder (as ``python -m`` would), or a path to a
``.py`` file.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

__all__ = ["import_modules"]


def _import_file(path: Path):
    name = path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"{path}: not an importable Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def import_modules(names) -> list:
    """Import each module of ``names`` (dotted names or ``.py`` paths), in order.

    Args:
        names: module names or file paths (``None`` or empty: nothing).

    Returns:
        The imported modules.

    Raises:
        ValueError: naming the module when it (or a module it imports) cannot be found, or a ``.py`` path
            that does not exist. Any other error raised by the module's own code propagates unchanged.

    Example:
        >>> [m.__name__ for m in import_modules(["json"])]
        ['json']
    """
    mods = []
    for name in names or ():
        name = str(name)
        if name.endswith(".py") or os.sep in name:
            path = Path(name)
            if not path.is_file():
                raise ValueError(f"{name}: no such Python file")
            mods.append(_import_file(path))
            continue
        cwd = os.getcwd()
        added = cwd not in sys.path and "" not in sys.path
        if added:
            sys.path.append(cwd)  # after everything installed: the current folder never shadows a package
        try:
            mods.append(importlib.import_module(name))
        except ModuleNotFoundError as e:
            where = "" if e.name == name else f" (it imports {e.name!r}, which is not installed)"
            raise ValueError(f"cannot import module {name!r}: {e}{where}") from e
    return mods
