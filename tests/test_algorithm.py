"""Algorithm 1's updates under loss scaling, mixed precision and several replicas, the converter's
named terms, and the paper's schedule attached to the default optimizers."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from toy import toy_arrays, toy_dataset

from keras_pldt.config import PLDTConfig, get_preset
from keras_pldt.data.batch import Batch
from keras_pldt.model import PLDT, converter_loss_weights
from keras_pldt.schedule import PaperSchedule

TINY = dict(image_size=32, base_filters=4, batch_size=8)
REPO = Path(__file__).resolve().parents[1]


def batch(n=8, seed=0):
    return {k: tf.constant(v) for k, v in toy_arrays(n, 32, seed).items()}


def as_batch(data) -> Batch:
    return Batch(data["source"], data["target"], data["unassociated"], data.get("product"))


def copy_weights(src: PLDT, dst: PLDT) -> None:
    for name, net in src.networks.items():
        dst.networks[name].set_weights(net.get_weights())


def updates(model: PLDT, data) -> dict[str, list[np.ndarray]]:
    """Each network's weight change in one train step."""
    nets = model.networks
    before = {n: [w.numpy().copy() for w in net.trainable_weights] for n, net in nets.items()}
    model.train_step(data)
    return {
        n: [w.numpy() - b for w, b in zip(net.trainable_weights, before[n], strict=True)]
        for n, net in model.networks.items()
    }


def relative_error(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """||a - b|| / ||a|| over all tensors of an update."""
    num = sum(float(np.sum((x - y) ** 2)) for x, y in zip(a, b, strict=True))
    den = sum(float(np.sum(x**2)) for x in a)
    return (num / den) ** 0.5


def sgd_compile(model: PLDT, scaled: bool) -> None:
    def opt():
        sgd = keras.optimizers.SGD(0.1)
        return keras.optimizers.LossScaleOptimizer(sgd, initial_scale=2**15) if scaled else sgd

    model.compile(converter_optimizer=opt(), real_fake_optimizer=opt(), domain_optimizer=opt())


@pytest.mark.parametrize(
    "config",
    [
        TINY,
        {**TINY, "feature_matching_weight": 1.0},
        {**TINY, "joint_domain_batch": True, "feature_matching_weight": 1.0},
        get_preset("robust", **TINY).to_dict(),
    ],
)
def test_loss_scaling_leaves_every_update_unchanged(config):
    # Plain SGD against SGD in a LossScaleOptimizer (scale 2**15) on the same weights and batch:
    # every network's update must be the same (SGD: no normalisation can hide a scale error).
    keras.utils.set_random_seed(0)
    plain, scaled = PLDT(PLDTConfig(**config)), PLDT(PLDTConfig(**config))
    copy_weights(plain, scaled)
    sgd_compile(plain, False)
    sgd_compile(scaled, True)
    data = batch()
    expected, got = updates(plain, data), updates(scaled, data)
    assert set(expected) == {"converter", "real_fake_discriminator", "domain_discriminator"}
    for name in expected:
        assert relative_error(expected[name], got[name]) < 1e-3, name


def test_mixed_float16_step_trains_all_three_networks():
    # float16 kernels run on CPU (slowly): the step gives finite float32 losses and moves every
    # network, with float32 master weights and loss-scaling optimizers.
    keras.utils.set_random_seed(0)
    model = PLDT(PLDTConfig(**TINY, precision="mixed_float16"))
    model.compile()
    assert keras.mixed_precision.global_policy().name == "float32"  # not changed by PLDT
    assert model.converter.compute_dtype == "float16"
    for optimizer in model.optimizers.values():
        assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    moved = updates(model, batch())
    logs = model.train_step(batch(seed=1))
    for name, value in logs.items():
        assert value.dtype == tf.float32 and np.isfinite(float(value)), name
    for name, deltas in moved.items():
        assert max(float(np.abs(d).max()) for d in deltas) > 0, name
    assert all(v.dtype == "float32" for v in model.converter.trainable_variables)


REPLICA_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    sys.path.insert(0, "tests")
    from toy import toy_arrays
    from keras_pldt.config import PLDTConfig
    from keras_pldt.model import PLDT

    config = PLDTConfig(image_size=32, base_filters=4, batch_size=8)
    data = toy_arrays(8, 32, 0)

    def run(strategy):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = PLDT(config)
            sgd = lambda: keras.optimizers.SGD(0.1)
            model.compile(converter_optimizer=sgd(), real_fake_optimizer=sgd(),
                          domain_optimizer=sgd())
        model.fuse_discriminator_calls = False
        before = {n: [w.numpy().copy() for w in net.trainable_weights]
                  for n, net in model.networks.items()}
        ds = tf.data.Dataset.from_tensor_slices(data).batch(8).repeat()
        model.fit(ds, steps_per_epoch=1, epochs=1, verbose=0, shuffle=False)
        return {n: [(w.numpy() - b).tolist() for w, b in zip(net.trainable_weights, before[n])]
                for n, net in model.networks.items()}

    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    one = run(tf.distribute.OneDeviceStrategy(devices[0]))
    two = run(tf.distribute.MirroredStrategy(devices))
    json.dump({"one": one, "two": two}, sys.stdout)
    """
)


def test_two_replicas_update_like_one():
    # The same global batch on one replica and split over two: each network's update must
    # match (synchronised batch norm; gradients summed over replicas of losses divided by 2).
    # A factor of 2 in any update gives a relative error of 0.5 or 1.
    result = subprocess.run(
        [sys.executable, "-c", REPLICA_SCRIPT], cwd=REPO, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    for name in out["one"]:
        one = [np.asarray(x) for x in out["one"][name]]
        two = [np.asarray(x) for x in out["two"][name]]
        assert relative_error(one, two) < 0.05, name


def test_eq6_weights_are_one_half_each_and_the_recipe_adds_its_terms():
    """Eq. 6: 1/2 D_R term + 1/2 D_A term; D_R's alone (weight 1) for C+RF; C+MSE the MSE."""
    assert converter_loss_weights(PLDTConfig()) == {
        "adversarial_real_fake": 0.5,
        "adversarial_domain": 0.5,
    }
    assert converter_loss_weights(PLDTConfig(variant="rf+dd-neg")) == {
        "adversarial_real_fake": 0.5,
        "adversarial_domain": 0.5,
    }
    assert converter_loss_weights(PLDTConfig(variant="rf")) == {"adversarial_real_fake": 1.0}
    assert converter_loss_weights(PLDTConfig(variant="mse")) == {"mse": 1.0}
    assert converter_loss_weights(get_preset("robust")) == {
        "adversarial_real_fake": 0.5,
        "adversarial_domain": 0.5,
        "l1": 100.0,
        "ssim": 30.0,
        "feature_matching": 10.0,
        "pixel_contrast": 10.0,
    }


def np_bce_to_one(logits) -> float:
    """Eq. 6's non-saturating term written out: mean of -log(sigmoid(logits))."""
    logits = np.asarray(logits, np.float64)
    return float(np.mean(np.log1p(np.exp(-logits))))


def test_eq6_objective_is_half_each_adversarial_term_on_the_discriminators_logits():
    """The paper's converter loss equals 0.5 BCE(D_R(C(I_S)), 1) + 0.5 BCE(D_A(I_S, C(I_S)), 1),
    with the logits computed here from the networks themselves."""
    keras.utils.set_random_seed(0)
    model = PLDT(PLDTConfig(**TINY))
    model.compile()
    data = batch()
    source = data["source"]
    generated = model.converter(source, training=False)
    d_r = model.real_fake_discriminator(generated, training=False).numpy()
    pair = tf.concat([source, generated], -1)
    d_a = model.domain_discriminator(pair, training=False).numpy()
    expected = 0.5 * np_bce_to_one(d_r) + 0.5 * np_bce_to_one(d_a)
    got = model.converter_objective(as_batch(data), generated, False)
    # BCE of a handful of logits: a few float32 roundings of each.
    assert float(got.loss) == pytest.approx(expected, rel=1e-5)
    assert float(got.terms["adversarial_domain"]) == pytest.approx(np_bce_to_one(d_a), rel=1e-5)


def test_converter_terms_are_logged_and_sum_to_the_loss():
    config = get_preset("robust", **TINY)
    weights = converter_loss_weights(config)
    model = PLDT(config)
    model.compile()
    logs = model.train_step(batch())
    total = sum(weights[n] * float(logs[f"converter_{n}"]) for n in weights)
    assert float(logs["converter_loss"]) == pytest.approx(total, rel=1e-4)


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"variant": "mse", "spectral_norm": True}, "spectral_norm"),
        ({"variant": "mse", "diff_augment": "cutout"}, "diff_augment"),
        ({"variant": "rf", "feature_matching_weight": 1.0}, "feature_matching_weight"),
        ({"variant": "rf", "joint_domain_batch": True}, "joint_domain_batch"),
        ({"decay_learning_rate": 1e-3}, "decay_learning_rate"),
        ({"learning_rate": -1.0}, "learning_rate"),
    ],
)
def test_validate_refuses_switches_that_would_be_ignored(changes, field):
    with pytest.raises(ValueError, match=field):
        PLDTConfig(**changes)


def test_with_variant_resets_the_switches_a_variant_cannot_use():
    robust = get_preset("robust")
    mse = robust.with_variant("mse")
    assert not mse.spectral_norm and not mse.diff_augment and not mse.reconstruction_weight
    # Table 2's C+MSE keeps the pixel MSE alone: the preset's SSIM term and contrast go too.
    assert robust.ssim_weight and robust.pixel_contrast_weight
    assert not mse.ssim_weight and not mse.pixel_contrast_weight
    assert mse.source_augment == robust.source_augment  # shared by every variant
    rf = robust.with_variant("rf")
    assert rf.feature_matching_weight == 0 and rf.spectral_norm
    assert rf.pixel_contrast_weight == robust.pixel_contrast_weight  # reads no discriminator


def test_default_optimizers_follow_the_paper_schedule():
    # compile() with no optimizers; fit(steps_per_epoch=N) decays every rate after `epochs`.
    config = PLDTConfig(**TINY, epochs=1, decay_epochs=1)
    model = PLDT(config)
    model.compile()
    rate = lambda opt: float(keras.ops.convert_to_numpy(opt.learning_rate))  # noqa: E731
    seen = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda e, logs: seen.append({n: rate(o) for n, o in model.optimizers.items()})
    )
    model.fit(toy_dataset(16, 32, 8), steps_per_epoch=2, epochs=3, verbose=0, callbacks=[record])
    lr, decayed = config.learning_rate, config.decay_learning_rate
    assert seen[0]["converter"] == pytest.approx(decayed)  # after epoch 1's 2 steps: decayed
    assert seen[0]["domain_discriminator"] == pytest.approx(decayed)
    assert seen[0]["real_fake_discriminator"] == pytest.approx(decayed)
    fresh = PLDT(config)
    fresh.compile()
    assert rate(fresh.converter_optimizer) == pytest.approx(lr)
    assert all(isinstance(s, PaperSchedule) for s in fresh._schedules)
    assert len(fresh._schedules) == 3


def test_a_users_own_optimizer_is_left_as_given():
    model = PLDT(PLDTConfig(**TINY, epochs=1, decay_epochs=1))
    model.compile(converter_optimizer=keras.optimizers.Adam(1e-3))
    model.fit(toy_dataset(16, 32, 8), steps_per_epoch=2, epochs=2, verbose=0)
    rate = float(keras.ops.convert_to_numpy(model.converter_optimizer.learning_rate))
    assert rate == pytest.approx(1e-3)
