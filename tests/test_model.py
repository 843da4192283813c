import keras
import numpy as np
import pytest
import tensorflow as tf
from toy import toy_arrays, toy_dataset

from keras_pldt.config import VARIANTS, PLDTConfig
from keras_pldt.model import PLDT

TINY = dict(image_size=32, base_filters=8, batch_size=16)


def weights(net):
    return [w.numpy().copy() for w in net.trainable_weights]


def changed(before, net):
    return any(
        not np.array_equal(a, b.numpy()) for a, b in zip(before, net.trainable_weights, strict=True)
    )


def adam(lr):
    return keras.optimizers.Adam(lr, beta_1=0.5)


def one_batch(seed=0):
    arrays = toy_arrays(16, 32, seed)
    return {k: tf.constant(v) for k, v in arrays.items()}


def test_train_step_updates_all_three_networks():
    keras.utils.set_random_seed(0)
    model = PLDT(PLDTConfig(**TINY))
    model.compile()
    before = {name: weights(net) for name, net in model.networks.items()}
    logs = model.train_step(one_batch())
    for name, net in model.networks.items():
        assert changed(before[name], net), name
    assert set(logs) >= {
        "converter_loss",
        "real_fake_loss",
        "domain_loss",
        "real_fake_accuracy",
        "domain_accuracy",
    }
    assert all(np.isfinite(float(v)) for v in logs.values())


@pytest.mark.parametrize("active", ["converter", "real_fake_discriminator", "domain_discriminator"])
def test_each_optimizer_touches_only_its_network(active):
    keras.utils.set_random_seed(1)
    model = PLDT(PLDTConfig(**TINY))
    lrs = {name: (1e-3 if name == active else 0.0) for name in model.networks}
    model.compile(
        converter_optimizer=adam(lrs["converter"]),
        real_fake_optimizer=adam(lrs["real_fake_discriminator"]),
        domain_optimizer=adam(lrs["domain_discriminator"]),
    )
    before = {name: weights(net) for name, net in model.networks.items()}
    model.train_step(one_batch())
    for name, net in model.networks.items():
        assert changed(before[name], net) == (name == active), name


def test_optimizers_are_built_on_their_own_networks_only():
    model = PLDT(PLDTConfig(**TINY))
    model.compile()
    for name, opt in model.optimizers.items():
        own = {id(v) for v in model.networks[name].trainable_variables}
        assert len(opt._trainable_variables) == len(own)
        assert {id(v) for v in opt._trainable_variables} == own
    assert model.optimizer is model.converter_optimizer


def rmse(model, arrays):
    out = model.predict(arrays["source"], verbose=0)
    return float(np.sqrt(np.mean(((out - arrays["target"]) / 2) ** 2)))


@pytest.mark.parametrize("variant", ["rf+dd", "mse"])
def test_learns_the_toy_problem(variant):
    keras.utils.set_random_seed(2)
    held_out = toy_arrays(64, 32, seed=99)
    model = PLDT(PLDTConfig(variant=variant, **TINY))
    model.compile()
    untrained = rmse(model, held_out)
    model.fit(toy_dataset(256, 32, 16, seed=3), steps_per_epoch=300, epochs=1, verbose=0)
    trained = rmse(model, held_out)
    assert trained < 0.6 * untrained, (untrained, trained)


def test_code_contrast_trains_the_encoder_to_name_the_product():
    """`code_contrast_weight`: the term is tracked, the converter's output is that of one pass
    (encoder then decoder), and training lowers the term on the toy problem."""
    keras.utils.set_random_seed(4)
    model = PLDT(PLDTConfig(variant="mse", code_contrast_weight=1.0, **TINY))
    model.compile(converter_optimizer=adam(2e-3))
    batch = one_batch(seed=3)
    np.testing.assert_array_equal(
        model.converter.get_layer("decoder")(model.converter.get_layer("encoder")(batch["source"])),
        model.converter(batch["source"]),
    )

    def term():
        source, target = batch["source"], batch["target"]
        generated = model.converter(source, training=False)
        return float(
            model._converter_objective(source, target, generated, False)[1]["code_contrast"]
        )

    first = term()
    history = model.fit(toy_dataset(64, 32, 16, seed=3), steps_per_epoch=40, epochs=1, verbose=0)
    assert "converter_code_contrast" in history.history
    after = term()
    assert np.isfinite(first) and after < 0.5 * first, (first, after)


def test_pixel_contrast_is_a_tracked_term_that_training_lowers():
    """`pixel_contrast_weight`: the term reaches the converter's logs and training lowers it on
    the toy problem (C(I_S) nearer its own product image than the batch's others)."""
    keras.utils.set_random_seed(4)
    model = PLDT(PLDTConfig(variant="rf", pixel_contrast_weight=10.0, **TINY))
    model.compile(converter_optimizer=adam(2e-3))
    batch = one_batch(seed=3)

    def term():
        source, target = batch["source"], batch["target"]
        generated = model.converter(source, training=False)
        values = model._converter_objective(source, target, generated, False)[1]
        return float(values["pixel_contrast"])

    first = term()
    history = model.fit(toy_dataset(64, 32, 16, seed=3), steps_per_epoch=40, epochs=1, verbose=0)
    assert "converter_pixel_contrast" in history.history
    after = term()
    assert np.isfinite(first) and after < 0.5 * first, (first, after)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_fits(variant):
    model = PLDT(PLDTConfig(variant=variant, **TINY))
    model.compile()
    history = model.fit(toy_dataset(32, 32, 16), steps_per_epoch=2, epochs=1, verbose=0)
    logs = {k: v[-1] for k, v in history.history.items()}
    assert np.isfinite(logs["converter_loss"])
    assert ("domain_loss" in logs) == (variant in ("rf+dd", "rf+dd-neg"))
    assert ("real_fake_loss" in logs) == (variant != "mse")
    result = model.evaluate(toy_dataset(32, 32, 16, repeat=False), verbose=0, return_dict=True)
    assert 0.0 <= result["rmse"] <= 1.0


def test_neg_variant_never_uses_unassociated_targets():
    model = PLDT(PLDTConfig(variant="rf+dd-neg", **TINY))
    model.compile()
    batch = one_batch()
    keras.utils.set_random_seed(5)
    a = model._domain_terms(
        batch["source"], batch["target"], batch["unassociated"], batch["target"], training=False
    )
    b = model._domain_terms(
        batch["source"], batch["target"], -batch["unassociated"], batch["target"], training=False
    )
    assert float(a[0]) == float(b[0])


@pytest.mark.parametrize("extra", [{}, {"source_augment": "flip,crop"}])
def test_save_load_round_trip(tmp_path, extra):
    model = PLDT(PLDTConfig(variant="rf+dd", **TINY, **extra))
    model.compile()
    model.fit(toy_dataset(32, 32, 16), steps_per_epoch=2, epochs=1, verbose=0)
    path = tmp_path / "pldt.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    x = toy_arrays(4, 32, seed=7)["source"]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.config == model.config
    for name, opt in model.optimizers.items():
        assert int(loaded.optimizers[name].iterations) == int(opt.iterations) == 2
    clone = PLDT.from_config(model.get_config())
    assert clone.config == model.config
    assert clone.converter.count_params() == model.converter.count_params()


@pytest.mark.parametrize(
    "batch,match",
    [
        ({"source": np.zeros((2, 16, 16, 3), "float32")}, "missing"),
        (
            {k: np.zeros((2, 16, 16, 3), "float32") for k in ("source", "target", "unassociated")},
            r"expected \[batch, 32, 32, 3\]",
        ),
        (
            (np.zeros((2, 32, 32, 3), "float32"), np.zeros((2, 32, 32, 3), "float32")),
            "unassociated",
        ),
    ],
)
def test_bad_batches_fail_with_the_expected_shapes(batch, match):
    model = PLDT(PLDTConfig(**TINY))
    model.compile()
    with pytest.raises(ValueError, match=match):
        model.train_step(batch)


def test_out_of_range_pixels_fail_at_the_first_batch():
    model = PLDT(PLDTConfig(**TINY))
    model.compile()
    batch = {k: v * 255.0 for k, v in one_batch().items()}
    ds = tf.data.Dataset.from_tensors(batch)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"outside \[-1, 1\]"):
        model.fit(ds, epochs=1, verbose=0)


def test_predict_runs_converter_only():
    model = PLDT(PLDTConfig(**TINY))
    x = toy_arrays(3, 32)["source"]
    np.testing.assert_allclose(model.predict(x, verbose=0), model.converter(x).numpy(), atol=1e-6)


def trained_model(steps=3, **changes):
    keras.utils.set_random_seed(4)
    model = PLDT(PLDTConfig(**{**TINY, **changes}))
    model.compile()
    if steps:
        model.fit(toy_dataset(32, 32, 16), steps_per_epoch=steps, epochs=1, verbose=0)
    return model


def top_singular_value(kernel):
    return float(np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0])


def test_spectral_norm_bounds_the_discriminator_largest_singular_value():
    model = trained_model(steps=20, spectral_norm=True)
    d_r = model.real_fake_discriminator
    x = toy_arrays(16, 32)["target"]
    for _ in range(20):  # power iterations run in training calls
        d_r(x, training=True)
    wrapped = [la for la in d_r.layers if isinstance(la, keras.layers.SpectralNormalization)]
    sigmas = [top_singular_value(la.layer.kernel.numpy()) for la in wrapped]
    assert all(abs(s - 1.0) < 0.15 for s in sigmas), sigmas
    plain = trained_model(steps=0).real_fake_discriminator.get_layer("conv3").kernel.numpy()
    assert top_singular_value(plain) < 0.8  # N(0, 0.02) kernels are far from 1


def test_ema_weights_differ_and_converge_with_decay_to_zero():
    slow = trained_model(ema_decay=0.9)
    raw, ema = slow.converter.get_weights(), slow.ema_converter().get_weights()
    assert max(np.abs(a - b).max() for a, b in zip(raw, ema, strict=True)) > 1e-4
    fast = trained_model(ema_decay=1e-12)
    for a, b in zip(fast.converter.get_weights(), fast.ema_converter().get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert trained_model(steps=0).ema_converter() is not None


def converter_loss_of(model, batch):
    generated = model.converter(batch["source"], training=False)
    return float(model._converter_objective(batch["source"], batch["target"], generated, False)[0])


@pytest.mark.parametrize(
    "switch",
    [
        {"reconstruction_weight": 10.0},
        {"reconstruction_weight": 10.0, "reconstruction_lowpass": 4},
        {"feature_matching_weight": 5.0},
        {"identity_weight": 10.0},
        {"identity_weight": 10.0, "variant": "mse"},
        {"ssim_weight": 10.0},
        {"mse_weight": 10.0},
        {"gradient_weight": 10.0},
        {"frequency_weight": 10.0},
    ],
)
def test_converter_terms_add_to_the_loss(switch):
    batch = one_batch()
    base = trained_model(steps=0, variant=switch.get("variant", "rf+dd"))
    extra = trained_model(steps=0, **switch)
    extra.set_weights(base.get_weights()) if not switch.get("feature_matching_weight") else None
    if switch.get("feature_matching_weight"):
        for name in base.networks:
            extra.networks[name].set_weights(base.networks[name].get_weights())
    assert converter_loss_of(extra, batch) > converter_loss_of(base, batch) + 1e-3


def test_r1_penalty_raises_the_discriminator_loss():
    batch = one_batch()
    base = trained_model(steps=0)
    r1 = trained_model(steps=0, r1_weight=10.0)
    r1.real_fake_discriminator.set_weights(base.real_fake_discriminator.get_weights())
    args = (batch["target"], batch["source"])
    assert float(r1._real_fake_terms(*args, True)[0]) > float(base._real_fake_terms(*args, True)[0])


def test_discriminator_dropout_and_two_timescales():
    model = trained_model(steps=1, discriminator_dropout=0.3, discriminator_lr_multiplier=4.0)
    x = toy_arrays(8, 32)["target"]
    d_r = model.real_fake_discriminator
    assert not np.allclose(d_r(x, training=True).numpy(), d_r(x, training=True).numpy())
    lr = lambda opt: float(keras.ops.convert_to_numpy(opt.learning_rate))  # noqa: E731
    assert lr(model.real_fake_optimizer) == pytest.approx(4 * lr(model.converter_optimizer))


@pytest.mark.parametrize("loss", ["hinge", "lsgan"])
def test_alternative_adversarial_losses_train(loss):
    model = trained_model(steps=3, adversarial_loss=loss, diff_augment="translation,cutout")
    logs = model.evaluate(toy_dataset(32, 32, 16, repeat=False), verbose=0, return_dict=True)
    assert all(np.isfinite(v) for v in logs.values())


def test_patch_real_fake_discriminator_trains_on_every_patch_logit():
    model = trained_model(steps=3, real_fake_patches=True, identity_weight=1.0)
    batch = one_batch()
    d_r = model.real_fake_discriminator
    assert d_r(batch["target"]).shape[1] > 1  # a grid of patch logits
    loss, accuracy = model._real_fake_terms(batch["target"], batch["source"], False)
    assert np.isfinite(float(loss)) and 0.0 <= float(accuracy) <= 1.0
    logs = model.evaluate(toy_dataset(32, 32, 16, repeat=False), verbose=0, return_dict=True)
    assert all(np.isfinite(v) for v in logs.values())


def test_identity_term_teaches_the_converter_to_copy_product_images():
    # With only the identity term the converter learns C(I_T) = I_T; without it, it does not.
    batch = one_batch()

    def identity_error(model):
        out = model.converter(batch["target"], training=False)
        return float(np.abs(out.numpy() - batch["target"]).mean())

    fast = dict(steps=30, variant="mse", learning_rate=2e-3)
    copy, plain = trained_model(identity_weight=4.0, **fast), trained_model(**fast)
    assert identity_error(copy) < 0.7 * identity_error(plain)


def test_source_augmentation_changes_training_sources_only():
    # The same batch gives different converter updates with source augmentation; calling the
    # model (inference) sees the photos as they are.
    batch = one_batch()
    plain, augmented = trained_model(steps=0), trained_model(steps=0, source_augment="flip,crop")
    for name in plain.networks:
        augmented.networks[name].set_weights(plain.networks[name].get_weights())
    np.testing.assert_allclose(plain(batch["source"]), augmented(batch["source"]), atol=1e-6)
    plain.train_step(batch)
    augmented.train_step(batch)
    pairs = zip(weights(plain.converter), weights(augmented.converter), strict=True)
    assert max(np.abs(a - b).max() for a, b in pairs) > 1e-6


@pytest.mark.parametrize(
    "switches",
    [
        {"source_augment": "flip,crop,rotate,light"},
        {"diff_augment": "color,translation,cutout", "feature_matching_weight": 1.0},
    ],
    ids=["source_augment", "diff_augment"],
)
def test_augmentation_resumes_exactly(tmp_path, switches):
    # The random draws come from (seed, step): a model restored from a checkpoint takes the same
    # next step as the one that kept training (a Keras RandomFlip's state, or TF's global
    # generator, is not checkpointed).
    batch = one_batch()
    kept = trained_model(steps=2, **switches)
    kept.save_weights(tmp_path / "step2.weights.h5")
    restored = trained_model(steps=0, **switches)
    restored.load_weights(tmp_path / "step2.weights.h5")
    assert int(restored.converter_optimizer.iterations) == 2
    kept.train_step(batch)
    restored.train_step(batch)
    for a, b in zip(weights(kept.converter), weights(restored.converter), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_pixel_contrast_bank_keeps_the_last_targets_and_their_products():
    """`pixel_contrast_bank`: each training step writes its targets and product ids over the
    bank's oldest slots (a ring), the term reads the bank, and batches without product ids are
    refused with the field named."""
    model = PLDT(
        PLDTConfig(**TINY, variant="rf", pixel_contrast_weight=5.0, pixel_contrast_bank=24)
    )
    model.compile()
    images, products = model.contrast_bank.contents
    assert (products.numpy() == -1).all()
    batch = one_batch()
    with pytest.raises(ValueError, match="pixel_contrast_bank needs each batch's product ids"):
        model.train_step(batch)
    for step in range(2):
        batch = one_batch(seed=step)
        batch["product"] = tf.range(16) + 100 * step
        logs = model.train_step(batch)
        assert np.isfinite(float(logs["converter_pixel_contrast"]))
    # 16 slots of step 0, then step 1's first 8 at slots 16-23 and its last 8 over slots 0-7
    expected = np.concatenate([np.arange(108, 116), np.arange(8, 16), np.arange(100, 108)])
    np.testing.assert_array_equal(products.numpy(), expected)
    second = one_batch(seed=1)["target"].numpy()
    stored = images.numpy().astype("float32")
    np.testing.assert_allclose(stored[:8], second[8:], atol=1e-3)
    np.testing.assert_allclose(stored[16:], second[:8], atol=1e-3)
    with pytest.raises(ValueError, match="pixel_contrast_bank=24 would be ignored"):
        PLDTConfig(**TINY, pixel_contrast_bank=24)
    with pytest.raises(ValueError, match="pixel_contrast_bank must be 0 or >= batch_size=16"):
        PLDTConfig(**TINY, pixel_contrast_weight=5.0, pixel_contrast_bank=8)


def test_hard_negatives_pair_each_source_with_the_most_similar_other_product():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    shades = np.array([0.8, -0.8, 0.75, -0.7, 0.1, 0.79])  # rows 0, 2 and 5: one product
    product = tf.constant([3, 1, 3, 2, 4, 3])
    target = tf.constant(
        (shades[:, None, None, None] + rng.normal(0, 0.01, (6, 32, 32, 3))).astype("float32")
    )
    unassociated = tf.constant(np.full((6, 32, 32, 3), 0.5, "float32"))
    model = PLDT(PLDTConfig(**TINY, hard_negatives=1.0))
    model.compile()  # the draws' seed is the step's
    hard = model._hard_negatives(target, unassociated, product).numpy()
    # the nearest shade of another product: 0.8 -> 0.1 (product 4), 0.1 -> 0.75 (product 3)
    expected = [4, 3, 4, 1, 2, 4]
    np.testing.assert_array_equal(hard, target.numpy()[expected])
    alone = model._hard_negatives(target, unassociated, tf.zeros([6], tf.int32)).numpy()
    np.testing.assert_array_equal(alone, unassociated.numpy())  # no other product: unchanged
    half = PLDT(PLDTConfig(**TINY, hard_negatives=0.5))
    half.compile()
    mixed = half._hard_negatives(target, unassociated, product).numpy()
    replaced = [not np.array_equal(m, u) for m, u in zip(mixed, unassociated.numpy(), strict=True)]
    assert 0 < sum(replaced) < 6


def test_hard_negatives_need_the_batch_product_ids_and_train_with_them():
    model = PLDT(PLDTConfig(**TINY, hard_negatives=0.5))
    model.compile()
    batch = one_batch()
    with pytest.raises(ValueError, match="hard_negatives needs each batch's product ids"):
        model.train_step(batch)
    batch["product"] = tf.range(16) % 4
    logs = model.train_step(batch)
    assert np.isfinite(float(logs["domain_loss"]))
    with pytest.raises(ValueError, match="hard_negatives=0.5 would be ignored"):
        PLDTConfig(**TINY, variant="rf+dd-neg", hard_negatives=0.5)
