"""The errors a user can fix: one base class, `PLDTError`, and one subclass per concern.

Every command's `main` catches `PLDTError` and prints it as one line (`keras_pldt.cli.fail`);
the library raises these and nothing re-wraps one into another. Each subclass also derives
from the built-in exception it stands for, so code that catches that built-in still works.
"""

from __future__ import annotations


class PLDTError(Exception):
    """A problem the user can fix (a bad folder, setting, file or photo): one line, no
    traceback. `exit_code` overrides the command's usual failure status when set."""

    exit_code: int | None = None


class RunError(PLDTError, RuntimeError):
    """A run folder or a run's settings: unwritable or foreign folder, bad config, missing
    checkpoint."""


class TrainingDiverged(RunError):
    """A loss became NaN/inf; the last good checkpoint is kept."""

    exit_code = 3


class DataError(PLDTError, ValueError):
    """A data problem: missing or empty folder, unusable manifest, too few products."""


class EvalError(PLDTError, RuntimeError):
    """An evaluation that cannot run: unknown or empty split, no domain discriminator."""


class ExportError(PLDTError, RuntimeError):
    """An export that cannot be made or misses its parity thresholds, or its bad inputs."""


class ReproduceError(PLDTError, RuntimeError):
    """A Table 3 reproduction's bad method, recipe file or setting."""


class ModelError(PLDTError, ValueError):
    """A path that is not a model this package can open."""


class MissingRuntime(PLDTError, ImportError):
    """A runtime package is not installed; the message names the pip command."""


class UploadError(PLDTError, ValueError):
    """A bad upload to the demo; the message is shown on the page as is."""


__all__ = [
    "DataError",
    "EvalError",
    "ExportError",
    "MissingRuntime",
    "ModelError",
    "PLDTError",
    "ReproduceError",
    "RunError",
    "TrainingDiverged",
    "UploadError",
]
