"""The sub-pixel stride-2 convolutions (the one 3x3 phase conv below 16 result channels, the
four exact phase convs from 16 on; the im2col kernel gradient of small, deep maps: the
256-channel cases) equal TensorFlow's native ops in value and gradient
(first and second order), the layers fall back where they do not apply, and a PLDT train step
is the same with and without them.

Each comparison runs twice: in float64, where ours and the native op agree far below float32
resolution (the same maths), and in float32, where they differ by no more than a few times the
native op's own float32 rounding error (its distance to the float64 result) on that host.
"""

import json
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import EPS32, assert_close, sum_ulps
from toy import toy_arrays

from keras_pldt.config import PLDTConfig
from keras_pldt.kernels import (
    SubpixelConv2D,
    SubpixelConv2DTranspose,
    SubpixelResizeConv2D,
    conv2d_stride2,
    conv2d_transpose_stride2,
    resize_conv2d,
)
from keras_pldt.model import PLDT

# How many times the native op's float32 rounding error ours may be off it (2 seen on AVX2).
ROUNDING_FACTOR = 8


def normal(shape, seed):
    """Standard normal float32 values that depend on `seed` alone (not on TF's global seed)."""
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def native_conv(x, k):
    return tf.nn.conv2d(x, k, 2, "SAME")


def native_transpose(x, k):
    n, h, w, _ = x.shape
    return tf.nn.conv2d_transpose(x, k, [n, 2 * h, 2 * w, k.shape[2]], 2, "SAME")


def values_and_gradients(op, x, k):
    with tf.GradientTape() as tape:
        tape.watch([x, k])
        y = op(x, k)
        loss = tf.reduce_sum(tf.sin(y))  # a non-trivial output gradient
    return [y, *tape.gradient(loss, [x, k])]


def assert_matches_native(compute, ours, native, x, k):
    """compute(op, x, k) -> tensors, for our op and the native one, on numpy inputs x, k."""

    def run(op, dtype):
        return [
            t.numpy().astype("float64")
            for t in compute(op, tf.constant(x, dtype), tf.constant(k, dtype))
        ]

    exact = run(native, tf.float64)
    for a, t in zip(run(ours, tf.float64), exact, strict=True):
        assert_close(a, t, ulps=1)  # one float32 rounding: float64's are ~1e-8 of it
    for a, b, t in zip(run(ours, tf.float32), run(native, tf.float32), exact, strict=True):
        # The native op's float32 error, at least one rounding of each result.
        rounding = max(np.linalg.norm(b - t), EPS32 * np.linalg.norm(t))
        assert np.linalg.norm(a - b) <= ROUNDING_FACTOR * rounding, (
            f"ours - native: {np.linalg.norm(a - b):.3g}, native - exact: {rounding:.3g}"
        )


@pytest.mark.parametrize(
    "shape", [(2, 8, 8, 3, 5), (3, 16, 12, 6, 4), (1, 4, 4, 7, 9), (2, 8, 8, 256, 6)]
)
def test_conv2d_stride2_equals_native(shape):
    n, h, w, c_in, c_out = shape
    x, k = normal([n, h, w, c_in], 1), normal([5, 5, c_in, c_out], 2)
    assert_matches_native(values_and_gradients, conv2d_stride2, native_conv, x, k)


@pytest.mark.parametrize("shape", [(2, 4, 4, 5, 3), (3, 8, 6, 4, 6), (2, 4, 4, 6, 256)])
def test_conv2d_transpose_stride2_equals_native(shape):
    n, h, w, c_in, c_out = shape
    x, k = normal([n, h, w, c_in], 3), normal([5, 5, c_out, c_in], 4)  # Keras' [k, k, out, in]
    y = conv2d_transpose_stride2(tf.constant(x), tf.constant(k))
    assert y.shape == (n, 2 * h, 2 * w, c_out)
    assert_matches_native(values_and_gradients, conv2d_transpose_stride2, native_transpose, x, k)


def native_resize_conv(x, k):
    """Nearest-neighbour x2, then a 5x5 stride-1 "same" conv."""
    return tf.nn.conv2d(tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2), k, 1, "SAME")


@pytest.mark.parametrize(
    "shape", [(2, 4, 4, 5, 3), (3, 8, 6, 4, 6), (1, 4, 4, 6, 64), (2, 4, 4, 256, 8)]
)
def test_resize_conv2d_equals_native(shape):  # 256 channels on 4x4: the im2col kernel gradient
    n, h, w, c_in, c_out = shape
    x, k = normal([n, h, w, c_in], 9), normal([5, 5, c_in, c_out], 10)
    assert resize_conv2d(tf.constant(x), tf.constant(k)).shape == (n, 2 * h, 2 * w, c_out)
    assert_matches_native(values_and_gradients, resize_conv2d, native_resize_conv, x, k)


# the one 3x3 phase conv; the four exact ones; im2col forward and col2im input gradient
@pytest.mark.parametrize("c_in", [3, 16, 256])
def test_second_order_gradients_equal_native(c_in):
    """R1 differentiates the input gradient with respect to the weights."""

    def r1_gradient(op, x, k):
        with tf.GradientTape() as outer:
            outer.watch(k)
            with tf.GradientTape() as inner:
                inner.watch(x)
                out = tf.reduce_sum(tf.tanh(op(x, k)))
            penalty = tf.reduce_sum(tf.square(inner.gradient(out, x)))
        return [outer.gradient(penalty, k)]

    size = 8 if c_in < 256 else 4  # 2x2 outputs from 256 channels: small and deep
    x, k = normal([2, size, size, c_in], 5), normal([5, 5, c_in, 4], 6)
    assert_matches_native(r1_gradient, conv2d_stride2, native_conv, x, k)


def test_layers_match_keras_layers_and_fall_back():
    x = tf.constant(normal([2, 8, 8, 3], 7))
    for kwargs in (
        dict(filters=4, kernel_size=5, strides=2, padding="same"),  # sub-pixel path
        dict(filters=4, kernel_size=4, strides=1, padding="valid"),  # native fallback
        dict(filters=4, kernel_size=3, strides=2, padding="same"),  # native fallback
    ):
        for ours_cls, keras_cls in (
            (SubpixelConv2D, keras.layers.Conv2D),
            (SubpixelConv2DTranspose, keras.layers.Conv2DTranspose),
        ):
            ours, ref = ours_cls(**kwargs), keras_cls(**kwargs)
            ours.build(x.shape)
            ref.build(x.shape)
            ref.set_weights(ours.get_weights())
            # each output sums at most 5 x 5 taps of the 3 input channels
            assert_close(ours(x), ref(x), ulps=sum_ulps(25 * 3), err_msg=str(kwargs))
    odd = tf.constant(normal([1, 7, 7, 3], 8))  # odd size: native fallback
    layer = SubpixelConv2D(2, 5, strides=2, padding="same")
    assert layer(odd).shape == (1, 4, 4, 2)


@pytest.mark.parametrize("upsampling", ["transposed", "resize"])
def test_train_step_is_the_same_with_native_convs(upsampling):
    cfg = PLDTConfig(image_size=32, base_filters=8, batch_size=8, upsampling=upsampling)
    keras.utils.set_random_seed(0)
    fast = PLDT(cfg)
    native = PLDT(cfg.replace(subpixel_convs=False))
    native.set_weights(fast.get_weights())
    assert any(
        isinstance(layer, SubpixelConv2D) for layer in fast.converter.get_layer("encoder").layers
    )
    decoder = fast.converter.get_layer("decoder").layers
    fast_stage = SubpixelResizeConv2D if upsampling == "resize" else SubpixelConv2DTranspose
    assert any(isinstance(layer, fast_stage) for layer in decoder)
    batch = {k: tf.constant(v) for k, v in toy_arrays(8, 32, 0).items()}
    start = fast.get_weights()
    logs = []
    for model in (fast, native):
        # SGD at rate 1: each weight moves by minus its gradient (Adam's first step is about
        # lr * sign(gradient), which a rounding flips for gradients near zero).
        model.compile(*(keras.optimizers.SGD(1.0) for _ in range(3)))
        logs.append({k: float(v) for k, v in model.train_step(batch).items()})
    widest = 8 * cfg.base_filters  # the sums of 5 x 5 taps of the widest stage's channels
    for key in logs[0]:
        assert_close(logs[0][key], logs[1][key], ulps=sum_ulps(25 * widest), err_msg=key)
    # The same gradients and batch statistics, to the rounding of sums over a batch's pixels.
    summed = cfg.batch_size * (cfg.image_size // 2) ** 2
    for w, a, b in zip(start, fast.get_weights(), native.get_weights(), strict=True):
        step = a - w
        assert_close(step, b - w, ulps=sum_ulps(summed), scale=np.abs(step).max())


def test_saved_converter_uses_plain_keras_layers(tmp_path):
    cfg = PLDTConfig(image_size=32, base_filters=4, batch_size=4)
    model = PLDT(cfg)
    path = tmp_path / "converter.keras"
    model.ema_converter().save(path)
    with zipfile.ZipFile(path) as archive:
        config = archive.read("config.json").decode()
    assert "keras_pldt" not in config and "Subpixel" not in config
    assert json.loads(config)["class_name"] == "Functional"
    x = np.random.default_rng(9).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    widest = 8 * cfg.base_filters
    assert_close(keras.saving.load_model(path)(x), model(x), ulps=sum_ulps(25 * widest))
