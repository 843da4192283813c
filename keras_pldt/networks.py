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
"""

from __future__ import annotations

import contextlib
import math

import keras
import tensorflow as tf
from keras import layers

from keras_pldt.config import PLDTConfig
from keras_pldt.kernels import (
    LeakyReLU,
    SubpixelConv2D,
    SubpixelConv2DTranspose,
    SubpixelResizeConv2D,
)

KERNEL = 5


def stage_widths(image_size: int, base_filters: int) -> list[int]:
    """Filters of the stride-2 stages, input to bottleneck (Table 1a: b, 2b, 4b, 8b at 64 px)."""
    stages = int(math.log2(image_size // 4))
    return [base_filters * 2 ** min(max(i - (stages - 4), 0), 3) for i in range(stages)]


def _conv_layers(config: PLDTConfig):
    """(Conv2D, Conv2DTranspose) classes: the sub-pixel ones of `kernels` or Keras' own."""
    if config.subpixel_convs:
        return SubpixelConv2D, SubpixelConv2DTranspose
    return layers.Conv2D, layers.Conv2DTranspose


def _leaky_relu_layer(config: PLDTConfig, portable: bool):
    """LeakyReLU class: `kernels.LeakyReLU` (same values and gradients, a training graph that
    grappler can fuse into the conv before it) unless the network must stay plain Keras
    (`portable`: the converter without the sub-pixel kernels is saved as it is)."""
    if portable and not config.subpixel_convs:
        return layers.LeakyReLU
    return LeakyReLU


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
    kernel (`FusedBatchNormV3`, one per slice) instead of Keras' chain of element-wise ops:
    the same values and gradients to float rounding, 2-3x faster on CPU, and in bfloat16 it
    reads and writes the compute dtype with no float32 copy of the activations.
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
        if len(inputs.shape) == 4 and _fused_kernel_applies(inputs.dtype):
            return self._fused_call(inputs, groups)
        if groups == 1:
            return super().call(inputs, training=training, mask=mask)
        x = tf.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        channels = x.shape[-1]
        grouped = tf.reshape(x, [groups, -1, *x.shape[1:]])
        axes = list(range(1, len(grouped.shape) - 1))
        mean, variance = keras.ops.moments(grouped, axes=axes, keepdims=True)
        self._update_moving_statistics(
            tf.reshape(mean, [groups, channels]), tf.reshape(variance, [groups, channels])
        )
        out = self._normalise(grouped, mean, variance)
        return tf.reshape(out, tf.shape(x))

    def _record_call(self, inputs):
        """A plain training call (one batch, statistics synchronised across replicas when the
        layer is) that also writes its (mean, biased variance) to `statistics`."""
        if len(inputs.shape) == 4 and not self.synchronized and _fused_kernel_applies(inputs.dtype):
            return self._fused_call(inputs, 1)
        x = tf.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        mean, variance = self._moments(x, None)
        self._update_moving_statistics(mean[None], variance[None])
        self.statistics[self.name] = (mean, variance)
        return self._normalise(x, mean, variance)

    def _replay_call(self, inputs, mean, variance):
        """Training-mode normalisation with recorded statistics, held constant: gradients reach
        the inputs through the scale alone, and the moving statistics stay as they are."""
        mean, variance = tf.stop_gradient(mean), tf.stop_gradient(variance)
        if len(inputs.shape) == 4 and _fused_kernel_applies(inputs.dtype):
            x = tf.cast(inputs, self.compute_dtype)
            y, *_ = tf.raw_ops.FusedBatchNormV3(
                x=x, **self._fused_scale_offset(x.shape[-1]), mean=mean, variance=variance,
                epsilon=self.epsilon, is_training=False,
            )  # fmt: skip
            return y
        x = tf.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        return self._normalise(x, tf.cast(mean, x.dtype), tf.cast(variance, x.dtype))

    def _normalise(self, x, mean, variance):
        """gamma (x - mean) / sqrt(variance + epsilon) + beta in `x`'s dtype, cast to the
        compute dtype."""
        gamma = tf.cast(self.gamma, x.dtype) if self.scale else None
        beta = tf.cast(self.beta, x.dtype) if self.center else None
        out = tf.nn.batch_normalization(x, mean, variance, beta, gamma, self.epsilon)
        return tf.cast(out, self.compute_dtype)

    def _fused_scale_offset(self, channels: int) -> dict:
        """`FusedBatchNormV3`'s float32 `scale` and `offset`: gamma and beta, or 1 and 0."""
        return {
            "scale": tf.cast(self.gamma, "float32") if self.scale else tf.ones([channels]),
            "offset": tf.cast(self.beta, "float32") if self.center else tf.zeros([channels]),
        }

    def _update_moving_statistics(self, means, variances):
        """The sequential moving-average updates of one call per row of `means`/`variances`."""
        moving_mean = tf.cast(self.moving_mean, means.dtype)
        moving_variance = tf.cast(self.moving_variance, variances.dtype)
        for g in range(means.shape[0]):  # the sequential updates of G separate calls
            moving_mean = moving_mean * self.momentum + means[g] * (1.0 - self.momentum)
            moving_variance = moving_variance * self.momentum + variances[g] * (1.0 - self.momentum)
        self.moving_mean.assign(tf.cast(moving_mean, self.moving_mean.dtype))
        self.moving_variance.assign(tf.cast(moving_variance, self.moving_variance.dtype))

    def _fused_call(self, inputs, groups: int):
        x = tf.cast(inputs, self.compute_dtype)
        channels = x.shape[-1]
        scale_offset = self._fused_scale_offset(channels)
        empty = tf.zeros([0], "float32")
        # The kernel returns the Bessel-corrected variance; Keras' moving variance (and the
        # normalisation) use the biased one: values per channel in a slice, n - 1 over n.
        count = tf.cast(tf.size(x) // (groups * channels), "float32")
        biased = (count - 1.0) / tf.maximum(count, 1.0)
        outs, means, variances = [], [], []
        for part in tf.split(x, groups, axis=0) if groups > 1 else [x]:
            y, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
                x=part, **scale_offset, mean=empty, variance=empty,
                epsilon=self.epsilon, is_training=True,
            )  # fmt: skip
            outs.append(y)
            means.append(mean)
            variances.append(variance * biased)
        self._update_moving_statistics(tf.stack(means), tf.stack(variances))
        if self.statistics_mode == "record":
            self.statistics[self.name] = (means[0], variances[0])
        return outs[0] if groups == 1 else tf.concat(outs, axis=0)


def _fused_kernel_applies(dtype) -> bool:
    """Whether training calls use `FusedBatchNormV3`: CPU only (cuDNN's kernel needs epsilon
    above 1e-5, and on GPUs the element-wise chain is cheap), for the float dtypes it takes."""
    on_cpu = not tf.config.list_physical_devices("GPU")
    return on_cpu and tf.as_dtype(dtype) in (tf.float32, tf.bfloat16)


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
    # grouped layer (their fused calls); the converter uses it for its CPU kernel alongside the
    # sub-pixel convs and keeps Keras' own otherwise, so that converter.keras (saved without
    # the sub-pixel kernels, `PLDT.ema_converter`) loads anywhere without keras_pldt.
    fast = grouped or config.subpixel_convs
    layer = GroupedBatchNormalization if fast else layers.BatchNormalization
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
    dropout: float = 0.0,
    grouped: bool = False,
    widths: list[int] | None = None,
    prefix: str = "",
):
    """Table 1a layers 1-4: 5x5 stride-2 convs, BN from layer 2, LeakyReLU (layer names
    after `prefix`)."""
    conv2d = _conv_layers(config)[0]
    leaky_relu = _leaky_relu_layer(config, portable=not grouped)
    if widths is None:
        widths = stage_widths(config.image_size, config.base_filters)
    for i, filters in enumerate(widths):
        conv = conv2d(
            filters,
            KERNEL,
            strides=2,
            padding="same",
            use_bias=i == 0,
            kernel_initializer=_init(config),
            name=f"{prefix}conv{i + 1}",
        )
        if spectral_norm:
            conv = _spectral_norm(conv, f"{prefix}sn_conv{i + 1}")
        x = conv(x)
        if i > 0:
            x = _batch_norm(config, f"{prefix}bn{i + 1}", grouped)(x)
        x = leaky_relu(config.leaky_slope, name=f"{prefix}lrelu{i + 1}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"{prefix}dropout{i + 1}")(x)
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
    x = _leaky_relu_layer(config, portable=True)(config.leaky_slope, name="lrelu_code")(x)
    code = layers.Flatten(name="code")(x)
    return keras.Model(inputs, code, name="encoder")


def _upsample(config: PLDTConfig, filters: int, name: str, use_bias: bool):
    """One x2 decoder stage: Table 1b's 5x5 stride-2 transposed conv, or with
    `upsampling="resize"` nearest-neighbour x2 then a 5x5 conv (Odena et al. 2016: no
    checkerboard, since every output pixel sees the same number of kernel taps)."""
    options = dict(padding="same", use_bias=use_bias, kernel_initializer=_init(config), name=name)
    conv2d, conv2d_transpose = _conv_layers(config)
    if config.upsampling == "transposed":
        return conv2d_transpose(filters, KERNEL, strides=2, **options)
    if config.subpixel_convs:  # the same weights and values, 2.8x fewer multiply-adds
        return SubpixelResizeConv2D(filters, KERNEL, **options)
    conv = conv2d(filters, KERNEL, **options)

    def stage(x):
        # Nearest-neighbour x2 from Concatenate + Reshape: the same values as UpSampling2D(2),
        # with static shapes, which the TFLite converter needs (UpSampling2D's repeat loses
        # them) and only core layers, so converter.keras loads anywhere.
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


def _build_discriminator(
    config: PLDTConfig, channels: int, name: str, patches: bool = False
) -> keras.Model:
    size = config.image_size
    inputs = keras.Input(
        (size, size, channels),
        name="pair" if channels == 6 else "image",
        dtype=_compute_dtype(),
    )
    stages = stage_widths(size, config.base_filters)
    x = _conv_stack(
        inputs,
        config,
        spectral_norm=config.spectral_norm,
        dropout=config.discriminator_dropout,
        grouped=True,
        widths=stages[:-1] if patches else stages,
    )
    out = dict(kernel_size=3, padding="same") if patches else dict(kernel_size=4, padding="valid")
    conv = layers.Conv2D(1, **out, kernel_initializer=_init(config), name="conv_out")
    if config.spectral_norm:
        conv = _spectral_norm(conv, "sn_conv_out")
    x = conv(x)
    logit = layers.Flatten(dtype="float32", name="logit")(x)
    return keras.Model(inputs, logit, name=name)


def build_real_fake_discriminator(config: PLDTConfig) -> keras.Model:
    """D_R (Table 1a, middle column): image -> logit of 'real product image'.

    With `config.real_fake_patches`, a PatchGAN (pix2pix, Isola et al. 2017) instead: the last
    stride-2 stage and the 4x4 valid conv give way to a 3x3 conv on the 8x8 map, one logit per
    overlapping 45 x 45 px patch, so D_R judges local texture and edges.
    """
    return _build_discriminator(
        config, 3, "real_fake_discriminator", patches=config.real_fake_patches
    )


def build_domain_discriminator(config: PLDTConfig) -> keras.Model:
    """D_A (Table 1a, right column): source, target stacked on channels -> logit 'associated'.

    With `config.domain_projection`, a projection critic (Miyato & Koyama 2018) on the same
    6-channel input: a Table 1a stack on the target to features phi(I_T) (code_dim wide), one
    on the source to an embedding e(I_S), and the logit psi(phi(I_T)) + <e(I_S), phi(I_T)>.
    The inner product makes "which product goes with this source" a comparison of two
    embeddings, where the channel-stacked D_A must learn it from pixels side by side.
    """
    if not config.domain_projection:
        return _build_discriminator(config, 6, "domain_discriminator")
    size = config.image_size
    pair = keras.Input((size, size, 6), name="pair", dtype=_compute_dtype())
    options = dict(spectral_norm=config.spectral_norm, dropout=config.discriminator_dropout)

    def embedding(x, prefix, name):
        x = _conv_stack(x, config, grouped=True, prefix=prefix, **options)
        conv = layers.Conv2D(
            config.code_dim, 4, padding="valid", kernel_initializer=_init(config), name=name
        )
        if config.spectral_norm:
            conv = _spectral_norm(conv, f"sn_{name}")
        return layers.Flatten(name=f"{name}_flat")(conv(x))

    source = layers.Identity(name="pair_source")(pair[..., :3])
    target = layers.Identity(name="pair_target")(pair[..., 3:])
    leaky_relu = _leaky_relu_layer(config, portable=False)
    phi = leaky_relu(config.leaky_slope, name="lrelu_phi")(embedding(target, "", "conv_phi"))
    e = embedding(source, "source_", "conv_embed")
    psi = layers.Dense(1, kernel_initializer=_init(config), name="psi")
    if config.spectral_norm:
        psi = _spectral_norm(psi, "sn_psi")
    x = layers.Add(name="projection")([psi(phi), layers.Dot(axes=1, name="match")([e, phi])])
    logit = layers.Flatten(dtype="float32", name="logit")(x)
    return keras.Model(pair, logit, name="domain_discriminator")
