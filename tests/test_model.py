import keras
import numpy as np
import pytest
import tensorflow as tf
from toy import toy_arrays, toy_dataset

from keras_pldt.config import VARIANTS, PLDTConfig
from keras_pldt.data.batch import Batch
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


def as_batch(data) -> Batch:
    return Batch(data["source"], data["target"], data["unassociated"], data.get("product"))


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


def test_pixel_contrast_is_a_tracked_term_that_training_lowers():
    """`pixel_contrast_weight`: the term reaches the converter's logs and training lowers it on
    the toy problem (C(I_S) nearer its own product image than the batch's others)."""
    keras.utils.set_random_seed(4)
    model = PLDT(PLDTConfig(variant="rf", pixel_contrast_weight=10.0, **TINY))
    model.compile(converter_optimizer=adam(2e-3))
    batch = one_batch(seed=3)

    def term():
        generated = model.converter(batch["source"], training=False)
        return float(
            model.converter_objective(as_batch(batch), generated, False).terms["pixel_contrast"]
        )

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
    a = model.domain_loss(as_batch(batch), batch["target"], training=False)
    flipped = as_batch({**batch, "unassociated": -batch["unassociated"]})
    b = model.domain_loss(flipped, batch["target"], training=False)
    assert float(a.loss) == float(b.loss)


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


def converter_loss_of(model, batch):
    generated = model.converter(batch["source"], training=False)
    domain = model.domain_loss(as_batch(batch), generated, False).record
    return float(model.converter_objective(as_batch(batch), generated, False, domain).loss)


@pytest.mark.parametrize(
    "switch",
    [
        {"reconstruction_weight": 10.0},
        {"feature_matching_weight": 5.0},
        {"ssim_weight": 10.0},
        {"pixel_contrast_weight": 10.0},
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
