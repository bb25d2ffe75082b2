"""Errors in the library's own terms.

:class:`OptionError` is a ``ValueError`` about named options: the message names them as the library knows
them (``epochs``, ``batch_size``: the ``*Options`` dataclass fields and keyword arguments), and a front end
renders the same message in its own terms (the CLI: ``--epochs``, ``--batch-size``; see
``hpatches_kit.cli._errors``). Bad files are :class:`hpatches_kit.data.errors.DataError`.
"""

from __future__ import annotations

__all__ = ["OptionError", "PluginError", "qualified_name"]


class OptionError(ValueError):
    """A bad value of one or more named options.

    Args:
        template: the message, naming each option as ``{name}`` (other braces doubled).
        *options: the option names the template uses.

    Example:
        >>> e = OptionError("{epochs} must be >= 1 and {batch_size} >= 2", "epochs", "batch_size")
        >>> str(e)
        'epochs must be >= 1 and batch_size >= 2'
        >>> e.render(lambda name: "--" + name.replace("_", "-"))
        '--epochs must be >= 1 and --batch-size >= 2'
    """

    def __init__(self, template: str, *options: str):
        self.template, self.options = template, tuple(options)
        super().__init__(self.render())

    def render(self, name=None) -> str:
        """The message with each option spelled ``name(option)`` (default: as is)."""
        name = name or (lambda o: o)
        return self.template.format(**{o: name(o) for o in self.options})


class PluginError(ValueError):
    """A plug-in (a user's benchmark, model builder, loss, ...) broke the contract the toolkit calls it by.

    Args:
        plugin: what it is and where it comes from, e.g. ``"benchmark 'mybench' (mymod.run)"``.
        contract: what the toolkit expects of it, e.g. ``"run(args) must return a dict of JSON-ready results"``.
        got: what it did instead.

    Example:
        >>> str(PluginError("benchmark 'b' (m.run)", "run(args) must return a dict", "it returned None"))
        "benchmark 'b' (m.run) breaks the plug-in contract: run(args) must return a dict; it returned None"
    """

    def __init__(self, plugin: str, contract: str, got: str):
        self.plugin, self.contract, self.got = plugin, contract, got
        super().__init__(f"{plugin} breaks the plug-in contract: {contract}; {got}")


def qualified_name(fn) -> str:
    """``module.qualname`` of a function (what a plug-in's message names).

    Example:
        >>> import os.path
        >>> qualified_name(os.path.join)
        'posixpath.join'
    """
    mod = getattr(fn, "__module__", None) or "?"
    return f"{mod}.{getattr(fn, '__qualname__', getattr(fn, '__name__', type(fn).__name__))}"
