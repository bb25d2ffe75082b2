"""Range checks of numeric options, in one place: one table (:data:`OPTION_RANGES`) of what every numeric
option of the toolkit accepts, and one function (:func:`check_options`) that every command and library entry
point calls before any work.

The comparisons are written so that NaN fails every one (``not (x >= low)``), infinities are refused, and the
error is an :class:`~hpatches_kit.errors.OptionError` naming the option as the library knows it
(``lr must be > 0, got nan``); the CLI shows it with the flag (``--lr must be > 0, got nan``).

Example:
    >>> check_options(lr=1e-3, epochs=3)
    >>> check_options(lr=float("nan"))
    Traceback (most recent call last):
    ...
    hpatches_kit.errors.OptionError: lr must be > 0, got nan
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import OptionError

__all__ = ["Range", "OPTION_RANGES", "check_options", "check_value"]


@dataclass(frozen=True)
class Range:
    """What a numeric option accepts.

    Attributes:
        low: the smallest accepted value (``None``: no lower bound).
        high: the largest accepted value (``None``: no upper bound).
        low_open: ``low`` itself is refused (``> low`` instead of ``>= low``).
        high_open: ``high`` itself is refused.
        integer: the value must be a whole number.
        why: appended to the message (what the bound means).
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    why: str = ""

    def problem(self, x) -> str | None:
        """``None`` when ``x`` is accepted, else what is wrong (``"must be > 0"``)."""
        try:
            xf = float(x)
        except (TypeError, ValueError):
            return "must be a number"
        if math.isinf(xf):
            return "must be finite"
        if self.integer and not (xf == int(xf) if not math.isnan(xf) else False):
            return "must be a whole number"
        parts = []
        if self.low is not None:
            parts.append(f"> {self.low:g}" if self.low_open else f">= {self.low:g}")
        if self.high is not None:
            parts.append(f"< {self.high:g}" if self.high_open else f"<= {self.high:g}")
        ok_low = self.low is None or ((xf > self.low) if self.low_open else (xf >= self.low))
        ok_high = self.high is None or ((xf < self.high) if self.high_open else (xf <= self.high))
        if not (ok_low and ok_high) or math.isnan(xf):  # NaN compares false: refused by every bound
            return "must be " + (" and ".join(parts) if parts else "a number")
        return None


POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
COUNT = Range(1, integer=True)
NON_NEGATIVE_INT = Range(0, integer=True)
FRACTION = Range(0, 1, low_open=True, high_open=True)

#: every numeric option the toolkit has, by its argparse ``dest`` / options-dataclass field name
OPTION_RANGES: dict[str, Range] = {
    # data building
    "seed": Range(0, integer=True, why="NumPy seeds are non-negative"),
    "num_illum": NON_NEGATIVE_INT,
    "num_view": NON_NEGATIVE_INT,
    "num_zoom": NON_NEGATIVE_INT,
    "num_blur": NON_NEGATIVE_INT,
    "max_patches": COUNT,
    "size": Range(
        1, 1024, integer=True, why="a patch side in pixels; `hpatches-data pack --size 0` keeps the source's"
    ),
    "workers": COUNT,
    "test_fraction": FRACTION,
    "jitter_scale": Range(0, why="the jitter scale: 1 = HPatches' geometric noise, 0 = none"),
    "shards": COUNT,
    "retries": NON_NEGATIVE_INT,
    # evaluation and training
    "batch_size": COUNT,
    "epochs": COUNT,
    "steps_per_epoch": COUNT,
    "val_every": COUNT,
    "lr": POSITIVE,
    "margin": Range(0, why="a negative margin makes the triplet loss 0 once positives are closer: nothing is learned"),
    "koleo": NON_NEGATIVE,
    "recon_weight": NON_NEGATIVE,
    "dropout": Range(0, 1, high_open=True),
    "dim": COUNT,
    "patch_size": COUNT,
    "views": Range(1, 16, integer=True, why="a track has 16 views: ref, e1-e5, h1-h5, t1-t5"),
    "view_noise_strength": Range(0, 4, why="multiplies the measured orientation and scale error (0 = none)"),
    "curriculum_warmup": NON_NEGATIVE_INT,
    "temperature": POSITIVE,
    "train_pairs_per_photo": COUNT,
    "eval_pairs_per_photo": COUNT,
    "max_keypoints": COUNT,
    "magnification": POSITIVE,
    "ratio": Range(0, 1, low_open=True, why="Lowe's ratio: second-nearest over nearest distance bound"),
}


def check_value(name: str, value, rng: Range | None = None) -> None:
    """Raise :class:`~hpatches_kit.errors.OptionError` naming ``name`` when ``value`` (a number or a list of numbers) is outside
    ``rng`` (default: its :data:`OPTION_RANGES` entry). ``None`` (= the default) always passes."""
    rng = rng or OPTION_RANGES.get(name)
    if rng is None or value is None or isinstance(value, bool):
        return
    for v in value if isinstance(value, (list, tuple)) else (value,):
        problem = rng.problem(v)
        if problem:
            why = f" ({rng.why})" if rng.why and "must be finite" not in problem else ""
            rest = f" {problem}, got {v!r}{why}".replace("{", "{{").replace("}", "}}")  # a template for the name
            raise OptionError("{" + name + "}" + rest, name)


def check_options(values: Mapping | object | None = None, /, **kwargs) -> None:
    """Range-check every option of :data:`OPTION_RANGES` found in ``values`` (a dict, an ``argparse.Namespace``
    or an options dataclass) and ``kwargs``; unknown names and ``None`` values are skipped.

    Args:
        values: the options (e.g. ``vars(args)``).
        **kwargs: more options by name.

    Raises:
        OptionError: ``option must be ..., got value`` for the first option out of range (a ``ValueError``).

    Example:
        >>> import argparse
        >>> check_options(argparse.Namespace(epochs=-5, seed=0))
        Traceback (most recent call last):
        ...
        hpatches_kit.errors.OptionError: epochs must be >= 1, got -5
    """
    if values is not None and not isinstance(values, Mapping):
        values = vars(values) if hasattr(values, "__dict__") else {}
    for name, value in {**(values or {}), **kwargs}.items():
        check_value(name, value)
