"""`kernels.leaky_relu`: TensorFlow's LeakyReLU values and gradients (first and second order),
installed by `kernels.accelerate` on Keras' LeakyReLU layers, and a training graph that
grappler's remapper fuses instead of failing on."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_close

from keras_pldt.config import PLDTConfig
from keras_pldt.kernels import accelerate, acceleration, leaky_relu
from keras_pldt.networks import build_converter, build_real_fake_discriminator


def _inputs(seed):
    x = np.random.default_rng(seed).standard_normal((4, 8, 8, 3)).astype("float32")
    x[0, :2] = 0.0  # exact zeros: where the two gradients could disagree
    return tf.constant(x)


def _r1_like(act, x, kernel, bias):
    """Second-order path of an R1 penalty: d/d(kernel) of |d out / d x|^2 through `act`."""
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            inner.watch(x)
            out = tf.reduce_sum(act(tf.nn.bias_add(tf.nn.conv2d(x, kernel, 1, "SAME"), bias)))
        dx = inner.gradient(out, x)
        penalty = tf.reduce_sum(tf.square(dx))
    return dx, outer.gradient(penalty, [kernel, bias])


@pytest.mark.parametrize("slope", [0.2, 0.0, 1.5, -0.1])
def test_values_and_gradients_equal_tf(slope):
    x = _inputs(0)
    upstream = tf.constant(np.random.default_rng(1).standard_normal(x.shape).astype("float32"))
    kernel = tf.Variable(np.random.default_rng(2).standard_normal((3, 3, 3, 5)), dtype="float32")
    bias = tf.Variable(np.random.default_rng(3).standard_normal(5), dtype="float32")
    ours = lambda t: leaky_relu(t, slope)  # noqa: E731
    native = lambda t: tf.nn.leaky_relu(t, slope)  # noqa: E731
    for fn in (lambda f, g: f(g), lambda f, g: tf.function(f)(g)):  # eager and traced
        np.testing.assert_array_equal(fn(ours, x), native(x))
        grads = []
        for act in (ours, native):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = act(x)
            grads.append(tape.gradient(y, x, output_gradients=upstream))
        np.testing.assert_array_equal(grads[0], grads[1])
    (dx_o, (dk_o, db_o)), (dx_n, (dk_n, db_n)) = (
        _r1_like(act, x, kernel, bias) for act in (ours, native)
    )
    assert_close(dx_o, dx_n, ulps=4)
    assert_close(dk_o, dk_n, ulps=4)
    assert_close(db_o, db_n, ulps=4)
    assert float(tf.reduce_max(tf.abs(dk_n))) > 0  # the second-order path is not trivially 0


def test_accelerated_layer_matches_keras_and_serializes_as_keras():
    x = _inputs(4)
    model = keras.Sequential([keras.Input(x.shape[1:]), keras.layers.LeakyReLU(0.2, name="a")])
    native = keras.layers.LeakyReLU(0.2, name="a")
    accelerate(model)
    layer = model.layers[-1]
    assert acceleration(layer) == "leaky_relu" and acceleration(native) is None
    np.testing.assert_array_equal(layer(x), native(x))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours, theirs = layer(x), native(x)
    np.testing.assert_array_equal(tape.gradient(ours, x), tape.gradient(theirs, x))
    assert keras.layers.serialize(layer) == keras.layers.serialize(native)
    clone = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(clone) is keras.layers.LeakyReLU and acceleration(clone) is None


def test_networks_use_keras_layers_that_accelerate_installs_it_on():
    cfg = PLDTConfig(image_size=32, base_filters=4)
    for build in (build_converter, build_real_fake_discriminator):
        model = build(cfg)
        leaky = [la for la in model._flatten_layers() if isinstance(la, keras.layers.LeakyReLU)]
        assert leaky and {type(la) for la in leaky} == {keras.layers.LeakyReLU}, build.__name__
        accelerate(model)
        assert {acceleration(la) for la in leaky} == {"leaky_relu"}, build.__name__


_STEP = textwrap.dedent(
    """
    import sys
    import tensorflow as tf
    from keras_pldt.config import get_preset
    from keras_pldt.kernels import accelerate
    from keras_pldt.networks import build_real_fake_discriminator

    d = build_real_fake_discriminator(get_preset(sys.argv[1], base_filters=4, image_size=32))
    accelerate(d)

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(d(x, training=True)))
        return tape.gradient(loss, d.trainable_variables)

    step(tf.random.uniform([8, 32, 32, 3], -1.0, 1.0))
    print("step done", file=sys.stderr)
    """
)


@pytest.mark.parametrize("preset", ["paper", "robust"])
def test_training_graph_is_fused_by_the_remapper(preset):
    # oneDNN's remapper (on by default on AVX512_VNNI / AVX512_BF16 / AMX CPUs) is the one that
    # failed on TensorFlow's own LeakyReLU gradient; its log names every fusion it makes.
    env = {
        **os.environ,
        "TF_ENABLE_ONEDNN_OPTS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "0",
        "TF_CPP_VMODULE": "remapper=2",
    }
    proc = subprocess.run(
        [sys.executable, "-c", _STEP, preset],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0 and "step done" in proc.stderr, proc.stderr[-3000:]
    assert "remapper failed" not in proc.stderr, proc.stderr[-3000:]
    if "oneDNN custom operations are on" in proc.stderr:  # x86: the fusion itself is logged
        fused = [
            line
            for line in proc.stderr.splitlines()
            if "Fuse Conv2D with BiasAdd and LeakyRelu" in line and "lrelu1" in line
        ]
        assert fused, proc.stderr[-3000:]
