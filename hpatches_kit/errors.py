"""Errors in the library's own terms.

:class:`OptionError` is a ``ValueError`` about named options: the message names them as the library knows
them (``epochs``, ``batch_size``: the ``*Options`` dataclass fields and keyword arguments), and a front end
renders the same message in its own terms (the CLI: ``--epochs``, ``--batch-size``; see
``hpatches_kit.cli._errors``). Bad files are :class:`hpatches_kit.data.errors.DataError`.
"""

from __future__ import annotations

__all__ = ["OptionError"]


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
