"""`PLDT`: the converter and its two discriminators trained by Algorithm 1 through `model.fit`.

A batch is `keras_pldt.data.batch`'s: a dict ``{"source", "target", "unassociated",
"product"}`` or a tuple ``(source, target[, unassociated])`` of ``[B, S, S, 3]`` images in
[-1, 1]. The variants of Table 2 are switches of this one model (`PLDTConfig.variant`):

* `rf+dd` (C+RF+DD, the paper's): D_R (Eq. 2) and D_A (Eq. 5), converter on Eq. 6;
* `rf` (C+RF): D_R only;  `mse` (C+MSE): pixel MSE only, no discriminator;
* `rf+dd-neg` (C+RF+DD-Neg): D_A never sees unassociated pairs.

`model(source)` / `model.predict(source)` runs the converter only.
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import keras
import tensorflow as tf

from keras_pldt import losses
from keras_pldt.augment import augment_sources, diff_augment
from keras_pldt.config import PLDTConfig
from keras_pldt.data.batch import Batch, unpack_batch
from keras_pldt.kernels import accelerate
from keras_pldt.networks import (
    batch_norm_groups,
    batch_norm_statistics,
    build_converter,
    build_domain_discriminator,
    build_real_fake_discriminator,
    spectral_norm_held,
)
from keras_pldt.precision import POLICIES, auto_precision, precision_policy
from keras_pldt.schedule import PaperSchedule

# Network name -> the attribute holding its optimizer (also `compile`'s argument name).
_OPTIMIZER_ATTRS = {
    "converter": "converter_optimizer",
    "real_fake_discriminator": "real_fake_optimizer",
    "domain_discriminator": "domain_optimizer",
}
# DiffAugment draws of one training step, one stream per place a discriminator sees an image.
_D_R_REAL, _D_R_FAKE, _D_A_ASSOCIATED, _D_A_UNASSOCIATED, _D_A_FAKE = 1, 2, 3, 4, 5
_VIEW_D_R, _VIEW_D_A = 6, 7


def make_optimizer(
    config: PLDTConfig, network: str = "converter", schedule: PaperSchedule | None = None
) -> keras.optimizers.Optimizer:
    """Adam as in the paper (beta_1 0.5) with the paper's schedule attached (`PaperSchedule`:
    the base rate, then the decayed rate; `schedule` when given)."""
    return keras.optimizers.Adam(
        learning_rate=schedule or PaperSchedule.for_network(config, network),
        beta_1=config.beta_1,
        beta_2=config.beta_2,
        name=f"{network}_adam",
    )


def converter_loss_weights(config: PLDTConfig) -> dict[str, float]:
    """The converter's objective as {term: weight}: Eq. 6's two adversarial halves (1/2 each;
    D_R's alone, 1, for C+RF), C+MSE's pixel MSE, then the recipe's terms with their weights."""
    adversarial = 0.5 if config.uses_domain else 1.0
    weights = {
        "adversarial_real_fake": adversarial if config.uses_real_fake else 0.0,
        "adversarial_domain": 0.5 if config.uses_domain else 0.0,
        "mse": 1.0 if config.variant == "mse" else 0.0,
        "l1": config.reconstruction_weight,
        "ssim": config.ssim_weight,
        "feature_matching": config.feature_matching_weight,
        "pixel_contrast": config.pixel_contrast_weight,
    }
    return {name: float(weight) for name, weight in weights.items() if weight}


class DomainRecord(NamedTuple):
    """What D_A's update hands to the converter's view of D_A: its batch statistics by layer
    (with `joint_domain_batch` in training, else None) and its features of (I_S, I_T) (with
    feature matching, else None)."""

    statistics: dict | None
    real_features: list | None


class Outcome(NamedTuple):
    """One network's loss on a batch, with what the step logs or passes on."""

    loss: tf.Tensor
    accuracy: tf.Tensor | None = None  # a discriminator's
    terms: dict | None = None  # the converter's, by name
    record: DomainRecord | None = None  # D_A's update


@keras.saving.register_keras_serializable(package="keras_pldt")
class PLDT(keras.Model):
    """Pixel-level domain transfer (Yoo et al. 2016): converter C, discriminators D_R and D_A."""

    def __init__(self, config: PLDTConfig | dict | None = None, **kwargs):
        if isinstance(config, dict):
            config = PLDTConfig.from_dict(config)
        cfg = config or PLDTConfig()
        if cfg.precision == "auto":
            cfg = cfg.replace(precision=auto_precision())
        kwargs.setdefault("dtype", POLICIES[cfg.precision])
        super().__init__(**kwargs)
        self.config = cfg
        with precision_policy(cfg.precision):  # the networks' dtype policy: the config's
            self.converter = build_converter(cfg)
            self.real_fake_discriminator = (
                build_real_fake_discriminator(cfg) if cfg.uses_real_fake else None
            )
            self.domain_discriminator = build_domain_discriminator(cfg) if cfg.uses_domain else None
        if cfg.subpixel_convs:  # the fast kernels: the same layers, weights and saved files
            accelerate(self.converter, self.real_fake_discriminator, self.domain_discriminator)
        taps = cfg.feature_matching_weight  # feature matching reads D_A's LeakyReLU outputs
        self._domain_taps = _feature_taps(self.domain_discriminator) if taps else None
        self.loss_weights = converter_loss_weights(cfg)
        names = ["converter_loss", *(f"converter_{name}" for name in self.loss_weights)]
        for network, used in (("real_fake", cfg.uses_real_fake), ("domain", cfg.uses_domain)):
            names += [f"{network}_loss", f"{network}_accuracy"] if used else []
        self.trackers = {name: keras.metrics.Mean(name=name) for name in [*names, "rmse"]}
        self.converter_optimizer = self.real_fake_optimizer = self.domain_optimizer = None
        self._schedules = []  # the PaperSchedules `compile` attached, told the epoch by `fit`
        self._fuse = None
        self.built = True

    # ------------------------------------------------------------------ Keras plumbing
    def call(self, inputs, training=False):
        """The converter only: source images in [-1, 1] -> generated targets in [-1, 1]."""
        return self.converter(inputs, training=training)

    @property
    def networks(self) -> dict[str, keras.Model]:
        nets = {
            "converter": self.converter,
            "real_fake_discriminator": self.real_fake_discriminator,
            "domain_discriminator": self.domain_discriminator,
        }
        return {name: net for name, net in nets.items() if net is not None}

    @property
    def optimizers(self) -> dict[str, keras.optimizers.Optimizer]:
        """The optimizer of each network, keyed like `networks`."""
        optimizers = {name: getattr(self, attr) for name, attr in _OPTIMIZER_ATTRS.items()}
        return {k: optimizers[k] for k in self.networks if optimizers[k] is not None}

    @property
    def metrics(self):
        """One Mean per logged value: the converter's loss and each of its terms, each
        discriminator's loss and accuracy, RMSE."""
        return list(self.trackers.values())

    def compile(self, converter_optimizer=None, real_fake_optimizer=None, domain_optimizer=None,
                **kwargs):  # fmt: skip
        """One optimizer per network: by default `make_optimizer`'s Adam with the paper's
        schedule, which `fit` follows; a user's own is left as given. The converter's is also
        `model.optimizer`; under mixed_float16 each is wrapped in a `LossScaleOptimizer`."""
        kwargs.setdefault("jit_compile", self.config.jit_compile)
        kwargs.setdefault("loss", None)
        given = dict(zip(_OPTIMIZER_ATTRS, (converter_optimizer, real_fake_optimizer,
                                            domain_optimizer), strict=True))  # fmt: skip
        self._schedules, wrap = [], self.config.precision == "mixed_float16"
        for name in self.networks:
            optimizer = given[name]
            if optimizer is None:
                self._schedules.append(PaperSchedule.for_network(self.config, name))
                optimizer = make_optimizer(self.config, name, self._schedules[-1])
            optimizer = keras.optimizers.get(optimizer)
            if wrap and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            setattr(self, _OPTIMIZER_ATTRS[name], optimizer)
        super().compile(optimizer=self.converter_optimizer, **kwargs)
        for name, optimizer in self.optimizers.items():
            if not optimizer.built:
                optimizer.build(self.networks[name].trainable_variables)

    def fit(self, x=None, *args, steps_per_epoch=None, **kwargs):
        """`keras.Model.fit`, with the schedules `compile` attached told how many steps an epoch
        has (`steps_per_epoch`, else the dataset's finite cardinality)."""
        steps = steps_per_epoch or _finite_cardinality(x)
        for schedule in self._schedules if steps else ():
            schedule.steps_per_epoch = steps
        return super().fit(x, *args, steps_per_epoch=steps_per_epoch, **kwargs)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Skip Keras' symbolic build: the networks are built in `__init__` and the optimizers
        in `compile`. (Keras' version reduces a batch across replicas, which fails for dict
        batches under MultiWorkerMirroredStrategy and consumes a batch.)"""

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict()}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(config=PLDTConfig.from_dict(config.pop("config")), **config)

    def get_compile_config(self):
        if self.converter_optimizer is None:
            return None
        ser = keras.saving.serialize_keras_object
        return {_OPTIMIZER_ATTRS[name]: ser(opt) for name, opt in self.optimizers.items()}

    def compile_from_config(self, config):
        des = keras.saving.deserialize_keras_object
        self.compile(**{k: des(v) for k, v in config.items()})

    # ------------------------------------------------------------------ Algorithm 1
    def train_step(self, data):
        """Algorithm 1: generate, update D_R (Eq. 2), update D_A (Eq. 5), then the converter
        against the updated discriminators (`converter_objective`)."""
        batch = self._unpack(data, training=True)
        tape = tf.GradientTape()
        with tape:
            generated = self.converter(batch.source, training=True)
        fake = tf.stop_gradient(generated)
        real_fake = domain = None
        if self.real_fake_discriminator is not None:
            real_fake = self._update(
                "real_fake_discriminator", lambda: self.real_fake_loss(batch, fake, True)
            )
        if self.domain_discriminator is not None:
            domain = self._update(
                "domain_discriminator", lambda: self.domain_loss(batch, fake, True)
            )
        converter = self._update(
            "converter",
            lambda: self.converter_objective(batch, generated, True, domain and domain.record),
            tape,
        )
        return self._track(generated, batch.target, converter, real_fake, domain)

    def test_step(self, data):
        """The same losses and accuracies in inference mode, plus RMSE to the target in [0, 1]."""
        batch = self._unpack(data, training=False)
        generated = self.converter(batch.source, training=False)
        real_fake = domain = None
        if self.real_fake_discriminator is not None:
            real_fake = self.real_fake_loss(batch, generated, False)
        if self.domain_discriminator is not None:
            domain = self.domain_loss(batch, generated, False)
        converter = self.converter_objective(batch, generated, False, domain and domain.record)
        return self._track(generated, batch.target, converter, real_fake, domain)

    def _update(self, network: str, loss_fn, tape: tf.GradientTape | None = None) -> Outcome:
        """One optimizer step of `network` on `loss_fn().loss`, recorded on `tape` (a new one
        by default). Every update goes through here: the loss is divided by the replicas (the
        optimizer sums their gradients) and scaled by the optimizer's loss scale."""
        optimizer = self.optimizers[network]
        variables = self.networks[network].trainable_variables
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        tape = tape or tf.GradientTape()
        with tape:
            outcome = loss_fn()
            scaled = optimizer.scale_loss(outcome.loss / replicas if replicas > 1 else outcome.loss)
        grads = tape.gradient(scaled, variables)
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        return outcome

    def converter_objective(self, batch: Batch, generated, training: bool,
                            domain: DomainRecord | None = None) -> Outcome:  # fmt: skip
        """The converter's loss as the named, weighted sum `loss_weights`: Eq. 6's adversarial
        halves against the discriminators as their updates left them (spectral norm held),
        then the pixel terms. `domain`: D_A's update, as `domain_loss` records it."""
        weights, target, values = self.loss_weights, batch.target, {}
        with spectral_norm_held(self.real_fake_discriminator, self.domain_discriminator):
            if self.real_fake_discriminator is not None:
                fake = self._augment(generated, training, _VIEW_D_R)
                logits = self.real_fake_discriminator(fake, training=training)
                values["adversarial_real_fake"] = losses.converter_adversarial_term(logits)
            if self.domain_discriminator is not None:
                logits, features = self._domain_view(batch.source, generated, training, domain)
                values["adversarial_domain"] = losses.converter_adversarial_term(logits)
                if "feature_matching" in weights:
                    real = domain.real_features
                    values["feature_matching"] = losses.feature_matching(real, features)
        if "mse" in weights:
            values["mse"] = losses.pixel_mse(generated, target)
        if "l1" in weights:
            values["l1"] = losses.pixel_l1(generated, target)
        if "ssim" in weights:
            values["ssim"] = losses.ssim_loss(generated, target)
        if "pixel_contrast" in weights:
            values["pixel_contrast"] = losses.pixel_contrast(generated, target, batch.product)
        loss = tf.add_n([weight * values[name] for name, weight in weights.items()])
        return Outcome(loss, terms=values)

    def real_fake_loss(self, batch: Batch, generated, training: bool) -> Outcome:
        """Eq. 2: D_R's loss and accuracy on the real targets and the generated images."""
        real, fake = discriminate(
            self.real_fake_discriminator,
            [self._augment(batch.target, training, _D_R_REAL),
             self._augment(generated, training, _D_R_FAKE)],
            training,
            fuse=self.fuse_discriminator_calls,
        )  # fmt: skip
        accuracy = 0.5 * (losses.accuracy(real, True) + losses.accuracy(fake, False))
        return Outcome(losses.real_fake_loss(real, fake), accuracy)

    def domain_loss(self, batch: Batch, generated, training: bool) -> Outcome:
        """Eq. 5: D_A's loss and accuracy on (I_S, I_T), (I_S, I_T^-) where the variant uses it,
        and (I_S, generated); its `DomainRecord` for the converter's view."""
        pair = lambda image, stream: self._augment(_pair(batch.source, image), training, stream)
        pairs = [pair(batch.target, _D_A_ASSOCIATED)]
        if self.config.variant == "rf+dd":
            pairs.append(pair(batch.unassociated, _D_A_UNASSOCIATED))
        pairs.append(pair(generated, _D_A_FAKE))
        joint = self.config.joint_domain_batch
        statistics = {} if joint and training else None
        network = self._domain_taps or self.domain_discriminator
        with _statistics(self.domain_discriminator, statistics, "record"):
            outputs = discriminate(network, pairs, training, joint, self.fuse_discriminator_calls)
        real_features = None
        if self._domain_taps is not None:
            real_features = [tf.stop_gradient(f) for f in outputs[0][:-1]]
            outputs = [taps[-1] for taps in outputs]
        associated, *negative, fake = outputs
        labelled = [(associated, True), *((logits, False) for logits in negative), (fake, False)]
        accuracy = tf.add_n([losses.accuracy(x, label) for x, label in labelled]) / len(labelled)
        loss = losses.domain_loss(associated, negative[0] if negative else None, fake)
        return Outcome(loss, accuracy, record=DomainRecord(statistics, real_features))

    def _domain_view(self, source, generated, training: bool, domain: DomainRecord | None):
        """(D_A's logits, its features or None) of the generated pairs alone; with recorded
        statistics (`joint_domain_batch`) batch norm normalises with those of D_A's update."""
        pair = self._augment(_pair(source, generated), training, _VIEW_D_A)
        network = self._domain_taps or self.domain_discriminator
        statistics = domain.statistics if domain is not None else None
        with _statistics(self.domain_discriminator, statistics, "replay"):
            outputs = network(pair, training=training)
        if self._domain_taps is None:
            return outputs, None
        return outputs[-1], outputs[:-1]

    # ------------------------------------------------------------------ helpers of the step
    def _unpack(self, data, training: bool) -> Batch:
        """The step's `Batch`; in training, random views of its sources (`source_augment`)."""
        needs = self.config.variant == "rf+dd"
        batch = unpack_batch(data, self.config.image_size, self.compute_dtype, needs)
        if not (training and self.config.source_augment):
            return batch
        seed = step_seed(self.config.seed, self.converter_optimizer.iterations)
        return batch._replace(
            source=augment_sources(batch.source, self.config.source_augment, seed)
        )

    def _augment(self, images, training: bool, stream: int):
        """DiffAugment of a discriminator input in training (identity when the policy is empty),
        drawn from (the step's seed, `stream`)."""
        if not (training and self.config.diff_augment):
            return images
        seed = tf.random.experimental.stateless_fold_in(
            step_seed(self.config.seed, self.converter_optimizer.iterations), stream
        )
        return diff_augment(images, self.config.diff_augment, seed)

    @property
    def fuse_discriminator_calls(self) -> bool:
        """Whether a discriminator's inputs of one update go through it as one call
        (`discriminate`); by default off with synchronised multi-replica batch norm."""
        if self._fuse is None:
            return tf.distribute.get_strategy().num_replicas_in_sync == 1
        return self._fuse

    @fuse_discriminator_calls.setter
    def fuse_discriminator_calls(self, value: bool | None) -> None:
        self._fuse = value

    def _track(self, generated, target, converter: Outcome, real_fake: Outcome | None,
               domain: Outcome | None):  # fmt: skip
        """Update the trackers with the step's values and return their results."""
        values = {"converter_loss": converter.loss, "rmse": _rmse01(generated, target)}
        values.update({f"converter_{name}": value for name, value in converter.terms.items()})
        for network, outcome in (("real_fake", real_fake), ("domain", domain)):
            if outcome is not None:
                values[f"{network}_loss"], values[f"{network}_accuracy"] = outcome[:2]
        for name, value in values.items():
            self.trackers[name].update_state(value)
        logs = {m.name: m.result() for m in self.metrics}
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            # Keras reduces multi-worker step outputs with `reduce(MEAN, axis=0)`, which
            # needs rank >= 1.
            logs = {k: tf.reshape(v, [1]) for k, v in logs.items()}
        return logs

    def predict_step(self, data):
        if isinstance(data, dict):
            data = data["source"]
        elif isinstance(data, (tuple, list)):
            data = data[0]
        return self.converter(data, training=False)


def _feature_taps(discriminator: keras.Model) -> keras.Model:
    """`discriminator` returning its LeakyReLU outputs, then its logits."""
    taps = [layer.output for layer in discriminator.layers if layer.name.startswith("lrelu")]
    return keras.Model(discriminator.input, [*taps, discriminator.output], name="d_a_taps")


def _finite_cardinality(data) -> int | None:
    """The number of batches of a finite `tf.data.Dataset`, else None."""
    if not isinstance(data, tf.data.Dataset):
        return None
    cardinality = int(data.cardinality())
    return cardinality if cardinality > 0 else None


def _pair(source, target):
    """D_A's input: source and target stacked on channels (Table 1a, 6 channels)."""
    return tf.concat([source, tf.cast(target, source.dtype)], axis=-1)


def _statistics(discriminator, statistics: dict | None, mode: str):
    """`batch_norm_statistics(discriminator, statistics, mode)`, or nothing for None."""
    if statistics is None:
        return contextlib.nullcontext()
    return batch_norm_statistics(discriminator, statistics, mode)


def discriminate(discriminator, inputs, training: bool, joint: bool = False, fuse: bool = True):
    """Outputs of `discriminator` for each batch in `inputs`: those of separate calls, made as
    one call when `fuse` (batch norm normalising each batch apart, `batch_norm_groups`), or
    with `joint` those of one batch (batch norm's statistics over all of them)."""
    if len(inputs) == 1 or not (joint or fuse):
        return [discriminator(x, training=training) for x in inputs]
    stacked = tf.concat([tf.cast(x, discriminator.compute_dtype) for x in inputs], 0)
    with contextlib.nullcontext() if joint else batch_norm_groups(discriminator, len(inputs)):
        outputs = discriminator(stacked, training=training)
    if isinstance(outputs, (list, tuple)):  # D_A's feature taps and logits
        parts = [tf.split(o, len(inputs)) for o in outputs]
        return [list(x) for x in zip(*parts, strict=True)]
    return tf.split(outputs, len(inputs), axis=0)


def step_seed(seed: int, step):
    """A `[2]` seed from the run's seed, the training step and the replica: random draws that
    a resumed run repeats exactly."""
    replica = tf.distribute.get_replica_context()
    replica_id = replica.replica_id_in_sync_group if replica is not None else 0
    stream = tf.cast(step, tf.int64) * 1024 + tf.cast(replica_id, tf.int64)
    return tf.stack([tf.constant(seed, tf.int64), stream])


def _rmse01(generated, target):
    """RMSE between images mapped from [-1, 1] to [0, 1] (the units of Table 3)."""
    diff = (tf.cast(generated, tf.float32) - tf.cast(target, tf.float32)) / 2.0
    return tf.sqrt(tf.reduce_mean(tf.square(diff)))
