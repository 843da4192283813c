"""The run folder: the one contract between train, evaluate, reproduce, export and convert.

Layout of a run folder (`RunFolder(path)`)::

    config.json          the run's PLDTConfig (identity and runtime fields), data and versions
    split.json           the product split (train / val / test) of the data
    checkpoints/         epoch_NNN.weights.h5 (last epoch), best.weights.h5, state.json
    logs/                TensorBoard event files
    samples/             epoch_NNN.png: source | generated | target
    history.csv          one row per completed epoch
    converter.keras      the final converter (plain Keras layers; loads without keras_pldt)

Only this module spells these names. `prepare` writes nothing until the caller has validated
its inputs; `check` refuses a folder that holds a different run (its identity fields, see
`PLDTConfig.identity`) and reports runtime settings that differ, which a resume may change.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from keras_pldt.config import PLDTConfig
from keras_pldt.errors import ModelError, RunError

CONFIG = "config.json"
SPLIT = "split.json"
CHECKPOINTS = "checkpoints"
STATE = "state.json"
BEST = "best.weights.h5"
LOGS = "logs"
SAMPLES = "samples"
HISTORY = "history.csv"
FINAL = "converter.keras"
ARTEFACTS = (CONFIG, SPLIT, CHECKPOINTS, LOGS, SAMPLES, HISTORY, FINAL)
#: Which weights of a run to load: the last completed epoch, the best by the monitored metric,
#: or the final converter.keras ("converter").
WEIGHTS = ("last", "best", "converter")
#: The name prefix of the temp files and folders of a write in progress: `.tmp-<pid>-<name>`.
TEMP_PREFIX = ".tmp-"


def temp_path(path: str | Path) -> Path:
    """Where this process writes `path` before moving it into place: `.tmp-<pid>-<name>` beside
    it (the name keeps its suffix, which Keras' writers require)."""
    path = Path(path)
    return path.with_name(f"{TEMP_PREFIX}{os.getpid()}-{path.name}")


def atomic_write(path: str | Path, content: bytes | Callable[[Path], object]) -> None:
    """Write `path` so that a reader sees the old file or the new one, never half of it.

    `content` is the bytes, or a function that writes the file at the temp path it is given
    (`model.save_weights`, `keras.saving.save_model`). The file is created with the user's
    umask; a kill in between leaves only a `temp_path` file, which `remove_interrupted_writes`
    removes on the next start.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        if callable(content):
            content(tmp)
        else:
            with open(tmp, "wb") as f:
                f.write(content)
        if tmp.is_file():
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _writer_alive(name: str) -> bool:
    """Whether the process whose id a `.tmp-<pid>-...` name holds is still running."""
    pid = name[len(TEMP_PREFIX) :].split("-", 1)[0]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def remove_interrupted_writes(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Remove the temp files and folders that writes of a process no longer running left in
    `folder` (and its subfolders when `recursive`; `temp_path` names); returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = (folder.rglob if recursive else folder.glob)(f"{TEMP_PREFIX}*")
    stale = [p for p in found if not _writer_alive(p.name)]
    for path in sorted(stale, reverse=True):
        _remove(path)
    return stale


def writable_folder_problem(path: str | Path) -> str | None:
    """Why the folder `path` (existing, or to be created with its missing parents) cannot be
    written by this user, or None when it can. Writes nothing."""
    path = Path(path).absolute()
    if path.exists() and not path.is_dir():
        return f"{path} is a file, not a folder"
    existing = path
    while not existing.exists():
        if existing.is_symlink():
            return f"{existing} is a broken link"
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        reason = os.strerror(errno.EROFS if _read_only_fs(existing) else errno.EACCES).lower()
        return f"{existing} is not writable ({reason})"
    return None


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _read_json(path: Path) -> dict[str, Any] | None:
    """A run folder's JSON file, None when absent; RunError naming it when unreadable."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise RunError(f"cannot read {path}: {e}") from None


def write_history_csv(path: str | Path, history: list[dict]) -> None:
    """`history` (one dict per epoch) as CSV, columns in first-seen order."""
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    atomic_write(path, buf.getvalue().encode())


def load_converter(
    source: str | Path | RunFolder, weights: str = "converter", *, with_config: bool = False
):
    """The converter (a plain-Keras `keras.Model`, input [None, S, S, 3]) of a run folder or a
    `.keras` file; with `with_config`, (converter, config dict or None).

    A run folder gives its `weights` (`WEIGHTS`): "converter", the final converter.keras, or
    the converter of the "last" or "best" checkpoint; its config is config.json. A `.keras`
    file is loaded as it is (a whole `PLDT` model gives its converter and its config); its
    config is otherwise that of the run folder holding it. RunError or
    ModelError, one line, when the source cannot give a converter.
    """
    import keras

    import keras_pldt.model  # noqa: F401  (registers PLDT and its layers for loading)
    from keras_pldt.precision import float32_copy

    run = source if isinstance(source, RunFolder) else None
    path = run.path if run is not None else Path(source)
    if weights not in WEIGHTS:
        raise RunError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    if not path.exists():
        raise RunError(f"{path} does not exist")
    if path.is_dir():
        run = run or RunFolder(path)
        if weights != "converter":
            model = float32_copy(run.load_model(weights).converter)
            return (model, run.saved()) if with_config else model
        if not run.final_model.is_file():
            raise RunError(
                f"{run.final_model} does not exist (the run has not finished); "
                "load the 'last' checkpoint instead"
            )
        path, config = run.final_model, run.saved()
    else:
        config = None
    try:
        model = keras.saving.load_model(path, compile=False)
    except (ValueError, TypeError, OSError, zipfile.BadZipFile) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ModelError(f"cannot load a Keras model from {path}: {first}") from None
    if isinstance(getattr(model, "converter", None), keras.Model):  # a whole PLDT
        config = model.config.to_dict() if hasattr(model, "config") else config
        model = model.converter
    model = float32_copy(model)  # a mixed-precision run's converter, as it deploys
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3:
        raise ModelError(f"expected a converter with input [None, S, S, 3], got {shape}")
    if with_config:
        return model, config or RunFolder(path.parent).saved()
    return model


class RunFolder:
    """Paths, state and loading of one run folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # ------------------------------------------------------------------ layout
    config_path = property(lambda self: self.path / CONFIG)
    split_path = property(lambda self: self.path / SPLIT)
    checkpoints = property(lambda self: self.path / CHECKPOINTS)
    state_path = property(lambda self: self.path / CHECKPOINTS / STATE)
    best_weights = property(lambda self: self.path / CHECKPOINTS / BEST)
    logs = property(lambda self: self.path / LOGS)
    samples = property(lambda self: self.path / SAMPLES)
    history_csv = property(lambda self: self.path / HISTORY)
    final_model = property(lambda self: self.path / FINAL)

    def epoch_weights(self, epoch: int) -> Path:
        """The checkpoint file of completed epoch `epoch` (1-based)."""
        return self.checkpoints / f"epoch_{epoch:03d}.weights.h5"

    def is_run(self) -> bool:
        """Whether the folder holds a run (its config.json)."""
        return self.config_path.is_file()

    def check_writable(self) -> None:
        """RunError naming the folder and the reason when this user cannot create or write
        it (or its checkpoints); writes nothing. Call it before any slow work."""
        for folder in (self.path, self.checkpoints):
            problem = writable_folder_problem(folder)
            if problem is not None:
                raise RunError(f"cannot write the run folder {self.path}: {problem}")
            if not folder.is_dir():
                break

    # ------------------------------------------------------------------ config
    def saved(self) -> dict[str, Any] | None:
        """config.json as written (config fields plus data and versions), or None."""
        return _read_json(self.config_path)

    def config(self) -> PLDTConfig:
        """The run's PLDTConfig; RunError when the folder is not a run."""
        saved = self.saved()
        if saved is None:
            raise RunError(f"{self.path} is not a run folder (no {CONFIG}); train one first")
        try:
            return PLDTConfig.from_dict(saved)
        except (TypeError, ValueError) as e:
            raise RunError(f"{self.config_path}: {e}") from None

    def data_of_run(self) -> tuple[str | None, str | None]:
        """(data folder, manifest) the run was trained on, from config.json."""
        saved = self.saved() or {}
        return saved.get("data"), saved.get("manifest")

    def check(
        self, config: PLDTConfig, data_id: dict[str, Any], overwrite: bool = False
    ) -> list[str]:
        """Whether `config` on `data_id` may use this folder; writes nothing.

        Returns the runtime fields that differ from the saved run (a resume may change them).
        Raises RunError when the folder holds another run (identity fields or data differ)
        and `overwrite` is False.
        """
        saved = self.saved()
        if saved is None:
            return []
        differing = self.differing_identity(config, data_id)
        if differing and not overwrite:
            raise RunError(
                f"{self.path} holds a run with a different config ({', '.join(differing)}); "
                "use another --run-dir, or --overwrite to replace it"
            )
        if differing:
            return []
        runtime = config.runtime()
        return [k for k, v in runtime.items() if k in saved and saved[k] != v]

    def differing_identity(self, config: PLDTConfig, data_id: dict[str, Any]) -> list[str]:
        """Identity fields (and "data") in which `config` differs from the saved run."""
        saved = self.saved()
        if saved is None:
            return []
        differing = [k for k, v in config.identity().items() if saved.get(k, v) != v]
        if {k: saved.get(k) for k in data_id} != data_id:
            differing.append("data")
        return differing

    def prepare(
        self, config: PLDTConfig, data_id: dict[str, Any], overwrite: bool = False, **extra: Any
    ) -> None:
        """Create the folder and write config.json (clearing another run when `overwrite`).

        Call it once the command's inputs are validated: it is the first write. A resumed run
        keeps its config.json, updated with the runtime settings of this invocation; the temp
        files of a write that a kill interrupted are removed.
        """
        self.check_writable()
        if self.differing_identity(config, data_id):
            if not overwrite:
                self.check(config, data_id, overwrite)
            self.clear()
        self.path.mkdir(parents=True, exist_ok=True)
        remove_interrupted_writes(self.path)
        saved = self.saved() or {}
        record = {**saved, **config.to_dict(), **data_id, **extra}
        atomic_write(
            self.config_path, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
        )

    def clear(self) -> None:
        """Remove every artefact of a run (other files in the folder are left alone)."""
        for name in ARTEFACTS:
            target = self.path / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()

    # ------------------------------------------------------------------ split
    def read_split(self) -> dict[str, Any] | None:
        return _read_json(self.split_path)

    def write_split(self, record: dict[str, Any]) -> None:
        """split.json, unless the run has one (a run's split never changes)."""
        if not self.split_path.exists():
            atomic_write(self.split_path, json.dumps(record, indent=1).encode())

    # ------------------------------------------------------------------ state
    def state(self) -> dict[str, Any] | None:
        """checkpoints/state.json: last completed epoch, its weights file, history, best."""
        return _read_json(self.state_path)

    def completed_epochs(self) -> int:
        state = self.state()
        return int(state["epoch"]) if state else 0

    def save_checkpoint(self, model, epoch: int, logs: dict[str, float], monitor: str) -> None:
        """After epoch `epoch` (1-based): full state to `epoch_NNN.weights.h5`, then state.json
        pointing at it, then older epochs removed; so a kill at any moment leaves a consistent
        last epoch. The best epoch by `monitor` (lower is better) is kept as best.weights.h5,
        and history.csv is rewritten from the state (no row for an epoch a resume repeats)."""
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        weights = self.epoch_weights(epoch)
        self._save_weights(model, weights)
        state = self.state() or {"epoch": 0, "history": [], "best": None}
        value = logs.get(monitor, logs.get(monitor.removeprefix("val_")))
        best = state.get("best")
        if value is not None and (best is None or value < best["value"]):
            self._save_weights(model, self.best_weights)
            best = {"epoch": epoch, "monitor": monitor, "value": value}
        history = [row for row in state["history"] if row["epoch"] < epoch]
        history.append({"epoch": epoch, **logs})
        state = {"epoch": epoch, "weights": weights.name, "history": history, "best": best}
        atomic_write(self.state_path, json.dumps(state, indent=1).encode())
        for old in self.checkpoints.glob("epoch_*.weights.h5"):
            if old.name != weights.name:
                old.unlink(missing_ok=True)
        write_history_csv(self.history_csv, history)

    @staticmethod
    def _save_weights(model, path: Path) -> None:
        atomic_write(path, model.save_weights)

    def weights_path(self, which: str = "last") -> Path:
        """The checkpoint file of `which` ("last" or "best"); RunError when absent."""
        if which not in ("last", "best"):
            raise RunError(f"weights must be 'last' or 'best' for a checkpoint, got {which!r}")
        state = self.state()
        if state is None:
            raise RunError(f"{self.path} has no checkpoint ({CHECKPOINTS}/{STATE}); train it first")
        path = self.best_weights if which == "best" else self.checkpoints / state["weights"]
        if not path.is_file():
            raise RunError(f"missing checkpoint {path}")
        return path

    # ------------------------------------------------------------------ loading
    def load_model(self, which: str = "last"):
        """The full `PLDT` (converter, D_R, D_A, optimizers) from the last or best checkpoint."""
        from keras_pldt.model import PLDT

        model = PLDT(self.config())
        model.compile()
        self.restore(model, which)
        return model

    def restore(self, model, which: str = "last") -> None:
        """Load the last or best checkpoint into a compiled `model` of this run.

        Every runtime setting builds the same layers and variables (`subpixel_convs` included),
        so a resume may change them. A checkpoint
        that does not fit the model raises RunError, which names a checkpoint of the earlier
        layout, whose fast-kernel layer classes stored their variables apart."""
        import h5py

        path = self.weights_path(which)
        try:
            model.load_weights(path)
        except ValueError as err:
            with h5py.File(path, "r") as checkpoint:
                names = []
                checkpoint.visit(names.append)
            if any("subpixel" in name for name in names):
                raise RunError(
                    f"{path} was written by an earlier keras-pldt whose fast kernels stored "
                    "weights apart; retrain, or export it with keras-pldt at commit 17a4359"
                ) from None
            reason = str(err).strip().splitlines()[0]
            raise RunError(f"{path} does not fit this run's networks: {reason}") from None

    #: `load_converter` of this folder: `RunFolder(path).load_converter("last")`.
    load_converter = load_converter

    def save_final(self, converter) -> bool:
        """Write converter.keras atomically, computing in float32 whatever the training
        precision (`precision.float32_copy`); False (nothing written) when it is up to date
        with the last checkpoint."""
        import keras

        from keras_pldt.precision import float32_copy

        final, state = self.final_model, self.state_path
        if final.is_file() and state.is_file() and final.stat().st_mtime >= state.stat().st_mtime:
            return False
        plain = float32_copy(converter)
        atomic_write(final, lambda tmp: keras.saving.save_model(plain, tmp))
        return True
