"""Table 1 checked against parameter counts computed here, layer by layer, from the paper."""

import keras
import numpy as np
import pytest
from helpers import sum_ulps, tolerance

from keras_pldt.config import PLDTConfig
from keras_pldt.networks import (
    build_converter,
    build_decoder,
    build_domain_discriminator,
    build_encoder,
    build_real_fake_discriminator,
    stage_widths,
)


def conv(k, cin, cout, bias):
    return k * k * cin * cout + (cout if bias else 0)


def bn(c):  # gamma, beta (trainable) + moving mean, variance
    return 4 * c


def expected_widths(size, base):
    # Table 1 at 64 px: b, 2b, 4b, 8b; one more stride-2 stage of width b per doubling of size,
    # one stage fewer (dropping the first) per halving, so the bottleneck stays 4x4x8b.
    widths = [base, 2 * base, 4 * base, 8 * base]
    n = int(np.log2(size)) - 2
    return [base] * (n - 4) + widths if n >= 4 else widths[4 - n :]


def encoder_like_params(size, base, in_ch, out, code):
    w = expected_widths(size, base)
    total = conv(5, in_ch, w[0], True)
    for a, b in zip(w[:-1], w[1:], strict=True):
        total += conv(5, a, b, False) + bn(b)
    if code:
        return total + conv(4, w[-1], out, False) + bn(out)
    return total + conv(4, w[-1], out, True)


def decoder_params(size, base, code=64):
    w = expected_widths(size, base)[::-1]
    total = code * 16 * w[0] + bn(w[0])
    for a, b in zip(w[:-1], w[1:], strict=True):
        total += conv(5, a, b, False) + bn(b)
    return total + conv(5, w[-1], 3, True)


def test_table1_at_paper_width():
    cfg = PLDTConfig()
    enc = build_encoder(cfg)
    convs = [layer for layer in enc.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [128, 256, 512, 1024, 64]
    assert [c.kernel_size for c in convs] == [(5, 5)] * 4 + [(4, 4)]
    assert [c.strides for c in convs] == [(2, 2)] * 4 + [(1, 1)]
    bns = [layer.name for layer in enc.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bns == ["bn2", "bn3", "bn4", "bn_code"]  # no batch norm on the first layer
    leaky = [layer for layer in enc.layers if isinstance(layer, keras.layers.LeakyReLU)]
    assert len(leaky) == 5 and all(la.negative_slope == 0.2 for la in leaky)
    dec = build_decoder(cfg)
    deconvs = [layer for layer in dec.layers if isinstance(layer, keras.layers.Conv2DTranspose)]
    assert [d.filters for d in deconvs] == [512, 256, 128, 3]
    assert dec.layers[-1].activation.__name__ == "tanh"
    assert enc.count_params() == encoder_like_params(64, 128, 3, 64, True)
    assert dec.count_params() == decoder_params(64, 128)


@pytest.mark.parametrize("size,base", [(64, 8), (128, 4), (256, 2), (32, 8)])
def test_parameter_counts_and_shapes(size, base):
    cfg = PLDTConfig(image_size=size, base_filters=base)
    assert stage_widths(size, base) == expected_widths(size, base)
    converter = build_converter(cfg)
    d_r = build_real_fake_discriminator(cfg)
    d_a = build_domain_discriminator(cfg)
    enc = converter.get_layer("encoder")
    assert enc.count_params() == encoder_like_params(size, base, 3, 64, True)
    assert converter.count_params() == (
        encoder_like_params(size, base, 3, 64, True) + decoder_params(size, base)
    )
    assert d_r.count_params() == encoder_like_params(size, base, 3, 1, False)
    assert d_a.count_params() == encoder_like_params(size, base, 6, 1, False)
    x = np.random.default_rng(0).uniform(-1, 1, (2, size, size, 3)).astype("float32")
    y = converter(x, training=False).numpy()
    assert y.shape == (2, size, size, 3)
    assert np.abs(y).max() <= 1.0
    assert enc(x).shape == (2, 64)
    assert d_r(x).shape == (2, 1)
    assert d_a(np.concatenate([x, x], -1)).shape == (2, 1)


def test_init_is_normal_002():
    keras.utils.set_random_seed(0)
    kernel = build_encoder(PLDTConfig(base_filters=32)).get_layer("conv3").kernel.numpy()
    # Within 5 standard errors of N(0, 0.02) statistics over kernel.size draws.
    assert abs(kernel.mean()) < 5 * 0.02 / np.sqrt(kernel.size)
    assert kernel.std() == pytest.approx(0.02, rel=5 / np.sqrt(2 * kernel.size))


def test_spectral_norm_switch_wraps_discriminator_convs():
    d = build_real_fake_discriminator(PLDTConfig(base_filters=4, spectral_norm=True))
    wrapped = [la for la in d.layers if isinstance(la, keras.layers.SpectralNormalization)]
    assert len(wrapped) == 5


def test_resize_upsampling_has_table1_sizes_and_no_checkerboard():
    import tensorflow as tf

    from keras_pldt.networks import _upsample

    base = PLDTConfig(image_size=64, base_filters=8)
    resize = base.replace(upsampling="resize")
    for cfg in (base, resize):
        assert build_decoder(cfg).output_shape == (None, 64, 64, 3)
    assert build_decoder(resize).count_params() == build_decoder(base).count_params()
    flat = tf.ones((1, 8, 8, 3))  # a constant map: any interior pattern is the layer's own
    for cfg, checkerboard in ((base, True), (resize, False)):
        out = _upsample(cfg, 4, "stage", use_bias=False)(flat).numpy()[0, 3:-3, 3:-3]
        spread = float(np.ptp(out, axis=(0, 1)).max())
        rounding = tolerance(out, sum_ulps(25 * 3))  # of sums of 5 x 5 taps of 3 channels
        assert (spread > rounding) == checkerboard, (cfg.upsampling, spread, rounding)


@pytest.mark.parametrize("upsampling", ["transposed", "resize"])
def test_networks_are_the_same_whatever_the_kernel_switch(upsampling):
    """`subpixel_convs` is a runtime setting (`kernels.accelerate`): the networks have the same
    layers, configs and variable names either way, the converter Keras' own classes only."""
    cfg = PLDTConfig(image_size=32, base_filters=4, upsampling=upsampling, spectral_norm=True)
    for build in (build_converter, build_real_fake_discriminator, build_domain_discriminator):
        on, off = build(cfg.replace(subpixel_convs=True)), build(cfg.replace(subpixel_convs=False))
        assert on.get_config() == off.get_config(), build.__name__
        assert [w.path for w in on.weights] == [w.path for w in off.weights], build.__name__
    modules = {type(layer).__module__ for layer in build_converter(cfg)._flatten_layers()}
    assert modules and all(m.startswith("keras.") for m in modules), modules


@pytest.mark.parametrize("precision", ["mixed_float16", "bfloat16"])
def test_spectral_norm_keeps_float32_master_weights_under_mixed_precision(precision):
    from keras_pldt.model import POLICIES, precision_policy

    cfg = PLDTConfig(image_size=16, base_filters=8, spectral_norm=True, precision=precision)
    with precision_policy(precision):
        d_r = build_real_fake_discriminator(cfg)
    compute = keras.mixed_precision.Policy(POLICIES[precision]).compute_dtype
    wrappers = [la for la in d_r.layers if isinstance(la, keras.layers.SpectralNormalization)]
    assert wrappers
    for sn in wrappers:  # the kernel read without autocast, the conv in the compute dtype
        assert (sn.autocast, sn.layer.compute_dtype) == (False, compute)
    x = np.random.default_rng(0).uniform(-1, 1, (8, 16, 16, 3)).astype("float32")
    h = keras.ops.cast(x, compute)  # no float32 round trip between layers
    for layer in d_r.layers[1:-1]:
        h = layer(h, training=True)
        assert keras.backend.standardize_dtype(h.dtype) == compute, layer.name
    for _ in range(3):
        logits = keras.ops.convert_to_numpy(d_r(x, training=True))  # writes the kernels
    assert np.all(np.isfinite(logits))
    kernels = [keras.ops.convert_to_numpy(sn.layer.kernel) for sn in wrappers]
    assert all(k.dtype == np.float32 and np.all(np.isfinite(k)) for k in kernels)
    rounded = [
        keras.ops.convert_to_numpy(keras.ops.cast(k, compute)).astype("float32") for k in kernels
    ]
    assert any(np.any(r != k) for r, k in zip(rounded, kernels, strict=True))  # not rounded


def test_mixed_bfloat16_networks_have_no_float32_round_trip_between_layers():
    """Under `precision="bfloat16"` every layer of the robust preset's networks, accelerated,
    hands its successor a bfloat16 tensor in training; only the outputs (the converter's image,
    the logits) are float32."""
    from keras_pldt.config import get_preset
    from keras_pldt.kernels import accelerate
    from keras_pldt.model import PLDT

    cfg = get_preset("robust", image_size=16, base_filters=4, batch_size=4, precision="bfloat16")
    model = PLDT(cfg)
    converter = model.converter
    networks = [converter.get_layer("encoder"), converter.get_layer("decoder")]
    networks += [model.real_fake_discriminator, model.domain_discriminator]
    accelerate(*networks)
    for d in networks[2:]:  # a batch enters a discriminator in bfloat16
        assert keras.backend.standardize_dtype(d.input.dtype) == "bfloat16", d.name
    for network in networks:
        inner = network.layers[1:]  # every layer's output, from one training call
        taps = keras.Model(network.input, [layer.output for layer in inner])
        outputs = taps(keras.ops.zeros([4, *network.input.shape[1:]], "bfloat16"), training=True)
        for layer, h in zip(inner, outputs, strict=True):
            last = layer is network.layers[-1] and network.name != "encoder"
            expected = "float32" if last else "bfloat16"
            assert keras.backend.standardize_dtype(h.dtype) == expected, (network.name, layer.name)
