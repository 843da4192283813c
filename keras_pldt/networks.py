"""Table 1 of the paper: the converter (encoder + decoder) and the two discriminators.

All networks are Keras functional models, channels-last, built from a `PLDTConfig`.
At 64x64 and base width 128 they are exactly Table 1:

* encoder / D_R / D_A (Table 1a): 5x5 stride-2 convs with 128, 256, 512, 1024 filters,
  LeakyReLU(0.2), batch norm from the second conv on; then a 4x4 valid conv to the 64-d code
  (encoder: BN + LeakyReLU) or to one unit (discriminators). The discriminators return the
  *logit*; the sigmoid of Table 1 is folded into the numerically stable losses of `losses.py`.
  D_A takes the source and a target stacked on channels (6 channels).
* decoder (Table 1b): the 64-d code to 4x4x1024 (BN, ReLU), then 5x5 stride-2 transposed convs
  with 512, 256, 128 filters (BN, ReLU) and 3 filters with tanh.

Other image sizes add or remove stride-2 stages so that the bottleneck stays 4x4x(8*base):
stage widths are `stage_widths(size, base)`, e.g. 128 px -> [b, b, 2b, 4b, 8b].

The converter is made of Keras' own layers only, so `converter.keras` loads without keras_pldt;
the discriminators' batch norm and spectral norm are this module's subclasses (grouped and
recorded calls). The fast kernels of `keras_pldt.kernels` are installed on built models
(`kernels.accelerate`) and change no layer class, config or weight.
"""

from __future__ import annotations

import contextlib
import math

import keras
import tensorflow as tf
from keras import layers

from keras_pldt import kernels
from keras_pldt.config import PLDTConfig

KERNEL = 5


def stage_widths(image_size: int, base_filters: int) -> list[int]:
    """Filters of the stride-2 stages, input to bottleneck (Table 1a: b, 2b, 4b, 8b at 64 px)."""
    stages = int(math.log2(image_size // 4))
    return [base_filters * 2 ** min(max(i - (stages - 4), 0), 3) for i in range(stages)]


def _init(config: PLDTConfig):
    return keras.initializers.RandomNormal(0.0, config.init_stddev)


@keras.saving.register_keras_serializable(package="keras_pldt")
class GroupedBatchNormalization(layers.BatchNormalization):
    """Batch norm that can normalise a batch made of `groups` stacked sub-batches separately.

    With `groups = G` (set by `batch_norm_groups`, default 1 = plain batch norm), a training
    call on [G * B, ...] computes the statistics of each consecutive [B, ...] slice on its own and
    updates the moving statistics once per slice, in order: exactly what G separate calls on
    the slices would compute ("ghost" batch norm), in one batched call. Inference is unchanged.

    Without a visible GPU, a training call on 4-D channels-last input runs TensorFlow's fused
    kernel (`kernels.fused_batch_norm`, one call per slice) instead of Keras' chain of
    element-wise ops: the same values and gradients to float rounding.
    """

    groups = 1
    #: `batch_norm_statistics`: a dict that training calls write their batch statistics to
    #: ("record") or normalise with ("replay"), by layer name; None otherwise.
    statistics = None
    statistics_mode = None

    def call(self, inputs, training=None, mask=None):
        groups = self.groups
        if (
            not training
            or not self.trainable
            or mask is not None
            or self.renorm
            or self.axis not in (-1, len(inputs.shape) - 1)
        ):
            return super().call(inputs, training=training, mask=mask)
        if self.statistics_mode == "replay":
            return self._replay_call(inputs, *self.statistics[self.name])
        if self.statistics_mode == "record":
            return self._record_call(inputs)
        if self.synchronized:
            return super().call(inputs, training=training, mask=mask)
        if len(inputs.shape) == 4 and kernels.fused_batch_norm_applies(inputs.dtype):
            return self._fused_call(inputs, groups)
        if groups == 1:
            return super().call(inputs, training=training, mask=mask)
        x = tf.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        channels = x.shape[-1]
        grouped = tf.reshape(x, [groups, -1, *x.shape[1:]])
        axes = list(range(1, len(grouped.shape) - 1))
        mean, variance = keras.ops.moments(grouped, axes=axes, keepdims=True)
        kernels.update_moving_statistics(
            self, tf.reshape(mean, [groups, channels]), tf.reshape(variance, [groups, channels])
        )
        out = self._normalise(grouped, mean, variance)
        return tf.reshape(out, tf.shape(x))

    def _record_call(self, inputs):
        """A plain training call (one batch, statistics synchronised across replicas when the
        layer is) that also writes its (mean, biased variance) to `statistics`."""
        fused = kernels.fused_batch_norm_applies(inputs.dtype)
        if len(inputs.shape) == 4 and not self.synchronized and fused:
            return self._fused_call(inputs, 1)
        x = tf.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        mean, variance = self._moments(x, None)
        kernels.update_moving_statistics(self, mean[None], variance[None])
        self.statistics[self.name] = (mean, variance)
        return self._normalise(x, mean, variance)

    def _replay_call(self, inputs, mean, variance):
        """Training-mode normalisation with recorded statistics, held constant: gradients reach
        the inputs through the scale alone, and the moving statistics stay as they are."""
        mean, variance = tf.stop_gradient(mean), tf.stop_gradient(variance)
        if len(inputs.shape) == 4 and kernels.fused_batch_norm_applies(inputs.dtype):
            return kernels.fused_batch_norm_with(self, inputs, mean, variance)
        x = tf.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        return self._normalise(x, tf.cast(mean, x.dtype), tf.cast(variance, x.dtype))

    def _normalise(self, x, mean, variance):
        """gamma (x - mean) / sqrt(variance + epsilon) + beta in `x`'s dtype, cast to the
        compute dtype."""
        gamma = tf.cast(self.gamma, x.dtype) if self.scale else None
        beta = tf.cast(self.beta, x.dtype) if self.center else None
        out = tf.nn.batch_normalization(x, mean, variance, beta, gamma, self.epsilon)
        return tf.cast(out, self.compute_dtype)

    def _fused_call(self, inputs, groups: int):
        outputs, means, variances = kernels.fused_batch_norm(self, inputs, groups)
        if self.statistics_mode == "record":
            self.statistics[self.name] = (means[0], variances[0])
        return outputs


def _layers_of(kind: type, *models: keras.Model | None) -> list:
    """The layers of type `kind` in `models` (None skipped), nested models included."""
    return [
        layer
        for model in models
        if model is not None
        for layer in model._flatten_layers()
        if isinstance(layer, kind)
    ]


@contextlib.contextmanager
def batch_norm_groups(model: keras.Model, groups: int):
    """Within the block, training calls of `model` normalise `groups` equal sub-batches apart.

    `model(tf.concat([a, b, c], 0), training=True)` under `batch_norm_groups(model, 3)` gives the
    outputs, gradients and moving statistics of `model(a)`, `model(b)`, `model(c)` in turn.
    """
    norms = _layers_of(GroupedBatchNormalization, model)
    for layer in norms:
        layer.groups = groups
    try:
        yield
    finally:
        for layer in norms:
            layer.groups = 1


@contextlib.contextmanager
def batch_norm_statistics(model: keras.Model, statistics: dict, mode: str):
    """Within the block, training calls of `model`'s batch norms write the statistics they
    normalise with to `statistics` (`mode="record"`), or normalise with those recorded there
    before, as constants that leave the moving statistics alone (`mode="replay"`).

    A converter's view of D_A recorded in D_A's update (`recorded_domain_statistics`) is D_A
    as its update saw it, on the generated pairs alone.
    """
    if mode not in ("record", "replay"):
        raise ValueError(f"mode must be 'record' or 'replay', got {mode!r}")
    norms = _layers_of(GroupedBatchNormalization, model)
    for layer in norms:  # the dict itself, not the copy Keras' attribute tracking would make
        object.__setattr__(layer, "statistics", statistics)
        layer.statistics_mode = mode
    try:
        yield statistics
    finally:
        for layer in norms:
            object.__setattr__(layer, "statistics", None)
            layer.statistics_mode = None


def _compute_dtype() -> str:
    """A discriminator's input dtype: the policy's compute dtype, so that a mixed-precision
    batch enters its first layer without a float32 round trip (forward and backward)."""
    return keras.mixed_precision.global_policy().compute_dtype


@keras.saving.register_keras_serializable(package="keras_pldt")
class SpectralNormalization(layers.SpectralNormalization):
    """Keras' `SpectralNormalization`, whose training calls make the power iteration and write
    the normalised kernel back unless `spectral_norm_held` holds it (`renormalize`)."""

    renormalize = True

    def call(self, inputs, training=False):
        return super().call(inputs, training=bool(training) and self.renormalize)


@contextlib.contextmanager
def spectral_norm_held(*models: keras.Model):
    """Within the block, training calls of `models` use their kernels as they are: no power
    iteration, nothing written back (inference-mode spectral norm; batch norm is unaffected).

    The converter's update reads the discriminators under it: each discriminator's spectral
    norm iterates once per update of that discriminator (the kernel its optimizer just moved
    by one step from the normalised one), and the converter's update leaves the
    discriminators' weights alone."""
    wrappers = _layers_of(SpectralNormalization, *models)
    for layer in wrappers:
        layer.renormalize = False
    try:
        yield
    finally:
        for layer in wrappers:
            layer.renormalize = True


def _spectral_norm(layer, name: str):
    """`SpectralNormalization` around `layer`, its power iteration in the variables'
    dtype under a mixed policy. The wrapper writes the normalised kernel back into the float32
    master weights on every training call: computed in float16 or bfloat16 it rounds them to
    that precision each time (Adam's small updates are lost) and, in float16, a narrow layer's
    vector norms underflow and the kernel turns NaN. So the wrapper does not autocast
    (`autocast=False`: the kernel is read in float32), while it keeps the policy, so its input
    and output stay in the compute dtype (no float32 round trip between layers); the wrapped
    layer computes in the policy's compute dtype."""
    policy = keras.mixed_precision.global_policy()
    return SpectralNormalization(layer, name=name, dtype=policy, autocast=False)


def _batch_norm(config: PLDTConfig, name: str, grouped: bool = False):
    # PyTorch/DCGAN statistics (momentum 0.1 there is 0.9 here); gamma ~ N(1, 0.02) as in DCGAN.
    # Under tf.distribute with several replicas, statistics are synchronised across replicas so
    # that training matches one device with the same global batch. The discriminators need the
    # grouped layer (their fused calls); the converter keeps Keras' own, so that converter.keras
    # loads anywhere without keras_pldt.
    layer = GroupedBatchNormalization if grouped else layers.BatchNormalization
    return layer(
        momentum=0.9,
        synchronized=tf.distribute.get_strategy().num_replicas_in_sync > 1,
        epsilon=1e-5,
        gamma_initializer=keras.initializers.RandomNormal(1.0, config.init_stddev),
        name=name,
    )


def _conv_stack(
    x,
    config: PLDTConfig,
    spectral_norm: bool = False,
    grouped: bool = False,
):
    """Table 1a layers 1-4: 5x5 stride-2 convs, BN from layer 2, LeakyReLU."""
    for i, filters in enumerate(stage_widths(config.image_size, config.base_filters)):
        conv = layers.Conv2D(
            filters,
            KERNEL,
            strides=2,
            padding="same",
            use_bias=i == 0,
            kernel_initializer=_init(config),
            name=f"conv{i + 1}",
        )
        if spectral_norm:
            conv = _spectral_norm(conv, f"sn_conv{i + 1}")
        x = conv(x)
        if i > 0:
            x = _batch_norm(config, f"bn{i + 1}", grouped)(x)
        x = layers.LeakyReLU(config.leaky_slope, name=f"lrelu{i + 1}")(x)
    return x


def build_encoder(config: PLDTConfig) -> keras.Model:
    """Table 1a, encoder column: source image -> 64-d semantic code."""
    size = config.image_size
    inputs = keras.Input((size, size, 3), name="source")
    x = _conv_stack(inputs, config)
    x = layers.Conv2D(
        config.code_dim,
        4,
        padding="valid",
        use_bias=False,
        kernel_initializer=_init(config),
        name="conv_code",
    )(x)
    x = _batch_norm(config, "bn_code")(x)
    x = layers.LeakyReLU(config.leaky_slope, name="lrelu_code")(x)
    code = layers.Flatten(name="code")(x)
    return keras.Model(inputs, code, name="encoder")


def _upsample(config: PLDTConfig, filters: int, name: str, use_bias: bool):
    """One x2 decoder stage: Table 1b's 5x5 stride-2 transposed conv, or with
    `upsampling="resize"` nearest-neighbour x2 then a 5x5 conv (Odena et al. 2016: no
    checkerboard, since every output pixel sees the same number of kernel taps)."""
    options = dict(padding="same", use_bias=use_bias, kernel_initializer=_init(config), name=name)
    if config.upsampling == "transposed":
        return layers.Conv2DTranspose(filters, KERNEL, strides=2, **options)
    conv = layers.Conv2D(filters, KERNEL, **options)

    def stage(x):
        # Nearest-neighbour x2 from Concatenate + Reshape: the same values as UpSampling2D(2),
        # with static shapes, which the TFLite converter needs (UpSampling2D's repeat loses
        # them) and only core layers, so converter.keras loads anywhere. `kernels.accelerate`
        # recognises this drawing and runs the conv on the low-resolution input.
        h, w, c = x.shape[1:]
        x = layers.Concatenate(axis=-1, name=f"{name}_repeat_w")([x, x])
        x = layers.Reshape((h, 2 * w, c), name=f"{name}_resize_w")(x)
        x = layers.Concatenate(axis=2, name=f"{name}_repeat_h")([x, x])
        return conv(layers.Reshape((2 * h, 2 * w, c), name=f"{name}_resize_h")(x))

    return stage


def build_decoder(config: PLDTConfig) -> keras.Model:
    """Table 1b: 64-d code -> 4x4 bottleneck -> fractional-strided convs -> tanh image."""
    widths = stage_widths(config.image_size, config.base_filters)
    code = keras.Input((config.code_dim,), name="code")
    x = layers.Dense(
        4 * 4 * widths[-1], use_bias=False, kernel_initializer=_init(config), name="project"
    )(code)
    x = layers.Reshape((4, 4, widths[-1]), name="reshape")(x)
    x = _batch_norm(config, "bn_project")(x)
    x = layers.ReLU(name="relu_project")(x)
    for i, filters in enumerate(reversed(widths[:-1])):
        x = _upsample(config, filters, f"deconv{i + 2}", use_bias=False)(x)
        x = _batch_norm(config, f"bn_deconv{i + 2}")(x)
        x = layers.ReLU(name=f"relu_deconv{i + 2}")(x)
    x = _upsample(config, 3, f"deconv{len(widths) + 1}", use_bias=True)(x)
    image = layers.Activation("tanh", dtype="float32", name="target")(x)
    return keras.Model(code, image, name="decoder")


def build_converter(config: PLDTConfig) -> keras.Model:
    """The converter C: encoder then decoder (Fig. 2, top). [-1, 1] in, [-1, 1] out."""
    size = config.image_size
    encoder, decoder = build_encoder(config), build_decoder(config)
    source = keras.Input((size, size, 3), name="source")
    return keras.Model(source, decoder(encoder(source)), name="converter")


def _build_discriminator(config: PLDTConfig, channels: int, name: str) -> keras.Model:
    size = config.image_size
    inputs = keras.Input(
        (size, size, channels),
        name="pair" if channels == 6 else "image",
        dtype=_compute_dtype(),
    )
    x = _conv_stack(inputs, config, spectral_norm=config.spectral_norm, grouped=True)
    conv = layers.Conv2D(1, 4, padding="valid", kernel_initializer=_init(config), name="conv_out")
    if config.spectral_norm:
        conv = _spectral_norm(conv, "sn_conv_out")
    x = conv(x)
    logit = layers.Flatten(dtype="float32", name="logit")(x)
    return keras.Model(inputs, logit, name=name)


def build_real_fake_discriminator(config: PLDTConfig) -> keras.Model:
    """D_R (Table 1a, middle column): image -> logit of 'real product image'."""
    return _build_discriminator(config, 3, "real_fake_discriminator")


def build_domain_discriminator(config: PLDTConfig) -> keras.Model:
    """D_A (Table 1a, right column): source, target stacked on channels -> logit 'associated'."""
    return _build_discriminator(config, 6, "domain_discriminator")


def split_pair_conv(d_a) -> tuple | None:
    """D_A in inference mode as ``(half, rest)`` for scoring many (source, target) pairs, or
    None when `d_a` is not a D_A of `build_domain_discriminator`.

    D_A's first conv is linear in the channel-stacked pair, so
    ``D_A(s ++ t) == rest(half(s, 0) + half(t, 1))``: ``half(x, k)`` is that conv on the
    source (k = 0, bias included) or target (k = 1) channels of the pair alone, ``rest`` D_A
    from the first activation on. Each image then passes the first conv once, not once per
    pair. Both take and return D_A's compute dtype."""
    if not isinstance(d_a, keras.Model) or len(d_a.inputs) != 1 or d_a.inputs[0].shape[-1] != 6:
        return None
    first = next((layer for layer in d_a.layers if layer.name in ("conv1", "sn_conv1")), None)
    if first is None or first.input is not d_a.inputs[0]:  # linear in the pair only if first
        return None
    conv = getattr(first, "layer", first)  # the spectral norm wrapper holds its kernel as used
    try:
        rest = keras.Model(first.output, d_a.output)
    except (ValueError, TypeError):
        return None

    def half(images, k: int):
        kernel = tf.cast(conv.kernel[:, :, 3 * k : 3 * k + 3, :], images.dtype)
        out = tf.nn.conv2d(images, kernel, conv.strides, conv.padding.upper())
        if k == 0 and conv.use_bias:
            out = tf.nn.bias_add(out, tf.cast(conv.bias, images.dtype))
        return out

    return half, lambda h: rest(h, training=False)
