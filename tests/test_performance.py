"""Correctness of the performance paths (no timing): fused discriminator calls with grouped
("ghost") batch norm equal separate calls; the bfloat16 policy trains with float32 losses."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import EPS32, adam_step, assert_close, sum_ulps, tolerance
from toy import toy_arrays

from keras_pldt import kernels, networks
from keras_pldt import losses as L
from keras_pldt.config import PLDTConfig
from keras_pldt.data.batch import Batch
from keras_pldt.model import PLDT
from keras_pldt.networks import (
    GroupedBatchNormalization,
    batch_norm_groups,
    build_domain_discriminator,
    spectral_norm_held,
)

TINY = dict(image_size=32, base_filters=8, batch_size=8)
# The longest sums: batch statistics and kernel gradients over the 8 x 16 x 16 outputs of the
# first stage (of each call).
SUMMED = 8 * 16 * 16


def batch(seed=0, n=8):
    return {k: tf.constant(v) for k, v in toy_arrays(n, 32, seed).items()}


def as_batch(data) -> Batch:
    return Batch(data["source"], data["target"], data["unassociated"], data.get("product"))


def uniform(shape, seed):
    return tf.constant(np.random.default_rng(seed).uniform(-1, 1, shape).astype("float32"))


def test_grouped_batch_norm_matches_separate_calls():
    keras.utils.set_random_seed(0)
    d_a = build_domain_discriminator(PLDTConfig(**TINY))
    twin = build_domain_discriminator(PLDTConfig(**TINY))
    twin.set_weights(d_a.get_weights())
    assert any(isinstance(layer, GroupedBatchNormalization) for layer in d_a.layers)
    parts = [uniform((8, 32, 32, 6), i) for i in range(3)]
    weights = tf.constant([1.0, -2.0, 0.5])

    with tf.GradientTape() as tape:
        separate = [d_a(x, training=True) for x in parts]
        loss = tf.add_n(
            [
                w * tf.reduce_mean(tf.square(y))
                for w, y in zip(tf.unstack(weights), separate, strict=True)
            ]
        )
    grads = tape.gradient(loss, d_a.trainable_variables)

    with tf.GradientTape() as tape:
        with batch_norm_groups(twin, 3):
            fused = tf.split(twin(tf.concat(parts, 0), training=True), 3)
        loss_fused = tf.add_n(
            [
                w * tf.reduce_mean(tf.square(y))
                for w, y in zip(tf.unstack(weights), fused, strict=True)
            ]
        )
    grads_fused = tape.gradient(loss_fused, twin.trainable_variables)

    ulps = sum_ulps(SUMMED)
    for a, b in zip(separate, fused, strict=True):
        assert_close(a, b, ulps)
    assert_close(float(loss), float(loss_fused), ulps)
    for v, a, b in zip(d_a.trainable_variables, grads, grads_fused, strict=True):
        assert_close(a, b, ulps, err_msg=v.path)
    # Moving statistics: three sequential updates either way; groups reset after the block.
    for a, b in zip(d_a.non_trainable_weights, twin.non_trainable_weights, strict=True):
        assert_close(a, b, ulps, err_msg=a.path)
    assert all(layer.groups == 1 for layer in twin.layers if hasattr(layer, "groups"))


@pytest.mark.parametrize("groups", [1, 3])
def test_grouped_batch_norm_kernel_matches_keras_batch_norm(groups):
    """The CPU fused kernel (`FusedBatchNormV3` per slice) against Keras' own layer called
    once per slice: outputs, input and weight gradients, moving statistics."""
    assert kernels.fused_batch_norm_applies(tf.float32)  # the path under test (no GPU here)
    options = dict(momentum=0.9, epsilon=1e-5, gamma_initializer="random_normal")
    keras.utils.set_random_seed(0)
    ours, ref = GroupedBatchNormalization(**options), keras.layers.BatchNormalization(**options)
    parts = [uniform((4, 6, 6, 5), i) * (i + 2) + i for i in range(groups)]
    x = tf.concat(parts, 0)
    ours.build(x.shape)
    ref.build(parts[0].shape)
    ref.set_weights(ours.get_weights())
    w = uniform(x.shape, 9)

    with tf.GradientTape() as tape:
        tape.watch(x)
        ours.groups = groups
        y = ours(x, training=True)
        ours.groups = 1
        loss = tf.reduce_sum(w * y + y**3)
    grads = tape.gradient(loss, [x, ours.gamma, ours.beta])
    with tf.GradientTape() as tape:
        tape.watch(parts)
        y_ref = tf.concat([ref(p, training=True) for p in parts], 0)
        loss_ref = tf.reduce_sum(w * y_ref + y_ref**3)
    grads_ref = tape.gradient(loss_ref, [parts, ref.gamma, ref.beta])
    grads_ref[0] = tf.concat(grads_ref[0], 0)

    ulps = sum_ulps(4 * 6 * 6)
    assert_close(y, y_ref, ulps)
    for name, a, b in zip(("x", "gamma", "beta"), grads, grads_ref, strict=True):
        assert_close(a, b, sum_ulps(groups * 4 * 6 * 6), err_msg=name)
    for a, b in zip(ours.non_trainable_weights, ref.non_trainable_weights, strict=True):
        assert_close(a, b, ulps, err_msg=a.path)


def test_grouped_batch_norm_kernel_in_bfloat16_stays_bfloat16(mixed_bfloat16):
    keras.utils.set_random_seed(0)
    ours, ref = GroupedBatchNormalization(), keras.layers.BatchNormalization()
    x = tf.cast(uniform((8, 6, 6, 5), 0) * 3 + 1, "bfloat16")
    ours.build(x.shape)
    ref.build(x.shape)
    y, y_ref = ours(x, training=True), ref(x, training=True)
    assert y.dtype == tf.bfloat16
    # within a bfloat16 rounding (8 bits) of the normalised values
    np.testing.assert_allclose(
        tf.cast(y, "float32"), tf.cast(y_ref, "float32"), atol=4 * 2.0**-8 * 4
    )
    np.testing.assert_allclose(ours.moving_variance, ref.moving_variance, rtol=1e-5)


def test_fused_batch_norm_differs_without_groups():
    """Sanity: one ungrouped call over the stacked batch is *not* the paper's math."""
    keras.utils.set_random_seed(0)
    d_a = build_domain_discriminator(PLDTConfig(**TINY))
    parts = [uniform((8, 32, 32, 6), i) + i for i in range(3)]
    separate = np.concatenate([d_a(x, training=True).numpy() for x in parts])
    joint = d_a(tf.concat(parts, 0), training=True).numpy()
    assert np.abs(separate - joint).max() > tolerance(joint, sum_ulps(SUMMED))  # beyond rounding


@pytest.mark.parametrize("variant", ["rf+dd", "rf+dd-neg", "rf"])
def test_fused_train_step_equals_separate_calls(variant):
    keras.utils.set_random_seed(0)
    cfg = PLDTConfig(**TINY, variant=variant)
    fused, separate = PLDT(cfg), PLDT(cfg)
    separate.set_weights(fused.get_weights())
    fused.fuse_discriminator_calls = True
    separate.fuse_discriminator_calls = False
    logs = {}
    for name, model in (("fused", fused), ("separate", separate)):
        model.compile()
        for step in range(2):
            out = model.train_step(batch(step))
        logs[name] = {k: float(v) for k, v in out.items()}
        logs[name].update({f"test_{k}": float(v) for k, v in model.test_step(batch(5)).items()})
    assert logs["fused"].keys() == logs["separate"].keys()
    for key, value in logs["fused"].items():
        assert_close(value, logs["separate"][key], sum_ulps(SUMMED), err_msg=key)
    # Each weight moved by about one Adam step per step from the same start: both models put it
    # at the same place within 5% of a step per step (and the rounding of the stored weight).
    for a, b in zip(fused.get_weights(), separate.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=2 * EPS32, atol=0.05 * 2 * adam_step(cfg))


def test_fusion_defaults():
    assert PLDT(PLDTConfig(**TINY)).fuse_discriminator_calls
    assert PLDT(PLDTConfig(**TINY, spectral_norm=True)).fuse_discriminator_calls


@pytest.mark.parametrize("fused", [True, False])
def test_spectral_norm_iterates_once_per_update_when_fused(monkeypatch, fused):
    """Keras' SpectralNormalization makes one power iteration per training call: fused calls
    give each discriminator one per update; the converter's view of it makes none
    (`spectral_norm_held`)."""
    calls = {}
    original = keras.layers.SpectralNormalization.normalized_weights

    def counted(self):
        calls[id(self)] = calls.get(id(self), 0) + 1
        return original(self)

    monkeypatch.setattr(keras.layers.SpectralNormalization, "normalized_weights", counted)
    model = PLDT(PLDTConfig(**TINY, spectral_norm=True))
    model.fuse_discriminator_calls = fused
    model.compile()
    model.train_step(batch())
    for network, pairings in (("real_fake_discriminator", 2), ("domain_discriminator", 3)):
        wrappers = [
            layer
            for layer in model.networks[network]._flatten_layers()
            if isinstance(layer, keras.layers.SpectralNormalization)
        ]
        assert wrappers, network
        expected = 1 if fused else pairings  # its update; the converter's view makes none
        assert [calls.get(id(w)) for w in wrappers] == [expected] * len(wrappers), network


def test_held_spectral_norm_writes_nothing_back():
    """Under `spectral_norm_held` a training call of a discriminator leaves its kernels and
    power-iteration vectors as they are; outside it, the call renormalises the kernels."""
    model = PLDT(PLDTConfig(**TINY, spectral_norm=True))
    model.compile()
    model.train_step(batch())  # the kernels moved one Adam step away from normalised
    d_r, x = model.real_fake_discriminator, batch(seed=1)["target"]
    wrappers = [
        la for la in d_r._flatten_layers() if isinstance(la, networks.SpectralNormalization)
    ]
    state = lambda: [v.numpy() for la in wrappers for v in (la.kernel, la.vector_u)]  # noqa: E731
    before = state()
    with spectral_norm_held(d_r):
        d_r(x, training=True)
    for a, b in zip(before, state(), strict=True):
        np.testing.assert_array_equal(a, b)
    d_r(x, training=True)
    assert any(not np.array_equal(a, b) for a, b in zip(before, state(), strict=True))


def test_joint_domain_batch_normalises_the_pairings_together():
    """`joint_domain_batch`: D_A's update and the converter's view of D_A both see the
    associated, unassociated and generated pairs as one batch-norm batch."""
    keras.utils.set_random_seed(0)
    cfg = PLDTConfig(**TINY, joint_domain_batch=True)
    model = PLDT(cfg)
    data = batch()
    source, target, unassociated = data["source"], data["target"], data["unassociated"]
    generated = model.converter(source, training=False)
    update = model.domain_loss(as_batch(data), generated, True)
    pairs = [tf.concat([source, image], -1) for image in (target, unassociated, generated)]
    logits = tf.split(model.domain_discriminator(tf.concat(pairs, 0), training=True), 3)
    expected = L.domain_loss(*logits)
    assert_close(float(update.loss), float(expected), sum_ulps(3 * SUMMED))
    separate = L.domain_loss(*[model.domain_discriminator(x, training=True) for x in pairs])
    assert abs(float(separate) - float(expected)) > tolerance(float(expected), sum_ulps(SUMMED))
    terms = model.converter_objective(as_batch(data), generated, True, update.record).terms
    view = L.converter_adversarial_term(logits[2])
    assert_close(float(terms["adversarial_domain"]), float(view), sum_ulps(3 * SUMMED))


def test_recorded_domain_statistics_are_the_joint_batch_held_constant():
    """`joint_domain_batch`: D_A's update records its joint batch statistics, and the
    converter's view of the generated pairs alone normalises with them as D_A in inference
    mode would with those as its moving statistics: the joint batch's logits for those pairs,
    gradients that do not flow through the statistics, and the moving statistics untouched."""
    keras.utils.set_random_seed(0)
    cfg = PLDTConfig(**TINY, joint_domain_batch=True)
    model = PLDT(cfg)
    d_a = model.domain_discriminator
    data = batch()
    source, target, unassociated = data["source"], data["target"], data["unassociated"]
    generated = model.converter(source, training=False)
    statistics, real = model.domain_loss(as_batch(data), generated, True).record
    norms = [layer for layer in d_a.layers if isinstance(layer, GroupedBatchNormalization)]
    assert sorted(statistics) == sorted(layer.name for layer in norms) and real is None
    pairs = [tf.concat([source, image], -1) for image in (target, unassociated, generated)]
    joint = tf.split(d_a(tf.concat(pairs, 0), training=True), 3)[2]
    moving = [w.numpy() for w in d_a.non_trainable_weights]
    fake = tf.Variable(pairs[2])
    with tf.GradientTape() as tape:
        with networks.batch_norm_statistics(d_a, statistics, "replay"):
            replayed = d_a(fake, training=True)
    grad = tape.gradient(replayed, fake)
    for before, after in zip(moving, d_a.non_trainable_weights, strict=True):
        np.testing.assert_array_equal(before, after.numpy())
    assert_close(replayed.numpy(), joint.numpy(), sum_ulps(3 * SUMMED))
    for layer in norms:
        layer.moving_mean.assign(statistics[layer.name][0])
        layer.moving_variance.assign(statistics[layer.name][1])
    with tf.GradientTape() as tape:
        inference = d_a(fake, training=False)
    assert_close(replayed.numpy(), inference.numpy(), sum_ulps(SUMMED))
    expected = tape.gradient(inference, fake)
    assert_close(grad.numpy(), expected.numpy(), sum_ulps(SUMMED))


@pytest.mark.parametrize("feature_matching", [0.0, 10.0])
def test_converter_view_with_recorded_statistics(feature_matching):
    """The converter's adversarial D_A term and feature matching under
    `joint_domain_batch` read the replayed generated pairs and the recorded
    (I_S, I_T) features, and their gradient reaches the converter."""
    keras.utils.set_random_seed(0)
    cfg = PLDTConfig(**TINY, joint_domain_batch=True, feature_matching_weight=feature_matching)
    model = PLDT(cfg)
    data = batch()
    source = data["source"]
    generated = model.converter(source, training=False)
    recorded = model.domain_loss(as_batch(data), generated, True).record
    assert (recorded.real_features is None) == (not feature_matching)
    d_a = model.domain_discriminator
    with tf.GradientTape() as tape:
        generated = model.converter(source, training=True)
        terms = model.converter_objective(as_batch(data), generated, True, recorded).terms
        view = terms["adversarial_domain"]
    grads = tape.gradient(view, model.converter.trainable_variables)
    assert all(g is not None for g in grads) and float(tf.linalg.global_norm(grads)) > 0
    fake_pair = tf.concat([source, generated], -1)
    with networks.batch_norm_statistics(d_a, recorded.statistics, "replay"):
        expected = L.converter_adversarial_term(d_a(fake_pair, training=True))
    assert_close(float(view), float(expected), sum_ulps(SUMMED))
    if feature_matching:
        with networks.batch_norm_statistics(d_a, recorded.statistics, "replay"):
            fake_taps = model._domain_taps(fake_pair, training=True)
        expected = L.feature_matching(recorded.real_features, fake_taps[:-1])
        assert_close(float(terms["feature_matching"]), float(expected), sum_ulps(SUMMED))


@pytest.fixture
def mixed_bfloat16():
    """Keras' global dtype policy at mixed_bfloat16 for one test, then back to what it was."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    yield
    keras.mixed_precision.set_global_policy(previous)


def test_bfloat16_train_step_returns_finite_float32_losses(mixed_bfloat16):
    keras.utils.set_random_seed(0)
    model = PLDT(PLDTConfig(**TINY, precision="bfloat16"))
    model.compile()
    assert model.converter.compute_dtype == "bfloat16"
    assert model.converter.output.dtype == "float32"
    logs = model.train_step(batch())
    for name, value in logs.items():
        assert value.dtype == tf.float32, name
        assert np.isfinite(float(value)), name
    assert all(v.dtype == "float32" for v in model.converter.trainable_variables)


def test_auto_precision_is_bfloat16_only_on_a_cpu_with_native_bf16(tmp_path, monkeypatch):
    from keras_pldt import precision as M

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f amx_bf16 amx_tile\n")
    assert M.cpu_bf16_flags(info) == ["amx_bf16"]
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 fma f16c\n")
    assert M.cpu_bf16_flags(info) == []
    assert M.cpu_bf16_flags(tmp_path / "absent") == []
    gpu = bool(tf.config.list_physical_devices("GPU"))
    monkeypatch.setattr(M, "cpu_bf16_flags", lambda: ["avx512_bf16"])
    assert M.auto_precision() == ("float32" if gpu else "bfloat16")
    model = PLDT(PLDTConfig(**TINY, precision="auto"))
    assert model.config.precision == M.auto_precision()
    assert model.converter.compute_dtype == M.POLICIES[M.auto_precision()].removeprefix("mixed_")
    monkeypatch.setattr(M, "cpu_bf16_flags", lambda: [])
    assert M.auto_precision() == "float32"
    assert PLDT(PLDTConfig(**TINY, precision="auto")).converter.compute_dtype == "float32"
