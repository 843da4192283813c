"""Callbacks of a PLDT run: the paper's learning-rate schedule for all three optimizers, the
sample grid (TensorBoard and PNG), NaN stop, atomic resumable checkpoints, a readable epoch line.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_pldt.config import PLDTConfig


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that a reader sees the old file or the new one, never half."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class PaperLearningRateSchedule(keras.callbacks.Callback):
    """Sec. 5.2: lr 2e-4 for `epochs` epochs, then 2e-5 for `decay_epochs`, on all three Adams.

    `keras.callbacks.LearningRateScheduler` only drives `model.optimizer` (the converter's);
    this sets every network's optimizer, the discriminators' scaled by
    `discriminator_lr_multiplier`, and logs the rates.
    """

    def __init__(self, config: PLDTConfig):
        super().__init__()
        self.config = config

    def rate(self, epoch: int) -> float:
        cfg = self.config
        return cfg.learning_rate if epoch < cfg.epochs else cfg.decay_learning_rate

    def on_epoch_begin(self, epoch, logs=None):
        base = self.rate(epoch)
        for name, optimizer in self.model.optimizers.items():
            scale = 1.0 if name == "converter" else self.config.discriminator_lr_multiplier
            optimizer.learning_rate = base * scale

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = self.rate(epoch)


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
    """Every epoch: the converter on a fixed validation batch, as `samples/epoch_NNN.png` and as a
    TensorBoard image (`samples` in `logs/samples`)."""

    def __init__(self, source, target, run_dir: str | Path, log_dir: str | Path | None = None):
        super().__init__()
        self.source = np.asarray(source, np.float32)
        self.target = np.asarray(target, np.float32)
        self.sample_dir = Path(run_dir) / "samples"
        self.log_dir = Path(log_dir) if log_dir else None
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        generated = self.model.converter(self.source, training=False).numpy()
        grid = sample_grid(self.source, generated, self.target)
        self.sample_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.sample_dir / f"epoch_{epoch + 1:03d}.png", encode_png(grid))
        if self.log_dir is not None:
            if self._writer is None:
                self._writer = tf.summary.create_file_writer(str(self.log_dir / "samples"))
            with self._writer.as_default():
                tf.summary.image("source | generated | target", grid[None], step=epoch + 1)
            self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()


class NaNGuard(keras.callbacks.TerminateOnNaN):
    """`TerminateOnNaN` for PLDT's losses (there is no single `loss`): stops at the first
    NaN/inf loss and remembers where, so the checkpoint keeps the last good epoch."""

    def __init__(self):
        super().__init__()
        self.epoch = 0
        self.failure: str | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        for name, value in (logs or {}).items():
            if "loss" in name and not math.isfinite(float(value)):
                self.failure = (
                    f"{name} became {float(value)} at epoch {self.epoch + 1}, step {batch + 1}"
                )
                self.model.stop_training = True
                return


class RunCheckpoint(keras.callbacks.Callback):
    """Atomic, resumable checkpoints in `checkpoints/`: after each epoch the full state (the
    three networks and the three optimizers) goes to `epoch_NNN.weights.h5`, then
    `state.json` is replaced to point at it, then older files are removed; so a kill at any
    moment leaves a consistent last epoch. The best epoch by `monitor` is kept as
    `best.weights.h5`. `history.csv` is rewritten from the state, so it never has a row for an
    epoch that a resume will repeat. Epochs in which `nan_guard` fired are not saved.
    """

    def __init__(self, run_dir, monitor="val_rmse", nan_guard: NaNGuard | None = None):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.dir = self.run_dir / "checkpoints"
        self.monitor = monitor
        self.nan_guard = nan_guard
        self.state = read_state(self.run_dir) or {"epoch": 0, "history": [], "best": None}

    def on_epoch_end(self, epoch, logs=None):
        if self.nan_guard is not None and self.nan_guard.failure:
            return
        logs = {k: float(v) for k, v in (logs or {}).items()}
        self.dir.mkdir(parents=True, exist_ok=True)
        name = f"epoch_{epoch + 1:03d}.weights.h5"
        tmp = self.dir / f".tmp-{os.getpid()}.weights.h5"
        self.model.save_weights(tmp)
        os.replace(tmp, self.dir / name)
        value = logs.get(self.monitor, logs.get(self.monitor.removeprefix("val_")))
        best = self.state.get("best")
        if value is not None and (best is None or value < best["value"]):
            tmp_best = self.dir / f".tmp-best-{os.getpid()}.weights.h5"
            self.model.save_weights(tmp_best)
            os.replace(tmp_best, self.dir / "best.weights.h5")
            best = {"epoch": epoch + 1, "monitor": self.monitor, "value": value}
        history = [row for row in self.state["history"] if row["epoch"] <= epoch]
        history.append({"epoch": epoch + 1, **logs})
        self.state = {"epoch": epoch + 1, "weights": name, "history": history, "best": best}
        atomic_write_bytes(self.dir / "state.json", json.dumps(self.state, indent=1).encode())
        for old in self.dir.glob("epoch_*.weights.h5"):
            if old.name != name:
                old.unlink(missing_ok=True)
        write_history_csv(self.run_dir / "history.csv", history)


def read_state(run_dir) -> dict | None:
    """The `checkpoints/state.json` of a run (last completed epoch, weights file), or None."""
    path = Path(run_dir) / "checkpoints" / "state.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


def write_history_csv(path: Path, history: list[dict]) -> None:
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    atomic_write_bytes(path, buf.getvalue().encode())


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
