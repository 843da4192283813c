"""The sub-pixel stride-2 convolutions (and the im2col kernel gradient of small, deep maps:
the 256-channel cases) equal TensorFlow's native ops in value and gradient
(first and second order), the layers fall back where they do not apply, and a PLDT train step
is the same with and without them."""

import json
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from toy import toy_arrays

from keras_pldt.config import PLDTConfig
from keras_pldt.kernels import (
    SubpixelConv2D,
    SubpixelConv2DTranspose,
    conv2d_stride2,
    conv2d_transpose_stride2,
)
from keras_pldt.model import PLDT


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


def assert_close(ours, native):
    for a, b in zip(ours, native, strict=True):
        scale = float(tf.reduce_max(tf.abs(b)))
        assert scale > 0
        np.testing.assert_allclose(a.numpy() / scale, b.numpy() / scale, atol=2e-6)


@pytest.mark.parametrize(
    "shape", [(2, 8, 8, 3, 5), (3, 16, 12, 6, 4), (1, 4, 4, 7, 9), (2, 8, 8, 256, 6)]
)
def test_conv2d_stride2_equals_native(shape):
    n, h, w, c_in, c_out = shape
    x = tf.random.normal([n, h, w, c_in], seed=1)
    k = tf.random.normal([5, 5, c_in, c_out], seed=2)
    assert_close(
        values_and_gradients(conv2d_stride2, x, k), values_and_gradients(native_conv, x, k)
    )


@pytest.mark.parametrize("shape", [(2, 4, 4, 5, 3), (3, 8, 6, 4, 6), (2, 4, 4, 6, 256)])
def test_conv2d_transpose_stride2_equals_native(shape):
    n, h, w, c_in, c_out = shape
    x = tf.random.normal([n, h, w, c_in], seed=3)
    k = tf.random.normal([5, 5, c_out, c_in], seed=4)  # Keras' [k, k, out, in]
    ours = values_and_gradients(conv2d_transpose_stride2, x, k)
    assert ours[0].shape == (n, 2 * h, 2 * w, c_out)
    assert_close(ours, values_and_gradients(native_transpose, x, k))


def test_second_order_gradients_equal_native():
    """R1 differentiates the input gradient with respect to the weights."""
    x = tf.random.normal([2, 8, 8, 3], seed=5)
    k = tf.random.normal([5, 5, 3, 4], seed=6)

    def r1_gradient(op):
        with tf.GradientTape() as outer:
            outer.watch(k)
            with tf.GradientTape() as inner:
                inner.watch(x)
                out = tf.reduce_sum(tf.tanh(op(x, k)))
            penalty = tf.reduce_sum(tf.square(inner.gradient(out, x)))
        return [outer.gradient(penalty, k)]

    assert_close(r1_gradient(conv2d_stride2), r1_gradient(native_conv))


def test_layers_match_keras_layers_and_fall_back():
    x = tf.random.normal([2, 8, 8, 3], seed=7)
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
            np.testing.assert_allclose(ours(x).numpy(), ref(x).numpy(), atol=1e-5)
    odd = tf.random.normal([1, 7, 7, 3], seed=8)  # odd size: native fallback
    layer = SubpixelConv2D(2, 5, strides=2, padding="same")
    assert layer(odd).shape == (1, 4, 4, 2)


def test_train_step_is_the_same_with_native_convs():
    cfg = PLDTConfig(image_size=32, base_filters=8, batch_size=8)
    keras.utils.set_random_seed(0)
    fast = PLDT(cfg)
    native = PLDT(cfg.replace(subpixel_convs=False))
    native.set_weights(fast.get_weights())
    assert any(
        isinstance(layer, SubpixelConv2D) for layer in fast.converter.get_layer("encoder").layers
    )
    batch = {k: tf.constant(v) for k, v in toy_arrays(8, 32, 0).items()}
    logs = []
    for model in (fast, native):
        model.compile()
        logs.append({k: float(v) for k, v in model.train_step(batch).items()})
    for key in logs[0]:
        np.testing.assert_allclose(logs[0][key], logs[1][key], rtol=1e-4, atol=1e-6)
    for a, b in zip(fast.get_weights(), native.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_saved_converter_uses_plain_keras_layers(tmp_path):
    model = PLDT(PLDTConfig(image_size=32, base_filters=4, batch_size=4))
    path = tmp_path / "converter.keras"
    model.ema_converter().save(path)
    with zipfile.ZipFile(path) as archive:
        config = archive.read("config.json").decode()
    assert "keras_pldt" not in config and "Subpixel" not in config
    assert json.loads(config)["class_name"] == "Functional"
    x = tf.random.uniform((2, 32, 32, 3), -1, 1)
    np.testing.assert_allclose(
        keras.saving.load_model(path)(x).numpy(), model(x).numpy(), atol=1e-5
    )
