"""User code joins the toolkit: ``--import MODULE``, ``MODULE:FUNCTION`` names, entry points, and the toolkit's
own Keras objects registered on ``import hpatches_kit``.

* :func:`import_modules` -- import the user's modules (``hpatches-train/-eval --import MODULE``): a module that
  registers a model (:func:`hpatches_kit.models.register`), a loss (:func:`hpatches_kit.losses.register`) or
  its own Keras layers (``@keras.saving.register_keras_serializable``) makes them known to the command, so a
  ``.keras`` file using them loads.
* :func:`resolve` -- the object named by ``"MODULE:FUNCTION"`` (``"pkg.mod:fn"``, or ``"path/to/file.py:fn"``).
* :func:`entry_point_objects` -- the objects of an entry-point group (``hpatches_kit.models``,
  ``hpatches_kit.losses``): ``[options.entry_points] hpatches_kit.models = mynet = mypkg.nets:build``.
* :func:`register_keras_objects` -- import the modules that define the toolkit's serialisable layers, losses
  and schedules. ``import hpatches_kit`` arranges for it to run as soon as Keras is imported (or at once when
  Keras already is), so ``keras.models.load_model("models/l2net-synth-v2.keras")`` finds ``PatchStandardize``
  without importing TensorFlow when ``hpatches_kit`` is imported.

Examples:
    >>> from hpatches_kit.plugins import resolve
    >>> resolve("os.path:join")("a", "b")
    'a/b'
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = [
    "import_modules",
    "resolve",
    "entry_point_objects",
    "register_keras_objects",
    "install_keras_hook",
    "is_reference",
    "KERAS_MODULES",
]

#: The modules that define the toolkit's ``register_keras_serializable`` objects (layers, losses, schedules).
KERAS_MODULES = (
    "hpatches_kit.models.l2net",
    "hpatches_kit.models.layers",
    "hpatches_kit.models.torch_ports",
    "hpatches_kit.models.pca",
    "hpatches_kit.models.vit.layers",
    "hpatches_kit.models.vit.siamese",
    "hpatches_kit.training.one_cycle",
    *(f"hpatches_kit.losses{m}" for m in (".triplet", ".embedding", ".sosnet", ".hynet", ".xbm", ".curriculum")),
    "hpatches_kit.training.mining",
)


def _import_one(name: str):
    """Import ``name``: a dotted module name (searched on ``sys.path``, then in the current folder) or a path
    to a ``.py`` file."""
    name = str(name).strip()
    if not name:
        raise ValueError("--import: empty module name")
    if name.endswith(".py") or os.sep in name:
        path = Path(name)
        if not path.is_file():
            raise ValueError(f"cannot import module {name!r}: no such Python file")
        mod_name = path.stem
        if mod_name in sys.modules and getattr(sys.modules[mod_name], "__file__", None) == str(path.resolve()):
            return sys.modules[mod_name]
        spec = importlib.util.spec_from_file_location(mod_name, path.resolve())
        mod = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = mod
        try:
            spec.loader.exec_module(mod)
        except Exception:
            sys.modules.pop(mod_name, None)
            raise
        return mod
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        top = name.split(".")[0]
        if e.name not in (name, top) or os.getcwd() in sys.path or "" in sys.path:
            raise ValueError(f"cannot import module {name!r}: {e}") from None
    sys.path.append(os.getcwd())  # console scripts do not search the current folder; `python -m` does
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        raise ValueError(f"cannot import module {name!r}: {e}") from None


def import_modules(names) -> list:
    """Import the user's modules (``--import MODULE``, repeatable), in order.

    Args:
        names: module names (``mypkg.layers``) or paths of ``.py`` files; ``None`` or empty for none.

    Returns:
        The imported modules.

    Raises:
        ValueError: a module that cannot be found (the name is in the message); errors raised while the module
            runs propagate unchanged.

    Example:
        >>> [m.__name__ for m in import_modules(["json"])]
        ['json']
    """
    return [_import_one(n) for n in (names or ())]


def is_reference(name) -> bool:
    """Whether ``name`` is a ``MODULE:FUNCTION`` reference rather than a registered name."""
    return isinstance(name, str) and ":" in name and not name.startswith(":") and not name.endswith(":")


def resolve(ref: str, what: str = "object"):
    """The object a ``"MODULE:FUNCTION"`` reference names (attributes may be dotted: ``"mod:Class.build"``).

    Args:
        ref: ``"package.module:name"`` or ``"path/to/file.py:name"``.
        what: names the reference in errors (``"--model"``, ``"--loss"``).

    Returns:
        The object.

    Raises:
        ValueError: not of the form ``MODULE:NAME``, the module cannot be found or has no such attribute.

    Example:
        >>> resolve("math:sqrt")(4.0)
        2.0
    """
    if not is_reference(ref):
        raise ValueError(f"{what} {ref!r}: expected MODULE:FUNCTION")
    mod_name, attr = ref.rsplit(":", 1)
    try:
        obj = _import_one(mod_name)
    except ValueError as e:
        raise ValueError(f"{what} {ref}: {str(e).split(': ', 1)[-1]}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"{what} {ref}: module {mod_name!r} has no attribute {attr!r}") from None
    return obj


def entry_point_objects(group: str) -> dict:
    """``{name: loaded object}`` of an entry-point group of the installed distributions (e.g.
    ``hpatches_kit.models``); an entry that fails to load is logged and left out."""
    from importlib.metadata import entry_points

    out = {}
    for ep in entry_points(group=group):
        try:
            out[ep.name] = ep.load()
        except Exception as e:  # a broken plug-in must not break the toolkit
            log.warning("entry point %s = %s (group %s) does not load: %s", ep.name, ep.value, group, e)
    return out


def register_keras_objects() -> None:
    """Import the modules of :data:`KERAS_MODULES` so Keras' deserialiser knows every toolkit layer, loss and
    schedule (``keras.models.load_model`` of a toolkit ``.keras`` file then needs no other import)."""
    for name in KERAS_MODULES:
        importlib.import_module(name)


def _toolkit_initialising(exclude: str = "") -> bool:
    """Whether a toolkit module (other than the top package and ``exclude``) is half-way through its import."""
    for name, mod in list(sys.modules.items()):
        if (
            name.startswith("hpatches_kit.")
            and name != exclude
            and getattr(getattr(mod, "__spec__", None), "_initializing", False)
        ):
            return True
    return False


class _KerasHook(importlib.abc.MetaPathFinder):
    """Runs :func:`register_keras_objects` right after the ``keras`` module has executed (a post-import hook),
    so ``import hpatches_kit`` registers the toolkit's Keras objects without importing Keras itself.

    When a toolkit module imported Keras (it is half-initialised then, and the registration would import it again),
    the registration waits until the outermost toolkit module being imported has finished: the hook wraps the
    loader of every toolkit module it sees while it is installed."""

    def __init__(self):
        self.pending = False
        self.busy = False

    def find_spec(self, fullname, path=None, target=None):
        if self.busy or not (fullname == "keras" or fullname.startswith("hpatches_kit.")):
            return None
        self.busy = True
        try:
            spec = importlib.util.find_spec(fullname)  # the real spec, from the other finders
        except (ImportError, ValueError):
            return None
        finally:
            self.busy = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_then_register(module):
            try:
                exec_module(module)
            finally:
                if loader.__dict__.get("exec_module") is exec_then_register:
                    del loader.exec_module  # the loader may be shared (keras): put its method back
            if fullname == "keras":
                self.pending = True
            if self.pending and not _toolkit_initialising(exclude=fullname):
                self._register()

        loader.exec_module = exec_then_register
        return spec

    def _register(self):
        self.pending, self.busy = False, True
        try:
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            _register_quietly()
        finally:
            self.busy = False


def _register_quietly():
    try:
        register_keras_objects()
    except Exception as e:  # never break `import keras` for the user
        log.warning("could not register hpatches-kit's Keras objects: %s", e)


def install_keras_hook() -> None:
    """Register the toolkit's Keras objects now if Keras is imported, else as soon as it is (idempotent)."""
    if "keras" in sys.modules and getattr(sys.modules["keras"], "saving", None) is not None:
        if not _toolkit_initialising():
            _register_quietly()
            return
    if not any(isinstance(f, _KerasHook) for f in sys.meta_path):
        hook = _KerasHook()
        hook.pending = "keras" in sys.modules
        sys.meta_path.insert(0, hook)
