"""Callbacks of a PLDT run: the paper's learning-rate schedule for all three optimizers, the
sample grid (TensorBoard and PNG), NaN stop, atomic resumable checkpoints, a readable epoch line.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_pldt.config import PLDTConfig
from keras_pldt.run import RunFolder, atomic_write, write_history_csv
from keras_pldt.schedule import PaperSchedule, learning_rate

__all__ = [
    "EpochSummary", "NaNGuard", "PaperLearningRateSchedule", "RunCheckpoint", "SampleGrid",
    "TensorBoard", "read_state", "sample_grid", "write_history_csv",
]  # fmt: skip


class PaperLearningRateSchedule(keras.callbacks.Callback):
    """Sec. 5.2 for every network's optimizer: the config's rate for `epochs` epochs, then the
    decayed rate (`schedule.learning_rate`).

    Optimizers built by `make_optimizer` carry the schedule already (`PaperSchedule`, which
    `PLDT.fit` sets up); this callback drives optimizers with a plain rate, such as a user's
    own Adams, the same way, and logs the converter's rate as `learning_rate`.
    """

    def __init__(self, config: PLDTConfig):
        super().__init__()
        self.config = config

    def rate(self, epoch: int) -> float:
        return learning_rate(self.config, epoch)

    def on_epoch_begin(self, epoch, logs=None):
        for name, optimizer in self.model.optimizers.items():
            inner = getattr(optimizer, "inner_optimizer", optimizer)
            if not isinstance(inner._learning_rate, PaperSchedule):
                inner.learning_rate = learning_rate(self.config, epoch, name)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = self.rate(epoch)


class TensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard with every epoch's scalars, and batch steps that go on from the
    optimizer's step when a run resumes.

    Keras writes the epoch scalars under the record-if condition of its batch-level
    `update_freq`, so only epochs whose last step is a multiple of it kept them; and it counts
    batch steps from 1 in every `fit`.
    """

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._global_train_batch = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def _log_epoch_metrics(self, epoch, logs):
        with tf.summary.record_if(True):
            super()._log_epoch_metrics(epoch, logs)


def sample_grid(source, generated, target) -> np.ndarray:
    """Rows of source | generated | ground-truth target (Fig. 5 layout), uint8 [H, W, 3]."""
    to_uint8 = lambda x: np.clip(
        np.nan_to_num((np.asarray(x, np.float32) + 1.0) * 127.5 + 0.5), 0, 255
    ).astype(np.uint8)
    rows = [np.concatenate([to_uint8(s), to_uint8(g), to_uint8(t)], axis=1) for s, g, t in zip(
        source, generated, target, strict=True
    )]  # fmt: skip
    return np.concatenate(rows, axis=0)


def encode_png(image: np.ndarray) -> bytes:
    return tf.io.encode_png(tf.constant(image, tf.uint8)).numpy()


class SampleGrid(keras.callbacks.Callback):
    """Every epoch: the converter on a fixed batch, as `samples/epoch_NNN.png` and as a
    TensorBoard image in `logs/samples`, tagged `tag` (say which photos these are: held-out
    or training)."""

    def __init__(
        self,
        source,
        target,
        run_dir: str | Path,
        log_dir: str | Path | None = None,
        tag: str = "source | generated | target",
    ):
        super().__init__()
        self.tag = tag
        self.source = np.asarray(source, np.float32)
        self.target = np.asarray(target, np.float32)
        self.sample_dir = RunFolder(run_dir).samples
        self.log_dir = Path(log_dir) if log_dir else None
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        generated = self.model.converter(self.source, training=False).numpy()
        grid = sample_grid(self.source, generated, self.target)
        self.sample_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.sample_dir / f"epoch_{epoch + 1:03d}.png", encode_png(grid))
        if self.log_dir is not None:
            if self._writer is None:
                self._writer = tf.summary.create_file_writer(str(self.log_dir / "samples"))
            with self._writer.as_default(), tf.summary.record_if(True):
                tf.summary.image(self.tag, grid[None], step=epoch + 1)
            self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()


class NaNGuard(keras.callbacks.TerminateOnNaN):
    """`TerminateOnNaN` for PLDT's losses (there is no single `loss`): stops at the first
    NaN/inf loss, or at the end of an epoch whose loss grew `growth` times from its value at
    the first step (a diverging run: too high a learning rate), and says where, so the
    checkpoint keeps the last good epoch."""

    def __init__(self, growth: float = 1e3):
        super().__init__()
        self.growth = growth
        self.epoch = 0
        self.failure: str | None = None
        self._first: dict[str, float] = {}

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        for name, value in (logs or {}).items():
            if not name.endswith("_loss"):
                continue
            value = float(value)
            if not math.isfinite(value):
                self.failure = f"{name} became {value} at epoch {self.epoch + 1}, step {batch + 1}"
                self.model.stop_training = True
                return
            self._first.setdefault(name, abs(value))

    def on_epoch_end(self, epoch, logs=None):
        if self.failure:
            return
        for name, value in (logs or {}).items():
            first = self._first.get(name)
            if first is not None and abs(float(value)) > self.growth * max(first, 1.0):
                self.failure = (
                    f"{name} grew from {first:.3g} to {float(value):.3g} by the end of epoch "
                    f"{epoch + 1}: the run diverges (lower --learning-rate)"
                )
                self.model.stop_training = True
                return


class RunCheckpoint(keras.callbacks.Callback):
    """Atomic, resumable checkpoints of the full state (the three networks and optimizers)
    after each epoch, the best epoch by `monitor`, and `history.csv`
    (`RunFolder.save_checkpoint`). Epochs in which `nan_guard` fired are not saved."""

    def __init__(self, run_dir, monitor="val_rmse", nan_guard: NaNGuard | None = None):
        super().__init__()
        self.run = RunFolder(run_dir)
        self.monitor = monitor
        self.nan_guard = nan_guard

    def on_epoch_end(self, epoch, logs=None):
        if self.nan_guard is not None and self.nan_guard.failure:
            return
        logs = {k: float(v) for k, v in (logs or {}).items()}
        self.run.save_checkpoint(self.model, epoch + 1, logs, self.monitor)


def read_state(run_dir) -> dict | None:
    """The checkpoint state of a run (last completed epoch, weights file), or None."""
    return RunFolder(run_dir).state()


class Progress(keras.callbacks.ProgbarLogger):
    """Keras' progress bar with what a person watches: the converter's loss, D_R's and D_A's
    losses and RMSE (validation too). Every logged value stays in `history.csv` and
    TensorBoard."""

    SHOWN = ("converter_loss", "real_fake_loss", "domain_loss", "rmse")

    def _shown(self, logs):
        keep = {*self.SHOWN, *(f"val_{name}" for name in self.SHOWN)}
        return {k: v for k, v in (logs or {}).items() if k in keep}

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, self._shown(logs))

    def on_test_batch_end(self, batch, logs=None):
        super().on_test_batch_end(batch, self._shown(logs))

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, self._shown(logs))

    def on_test_end(self, logs=None):
        super().on_test_end(self._shown(logs))


class EpochSummary(keras.callbacks.Callback):
    """One readable line per epoch: losses, accuracies, validation RMSE, lr, images/s."""

    LABELS = {
        "converter_loss": "C",
        "real_fake_loss": "D_R",
        "real_fake_accuracy": "D_R acc",
        "domain_loss": "D_A",
        "domain_accuracy": "D_A acc",
        "rmse": "rmse",
        "val_rmse": "val rmse",
    }

    def __init__(self, total_epochs: int, images_per_epoch: int, print_fn=print):
        super().__init__()
        self.total_epochs = total_epochs
        self.images_per_epoch = images_per_epoch
        self.print_fn = print_fn
        self._start = 0.0
        self._pending: str | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self._flush()
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        seconds = time.perf_counter() - self._start
        parts = [f"{label} {float(logs[k]):.4f}" for k, label in self.LABELS.items() if k in logs]
        if "learning_rate" in logs:
            parts.append(f"lr {float(logs['learning_rate']):.1e}")
        rate = self.images_per_epoch / max(seconds, 1e-9)
        parts.append(f"{seconds:.1f}s ({rate:.1f} img/s)")
        # Printed once Keras' progress bar has finished its line (next epoch or train end).
        self._pending = f"epoch {epoch + 1}/{self.total_epochs}: " + ", ".join(parts)

    def on_train_end(self, logs=None):
        self._flush()

    def _flush(self):
        if self._pending:
            self.print_fn(self._pending)
            self._pending = None
