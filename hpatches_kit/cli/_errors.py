"""One error policy for all three CLIs (``hpatches-data``, ``hpatches-eval``, ``hpatches-train``).

Bad input (:class:`~hpatches_kit.data.errors.DataError` is a ``ValueError``; an
:class:`~hpatches_kit.errors.OptionError` names library options, shown here as their flags), an unwritable or full disk
(``OSError``) and a command's own argument checks (``SystemExit`` with a message) end in one line
``PROG: error: ...`` on stderr and exit status 2, without a traceback; Ctrl-C ends with ``interrupted`` and 130.
"""

from __future__ import annotations

import contextlib
import sys


def flag(option: str) -> str:
    """The command-line flag of a library option name (``"val_every"`` -> ``"--val-every"``): the one mapping,
    :func:`hpatches_kit.training.run.flag_name` (negated switches such as ``evaluate`` -> ``--no-eval``)."""
    from ..training.run import flag_name

    return flag_name(option)


@contextlib.contextmanager
def options_as_flags():
    """Within a command's ``run``: an :class:`~hpatches_kit.errors.OptionError` of the library leaves as a
    ``ValueError`` whose message names the flags (``epochs`` -> ``--epochs``)."""
    from ..errors import OptionError

    try:
        yield
    except OptionError as e:
        raise ValueError(e.render(flag)) from e


def error_line(e: BaseException) -> str:
    """The first line of ``e``'s message, prefixed with the file an ``OSError`` names when the message does not.

    Args:
        e: the exception.

    Returns:
        One line (the exception's type name when it has no message).

    Examples:
        >>> error_line(FileNotFoundError(2, "No such file or directory", "/x/y"))
        "[Errno 2] No such file or directory: '/x/y'"
        >>> error_line(PermissionError(13, "Permission denied"))
        '[Errno 13] Permission denied'
    """
    from ..errors import OptionError

    text = e.render(flag) if isinstance(e, OptionError) else str(e)  # the library's option names as flags
    msg = (text.strip().splitlines() or [type(e).__name__])[0]
    if isinstance(e, OSError) and e.filename and str(e.filename) not in msg:
        msg = f"{e.filename}: {msg}"
    return msg


def _toolkit_dir() -> str:
    from pathlib import Path

    return str(Path(__file__).resolve().parents[1])


def _library_dirs() -> list[str]:
    """Folders of code that is not the user's: the toolkit, the standard library, installed packages."""
    import sysconfig
    from pathlib import Path

    dirs = {_toolkit_dir()}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        with contextlib.suppress(KeyError):
            dirs.add(str(Path(sysconfig.get_paths()[key]).resolve()))
    return sorted(dirs)


def user_frame(e: BaseException) -> str | None:
    """Where ``e`` was raised when that is a user's module (``--import MODULE``, a ``MODULE:FUNCTION`` plug-in):
    ``"module mymod (mymod.py:12)"``, else ``None``. Frames are read innermost first; library code a user's
    module called (NumPy, Keras) is looked through, the first toolkit frame ends the search (the toolkit's own
    error, which it reports itself)."""
    import os
    import traceback

    tb = e.__traceback__
    frames = [f for f, _ in traceback.walk_tb(tb)] if tb is not None else []
    toolkit, libs = _toolkit_dir(), _library_dirs()
    for frame in reversed(frames):
        path = os.path.realpath(frame.f_code.co_filename)
        if path.startswith(toolkit + os.sep):
            return None
        generated = os.path.basename(path).startswith("__autograph_generated_file")  # TensorFlow's traced copies
        if frame.f_code.co_filename.startswith("<") or generated or any(path.startswith(d + os.sep) for d in libs):
            continue
        module = frame.f_globals.get("__name__", "?")
        return f"module {module} ({os.path.basename(path)}:{frame.f_lineno})"
    return None


def _verbose() -> bool:
    import logging

    from ..log import LOGGER_NAME

    return logging.getLogger(LOGGER_NAME).isEnabledFor(logging.DEBUG)


def run_command(prog: str, fn, *args, on_error=None) -> int:
    """Call ``fn(*args)`` and map its errors to exit codes.

    Args:
        prog: the prefix of the error line (e.g. ``"hpatches-train descriptor"``).
        fn: the command; its return value (``None`` counts as 0) is the exit status.
        *args: passed to ``fn``.
        on_error: called with no arguments before the error line is printed (e.g. to remove an empty
            output folder).

    Returns:
        ``fn``'s status, 2 after a ``ValueError``/``OSError``/``SystemExit("message")``, 130 after Ctrl-C.
    """
    user = failed = None
    try:
        return int(fn(*args) or 0)
    except (ValueError, OSError) as e:
        msg, user, failed = error_line(e), user_frame(e), e
        if user:
            msg = f"{user} raised {type(e).__name__}: {msg}"
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            raise
        msg = str(e.code).strip().splitlines()[0] if str(e.code).strip() else "error"
        if msg.startswith("hpatches-") and ": " in msg:  # "hpatches-eval: --x needs --y": drop the repeated prog
            msg = msg.split(": ", 1)[1]
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a user's module failing is their error, reported in one line; the toolkit's: raised
        user, failed = user_frame(e), e
        if user is None:
            raise
        msg = f"{user} raised {type(e).__name__}: {error_line(e)}"
    if on_error is not None:
        on_error()
    if user:
        if _verbose():
            import traceback

            traceback.print_exception(failed)
        else:
            msg += " (-v shows the traceback)"
    print(f"{prog}: error: {msg}", file=sys.stderr)
    return 2
