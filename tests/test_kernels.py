"""The sub-pixel stride-2 convolutions (the one 3x3 phase conv below 16 result channels, the
four exact phase convs from 16 on; the im2col kernel gradient of small, deep maps: the
256-channel cases) equal TensorFlow's native ops in value and gradient (first and second
order); `accelerate` installs them, the resize stage's kernel and the fused batch norm on the
layers of built models, which then compute what Keras' own layers compute, fall back where the
kernels do not apply, and save and load exactly as models that were not accelerated.

Each comparison runs twice: in float64, where ours and the native op agree far below float32
resolution (the same maths), and in float32, where they differ by no more than a few times the
native op's own float32 rounding error (its distance to the float64 result) on that host.
"""

import json
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import EPS32, assert_close, sum_ulps
from toy import toy_arrays

from keras_pldt.config import PLDTConfig, get_preset
from keras_pldt.kernels import (
    accelerate,
    acceleration,
    conv2d_stride2,
    conv2d_transpose_stride2,
    resize_conv2d,
)
from keras_pldt.model import PLDT
from keras_pldt.networks import (
    build_converter,
    build_domain_discriminator,
    build_real_fake_discriminator,
)

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


def _twins(build):
    """Two models from `build()` with the same weights: the first accelerated, the second not."""
    fast, native = build(), build()
    native.set_weights(fast.get_weights())
    accelerate(fast)
    return fast, native


def _kernels(model) -> list:
    return [acceleration(layer) for layer in model._flatten_layers()]


def test_layers_match_keras_layers_and_fall_back():
    x = tf.constant(normal([2, 8, 8, 3], 7))
    for kwargs, kernel in (
        (dict(filters=4, kernel_size=5, strides=2, padding="same"), True),  # sub-pixel path
        (dict(filters=4, kernel_size=4, strides=1, padding="valid"), False),  # native
        (dict(filters=4, kernel_size=3, strides=2, padding="same"), False),  # native
    ):
        for cls, name in (
            (keras.layers.Conv2D, "conv2d_stride2"),
            (keras.layers.Conv2DTranspose, "conv2d_transpose_stride2"),
        ):

            def build(cls=cls, kwargs=kwargs):
                inputs = keras.Input(x.shape[1:])
                return keras.Model(inputs, cls(**kwargs)(inputs))

            fast, native = _twins(build)
            assert acceleration(fast.layers[-1]) == (name if kernel else None), kwargs
            # each output sums at most 5 x 5 taps of the 3 input channels
            assert_close(fast(x), native(x), ulps=sum_ulps(25 * 3), err_msg=str(kwargs))
    layer = keras.layers.Conv2D(2, 5, strides=2, padding="same")
    odd = tf.constant(normal([1, 7, 7, 3], 8))  # odd size: the native op at call time
    accelerate(keras.Sequential([keras.Input((7, 7, 3)), layer]))
    assert acceleration(layer) == "conv2d_stride2"
    assert layer(odd).shape == (1, 4, 4, 2)


@pytest.mark.parametrize("upsampling", ["transposed", "resize"])
def test_accelerated_networks_compute_what_keras_computes(upsampling):
    """Every accelerated layer of the converter and D_A (training calls: batch statistics,
    moving statistics) gives Keras' values and gradients, input gradient included."""
    cfg = PLDTConfig(image_size=32, base_filters=8, upsampling=upsampling, spectral_norm=True)
    stage = "resize_conv2d" if upsampling == "resize" else "conv2d_transpose_stride2"
    stages = len(stage_widths_of(cfg))
    x = tf.constant(np.random.default_rng(11).uniform(-1, 1, (4, 32, 32, 3)).astype("float32"))
    for build, inputs, expected in (
        (build_converter, x, {"conv2d_stride2", "fused_batch_norm", "leaky_relu", stage}),
        (build_domain_discriminator, tf.concat([x, x[::-1]], -1), {"conv2d_stride2", "leaky_relu"}),
    ):
        fast, native = _twins(lambda b=build: b(cfg))
        kinds = _kernels(fast)
        assert set(kinds) - {None} == expected, kinds
        assert kinds.count("conv2d_stride2") == stages  # the 4x4 valid conv is not one
        assert set(_kernels(native)) == {None}
        outs = []
        for model in (fast, native):
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                y = model(inputs, training=True)
                loss = tf.reduce_sum(tf.sin(3.0 * y))
            outs.append([y, *tape.gradient(loss, [inputs, *model.trainable_weights])])
            outs[-1] += [w.numpy() for w in model.non_trainable_weights]
        summed = x.shape[0] * 16 * 16  # batch statistics: sums over a batch's pixels
        for a, b in zip(*outs, strict=True):
            assert_close(a, b, ulps=sum_ulps(summed), err_msg=build.__name__)


def stage_widths_of(cfg):
    from keras_pldt.networks import stage_widths

    return stage_widths(cfg.image_size, cfg.base_filters)


def test_resize_kernel_needs_the_nearest_x2_drawing():
    """A 5x5 stride-1 conv gets `resize_conv2d` only when its input is the networks' nearest
    x2 of one tensor; doubling two different tensors is something else."""
    from keras_pldt.networks import _upsample

    cfg = PLDTConfig(image_size=32, base_filters=4, upsampling="resize")
    low = keras.Input((4, 4, 3))
    stage = keras.Model(low, _upsample(cfg, 5, "stage", use_bias=True)(low))
    other = keras.Input((4, 4, 3))
    mixed = keras.layers.Concatenate(axis=-1)([low, other])  # two tensors, not one twice
    mixed = keras.layers.Reshape((4, 8, 3))(mixed)
    mixed = keras.layers.Concatenate(axis=2)([mixed, mixed])
    mixed = keras.layers.Reshape((8, 8, 3))(mixed)
    conv = keras.layers.Conv2D(5, 5, padding="same")
    accelerate(stage, keras.Model([low, other], conv(mixed)))
    assert _kernels(stage)[-1] == "resize_conv2d"
    assert acceleration(conv) is None
    x = tf.constant(normal([2, 4, 4, 3], 12))
    native = keras.Model(low, _upsample(cfg, 5, "stage", use_bias=True)(low))
    native.set_weights(stage.get_weights())
    grads = []
    for model in (stage, native):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = model(x)
        grads.append([y, tape.gradient(tf.reduce_sum(tf.sin(y)), x)])
    for a, b in zip(*grads, strict=True):  # the low-resolution input's gradient included
        assert_close(a, b, ulps=sum_ulps(25 * 3 * 4))


def test_accelerated_batch_norm_is_keras_batch_norm():
    """The converter's plain batch norm under `accelerate`: the fused kernel in training, the
    same outputs, gradients and moving statistics as Keras' own layer; inference unchanged."""
    options = dict(momentum=0.9, epsilon=1e-5, gamma_initializer="random_normal")
    keras.utils.set_random_seed(0)

    def build():
        inputs = keras.Input((6, 6, 5))
        return keras.Model(inputs, keras.layers.BatchNormalization(**options)(inputs))

    fast, native = _twins(build)
    assert _kernels(fast)[-1] == "fused_batch_norm"
    x = tf.constant(normal([4, 6, 6, 5], 13) * 3.0 + 1.0)
    w = tf.constant(normal([4, 6, 6, 5], 14))
    outs = []
    for model in (fast, native):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = model(x, training=True)
            loss = tf.reduce_sum(w * y + y**3)
        outs.append([y, *tape.gradient(loss, [x, *model.trainable_weights])])
        outs[-1] += [v.numpy() for v in model.non_trainable_weights]
        outs[-1].append(model(x, training=False))
    for a, b in zip(*outs, strict=True):
        assert_close(a, b, ulps=sum_ulps(x.shape[0] * 36))


@pytest.mark.parametrize("upsampling", ["transposed", "resize"])
def test_train_step_is_the_same_with_native_convs(upsampling):
    cfg = PLDTConfig(image_size=32, base_filters=8, batch_size=8, upsampling=upsampling)
    keras.utils.set_random_seed(0)
    fast = PLDT(cfg)
    accelerate(fast.converter, fast.real_fake_discriminator, fast.domain_discriminator)
    native = PLDT(cfg.replace(subpixel_convs=False))
    native.set_weights(fast.get_weights())
    assert "conv2d_stride2" in _kernels(fast.converter.get_layer("encoder"))
    stage = "resize_conv2d" if upsampling == "resize" else "conv2d_transpose_stride2"
    assert stage in _kernels(fast.converter.get_layer("decoder"))
    for network in (native.converter, native.real_fake_discriminator, native.domain_discriminator):
        assert set(_kernels(network)) == {None}, network.name  # the switch off: Keras' own
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


ROBUST = dict(image_size=32, base_filters=4, batch_size=4)
NETWORKS = (build_converter, build_real_fake_discriminator, build_domain_discriminator)


@pytest.mark.parametrize("build", NETWORKS, ids=lambda b: b.__name__)
def test_checkpoint_of_an_accelerated_network_loads_into_a_plain_one(build, tmp_path):
    """Weights saved with acceleration on load with plain `load_weights` into a network built
    without it (and back): the same variables under the same names, the same outputs."""
    cfg = get_preset("robust", **ROBUST)
    keras.utils.set_random_seed(1)
    fast = build(cfg)
    config, paths = fast.get_config(), [w.path for w in fast.weights]
    accelerate(fast)
    assert any(_kernels(fast))
    assert fast.get_config() == config and [w.path for w in fast.weights] == paths
    channels = fast.input_shape[-1]
    x = np.random.default_rng(2).uniform(-1, 1, (4, 32, 32, channels)).astype("float32")
    fast(x, training=True)  # batch statistics into the moving ones: no weight at its init
    fast.save_weights(tmp_path / "fast.weights.h5")
    keras.utils.set_random_seed(3)
    plain = build(cfg)
    pairs = zip(plain.get_weights(), fast.get_weights(), strict=True)
    assert not all(np.array_equal(a, b) for a, b in pairs)  # another draw, other statistics
    plain.load_weights(tmp_path / "fast.weights.h5")
    for a, b in zip(plain.get_weights(), fast.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    widest = 8 * cfg.base_filters
    assert_close(fast(x, training=False), plain(x, training=False), ulps=sum_ulps(25 * widest))
    plain.save_weights(tmp_path / "plain.weights.h5")
    keras.utils.set_random_seed(4)
    again = build(cfg)
    accelerate(again)
    again.load_weights(tmp_path / "plain.weights.h5")
    for a, b in zip(again.get_weights(), fast.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


_LOAD = """
import sys
import keras
import numpy as np

model = keras.saving.load_model(sys.argv[1])
np.save(sys.argv[3], keras.ops.convert_to_numpy(model(np.load(sys.argv[2]), training=False)))
print(sorted({type(layer).__module__.split(".")[0] for layer in model._flatten_layers()}))
print("keras_pldt" in sys.modules)
"""


def test_saved_accelerated_converter_is_plain_keras(tmp_path):
    """An accelerated converter (the robust preset's: resize decoder) saved as it is has Keras'
    classes only, and loads with plain Keras in a process that never imports keras_pldt."""
    model = build_converter(get_preset("robust", **ROBUST))
    accelerate(model)
    assert "resize_conv2d" in _kernels(model)
    config = json.dumps(keras.saving.serialize_keras_object(model))
    assert "keras_pldt" not in config
    path = tmp_path / "converter.keras"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        saved = archive.read("config.json").decode()
    assert "keras_pldt" not in saved
    assert json.loads(saved)["class_name"] == "Functional"
    x = np.random.default_rng(9).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    proc = subprocess.run(
        [sys.executable, "-c", _LOAD, str(path), str(tmp_path / "x.npy"), str(tmp_path / "y")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split("\n")[:2] == ["['keras']", "False"], proc.stdout
    widest = 8 * ROBUST["base_filters"]
    assert_close(np.load(tmp_path / "y.npy"), model(x), ulps=sum_ulps(25 * widest))


def test_restore_refuses_a_checkpoint_of_the_earlier_layout(tmp_path):
    """`RunFolder.restore` is a plain `load_weights`; a checkpoint whose converter variables sit
    under the fast kernels' layer classes of the earlier layout is refused in one line."""
    import h5py

    from keras_pldt.run import RunError, RunFolder

    cfg = PLDTConfig(image_size=32, base_filters=4, batch_size=4)
    keras.utils.set_random_seed(5)
    model = PLDT(cfg)
    model.compile()
    path = tmp_path / "epoch_001.weights.h5"
    model.save_weights(path)
    run = RunFolder(tmp_path)
    object.__setattr__(run, "weights_path", lambda which="last": path)
    keras.utils.set_random_seed(6)
    fresh = PLDT(cfg.replace(subpixel_convs=False))
    fresh.compile()
    run.restore(fresh)  # the same layout with the kernels off
    for a, b in zip(fresh.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    earlier = tmp_path / "earlier.weights.h5"
    earlier.write_bytes(path.read_bytes())
    with h5py.File(earlier, "a") as checkpoint:  # SubpixelConv2D's groups, as it wrote them
        encoder = checkpoint["converter/layers/functional/layers"]
        for name in [n for n in encoder if n.startswith("conv2d")]:
            encoder.move(name, f"subpixel_{name}")
    object.__setattr__(run, "weights_path", lambda which="last": earlier)
    with pytest.raises(RunError) as refused:
        run.restore(fresh)
    message = str(refused.value)
    assert "\n" not in message and str(earlier) in message and "17a4359" in message
