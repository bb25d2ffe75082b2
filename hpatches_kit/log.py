"""Logging for the toolkit: the ``"hpatches_kit"`` logger, the CLIs' ``-q/-v`` and a quiet TensorFlow.

The rule: library modules log through ``logging.getLogger(__name__)`` (children of ``"hpatches_kit"``) and never
configure logging; ``print`` is only for a command's result (tables on stdout). The library adds no handler,
so an application that imports it decides what is shown (unconfigured, Python prints warnings and drops INFO). The CLIs call
:func:`setup_cli_logging` once after parsing: one stderr handler printing the bare message, level INFO
(``-q``: WARNING, ``-v``: DEBUG), and TensorFlow's C++/absl start-up chatter hidden unless ``-v``.

TensorFlow prints two kinds of lines a user should not have to read in a normal CPU run:

* C++ log lines after absl's log initialisation (``E0000 ... failed call to cuInit``, the CPU-feature note):
  ``TF_CPP_MIN_LOG_LEVEL=3`` hides them; it must be set before TensorFlow is imported.
* lines written while its shared libraries load, before ``absl::InitializeLog()`` (``WARNING: All log
  messages before absl::InitializeLog() ...``, ``oneDNN custom operations are on ...``, ``Could not find
  cuda drivers ...``): no environment variable reaches those (``TF_ENABLE_ONEDNN_OPTS=0`` would hide one of
  them by switching oneDNN off, which changes speed and numerics). :func:`quiet_tensorflow` therefore
  filters file descriptor 2 while, and only while, ``import tensorflow`` runs (an import hook; nothing is
  imported early): glog/absl-formatted lines are dropped, every other line is written back unchanged.

Example:
    >>> import logging
    >>> logging.getLogger("hpatches_kit.data.hpatches").parent.name
    'hpatches_kit'
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import logging
import os
import re
import sys
import tempfile

__all__ = [
    "LOGGER_NAME",
    "add_verbosity_arguments",
    "verbosity",
    "add_stderr_handler",
    "setup_cli_logging",
    "quiet_tensorflow",
    "is_tensorflow_log_line",
]

LOGGER_NAME = "hpatches_kit"

# "I0000 00:00:1796585496.670827    7901 port.cc:153] ..." (absl/glog prefix) and absl's pre-init warning
_TF_LINE = re.compile(
    r"^(?:[IWEF]\d{4} [\d:.]+\s+\d+ [^\s\]]+:\d+\] "
    r"|WARNING: All log messages before absl::InitializeLog\(\))"
)
_ENV_SET = False  # TF_CPP_MIN_LOG_LEVEL was set by quiet_tensorflow (not by the user)


def is_tensorflow_log_line(line: str) -> bool:
    """True for a TensorFlow/absl C++ log line (``I0000 ... file.cc:12] ...``) or absl's pre-init warning.

    Example:
        >>> is_tensorflow_log_line("E0000 00:00:1796.583 7901 cuda_platform.cc:52] failed call to cuInit: x")
        True
        >>> is_tensorflow_log_line("[data] /d: 4 train / 2 held-out sequences")
        False
    """
    return bool(_TF_LINE.match(line))


class _StderrHandler(logging.StreamHandler):
    """A stream handler writing to whatever ``sys.stderr`` is at emit time (pytest's capture swaps it)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # StreamHandler.__init__ assigns it
        pass


def add_verbosity_arguments(parser, suppress_defaults: bool = False, long_verbose: bool = True) -> None:
    """Add ``-q/--quiet`` and ``-v/--verbose`` (both counting; dests ``quiet`` and ``log_verbose``).

    Args:
        parser: the parser (or sub-parser).
        suppress_defaults: ``True`` for a sub-parser that repeats the top-level options (its absent flags then
            leave the top-level values alone).
        long_verbose: also spell ``-v`` as ``--verbose`` (``hpatches-train`` keeps ``--verbose N`` for Keras'
            progress display, so there ``-v`` has no long form).
    """
    import argparse

    default = argparse.SUPPRESS if suppress_defaults else 0
    g = parser.add_mutually_exclusive_group()
    g.add_argument(
        "-q",
        "--quiet",
        action="count",
        default=default,
        help="only warnings and errors (no [data]/[note]/[done] lines)",
    )
    g.add_argument(
        *(("-v", "--verbose") if long_verbose else ("-v",)),
        dest="log_verbose",
        action="count",
        default=default,
        help="more detail: debug messages and TensorFlow's own C++/absl log lines",
    )


def verbosity(args) -> int:
    """``-v`` count minus ``-q`` count of a parsed namespace (0 when it has neither)."""
    return int(getattr(args, "log_verbose", 0) or 0) - int(getattr(args, "quiet", 0) or 0)


def add_stderr_handler(level: int = logging.INFO) -> logging.Logger:
    """Show the toolkit's messages (``level`` and above) as bare lines on ``sys.stderr`` (idempotent).

    The ``"hpatches_kit"`` logger gets one handler that writes to whatever ``sys.stderr`` is at the time and
    stops propagating (TensorFlow installs absl's handler on the root logger, which would print them again).

    Args:
        level: a ``logging`` level.

    Returns:
        The ``"hpatches_kit"`` logger.
    """
    log = logging.getLogger(LOGGER_NAME)
    for h in list(log.handlers):
        if isinstance(h, _StderrHandler):
            log.removeHandler(h)
    h = _StderrHandler()
    h.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(h)
    log.setLevel(level)
    log.propagate = False
    return log


def setup_cli_logging(level: int = 0) -> logging.Logger:
    """Configure logging for a command-line run: :func:`add_stderr_handler` and :func:`quiet_tensorflow`.

    Args:
        level: :func:`verbosity`: ``< 0`` warnings only, ``0`` info, ``> 0`` debug and TensorFlow's own logs.

    Returns:
        The ``"hpatches_kit"`` logger.
    """
    log = add_stderr_handler(logging.WARNING if level < 0 else logging.INFO if level == 0 else logging.DEBUG)
    quiet_tensorflow(verbose=level > 0)
    return log


@contextlib.contextmanager
def _filtered_stderr():
    """Send file descriptor 2 to a temporary file; afterwards write back every line that is not TF chatter."""
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    saved = os.dup(2)
    tmp = tempfile.TemporaryFile()
    os.dup2(tmp.fileno(), 2)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        tmp.seek(0)
        keep = [
            ln
            for ln in tmp.read().decode("utf-8", "replace").splitlines(keepends=True)
            if not is_tensorflow_log_line(ln)
        ]
        tmp.close()
        if keep:
            os.write(2, "".join(keep).encode())


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        with _filtered_stderr():
            self._loader.exec_module(module)


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Wraps the loader of the top-level ``tensorflow`` package so that its import runs under the filter."""

    active = True
    _busy = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow" or not self.active or self._busy:
            return None
        self._busy = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._busy = False
        if spec is None or spec.loader is None:
            return None
        spec.loader = _QuietLoader(spec.loader)
        return spec


_FINDER = _QuietTensorFlowFinder()


def quiet_tensorflow(verbose: bool = False) -> None:
    """Hide (``verbose=False``) or show TensorFlow's C++/absl log lines; call before TensorFlow is imported.

    Sets ``TF_CPP_MIN_LOG_LEVEL=3`` unless the user set it, installs the import-time stderr filter (see the
    module docstring) and, once TensorFlow is loaded, lowers its Python and absl loggers to errors. With
    ``verbose=True`` it undoes all of that (a value the user set stays). A TensorFlow already imported keeps
    the C++ level it read at import.

    Args:
        verbose: show TensorFlow's own log lines.
    """
    global _ENV_SET
    if verbose:
        if _ENV_SET:
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
            _ENV_SET = False
        _FINDER.active = False
        level = logging.NOTSET
    else:
        if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
            _ENV_SET = True
        _FINDER.active = True
        level = logging.ERROR
        if _FINDER not in sys.meta_path:
            sys.meta_path.insert(0, _FINDER)
    for name in ("tensorflow", "absl"):
        logging.getLogger(name).setLevel(level)
