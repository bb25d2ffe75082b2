"""One registry shape for every extension point of the toolkit: models, losses, data formats, evaluation tasks,
benchmarks and baseline describers are each one :class:`Registry` of their own entry type.

A registry maps a name to an *entry* (a :class:`~hpatches_kit.models.registry.ModelEntry`, a
:class:`~hpatches_kit.losses.registry.LossEntry`, a :class:`~hpatches_kit.data.formats.DataFormat`, ...) and
offers one set of verbs:

* ``register(name, obj, **fields)`` -- add an entry after those already there (``first=True``: before them);
  without ``obj`` it is a decorator (``@REGISTRY.register("mine", ...)``); an entry object carrying its ``name``
  is registered by itself (``register(entry)``). ``obj`` is turned into the domain's entry by ``make``.
* ``unregister(name)``, ``get(name)`` (the entry; also of a ``MODULE:FUNCTION`` reference where the domain
  accepts one), ``names(kind=None)``, ``entries(kind=None)``, ``name in registry``;
* ``choices(kind=None)`` -- a live view of the names for ``argparse``'s ``choices=``: a plug-in registered
  before the parser parses is a choice, and the CLI never keeps a list of its own.

Built-ins are given as objects or as ``"module:attribute"`` strings, imported on first use (in that order, first
in the registry), and can be neither replaced nor removed. Installed packages join through the Python entry-point
group of the registry (``[project.entry-points."hpatches_kit.models"] mynet = "mypkg.nets:build"``), loaded on
the first look-up; a plug-in never shadows a registered name.

Example:
    >>> from hpatches_kit.registry import Registry
    >>> colours = Registry("colour", builtin={"red": "colorsys:ONE_THIRD"})
    >>> @colours.register("blue")
    ... def blue():
    ...     return (0, 0, 1)
    >>> colours.names(), colours.get("blue")()
    (('red', 'blue'), (0, 0, 1))
    >>> colours.get("green")
    Traceback (most recent call last):
    ...
    ValueError: unknown colour 'green'; expected one of red, blue
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)

__all__ = ["Registry", "Choices", "load_reference"]


def load_reference(ref: str):
    """The object of a ``"module:attribute"`` string (a built-in imported on first use)."""
    mod, attr = ref.split(":")
    return getattr(importlib.import_module(mod), attr)


class Registry:
    """Names to entries, in registration order (built-ins first).

    Args:
        what: the entry's name in messages (``"model"``, ``"loss"``, ``"data format"``).
        builtin: ``{name: entry or "module:attribute"}``, the built-ins in order (strings imported on first use).
        group: the entry-point group plug-ins join through (``None``: none).
        make: ``make(name, obj, **fields) -> entry``: what :meth:`register` stores for ``obj`` (default: ``obj``).
            It validates and raises ``ValueError`` / ``TypeError``.
        entry_type: the entry class: an instance is stored as it is (renamed to its key when it has a ``name``).
        canon: ``canon(name) -> key`` (default: the name itself), e.g. ``-`` and ``_`` being the same.
        reference: ``reference(ref, obj) -> entry`` for a ``MODULE:FUNCTION`` name resolved to ``obj``
            (``None``: references are unknown names).
        flag: the command-line flag naming the entries, for messages about references (``"--model"``).
        kinds: the values of the entries' ``kind`` that :meth:`names` filters by (``None``: no kinds).
    """

    def __init__(
        self,
        what: str,
        *,
        builtin: dict | None = None,
        group: str | None = None,
        make: Callable | None = None,
        entry_type: type | None = None,
        canon: Callable[[str], str] | None = None,
        reference: Callable | None = None,
        flag: str | None = None,
        kinds: tuple | None = None,
    ):
        self.what, self.group, self.flag, self.kinds = what, group, flag or what, kinds
        self.entry_type = entry_type
        self._make, self._reference = make, reference
        self._canon = canon or str
        self._builtin_spec = dict(builtin or {})
        self._builtin = tuple(self._canon(n) for n in self._builtin_spec)
        self._entries: dict = {}
        self._resolved: dict = {}
        self._builtin_loaded = self._plugins_loaded = False

    # -- loading -------------------------------------------------------------------------------------------------

    def _load_builtin(self) -> None:
        if self._builtin_loaded:
            return
        self._builtin_loaded = True  # before any register(), which loads them first: the built-ins come first
        for name, obj in self._builtin_spec.items():
            self._entries[self._canon(name)] = self._coerce(name, load_reference(obj) if isinstance(obj, str) else obj)

    def _load(self) -> None:
        self._load_builtin()
        if self._plugins_loaded or self.group is None:
            return
        self._plugins_loaded = True
        from .plugins import entry_point_objects

        for name, obj in entry_point_objects(self.group).items():
            if self._canon(name) in self._entries:
                continue
            try:
                self._entries[self._canon(name)] = self._coerce(name, obj)
            except (TypeError, ValueError) as e:  # a broken plug-in must not break the toolkit
                log.warning("entry point %s (group %s) is not a %s: %s", name, self.group, self.what, e)

    def _coerce(self, name: str, obj, **fields):
        key = self._canon(name)
        if self.entry_type is not None and isinstance(obj, self.entry_type) and not fields:
            if getattr(obj, "name", key) != key and hasattr(obj, "__dataclass_fields__"):
                import dataclasses

                obj = dataclasses.replace(obj, name=key)
            return obj
        return self._make(key, obj, **fields) if self._make is not None else obj

    # -- the verbs -----------------------------------------------------------------------------------------------

    def register(self, name, obj=None, *, replace: bool = False, first: bool = False, **fields):
        """Add ``obj`` as ``name`` (made into an entry with ``fields``); a decorator without ``obj``; an entry
        object with a ``name`` attribute alone (``register(entry)``).

        Args:
            name: the new name, or an entry carrying its name.
            obj: the object (a function, or an entry); ``None``: return a decorator that registers its argument.
            replace: overwrite an entry registered at run time (built-ins are never replaced).
            first: put it before every other entry (formats: detected first).
            **fields: the entry's other fields, passed to ``make``.

        Returns:
            ``obj`` (the decorated function, or the entry given).

        Raises:
            ValueError: the name is taken (or a built-in), or ``make`` refuses the object.
            TypeError: ``make`` refuses the object.
        """
        if not isinstance(name, str):
            name, obj = getattr(name, "name", None), name
            if not isinstance(name, str):
                raise TypeError(f"{self.what} {obj!r} has no attribute 'name'")
        if obj is None:

            def decorate(fn):
                self.register(name, fn, replace=replace, first=first, **fields)
                return fn

            return decorate
        self._load_builtin()
        key = self._canon(name)
        if key in self._builtin or (key in self._entries and not replace):
            raise ValueError(f"{self.what} {name!r} is already registered")
        entry = self._coerce(name, obj, **fields)
        self._entries.pop(key, None)
        if first:
            rest = dict(self._entries)
            self._entries.clear()
            self._entries[key] = entry
            self._entries.update(rest)
        else:
            self._entries[key] = entry
        return obj

    def unregister(self, name: str) -> None:
        """Remove an entry registered at run time.

        Raises:
            ValueError: a built-in, or an unknown name.
        """
        self._load()
        key = self._canon(name)
        if key in self._builtin:
            raise ValueError(f"{name!r} is a built-in {self.what} and cannot be removed")
        if key not in self._entries:
            raise ValueError(f"unknown {self.what} {name!r}; expected one of {', '.join(self._entries)}")
        del self._entries[key]

    def is_reference(self, name) -> bool:
        """Whether ``name`` is a ``MODULE:FUNCTION`` reference this registry resolves."""
        from .plugins import is_reference

        return self._reference is not None and is_reference(name)

    def get(self, name: str):
        """The entry of ``name`` (or of a ``MODULE:FUNCTION`` reference, resolved once).

        Raises:
            ValueError: an unknown name (the message lists the registered ones) or a reference that does not
                resolve.
        """
        self._load()
        key = self._canon(name) if isinstance(name, str) else name
        if key in self._entries:
            return self._entries[key]
        if self.is_reference(name):
            if name not in self._resolved:
                from .plugins import resolve

                self._resolved[name] = self._reference(name, resolve(name, self.flag))
            return self._resolved[name]
        more = " or MODULE:FUNCTION" if self._reference is not None else ""
        raise ValueError(f"unknown {self.what} {name!r}; expected one of {', '.join(self._entries)}{more}") from None

    def _check_kind(self, kind) -> None:
        if kind is not None and kind not in (self.kinds or ()):
            raise ValueError(f"unknown {self.what} kind {kind!r}; expected one of {', '.join(self.kinds or ())}")

    def entries(self, kind: str | None = None) -> tuple:
        """The entries in order (``kind``: those whose ``kind`` is it)."""
        self._load()
        self._check_kind(kind)
        return tuple(e for e in self._entries.values() if kind is None or e.kind == kind)

    def names(self, kind: str | None = None) -> tuple[str, ...]:
        """The registered names in order, built-ins first (``kind``: those of that kind).

        Raises:
            ValueError: an unknown ``kind``.
        """
        self._load()
        self._check_kind(kind)
        return tuple(n for n, e in self._entries.items() if kind is None or e.kind == kind)

    def verbs(self) -> tuple:
        """``(register, unregister, get, names, entries)``: the bound methods a domain module exports as its
        functions (``register, unregister, get, names, entries = REGISTRY.verbs()``)."""
        return self.register, self.unregister, self.get, self.names, self.entries

    def builtin_names(self) -> tuple[str, ...]:
        """The names of the built-ins, in order."""
        return self._builtin

    def __contains__(self, name) -> bool:
        self._load()
        return isinstance(name, str) and self._canon(name) in self._entries

    def choices(self, kind: str | None = None) -> Choices:
        """A live view of :meth:`names` for ``argparse`` ``choices=`` (see :class:`Choices`)."""
        return Choices(self, kind)


class Choices:
    """The names of a registry (of one ``kind``), read when they are used: ``argparse``'s ``choices=`` of a flag.

    ``value in choices`` accepts a registered name in any spelling the registry takes and, where the registry
    resolves them, a ``MODULE:FUNCTION`` reference; iterating gives the names (what ``--help`` and the "invalid
    choice" message list).
    """

    def __init__(self, registry: Registry, kind: str | None = None):
        self.registry, self.kind = registry, kind

    def __iter__(self) -> Iterator[str]:
        return iter(self.registry.names(self.kind))

    def __len__(self) -> int:
        return len(self.registry.names(self.kind))

    def __contains__(self, value) -> bool:
        if self.registry.is_reference(value):
            return True
        if value not in self.registry:
            return False
        return self.kind is None or self.registry.get(value).kind == self.kind

    def __repr__(self) -> str:
        return f"Choices({', '.join(self)})"
