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
    batch_norm_statistics,
    build_converter,
    build_domain_discriminator,
    build_real_fake_discriminator,
    spectral_norm_held,
)
from keras_pldt.precision import POLICIES, auto_precision, precision_policy
from keras_pldt.schedule import PaperSchedule

_KEYS = ("source", "target", "unassociated")
# Network name -> the attribute holding its optimizer (also `compile`'s argument name).
_OPTIMIZER_ATTRS = {
    "converter": "converter_optimizer",
    "real_fake_discriminator": "real_fake_optimizer",
    "domain_discriminator": "domain_optimizer",
}


def make_optimizer(config: PLDTConfig, network: str = "converter") -> keras.optimizers.Optimizer:
    """Adam as in the paper (beta_1 0.5) with the paper's schedule attached (`PaperSchedule`:
    the base rate, then the decayed rate; the discriminators' times their multiplier)."""
    return keras.optimizers.Adam(
        learning_rate=PaperSchedule.for_network(config, network),
        beta_1=config.beta_1,
        beta_2=config.beta_2,
        name=f"{network}_adam",
    )


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
        self.contrast_bank = None  # the pixel contrast's further negatives
        if cfg.pixel_contrast_weight and cfg.pixel_contrast_bank:
            self.contrast_bank = losses.ContrastBank(
                cfg.pixel_contrast_bank, cfg.image_size, name="contrast_bank"
            )
        self._domain_features = None
        if cfg.uses_domain and cfg.feature_matching_weight:
            d_a = self.domain_discriminator
            taps = [layer.output for layer in d_a.layers if layer.name.startswith("lrelu")]
            self._domain_features = keras.Model(d_a.input, [*taps, d_a.output], name="d_a_taps")
        self.terms = losses.converter_terms(cfg)
        mean = keras.metrics.Mean
        self.converter_loss_tracker = mean(name="converter_loss")
        self.term_trackers = {t.name: mean(name=f"converter_{t.name}") for t in self.terms}
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
        trackers = [self.converter_loss_tracker, *self.term_trackers.values()]
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
        """Take one optimizer per network; by default `make_optimizer`'s Adam with the paper's
        schedule attached, which `fit` follows. A user's own optimizer is left as given.

        The converter's optimizer is also `model.optimizer`, so callbacks that read
        `model.optimizer.learning_rate` see the real rate. Under mixed_float16 each optimizer
        is wrapped in a `LossScaleOptimizer`. `jit_compile` defaults to the config's (False:
        XLA is slower on CPU).
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

    def fit(self, x=None, *args, steps_per_epoch=None, **kwargs):
        """`keras.Model.fit`, with every `PaperSchedule` told how many steps an epoch has
        (`steps_per_epoch`, else the dataset's finite cardinality)."""
        steps = steps_per_epoch
        if steps is None and isinstance(x, tf.data.Dataset):
            cardinality = int(x.cardinality())
            steps = cardinality if cardinality > 0 else None
        if steps:
            for optimizer in self.optimizers.values():
                schedule = getattr(optimizer, "inner_optimizer", optimizer)._learning_rate
                if isinstance(schedule, PaperSchedule):
                    schedule.steps_per_epoch = steps
        return super().fit(x, *args, steps_per_epoch=steps_per_epoch, **kwargs)

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
        product = data.get("product") if isinstance(data, dict) else None
        needs_ids = {
            "hard_negatives": self.config.hard_negatives and unassociated is not None,
            "pixel_contrast_bank": self.config.pixel_contrast_bank,
        }
        for name, needed in needs_ids.items():
            if needed and product is None:
                raise ValueError(
                    f"{name} needs each batch's product ids: a 'product' int tensor [batch] "
                    "(keras_pldt.data's pipelines provide it)"
                )
        if self.config.hard_negatives and unassociated is not None:
            unassociated = self._hard_negatives(target, unassociated, product)
        return source, target, unassociated

    def _hard_negatives(self, target, unassociated, product):
        """I_T^- of Eq. 5, a `hard_negatives` share of them replaced by the batch's target of
        another product nearest to the row's own I_T (L2 of 8 x 8 mean-pooled images): pairs
        D_A can only reject by the product's identity, not its colour or shape alone."""
        size = self.config.image_size
        pooled = tf.nn.avg_pool2d(tf.cast(target, tf.float32), size // 8, size // 8, "VALID")
        distance = losses.pairwise_squared_distance(pooled, pooled)
        product = losses.product_ids(product)
        same = tf.equal(product[:, None], product[None, :])
        nearest = tf.argmin(tf.where(same, tf.fill(tf.shape(distance), 3e38), distance), 1)
        seed = tf.random.experimental.stateless_fold_in(self._step_seed(), -1)
        draw = tf.random.stateless_uniform(tf.shape(product), seed) < self.config.hard_negatives
        pick = draw & tf.logical_not(tf.reduce_all(same, 1))  # a row with another product
        hard = tf.gather(target, nearest)
        return tf.where(pick[:, None, None, None], hard, unassociated)

    def _expected_shape(self):
        s = self.config.image_size
        return f"[batch, {s}, {s}, 3]"

    # ------------------------------------------------------------------ Algorithm 1
    def train_step(self, data):
        """Algorithm 1: generate, update D_R (Eq. 2), update D_A (Eq. 5), then the converter
        against the updated discriminators (Eq. 6 and the config's extra terms)."""
        source, target, unassociated = self._unpack(data)
        product = data.get("product") if isinstance(data, dict) else None
        self._diff_augment_calls = 0  # numbers this step's DiffAugment draws (at trace time)
        source = self._augment_sources(source)
        detach = not self.config.adversarial_encoder and self.config.uses_real_fake
        tape, code = tf.GradientTape(persistent=detach), None
        with tape:
            if self.config.code_contrast_weight or detach:  # the same pass, its code kept
                code = self.converter.get_layer("encoder")(source, training=True)
                generated = self.converter.get_layer("decoder")(code, training=True)
            else:
                generated = self.converter(source, training=True)
        fake = tf.stop_gradient(generated)
        logs, recorded = {}, None
        if self.real_fake_discriminator is not None:
            logs["real_fake"] = self._update(
                "real_fake_discriminator", lambda: self._real_fake_terms(target, fake, True)
            )
        if self.domain_discriminator is not None:
            logs["domain"] = self._update(
                "domain_discriminator",
                lambda: self._domain_terms(source, target, unassociated, fake, True),
            )
            recorded = logs["domain"][2]
        logs["converter"] = self._update(
            "converter",
            lambda: self._converter_objective(
                source, target, generated, True, unassociated, code, product, recorded
            ),
            tape,
            self._decoder_only_terms() if detach else None,
        )
        if self.contrast_bank is not None:
            self.contrast_bank.push(target, product)
        self._update_ema()
        return self._track(generated, target, **logs)

    def _update(self, network: str, loss_fn, tape: tf.GradientTape | None = None, part=None):
        """One optimizer step of `network` on the first output of `loss_fn()`, recorded on
        `tape` (a new one by default); returns `loss_fn()`'s outputs.

        Every network's update goes through here, so the loss is always divided by the
        replicas (the optimizer sums their gradients) and scaled by the optimizer's loss
        scale (`LossScaleOptimizer` divides the gradients by it; a no-op otherwise).
        `part = (part_fn, variables)`: the share `part_fn(outputs)` of the loss moves only
        those variables (a persistent `tape`; `adversarial_encoder=False`).
        """
        optimizer = self.optimizers[network]
        variables = self.networks[network].trainable_variables
        tape = tape or tf.GradientTape()
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        scale = lambda loss: optimizer.scale_loss(loss / replicas if replicas > 1 else loss)  # noqa: E731
        with tape:
            outputs = loss_fn()
            share = None if part is None else part[0](outputs)
            scaled = scale(outputs[0] if share is None else outputs[0] - share)
            scaled_share = None if share is None else scale(share)  # on the tape, like `scaled`
        grads = tape.gradient(scaled, variables)
        if part is not None:
            part_grads = tape.gradient(scaled_share, part[1])
            only = {id(v): g for v, g in zip(part[1], part_grads, strict=True)}
            grads = [_add(g, only.get(id(v))) for v, g in zip(variables, grads, strict=True)]
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        return outputs

    def _decoder_only_terms(self):
        """(the weighted sum of the objective's discriminator terms, the decoder's variables):
        with `adversarial_encoder=False` those terms' gradients stop at the code, so the
        encoder learns from the pixel terms alone and the decoder from all of them."""
        weights = {t.name: t.weight for t in self.terms if t.name in losses.DISCRIMINATOR_TERMS}

        def part(outputs):
            return tf.add_n([w * outputs[1][name] for name, w in weights.items()])

        return part, self.converter.get_layer("decoder").trainable_variables

    def _pair(self, source, target):
        """D_A's input: source and target stacked on channels (Table 1a, 6 channels)."""
        return tf.concat([source, tf.cast(target, source.dtype)], axis=-1)

    def _augment_sources(self, source):
        """Random views of the converter's training sources (`source_augment`)."""
        if not self.config.source_augment:
            return source
        return augment_sources(source, self.config.source_augment, self._step_seed())

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
        separate calls in order (the paper's math), with fewer, larger convolutions; spectral
        norm then makes one power iteration per update instead of one per call. Off with
        synchronised multi-replica batch norm.
        """
        if self._fuse is None:
            return tf.distribute.get_strategy().num_replicas_in_sync == 1
        return self._fuse

    @fuse_discriminator_calls.setter
    def fuse_discriminator_calls(self, value: bool | None) -> None:
        self._fuse = value

    def _discriminate(self, discriminator, inputs, training: bool, joint: bool = False):
        """Outputs of `discriminator` for each batch in `inputs`: as separate calls would
        give, or with `joint` as one batch (batch norm's statistics over all of them)."""
        if len(inputs) == 1 or not (joint or self.fuse_discriminator_calls):
            return [discriminator(x, training=training) for x in inputs]
        stacked = tf.concat([tf.cast(x, discriminator.compute_dtype) for x in inputs], 0)
        if joint:
            outputs = discriminator(stacked, training=training)
        else:
            with batch_norm_groups(discriminator, len(inputs)):
                outputs = discriminator(stacked, training=training)
        if isinstance(outputs, (list, tuple)):  # D_A's feature taps and logits
            parts = [tf.split(o, len(inputs)) for o in outputs]
            return [list(x) for x in zip(*parts, strict=True)]
        return tf.split(outputs, len(inputs), axis=0)

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

    def _domain_pairs(self, source, target, unassociated, generated, training: bool):
        """D_A's inputs of one update (Eq. 5): (I_S, I_T), (I_S, I_T^-) if the variant uses
        it, (I_S, generated), each DiffAugmented in training."""
        pair = lambda image: self._augment(self._pair(source, image), training)  # noqa: E731
        inputs = [pair(target)]
        if self.config.variant == "rf+dd" and unassociated is not None:
            inputs.append(pair(unassociated))
        return [*inputs, pair(generated)]

    def _domain_terms(self, source, target, unassociated, generated, training: bool):
        """Eq. 5 on one batch: (D_A loss, D_A accuracy, recorded) over the pairings the variant
        uses. `recorded` is None, or in training with `recorded_domain_statistics` the
        converter's view of this update: (D_A's batch statistics by layer, its feature taps
        and logits on (I_S, I_T), or None without feature matching)."""
        d_a, kind = self.domain_discriminator, self.config.adversarial_loss
        inputs = self._domain_pairs(source, target, unassociated, generated, training)
        joint = self.config.joint_domain_batch
        if training and self.config.recorded_domain_statistics:
            network = d_a if self._domain_features is None else self._domain_features
            with batch_norm_statistics(d_a, {}, "record") as statistics:
                outputs = self._discriminate(network, inputs, training, joint)
            real_features = None
            if self._domain_features is not None:
                real_features = [tf.stop_gradient(f) for f in outputs[0]]
                outputs = [o[-1] for o in outputs]
            recorded = (statistics, real_features)
        else:
            outputs, recorded = self._discriminate(d_a, inputs, training, joint), None
        associated, *negative, fake = outputs
        negative = negative[0] if negative else None
        hits = [losses.accuracy(associated, True), losses.accuracy(fake, False)]
        if negative is not None:
            hits.append(losses.accuracy(negative, False))
        accuracy = tf.add_n(hits) / len(hits)
        loss = losses.domain_loss(associated, negative, fake, kind)
        if training and self.config.r1_weight:
            loss += self.config.r1_weight * losses.r1_penalty(d_a, inputs[0])
        return loss, accuracy, recorded

    def _converter_objective(
        self,
        source,
        target,
        generated,
        training,
        unassociated=None,
        code=None,
        product=None,
        recorded=None,
    ):
        """(the converter's loss, {term: value}): the weighted sum of `self.terms`
        (`losses.converter_terms`: Eq. 6 and the config's extra terms). `recorded`: D_A's
        update as `_domain_terms` records it. The discriminators are read as their updates left
        them (`spectral_norm_held`: spectral norm iterates once per update of each)."""
        views = losses.ConverterViews(
            self, source, target, generated, training, unassociated, code, product, recorded
        )
        with spectral_norm_held(self.real_fake_discriminator, self.domain_discriminator):
            values = {term.name: term.fn(views) for term in self.terms}
        loss = tf.add_n([term.weight * values[term.name] for term in self.terms])
        return loss, values

    def _step_seed(self):
        """A `[2]` seed from the run's seed, the step and the replica: random draws that a
        resumed run repeats exactly."""
        replica = tf.distribute.get_replica_context()
        replica_id = replica.replica_id_in_sync_group if replica is not None else 0
        step = tf.cast(self.converter_optimizer.iterations, tf.int64)
        stream = step * 1024 + tf.cast(replica_id, tf.int64)
        return tf.stack([tf.constant(self.config.seed, tf.int64), stream])

    def _update_ema(self):
        """ema <- decay * ema + (1 - decay) * w for the converter's weights (BN statistics too),
        when `ema_decay` is on."""
        if not self._ema_weights:
            return
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
        product = data.get("product") if isinstance(data, dict) else None
        generated = self.converter(source, training=False)
        logs = {
            "converter": self._converter_objective(
                source, target, generated, False, unassociated, None, product
            )
        }
        if self.real_fake_discriminator is not None:
            logs["real_fake"] = self._real_fake_terms(target, generated, training=False)
        if self.domain_discriminator is not None:
            logs["domain"] = self._domain_terms(source, target, unassociated, generated, False)
        return self._track(generated, target, **logs)

    def _track(self, generated, target, converter, real_fake=None, domain=None):
        """Update the Mean trackers: `converter` is (loss, {term: value}), `real_fake` and
        `domain` are (loss, accuracy) or None."""
        loss, values = converter
        self.converter_loss_tracker.update_state(loss)
        for name, value in values.items():
            self.term_trackers[name].update_state(value)
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


def _add(a, b):
    """a + b for gradients where either may be None (a variable the loss does not reach)."""
    return b if a is None else a if b is None else a + b


def _rmse01(generated, target):
    """RMSE between images mapped from [-1, 1] to [0, 1] (the units of Table 3)."""
    diff = (tf.cast(generated, tf.float32) - tf.cast(target, tf.float32)) / 2.0
    return tf.sqrt(tf.reduce_mean(tf.square(diff)))
