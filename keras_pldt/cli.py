"""What every command line shares: the help formatter, TensorFlow's C++ log level and the
one-line message of a `keras_pldt.errors.PLDTError`.

Nothing here runs at import: each command's `main` calls `quiet_tensorflow` before it imports
TensorFlow, so the library itself never changes the process's environment.
"""

from __future__ import annotations

import argparse
import os
import sys

from keras_pldt.errors import PLDTError

#: TensorFlow's C++ log level the commands run at: 3 hides INFO, WARNING and ERROR lines such
#: as "failed call to cuInit" on a CPU-only machine, which a user reads as a failure.
QUIET_LEVEL = "3"


def quiet_tensorflow(verbose: bool = False) -> None:
    """Keep TensorFlow's C++ log quiet unless `verbose` or the user's own TF_CPP_MIN_LOG_LEVEL
    asks for it. Call it in a command's `main`, before TensorFlow is imported."""
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", QUIET_LEVEL)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def fail(prefix: str, error: BaseException, code: int = 2) -> int:
    """Print `error` on stderr as `prefix: message` and return the command's exit status:
    `code`, or the error's own `exit_code` (`PLDTError`). Every command's `main` turns a
    `PLDTError` into its message here."""
    print(f"{prefix}: {error}", file=sys.stderr)
    own = error.exit_code if isinstance(error, PLDTError) else None
    return code if own is None else own


class HelpFormatter(argparse.HelpFormatter):
    """Shows an option's default once: only when it has one and its help does not already
    say what it is."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (
            action.default is None
            or action.default is False
            or action.default == []
            or action.default == argparse.SUPPRESS
            or "default" in text.lower()
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"
