"""Stride-2 5x5 convolutions whose slow half runs as a fast sub-pixel convolution.

Every stride-2 layer of Table 1 needs, in training, the *input gradient* of a strided conv
(the encoder's and discriminators' backward pass) or the same operation forward (the decoder's
fractional-strided convs). TensorFlow runs that operation (`Conv2DBackpropInput`) 2-5x slower
than a forward conv with the same FLOPs on CPU (measured: 52-88 ms against 17-19 ms on
[96, 16, 16, 64] and [96, 8, 8, 128] at 5x5, 2 cores), and it is half of a training step.

It is exactly a stride-1 3x3 convolution to 4x the channels followed by `depth_to_space(2)`
("sub-pixel" convolution): output pixel (2m + p, 2n + q) only ever sees the kernel taps of
parity (p, q), so each of the four phases is a small conv of the un-dilated input. The 3x3
phase kernels are gathered from the 5x5 kernel (36 taps computed for 25 useful ones), which
runs at the speed of a forward conv; where it is faster, the four phases run as convs of their
own 2x2 to 3x3 taps instead (`_exact_phases`), and on small, deep float32 maps the conv and its
input gradient run as im2col and one matmul (`_strided_conv`, `_input_gradient`).
`conv2d_stride2` and `conv2d_transpose_stride2` use it through `tf.custom_gradient` (with an
im2col kernel gradient where TensorFlow's is slow, see `_filter_gradient`), with the same
values and gradients as the native ops (to float rounding), second-order gradients included
(R1). The layers `SubpixelConv2D` and `SubpixelConv2DTranspose` are drop-in `Conv2D` /
`Conv2DTranspose` that use them when the layer is 5x5, stride 2, "same", channels-last with
even input size, and the native ops otherwise.

`leaky_relu` (layer `LeakyReLU`) is `tf.nn.leaky_relu` whose gradient reads the activation's
*output* instead of its input (the same values: for a slope >= 0 the output is positive exactly
where the input is). With TensorFlow's own gradient, a conv's BiasAdd feeds both the LeakyRelu
and its LeakyReluGrad. Grappler's remapper with oneDNN (TensorFlow's default on CPUs with
AVX512_VNNI, AVX512_BF16 or AMX; `TF_ENABLE_ONEDNN_OPTS=1` elsewhere) fuses Conv2D + BiasAdd
into a `_FusedConv2D` under the BiasAdd's name, then that node + LeakyRelu, deleting the node
the gradient reads: the whole remapper pass of the training graph is then dropped ("remapper
failed: ... fanout '.../LeakyReluGrad' exist for missing node '.../BiasAdd'"), every fusion of
that graph with it. Reading the output leaves the BiasAdd one consumer, so Conv2D + BiasAdd +
LeakyRelu fuses in one valid step and the pass is kept.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

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
    also `conv2d_transpose(y, kernel)` to twice the size: a sub-pixel conv (module docstring),
    as one 3x3 conv to 4x the channels, or as four convs of the phases' own 2x2, 2x3, 3x2 and
    3x3 taps (the 25 taps, no zeros: the same sums) where that is faster (`_exact_phases`)."""
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
    3x3 phase kernels (36 multiply-adds for 25) but are four smaller convs. Measured on an
    AVX-512 / AMX Xeon (2 cores, batch 32-96, 64 px at widths 32 and 128): in float32 0.5-0.96x
    the time of the one 3x3 conv from 16 result channels on (2x below); in bfloat16 0.64-0.74x
    on 4x4 maps and from 256 input channels, up to 1.3x on larger, narrower maps."""
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
    and one matmul: [128, 8, 8, 512] -> 1024 193 ms against 325 ms (2 cores, AVX-512); in
    bfloat16 oneDNN's conv is as fast there."""
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
    gradient of `extract_patches`): [128, 4, 4, 1024] -> 512 207 ms against 278 ms for the
    phase convs; elsewhere the sub-pixel conv `_transpose`."""
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
    for output gradient `dy`.

    TensorFlow's `Conv2DBackpropFilter` is fine except on small, deep maps, where it is 10x
    slower than the forward conv (4x4 outputs from 512 channels: 3.4-4.1 s against 0.28 s on
    [96, 8, 8, 512] -> 1024; the 3x3 conv of the resize decoder's first stage, [32, 4, 4,
    1024] -> 2048: 173 ms against 30 ms in bfloat16); there, `im2col` (`extract_patches`) and
    one matmul are used instead.
    """
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


def leaky_relu(x, negative_slope: float = 0.2):
    """`tf.nn.leaky_relu(x, negative_slope)` with a gradient that reads the output (module
    docstring); a negative slope falls back to `tf.nn.leaky_relu`."""
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


def _applies(layer, inputs) -> bool:
    shape = inputs.shape
    return (
        tuple(layer.kernel_size) == (5, 5)
        and tuple(layer.strides) == (2, 2)
        and layer.padding == "same"
        and tuple(layer.dilation_rate) == (1, 1)
        and layer.data_format == "channels_last"
        and getattr(layer, "groups", 1) == 1
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


@keras.saving.register_keras_serializable(package="keras_pldt")
class SubpixelConv2D(layers.Conv2D):
    """`keras.layers.Conv2D` whose 5x5 stride-2 case back-propagates through `conv2d_stride2`."""

    def convolution_op(self, inputs, kernel):
        if _applies(self, inputs):
            return conv2d_stride2(inputs, kernel)
        return super().convolution_op(inputs, kernel)


@keras.saving.register_keras_serializable(package="keras_pldt")
class SubpixelConv2DTranspose(layers.Conv2DTranspose):
    """`keras.layers.Conv2DTranspose` whose 5x5 stride-2 case runs `conv2d_transpose_stride2`."""

    def call(self, inputs):
        if self.output_padding is not None or not _applies(self, inputs):
            return super().call(inputs)
        return _bias_and_activation(self, conv2d_transpose_stride2(inputs, self.kernel))


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
    tap-sum matrix and a transpose (a 3-operand einsum is 2-3x slower, forward and backward)."""
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
    phases = _resize_phase_kernel(kernel)
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


@keras.saving.register_keras_serializable(package="keras_pldt")
class SubpixelResizeConv2D(layers.Conv2D):
    """A 5x5 "same" `keras.layers.Conv2D` applied to its input upsampled x2 (nearest), through
    `resize_conv2d`: the decoder stage of `upsampling="resize"` with the same weights."""

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        return (n, None if h is None else 2 * h, None if w is None else 2 * w, self.filters)

    def call(self, inputs):
        return _bias_and_activation(self, resize_conv2d(inputs, self.kernel))


@keras.saving.register_keras_serializable(package="keras_pldt")
class LeakyReLU(layers.LeakyReLU):
    """`keras.layers.LeakyReLU` through `leaky_relu`: the same values and gradients, and a graph
    grappler can fuse into the preceding conv."""

    def call(self, inputs):
        return leaky_relu(inputs, self.negative_slope)


def with_subpixel_transposed_convs(model: keras.Model) -> keras.Model:
    """A copy of `model` (same weights) whose `Conv2DTranspose` layers are
    `SubpixelConv2DTranspose`: the same values to float rounding, as convs + depth_to_space.

    For export: TFLite's dynamic-range ("hybrid") kernel of a transposed conv is 27-49x
    slower than its fp32 one, while its hybrid conv is faster than fp32
    (`benchmarks/tflite_hybrid_ops.py`)."""

    def clone(layer):
        if type(layer) is layers.Conv2DTranspose:
            return SubpixelConv2DTranspose.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    copy.set_weights(model.get_weights())
    return copy
