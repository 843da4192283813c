"""The paper's learning-rate schedule (Sec. 5.2): the base rate for `epochs` epochs, then the
decayed rate for `decay_epochs`, for each network's optimizer.

`learning_rate(config, epoch, network)` is the one rule. `PaperSchedule` attaches it to an
optimizer as a `keras.optimizers.schedules.LearningRateSchedule` of the step, so a plain
`model.compile(); model.fit(..., steps_per_epoch=N)` follows it: `PLDT.fit` tells each schedule
how many steps an epoch has.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_pldt.config import PLDTConfig


def learning_rate(config: PLDTConfig, epoch: int, network: str = "converter") -> float:
    """The rate of `network`'s optimizer in (0-based) `epoch` (the same for every network)."""
    return config.learning_rate if epoch < config.epochs else config.decay_learning_rate


@keras.saving.register_keras_serializable(package="keras_pldt")
class PaperSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """`rate` for the first `epochs * steps_per_epoch` steps, then `decay_rate`.

    Until `steps_per_epoch` is known (`PLDT.fit` sets it) the schedule stays at `rate`.
    """

    def __init__(self, rate: float, decay_rate: float, epochs: int, steps_per_epoch: int = 0):
        self.rate = float(rate)
        self.decay_rate = float(decay_rate)
        self.epochs = int(epochs)
        self._steps_per_epoch = tf.Variable(
            int(steps_per_epoch), trainable=False, dtype=tf.int64, name="steps_per_epoch"
        )

    @classmethod
    def for_network(cls, config: PLDTConfig, network: str = "converter") -> PaperSchedule:
        return cls(
            learning_rate(config, 0, network),
            learning_rate(config, config.epochs, network),
            config.epochs,
        )

    @property
    def steps_per_epoch(self) -> int:
        return int(self._steps_per_epoch.numpy())

    @steps_per_epoch.setter
    def steps_per_epoch(self, value: int) -> None:
        self._steps_per_epoch.assign(int(value))

    def __call__(self, step):
        step = tf.cast(step, tf.int64)
        spe = self._steps_per_epoch
        decayed = tf.logical_and(spe > 0, step >= spe * self.epochs)
        return tf.where(decayed, self.decay_rate, self.rate)

    def get_config(self):
        return {
            "rate": self.rate,
            "decay_rate": self.decay_rate,
            "epochs": self.epochs,
            "steps_per_epoch": self.steps_per_epoch,
        }
