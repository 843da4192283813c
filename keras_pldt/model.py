"""`PLDT`: the converter and its two discriminators trained by Algorithm 1 through `model.fit`.

Batch format (from `keras_pldt.data` or your own `tf.data` pipeline), pixels in [-1, 1]::

    {"source": [B, S, S, 3], "target": [B, S, S, 3], "unassociated": [B, S, S, 3]}

or the tuple `(source, target, unassociated)`. `target` is an image of the source's product
(I_T), `unassociated` one of another product (I_T^-); extra dict keys are ignored. The
variants of Table 2 are switches of this one model (`PLDTConfig.variant`):

* `rf+dd` (C+RF+DD, the paper's): D_R (Eq. 2) and D_A (Eq. 5), converter on Eq. 6;
* `rf` (C+RF): D_R only;  `mse` (C+MSE): pixel MSE only, no discriminator;
* `rf+dd-neg` (C+RF+DD-Neg): D_A never sees unassociated pairs.

`model(source)` / `model.predict(source)` runs the converter only.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_pldt import losses
from keras_pldt.augment import augment_sources, diff_augment
from keras_pldt.config import PLDTConfig
from keras_pldt.networks import (
    batch_norm_groups,
    build_converter,
    build_domain_discriminator,
    build_real_fake_discriminator,
)

_KEYS = ("source", "target", "unassociated")
# Network name -> the attribute holding its optimizer (also `compile`'s argument name).
_OPTIMIZER_ATTRS = {
    "converter": "converter_optimizer",
    "real_fake_discriminator": "real_fake_optimizer",
    "domain_discriminator": "domain_optimizer",
}


def make_optimizer(config: PLDTConfig, network: str = "converter") -> keras.optimizers.Optimizer:
    """Adam as in the paper (lr 2e-4, beta_1 0.5); D lr times `discriminator_lr_multiplier`."""
    lr = config.learning_rate
    if network != "converter":
        lr *= config.discriminator_lr_multiplier
    return keras.optimizers.Adam(
        learning_rate=lr, beta_1=config.beta_1, beta_2=config.beta_2, name=f"{network}_adam"
    )


@keras.saving.register_keras_serializable(package="keras_pldt")
class PLDT(keras.Model):
    """Pixel-level domain transfer (Yoo et al. 2016): converter C, discriminators D_R and D_A."""

    def __init__(self, config: PLDTConfig | dict | None = None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(config, dict):
            config = PLDTConfig.from_dict(config)
        self.config = config or PLDTConfig()
        cfg = self.config
        self.converter = build_converter(cfg)
        self.real_fake_discriminator = (
            build_real_fake_discriminator(cfg) if cfg.uses_real_fake else None
        )
        self.domain_discriminator = build_domain_discriminator(cfg) if cfg.uses_domain else None
        self._ema_weights = []
        self._diff_augment_calls = 0
        if cfg.ema_decay > 0:
            # An exponential moving average of the converter's weights, for evaluation and export
            # (`ema_converter()`); "mean" aggregation so replicas can update it in a train step.
            self._ema_weights = [
                self.add_weight(
                    shape=w.shape,
                    initializer=keras.initializers.Constant(keras.ops.convert_to_numpy(w)),
                    trainable=False,
                    aggregation="mean",
                    name=f"ema_{i}",
                )
                for i, w in enumerate(self.converter.weights)
            ]
        self._domain_features = None
        if cfg.uses_domain and cfg.feature_matching_weight:
            d_a = self.domain_discriminator
            taps = [layer.output for layer in d_a.layers if layer.name.startswith("lrelu")]
            self._domain_features = keras.Model(d_a.input, [*taps, d_a.output], name="d_a_taps")
        mean = keras.metrics.Mean
        self.converter_loss_tracker = mean(name="converter_loss")
        self.real_fake_loss_tracker = mean(name="real_fake_loss")
        self.domain_loss_tracker = mean(name="domain_loss")
        self.real_fake_accuracy_tracker = mean(name="real_fake_accuracy")
        self.domain_accuracy_tracker = mean(name="domain_accuracy")
        self.rmse_tracker = mean(name="rmse")
        self.converter_optimizer = None
        self.real_fake_optimizer = None
        self.domain_optimizer = None
        self._checked_shapes = False
        self._fuse = None
        self.built = True

    # ------------------------------------------------------------------ Keras plumbing
    def call(self, inputs, training=False):
        """The converter only: source images in [-1, 1] -> generated targets in [-1, 1]."""
        return self.converter(inputs, training=training)

    @property
    def networks(self) -> dict[str, keras.Model]:
        nets = {"converter": self.converter}
        if self.real_fake_discriminator is not None:
            nets["real_fake_discriminator"] = self.real_fake_discriminator
        if self.domain_discriminator is not None:
            nets["domain_discriminator"] = self.domain_discriminator
        return nets

    @property
    def optimizers(self) -> dict[str, keras.optimizers.Optimizer]:
        """The optimizer of each network, keyed like `networks`."""
        optimizers = {name: getattr(self, attr) for name, attr in _OPTIMIZER_ATTRS.items()}
        return {k: optimizers[k] for k in self.networks if optimizers[k] is not None}

    @property
    def metrics(self):
        trackers = [self.converter_loss_tracker]
        if self.config.uses_real_fake:
            trackers += [self.real_fake_loss_tracker, self.real_fake_accuracy_tracker]
        if self.config.uses_domain:
            trackers += [self.domain_loss_tracker, self.domain_accuracy_tracker]
        return trackers + [self.rmse_tracker]

    def compile(
        self,
        converter_optimizer=None,
        real_fake_optimizer=None,
        domain_optimizer=None,
        **kwargs,
    ):
        """Take one optimizer per network (Adam 2e-4, beta_1 0.5 from the config by default).

        The converter's optimizer is also `model.optimizer`, so callbacks that read
        `model.optimizer.learning_rate` see the real rate. `jit_compile` defaults to the
        config's (False: XLA is slower on CPU).
        """
        cfg = self.config
        kwargs.setdefault("jit_compile", cfg.jit_compile)
        kwargs.setdefault("loss", None)
        opt = keras.optimizers.get
        self.converter_optimizer = opt(converter_optimizer or make_optimizer(cfg, "converter"))
        if cfg.uses_real_fake:
            self.real_fake_optimizer = opt(real_fake_optimizer or make_optimizer(cfg, "real_fake"))
        if cfg.uses_domain:
            self.domain_optimizer = opt(domain_optimizer or make_optimizer(cfg, "domain"))
        if cfg.precision == "mixed_float16":
            for name, value in list(self.optimizers.items()):
                if not isinstance(value, keras.optimizers.LossScaleOptimizer):
                    self._set_optimizer(name, keras.optimizers.LossScaleOptimizer(value))
        super().compile(optimizer=self.converter_optimizer, **kwargs)
        for name, optimizer in self.optimizers.items():
            if not optimizer.built:
                optimizer.build(self.networks[name].trainable_variables)

    def _set_optimizer(self, network: str, optimizer) -> None:
        setattr(self, _OPTIMIZER_ATTRS[network], optimizer)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Skip Keras' symbolic build under tf.distribute: the networks are built in `__init__`
        and the optimizers in `compile`. (Keras' version reduces a batch across replicas, which
        fails for dict batches under MultiWorkerMirroredStrategy and consumes a batch.)"""

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
        # Keyed by `compile`'s argument names, which are also the attribute names.
        return {_OPTIMIZER_ATTRS[name]: ser(opt) for name, opt in self.optimizers.items()}

    def compile_from_config(self, config):
        des = keras.saving.deserialize_keras_object
        self.compile(**{k: des(v) for k, v in config.items()})

    # ------------------------------------------------------------------ data
    def _unpack(self, data):
        """(source, target, unassociated) from a dict or tuple batch, checked on first trace."""
        if isinstance(data, dict):
            missing = [k for k in _KEYS[:2] if k not in data]
            if missing:
                raise ValueError(
                    f"PLDT batch dict is missing {missing}; expected keys {list(_KEYS)} "
                    f"with float tensors of shape {self._expected_shape()} in [-1, 1]"
                )
            parts = [data.get(k) for k in _KEYS]
        elif isinstance(data, (tuple, list)) and len(data) in (2, 3):
            parts = list(data) + [None] * (3 - len(data))
        else:
            raise ValueError(
                "a PLDT batch is a dict {'source', 'target', 'unassociated'} or a tuple "
                f"(source, target, unassociated) of tensors {self._expected_shape()}; got {data!r}"
            )
        if parts[2] is None and self.config.variant == "rf+dd":
            raise ValueError(
                "variant 'rf+dd' needs unassociated targets (I_T^-): add an 'unassociated' "
                f"tensor of shape {self._expected_shape()} to each batch"
            )
        size = self.config.image_size
        for name, tensor in zip(_KEYS, parts, strict=True):
            if tensor is None:
                continue
            shape = tuple(tensor.shape)
            if len(shape) != 4 or tuple(shape[1:]) != (size, size, 3):
                raise ValueError(
                    f"PLDT batch '{name}' has shape {shape}; expected {self._expected_shape()} "
                    f"(config.image_size={size}), pixels in [-1, 1]"
                )
        source, target, unassociated = (
            None if t is None else tf.cast(t, self.compute_dtype) for t in parts
        )
        checks = [
            tf.debugging.assert_less_equal(
                tf.reduce_max(tf.abs(tf.cast(t, tf.float32))),
                1.0 + 1e-3,
                message=f"PLDT batch '{name}' has pixels outside [-1, 1]; scale images "
                "with x / 127.5 - 1",
            )
            for name, t in zip(_KEYS, (source, target, unassociated), strict=True)
            if t is not None
        ]
        with tf.control_dependencies(checks):
            source = tf.identity(source)
        return source, target, unassociated

    def _expected_shape(self):
        s = self.config.image_size
        return f"[batch, {s}, {s}, 3]"

    # ------------------------------------------------------------------ Algorithm 1
    def _pair(self, source, target):
        """D_A's input: source and target stacked on channels (Table 1a, 6 channels)."""
        return tf.concat([source, tf.cast(target, source.dtype)], axis=-1)

    @staticmethod
    def _for_gradient(optimizer, loss):
        """`loss` scaled for the replicas and (mixed precision) the loss scale; call it inside
        the tape, so the scaling is recorded."""
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return optimizer.scale_loss(loss / replicas if replicas > 1 else loss)

    @staticmethod
    def _minimise(optimizer, tape, scaled_loss, variables):
        """One optimizer step; `scaled_loss` comes from `_for_gradient` inside `tape`."""
        grads = tape.gradient(scaled_loss, variables)
        optimizer.apply_gradients(zip(grads, variables, strict=True))

    def _augment(self, images, training: bool):
        """DiffAugment of a discriminator input in training (identity when the policy is empty).

        The k-th call of a training step draws from (the step's seed, k): a resumed run
        repeats the transformations of an uninterrupted one.
        """
        if training and self.config.diff_augment:
            self._diff_augment_calls += 1
            seed = tf.random.experimental.stateless_fold_in(
                self._step_seed(), self._diff_augment_calls
            )
            return diff_augment(images, self.config.diff_augment, seed)
        return images

    @property
    def fuse_discriminator_calls(self) -> bool:
        """Whether a discriminator's inputs of one update go through it as one batch.

        The sub-batches are stacked on the batch axis and batch norm normalises each apart
        (`batch_norm_groups`), so the losses, gradients and moving statistics are those of
        separate calls in order (the paper's math), with fewer, larger convolutions. Off with
        spectral norm (one power iteration per call) and synchronised multi-replica batch norm.
        """
        if self._fuse is None:
            return (
                not self.config.spectral_norm
                and tf.distribute.get_strategy().num_replicas_in_sync == 1
            )
        return self._fuse

    @fuse_discriminator_calls.setter
    def fuse_discriminator_calls(self, value: bool | None) -> None:
        self._fuse = value

    def _discriminate(self, discriminator, inputs, training: bool):
        """Logits of `discriminator` for each batch in `inputs`, as separate calls would give."""
        if len(inputs) == 1 or not self.fuse_discriminator_calls:
            return [discriminator(x, training=training) for x in inputs]
        with batch_norm_groups(discriminator, len(inputs)):
            stacked = tf.concat([tf.cast(x, discriminator.compute_dtype) for x in inputs], 0)
            logits = discriminator(stacked, training=training)
        return tf.split(logits, len(inputs), axis=0)

    def _real_fake_terms(self, target, generated, training: bool):
        """Eq. 2 on one batch: (D_R loss, D_R accuracy) for real targets and generated images."""
        d_r, kind = self.real_fake_discriminator, self.config.adversarial_loss
        real_in = self._augment(target, training)
        real, fake = self._discriminate(
            d_r, [real_in, self._augment(generated, training)], training
        )
        accuracy = 0.5 * (losses.accuracy(real, True) + losses.accuracy(fake, False))
        loss = losses.real_fake_loss(real, fake, kind)
        if training and self.config.r1_weight:
            loss += self.config.r1_weight * losses.r1_penalty(d_r, real_in)
        return loss, accuracy

    def _domain_terms(self, source, target, unassociated, generated, training: bool):
        """Eq. 5 on one batch: (D_A loss, D_A accuracy) over the pairings the variant uses."""
        d_a, kind = self.domain_discriminator, self.config.adversarial_loss
        pair = lambda image: self._augment(self._pair(source, image), training)  # noqa: E731
        associated_in = pair(target)
        inputs = [associated_in, pair(generated)]
        if self.config.variant == "rf+dd" and unassociated is not None:
            inputs.insert(1, pair(unassociated))
        associated, *negative, fake = self._discriminate(d_a, inputs, training)
        negative = negative[0] if negative else None
        hits = [losses.accuracy(associated, True), losses.accuracy(fake, False)]
        if negative is not None:
            hits.append(losses.accuracy(negative, False))
        accuracy = tf.add_n(hits) / len(hits)
        loss = losses.domain_loss(associated, negative, fake, kind)
        if training and self.config.r1_weight:
            loss += self.config.r1_weight * losses.r1_penalty(d_a, associated_in)
        return loss, accuracy

    def _update_real_fake(self, target, generated):
        """Algorithm 1, step 1: one D_R step on Eq. 2 (real target -> 1, generated -> 0)."""
        optimizer = self.real_fake_optimizer
        with tf.GradientTape() as tape:
            loss, accuracy = self._real_fake_terms(target, generated, training=True)
            scaled = self._for_gradient(optimizer, loss)
        self._minimise(optimizer, tape, scaled, self.real_fake_discriminator.trainable_variables)
        return loss, accuracy

    def _update_domain(self, source, target, unassociated, generated):
        """Algorithm 1, step 2: one D_A step on Eq. 5 (associated 1, unassociated/generated 0)."""
        with tf.GradientTape() as tape:
            loss, accuracy = self._domain_terms(source, target, unassociated, generated, True)
        self._minimise(
            self.domain_optimizer, tape, loss, self.domain_discriminator.trainable_variables
        )
        return loss, accuracy

    def _converter_objective(self, source, target, generated, training: bool):
        """Eq. 6 (non-saturating) for the adversarial variants, pixel MSE for C+MSE; plus the
        optional L1 reconstruction, SSIM, gradient-difference, focal-frequency, identity and
        D_A feature-matching terms."""
        cfg = self.config
        loss = self._adversarial_objective(source, target, generated, training)
        if cfg.identity_weight:
            loss += cfg.identity_weight * losses.identity_l1(self.converter, target)
        return loss

    def _adversarial_objective(self, source, target, generated, training: bool):
        cfg = self.config
        if cfg.variant == "mse":
            return losses.pixel_mse(generated, target)
        real_fake = self.real_fake_discriminator(
            self._augment(generated, training), training=training
        )
        domain = None
        if cfg.uses_domain:
            fake_pair = self._augment(self._pair(source, generated), training)
            if self._domain_features is None:
                domain = self.domain_discriminator(fake_pair, training=training)
            else:
                *fake_taps, domain = self._domain_features(fake_pair, training=training)
                real_pair = self._augment(self._pair(source, target), training)
                *real_taps, _ = self._domain_features(real_pair, training=training)
                matching = losses.feature_matching(real_taps, fake_taps)
        loss = losses.converter_loss(real_fake, domain, cfg.adversarial_loss)
        if cfg.reconstruction_weight:
            loss += cfg.reconstruction_weight * losses.pixel_l1(
                generated, target, cfg.reconstruction_lowpass
            )
        if cfg.ssim_weight:
            loss += cfg.ssim_weight * losses.ssim_loss(generated, target)
        if cfg.gradient_weight:
            loss += cfg.gradient_weight * losses.gradient_difference(generated, target)
        if cfg.frequency_weight:
            loss += cfg.frequency_weight * losses.focal_frequency(generated, target)
        if self._domain_features is not None:
            loss += cfg.feature_matching_weight * matching
        return loss

    def train_step(self, data):
        """Algorithm 1: update D_R, then D_A, then the converter against the updated D_R, D_A."""
        source, target, unassociated = self._unpack(data)
        self._diff_augment_calls = 0  # numbers this step's DiffAugment draws (at trace time)
        if self.config.source_augment:
            source = augment_sources(source, self.config.source_augment, self._step_seed())
        with tf.GradientTape() as tape:
            generated = self.converter(source, training=True)
            with tape.stop_recording():
                fake = tf.stop_gradient(generated)
                real_fake = domain = None
                if self.config.uses_real_fake:
                    real_fake = self._update_real_fake(target, fake)
                if self.config.uses_domain:
                    domain = self._update_domain(source, target, unassociated, fake)
            loss = self._converter_objective(source, target, generated, training=True)
            scaled = self._for_gradient(self.converter_optimizer, loss)
        self._minimise(self.converter_optimizer, tape, scaled, self.converter.trainable_variables)
        if self._ema_weights:
            self._update_ema()
        return self._track(loss, generated, target, real_fake, domain)

    def _step_seed(self):
        """A `[2]` seed from the run's seed, the step and the replica: random draws that a
        resumed run repeats exactly."""
        replica = tf.distribute.get_replica_context()
        replica_id = replica.replica_id_in_sync_group if replica is not None else 0
        step = tf.cast(self.converter_optimizer.iterations, tf.int64)
        stream = step * 1024 + tf.cast(replica_id, tf.int64)
        return tf.stack([tf.constant(self.config.seed, tf.int64), stream])

    def _update_ema(self):
        """ema <- decay * ema + (1 - decay) * w for the converter's weights (BN statistics too)."""
        decay = self.config.ema_decay
        for ema, w in zip(self._ema_weights, self.converter.weights, strict=True):
            ema.assign(decay * ema + (1.0 - decay) * tf.cast(w, ema.dtype))

    def ema_converter(self) -> keras.Model:
        """The converter for evaluation, saving and export: the moving-average weights when EMA
        is on, in plain Keras layers (so `converter.keras` loads without keras_pldt)."""
        if not self._ema_weights and not self.config.subpixel_convs:
            return self.converter
        weights = self._ema_weights or self.converter.weights
        clone = build_converter(self.config.replace(subpixel_convs=False))
        clone.set_weights([keras.ops.convert_to_numpy(w) for w in weights])
        return clone

    def test_step(self, data):
        """The same losses and accuracies in inference mode, plus RMSE to the target in [0, 1]."""
        source, target, unassociated = self._unpack(data)
        generated = self.converter(source, training=False)
        real_fake = domain = None
        if self.config.uses_real_fake:
            real_fake = self._real_fake_terms(target, generated, training=False)
        if self.config.uses_domain:
            domain = self._domain_terms(source, target, unassociated, generated, training=False)
        loss = self._converter_objective(source, target, generated, training=False)
        return self._track(loss, generated, target, real_fake, domain)

    def _track(self, converter_loss, generated, target, real_fake, domain):
        """Update the Mean trackers; `real_fake` / `domain` are (loss, accuracy) or None."""
        self.converter_loss_tracker.update_state(converter_loss)
        self.rmse_tracker.update_state(_rmse01(generated, target))
        if real_fake is not None:
            self.real_fake_loss_tracker.update_state(real_fake[0])
            self.real_fake_accuracy_tracker.update_state(real_fake[1])
        if domain is not None:
            self.domain_loss_tracker.update_state(domain[0])
            self.domain_accuracy_tracker.update_state(domain[1])
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


def _rmse01(generated, target):
    """RMSE between images mapped from [-1, 1] to [0, 1] (the units of Table 3)."""
    diff = (tf.cast(generated, tf.float32) - tf.cast(target, tf.float32)) / 2.0
    return tf.sqrt(tf.reduce_mean(tf.square(diff)))
