"""Fast kernels for the layers of `keras_pldt.networks`, installed on built models.

`accelerate(*models)` replaces, on each layer *instance* of the models, the computation of

* 5x5 stride-2 "same" `Conv2D` by `conv2d_stride2` (its input gradient as a sub-pixel conv),
* 5x5 stride-2 "same" `Conv2DTranspose` by `conv2d_transpose_stride2` (a sub-pixel conv),
* a 5x5 "same" `Conv2D` of a nearest-neighbour x2 input (the resize decoder's stage) by
  `resize_conv2d` of the low-resolution input,
* `LeakyReLU` by `leaky_relu` (a gradient that reads the output, which grappler can fuse),
* `BatchNormalization`'s training calls on CPU by `fused_batch_norm` (TensorFlow's fused
  kernel, which `networks.GroupedBatchNormalization` also uses),

with the same values and gradients to float rounding (second order included). Each kernel checks
at call time that it applies (shape, strides, padding, dtype, device) and falls back to the
layer's own computation otherwise. Layer classes, configs, weights and their names and order
stay Keras' own, so a checkpoint or a saved model does not depend on whether its model was
accelerated, and `converter.keras` loads with plain Keras.

`with_subpixel_transposed_convs` is an export-time copy of a model whose transposed convs run
as sub-pixel convs (for TFLite's dynamic-range kernels).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

# ---------------------------------------------------------------- sub-pixel stride-2 convs
#
# The input gradient of a 5x5 stride-2 "same" conv (`Conv2DBackpropInput`), which is also a
# transposed conv to twice the size, is a stride-1 3x3 conv to 4x the channels followed by
# `depth_to_space(2)`: output pixel (2m + p, 2n + q) only sees the kernel taps of parity (p, q),
# so each of the four phases is a small conv of the un-dilated input. The 3x3 phase kernels are
# gathered from the 5x5 kernel (36 taps computed for 25 useful ones); where it is faster, the
# four phases run as convs of their own 2x2 to 3x3 taps instead (`_exact_phases`), and on small,
# deep float32 maps the conv and its input gradient run as im2col and one matmul
# (`_strided_conv`, `_input_gradient`). TensorFlow's CPU kernel of that operation is much
# slower than a forward conv of the same FLOPs (docs/performance.md).

# For a 5-tap stride-2 "same" conv (padding 1 before, 2 after), output phase p of the input
# gradient at offsets -1, 0, +1 uses these taps (5 = a zero tap).
_PHASE_TAPS = ((3, 1, 5), (4, 2, 0))
# Row-major index into the zero-padded 6x6 taps of each (row offset, col offset, phase p, q).
_PHASE_INDEX = [
    _PHASE_TAPS[p][a] * 6 + _PHASE_TAPS[q][b]
    for a in range(3)
    for b in range(3)
    for p in range(2)
    for q in range(2)
]


def _phase_kernel(kernel):
    """[5, 5, C_in, C_out] conv kernel -> [3, 3, C_out, 4 * C_in] kernel of the sub-pixel conv
    (output channels ordered phase-major, as `depth_to_space` reads them)."""
    c_in, c_out = kernel.shape[2], kernel.shape[3]
    padded = tf.reshape(tf.pad(kernel, [[0, 1], [0, 1], [0, 0], [0, 0]]), [36, c_in, c_out])
    taps = tf.reshape(tf.gather(padded, _PHASE_INDEX), [3, 3, 4, c_in, c_out])
    return tf.reshape(tf.transpose(taps, [0, 1, 4, 2, 3]), [3, 3, c_out, 4 * c_in])


# The same per phase without the zero taps: phase 0 reads offsets -1, 0 (taps 3, 1), phase 1
# offsets -1, 0, +1 (taps 4, 2, 0); as (padding before and after, taps).
_EXACT_PHASES = (([1, 0], [3, 1]), ([1, 1], [4, 2, 0]))


def _transpose(y, kernel):
    """The input gradient of `conv2d(x, kernel, 2, 'SAME')` for output gradient `y`, which is
    also `conv2d_transpose(y, kernel)` to twice the size: a sub-pixel conv, as one 3x3 conv to
    4x the channels, or as four convs of the phases' own 2x2, 2x3, 3x2 and 3x3 taps (the 25
    taps, no zeros: the same sums) where that is faster (`_exact_phases`)."""
    if _exact_phases(y, kernel):
        flipped = tf.transpose(kernel, [0, 1, 3, 2])  # [5, 5, C_y, C_x]
        phases = []
        for rows_pad, rows in _EXACT_PHASES:
            taps = tf.gather(flipped, rows, axis=0)
            for cols_pad, cols in _EXACT_PHASES:
                padding = [[0, 0], rows_pad, cols_pad, [0, 0]]
                phases.append(tf.nn.conv2d(y, tf.gather(taps, cols, axis=1), 1, padding))
        return tf.nn.depth_to_space(tf.concat(phases, -1), 2)
    return tf.nn.depth_to_space(tf.nn.conv2d(y, _phase_kernel(kernel), 1, "SAME"), 2)


def _exact_phases(y, kernel) -> bool:
    """Whether `_transpose` runs the four exact phase convs: they skip the 11 zero taps of the
    3x3 phase kernels (36 multiply-adds for 25) but are four smaller convs, the faster choice in
    float32 from 16 result channels on, and in bfloat16 on 4x4 maps and from 256 input
    channels (docs/performance.md)."""
    result_channels, y_channels = kernel.shape[2], kernel.shape[3]
    if _float32(y):
        return result_channels is not None and result_channels >= 16
    pixels = _pixels(y.shape)
    return (pixels is not None and pixels <= 16) or (y_channels is not None and y_channels >= 256)


def _pixels(shape):
    """H * W of a shape [B, H, W, .], or None where either is unknown."""
    return shape[1] * shape[2] if None not in shape[1:3] else None


def _small_and_deep(out, c_in) -> bool:
    """Outputs of 4x4 pixels or fewer from 256 channels or more (`out`: a shape [B, H, W, .]):
    where TensorFlow's kernels of a conv run far below the CPU's peak and `im2col`
    (`extract_patches`) plus one matmul does not."""
    pixels = _pixels(out)
    return pixels is not None and pixels <= 16 and c_in is not None and c_in >= 256


def _patches(x, size: int = 5, stride: int = 2):
    """[B, H / stride, W / stride, size * size * C]: the "SAME" patches of a conv (im2col)."""
    return tf.image.extract_patches(
        x, [1, size, size, 1], [1, stride, stride, 1], [1, 1, 1, 1], "SAME"
    )


def _float32(x) -> bool:
    return tf.as_dtype(x.dtype) in (tf.float32, tf.float64)


def _strided_conv(x, kernel):
    """`tf.nn.conv2d(x, kernel, 2, "SAME")` (5x5). On small, deep maps in float32 as `im2col`
    and one matmul; in bfloat16 oneDNN's conv is as fast there."""
    h, w = x.shape[1], x.shape[2]
    out = (None, None if h is None else h // 2, None if w is None else w // 2)
    if _float32(x) and _small_and_deep(out, x.shape[-1]):
        patches = _patches(x)
        flat = tf.reshape(patches, [-1, patches.shape[-1]])
        y = tf.matmul(flat, tf.reshape(kernel, [-1, kernel.shape[-1]]))
        return tf.reshape(y, [-1, patches.shape[1], patches.shape[2], kernel.shape[-1]])
    return tf.nn.conv2d(x, kernel, 2, "SAME")


def _input_gradient(dy, kernel, x):
    """The input gradient of `_strided_conv(x, kernel)` for output gradient `dy`. On small,
    deep maps in float32 one matmul to the patches' gradient, then their adjoint (col2im, the
    gradient of `extract_patches`); elsewhere the sub-pixel conv `_transpose`."""
    if _float32(dy) and _small_and_deep(dy.shape, x.shape[-1]):
        columns = tf.matmul(
            tf.reshape(dy, [-1, dy.shape[-1]]),
            tf.reshape(kernel, [-1, kernel.shape[-1]]),
            transpose_b=True,
        )
        zeros = tf.zeros_like(x)
        with tf.GradientTape() as tape:
            tape.watch(zeros)
            patches = _patches(zeros)
        columns = tf.reshape(columns, [-1, *patches.shape[1:]])
        return tape.gradient(patches, zeros, output_gradients=columns)
    return _transpose(dy, kernel)


def _filter_gradient(x, kernel_shape, dy, size: int = 5, stride: int = 2):
    """The kernel gradient of `conv2d(x, kernel, stride, 'SAME')` (a `size` x `size` kernel)
    for output gradient `dy`: TensorFlow's `Conv2DBackpropFilter`, except on small, deep maps,
    where that kernel is far slower than the forward conv and `im2col` (`extract_patches`) and
    one matmul are used instead."""
    c_in = x.shape[-1]
    if _small_and_deep(dy.shape, c_in):
        columns = tf.reshape(_patches(x, size, stride), [-1, size * size * c_in])
        grad = tf.matmul(columns, tf.reshape(dy, [-1, dy.shape[-1]]), transpose_a=True)
        return tf.reshape(grad, kernel_shape)
    return tf.raw_ops.Conv2DBackpropFilter(
        input=x,
        filter_sizes=kernel_shape,
        out_backprop=dy,
        strides=[1, stride, stride, 1],
        padding="SAME",
    )


def conv2d_stride2(x, kernel):
    """`tf.nn.conv2d(x, kernel, 2, "SAME")` (5x5 kernel, even H, W) with a sub-pixel input
    gradient."""
    return _conv2d_stride2(x, tf.cast(tf.convert_to_tensor(kernel), x.dtype))


def conv2d_transpose_stride2(x, kernel):
    """Keras' `conv_transpose(x, kernel, 2, "same")` to twice the size (kernel
    [5, 5, out, in]) as a sub-pixel conv; its input gradient is a forward stride-2 conv."""
    return _conv2d_transpose_stride2(x, tf.cast(tf.convert_to_tensor(kernel), x.dtype))


@tf.custom_gradient
def _conv2d_stride2(x, kernel):
    def grad(dy):
        return _input_gradient(dy, kernel, x), _filter_gradient(x, tf.shape(kernel), dy)

    return _strided_conv(x, kernel), grad


@tf.custom_gradient
def _conv2d_transpose_stride2(x, kernel):
    def grad(dy):
        return _strided_conv(dy, kernel), _filter_gradient(dy, tf.shape(kernel), x)

    return _transpose(x, kernel), grad


# ---------------------------------------------------------------- resize stage
# Nearest x2 then a 5x5 "same" conv, per output phase p: kernel tap i (offset i - 2) reads
# the input pixel at offset floor((p + i - 2) / 2), one of -1, 0, +1 (row a of _RESIZE_TAPS[p]).
# (Plain lists: a tensor at import would start TensorFlow's context, which multi-worker
# collectives must configure first.)
_RESIZE_TAPS = [
    [[1, 1, 0, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 1]],
    [[1, 0, 0, 0, 0], [0, 1, 1, 0, 0], [0, 0, 0, 1, 1]],
]
# The same as one [36, 25] matrix: row (a, b, p, q), column (i, j) of the 5x5 kernel.
_RESIZE_MATRIX = [
    [_RESIZE_TAPS[p][a][i] * _RESIZE_TAPS[q][b][j] for i in range(5) for j in range(5)]
    for a in range(3)
    for b in range(3)
    for p in range(2)
    for q in range(2)
]


def _resize_phase_kernel(kernel):
    """[5, 5, C_in, C_out] kernel -> [3, 3, C_in, 4 * C_out] kernel of the low-resolution conv
    (output channels phase-major, as `depth_to_space` reads them): one matmul by the constant
    tap-sum matrix and a transpose (faster than a 3-operand einsum, forward and backward)."""
    c_in, c_out = kernel.shape[2], kernel.shape[3]
    sums = tf.matmul(
        tf.constant(_RESIZE_MATRIX, kernel.dtype), tf.reshape(kernel, [25, c_in * c_out])
    )
    phases = tf.transpose(tf.reshape(sums, [3, 3, 4, c_in, c_out]), [0, 1, 3, 2, 4])
    return tf.reshape(phases, [3, 3, c_in, 4 * c_out])


def resize_conv2d(x, kernel):
    """Nearest-neighbour x2 then `conv2d(., kernel, 1, "SAME")` (5x5), as one 3x3 conv of the
    low-resolution input to 4x the channels + `depth_to_space`: the same values (to float
    rounding) for 36 instead of 100 multiply-adds per input pixel and channel pair."""
    phases = _resize_phase_kernel(tf.convert_to_tensor(kernel))
    return tf.nn.depth_to_space(_conv2d_3x3(x, tf.cast(phases, x.dtype)), 2)


@tf.custom_gradient
def _conv2d_3x3(x, kernel):
    """`tf.nn.conv2d(x, kernel, 1, "SAME")` (3x3 kernel) whose kernel gradient takes
    `_filter_gradient`'s im2col path on small, deep maps."""

    def grad(dy):
        dx = tf.raw_ops.Conv2DBackpropInput(
            input_sizes=tf.shape(x),
            filter=kernel,
            out_backprop=dy,
            strides=[1, 1, 1, 1],
            padding="SAME",
        )
        return dx, _filter_gradient(x, tf.shape(kernel), dy, size=3, stride=1)

    return tf.nn.conv2d(x, kernel, 1, "SAME"), grad


# ---------------------------------------------------------------- LeakyReLU
def leaky_relu(x, negative_slope: float = 0.2):
    """`tf.nn.leaky_relu(x, negative_slope)` whose gradient reads the activation's *output*
    instead of its input (the same values: for a slope >= 0 the output is positive exactly
    where the input is); a negative slope falls back to `tf.nn.leaky_relu`.

    With TensorFlow's own gradient, a conv's BiasAdd feeds both the LeakyRelu and its
    LeakyReluGrad. Grappler's remapper with oneDNN fuses Conv2D + BiasAdd into a `_FusedConv2D`
    under the BiasAdd's name, then that node + LeakyRelu, deleting the node the gradient reads:
    the whole remapper pass of the training graph is then dropped ("remapper failed: ... fanout
    '.../LeakyReluGrad' exist for missing node '.../BiasAdd'"). Reading the output leaves the
    BiasAdd one consumer, so Conv2D + BiasAdd + LeakyRelu fuses and the pass is kept."""
    if negative_slope < 0:
        return tf.nn.leaky_relu(x, negative_slope)
    return _leaky_relu(x, float(negative_slope))


def _leaky_relu(x, negative_slope: float):
    @tf.custom_gradient
    def forward(x):
        y = tf.nn.leaky_relu(x, negative_slope)

        def grad(dy):
            # y > 0 exactly where x > 0 (slope >= 0): LeakyReluGrad of the output is the same.
            return tf.raw_ops.LeakyReluGrad(gradients=dy, features=y, alpha=negative_slope)

        return y, grad

    return forward(x)


# ---------------------------------------------------------------- batch norm
def fused_batch_norm_applies(dtype) -> bool:
    """Whether training calls of batch norm run `FusedBatchNormV3` (`fused_batch_norm`): CPU
    only (cuDNN's kernel needs epsilon above 1e-5, and on GPUs Keras' element-wise chain is
    cheap), for the float dtypes it takes."""
    on_cpu = not tf.config.list_physical_devices("GPU")
    return on_cpu and tf.as_dtype(dtype) in (tf.float32, tf.bfloat16)


def _fused_scale_offset(layer, channels: int) -> dict:
    """`FusedBatchNormV3`'s float32 `scale` and `offset`: gamma and beta, or 1 and 0."""
    return {
        "scale": tf.cast(layer.gamma, "float32") if layer.scale else tf.ones([channels]),
        "offset": tf.cast(layer.beta, "float32") if layer.center else tf.zeros([channels]),
    }


def update_moving_statistics(layer, means, variances) -> None:
    """The sequential moving-average updates of a batch norm `layer` for one training call per
    row of `means` / `variances` ([calls, channels], biased variances)."""
    moving_mean = tf.cast(layer.moving_mean, means.dtype)
    moving_variance = tf.cast(layer.moving_variance, variances.dtype)
    for g in range(means.shape[0]):
        moving_mean = moving_mean * layer.momentum + means[g] * (1.0 - layer.momentum)
        moving_variance = moving_variance * layer.momentum + variances[g] * (1.0 - layer.momentum)
    layer.moving_mean.assign(tf.cast(moving_mean, layer.moving_mean.dtype))
    layer.moving_variance.assign(tf.cast(moving_variance, layer.moving_variance.dtype))


def fused_batch_norm(layer, inputs, groups: int = 1):
    """A training call of the Keras batch norm `layer` on 4-D channels-last `inputs` through
    TensorFlow's fused kernel, one kernel call per each of `groups` equal consecutive slices of
    the batch (each normalised with its own statistics), the moving statistics updated once per
    slice in order: Keras' values and gradients to float rounding, with no float32 copy of
    bfloat16 activations. Returns (outputs, means, biased variances), one mean and variance per
    slice."""
    x = tf.cast(inputs, layer.compute_dtype)
    channels = x.shape[-1]
    scale_offset = _fused_scale_offset(layer, channels)
    empty = tf.zeros([0], "float32")
    # The kernel returns the Bessel-corrected variance; Keras' moving variance (and the
    # normalisation) use the biased one: values per channel in a slice, n - 1 over n.
    count = tf.cast(tf.size(x) // (groups * channels), "float32")
    biased = (count - 1.0) / tf.maximum(count, 1.0)
    outs, means, variances = [], [], []
    for part in tf.split(x, groups, axis=0) if groups > 1 else [x]:
        y, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
            x=part, **scale_offset, mean=empty, variance=empty,
            epsilon=layer.epsilon, is_training=True,
        )  # fmt: skip
        outs.append(y)
        means.append(mean)
        variances.append(variance * biased)
    update_moving_statistics(layer, tf.stack(means), tf.stack(variances))
    return (outs[0] if groups == 1 else tf.concat(outs, axis=0)), means, variances


def fused_batch_norm_with(layer, inputs, mean, variance):
    """Batch norm `layer`'s normalisation of 4-D channels-last `inputs` with the given statistics
    through TensorFlow's fused kernel (the moving statistics untouched)."""
    x = tf.cast(inputs, layer.compute_dtype)
    y, *_ = tf.raw_ops.FusedBatchNormV3(
        x=x, **_fused_scale_offset(layer, x.shape[-1]), mean=mean, variance=variance,
        epsilon=layer.epsilon, is_training=False,
    )  # fmt: skip
    return y


def _fused_training_applies(layer, inputs, mask) -> bool:
    """Whether a training call of the plain batch norm `layer` can run `fused_batch_norm`."""
    rank = len(inputs.shape)
    return (
        layer.trainable
        and mask is None
        and not layer.renorm
        and not layer.synchronized
        and rank == 4
        and layer.axis in (-1, rank - 1)
        and fused_batch_norm_applies(inputs.dtype)
    )


# ---------------------------------------------------------------- accelerate
# The instance attribute that names the kernel `accelerate` installed on a layer. A plain
# Python value set with object.__setattr__: Keras neither tracks nor saves it.
_KERNEL = "_keras_pldt_kernel"


def _suits(layer, strides: int) -> bool:
    """Whether the conv `layer` is 5x5, "same", with `strides`, no dilation or groups,
    channels-last: what the sub-pixel kernels compute."""
    return (
        tuple(layer.kernel_size) == (5, 5)
        and tuple(layer.strides) == (strides, strides)
        and layer.padding == "same"
        and tuple(layer.dilation_rate) == (1, 1)
        and layer.data_format == "channels_last"
        and getattr(layer, "groups", 1) == 1
    )


def _applies(layer, inputs, strides: int = 2) -> bool:
    """Whether a call of the conv `layer` on `inputs` runs a sub-pixel kernel: `_suits` and a
    4-D input of even static height and width."""
    shape = inputs.shape
    return (
        _suits(layer, strides)
        and len(shape) == 4
        and shape[1] is not None
        and shape[2] is not None
        and shape[1] % 2 == 0
        and shape[2] % 2 == 0
    )


def _bias_and_activation(layer, outputs):
    """The rest of a Keras conv layer's call after its convolution."""
    if layer.use_bias:
        outputs = tf.nn.bias_add(outputs, tf.cast(layer.bias, outputs.dtype))
    if layer.activation is not None:
        outputs = layer.activation(outputs)
    return outputs


def _made_by(tensor, kind):
    """(layer, node) that made the symbolic `tensor` when that layer's class is `kind`, else
    (None, None)."""
    history = getattr(tensor, "_keras_history", None)
    if history is None or type(history.operation) is not kind:
        return None, None
    return history.operation, history.operation._inbound_nodes[history.node_index]


def _doubled(tensor, axis: int):
    """x where `tensor` is `Concatenate(axis)([x, x])` of one tensor x, else None."""
    layer, node = _made_by(tensor, layers.Concatenate)
    if layer is None:
        return None
    parts = node.input_tensors
    if len(parts) != 2 or parts[0] is not parts[1] or layer.axis % len(tensor.shape) != axis:
        return None
    return parts[0]


def _reshaped(tensor, shape: tuple):
    """The input of the `Reshape` that made `tensor` with target `shape`, else None."""
    layer, node = _made_by(tensor, layers.Reshape)
    if layer is None or tuple(layer.target_shape) != shape:
        return None
    return node.input_tensors[0]


def _is_nearest_x2(tensor) -> bool:
    """Whether the symbolic `tensor` [B, 2H, 2W, C] is nearest-neighbour x2 of an x [B, H, W, C]
    drawn as in `networks`: x twice on channels reshaped to [H, 2W, C] (each pixel doubled along
    the row), that twice along the columns reshaped to [2H, 2W, C] (each row doubled)."""
    if len(tensor.shape) != 4 or None in tensor.shape[1:]:
        return False
    height, width, channels = tensor.shape[1:]
    if height % 2 or width % 2:
        return False
    rows = _reshaped(tensor, (height, width, channels))
    rows = None if rows is None else _doubled(rows, axis=2)
    pixels = None if rows is None else _reshaped(rows, (height // 2, width, channels))
    x = None if pixels is None else _doubled(pixels, axis=3)
    return x is not None and tuple(x.shape[1:]) == (height // 2, width // 2, channels)


def _reads_nearest_x2(layer) -> bool:
    """Whether every call of `layer` in its models' graphs is on a nearest-neighbour x2 input."""
    nodes = layer._inbound_nodes
    return bool(nodes) and all(
        len(node.input_tensors) == 1 and _is_nearest_x2(node.input_tensors[0]) for node in nodes
    )


def _install(layer, kernel: str, method: str, fn) -> None:
    """`fn` as `layer.<method>` of this instance alone, unseen by Keras' tracking and saving."""
    object.__setattr__(layer, method, fn)
    object.__setattr__(layer, _KERNEL, kernel)


def _accelerate_conv(layer) -> None:
    native = layer.convolution_op
    if _suits(layer, strides=1) and _reads_nearest_x2(layer):

        def resize_op(inputs, kernel):
            if _applies(layer, inputs, strides=1):
                # The input repeats each pixel 2 x 2: its even pixels are the low-resolution map
                # (and that slice's gradient reaches each source pixel once).
                return resize_conv2d(inputs[:, ::2, ::2, :], kernel)
            return native(inputs, kernel)

        _install(layer, "resize_conv2d", "convolution_op", resize_op)
        return
    if not _suits(layer, strides=2):
        return

    def convolution_op(inputs, kernel):
        if _applies(layer, inputs):
            return conv2d_stride2(inputs, kernel)
        return native(inputs, kernel)

    _install(layer, "conv2d_stride2", "convolution_op", convolution_op)


def _accelerate_conv_transpose(layer) -> None:
    if not _suits(layer, strides=2):
        return
    native = layer.call

    def call(inputs):
        if layer.output_padding is None and _applies(layer, inputs):
            return _bias_and_activation(layer, conv2d_transpose_stride2(inputs, layer.kernel))
        return native(inputs)

    _install(layer, "conv2d_transpose_stride2", "call", call)


def _accelerate_leaky_relu(layer) -> None:
    def call(inputs):
        return leaky_relu(inputs, layer.negative_slope)

    _install(layer, "leaky_relu", "call", call)


def _accelerate_batch_norm(layer) -> None:
    native = layer.call

    def call(inputs, training=None, mask=None):
        if training and _fused_training_applies(layer, inputs, mask):
            return fused_batch_norm(layer, inputs)[0]
        return native(inputs, training=training, mask=mask)

    _install(layer, "fused_batch_norm", "call", call)


# Keras' own classes only: a subclass may compute something else (GroupedBatchNormalization
# runs the fused kernel itself).
_ACCELERATORS = {
    layers.Conv2D: _accelerate_conv,
    layers.Conv2DTranspose: _accelerate_conv_transpose,
    layers.LeakyReLU: _accelerate_leaky_relu,
    layers.BatchNormalization: _accelerate_batch_norm,
}


def accelerate(*models: keras.Model | None) -> None:
    """Install this module's kernels on the layers of the built `models` (None skipped), nested
    models and wrapped layers included: the module docstring's table, by layer class (Keras'
    own classes; a `Conv2D` counts as a resize stage when every call in its model's graph reads
    a nearest-neighbour x2 drawn as in `networks`). In place; a layer accelerated before is left
    as it is. Each kernel checks at call time that it applies and otherwise runs the layer's own
    computation.

    Nothing Keras saves changes: classes, `get_config()`, weights with their names and order. A
    copy of an accelerated model (`clone_model`, `load_model`) is not accelerated."""
    for model in models:
        if model is None:
            continue
        for layer in model._flatten_layers():
            install = _ACCELERATORS.get(type(layer))
            if install is not None and acceleration(layer) is None:
                install(layer)


def acceleration(layer) -> str | None:
    """The name of the kernel `accelerate` installed on `layer`, None when it installed none."""
    return layer.__dict__.get(_KERNEL)


# ---------------------------------------------------------------- export
def with_subpixel_transposed_convs(model: keras.Model) -> keras.Model:
    """A copy of `model` (the same classes and weights) whose 5x5 stride-2 `Conv2DTranspose`
    layers run as `conv2d_transpose_stride2`: convs + depth_to_space, the same values to float
    rounding.

    For export: TFLite's dynamic-range ("hybrid") kernel of a transposed conv is much slower than
    its fp32 one, while its hybrid conv is faster than fp32 (`benchmarks/tflite_hybrid_ops.py`).
    """
    copy = keras.models.clone_model(model, recursive=True)
    copy.set_weights(model.get_weights())
    for layer in copy._flatten_layers():
        if type(layer) is layers.Conv2DTranspose:
            _accelerate_conv_transpose(layer)
    return copy
