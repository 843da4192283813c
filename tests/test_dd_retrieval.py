"""Retrieval by DD-score (`evaluate.dd_retrieval_baseline`): a D_A trained on the toy problem
of tests/toy.py ranks each held-out source's associated target first."""

import types

import keras
import numpy as np
import pytest
import tensorflow as tf
from toy import toy_arrays, toy_dataset

from keras_pldt import evaluate as E
from keras_pldt import networks
from keras_pldt.config import PLDTConfig
from keras_pldt.data.batch import Batch
from keras_pldt.model import PLDT

N = 16  # held-out sources, each with its own product (one target image)
#: Top-1 of a trained critic: 4x chance.
TOP1 = 4 / N


def unit(images):
    return (np.asarray(images, np.float32) + 1.0) / 2.0


@pytest.fixture(scope="module")
def trained_model():
    """A PLDT whose D_A took 150 updates of Algorithm 1's D_A step (Eq. 5: associated,
    unassociated and generated pairs) on the toy problem; the converter and D_R stay
    untrained."""
    keras.utils.set_random_seed(0)
    model = PLDT(PLDTConfig(image_size=32, base_filters=8, batch_size=16, learning_rate=1e-3))
    model.compile()

    @tf.function
    def domain_step(data):
        batch = Batch(data["source"], data["target"], data["unassociated"], None)
        fake = model.converter(batch.source, training=False)
        return model._update("domain_discriminator", lambda: model.domain_loss(batch, fake, True))

    batches = iter(toy_dataset(256, 32, 16, seed=3))
    for _ in range(150):
        domain_step(next(batches))
    return model


@pytest.fixture
def held_out():
    """(EvalSet, TrainingSet) of toy samples unseen in training: candidates are the N targets."""
    arrays = toy_arrays(N, 32, seed=99)
    source, target, index = unit(arrays["source"]), unit(arrays["target"]), np.arange(N)
    evalset = E.EvalSet(
        split="test", source=source, product=index, pids=[f"p{i}" for i in index],
        first_target=target, targets=target, target_product=index,
    )  # fmt: skip
    return evalset, E.TrainingSet(source, index, target, index)


def test_trained_domain_discriminator_retrieves_the_associated_target(trained_model, held_out):
    evalset, train = held_out
    retrieved = E.dd_retrieval_baseline(trained_model, evalset, train)
    assert retrieved.shape == evalset.first_target.shape
    hits = np.all(retrieved == evalset.first_target, axis=(1, 2, 3))
    # chance is 1 / N; a D_A that ignores the source returns one candidate for every source
    assert hits.mean() >= TOP1, hits
    assert len(np.unique(retrieved.reshape(N, -1), axis=0)) >= N // 2

    scores = E.dd_scores(trained_model, evalset.source, train.targets)
    assert scores.shape == (N, N) and np.all(np.isfinite(scores))
    ahead = (scores > np.diag(scores)[:, None]).sum(1)  # candidates scored above the true one
    assert np.mean(ahead < 3) >= 0.8, ahead
    # the true pair scores above the average unassociated pair for nearly every source
    unassociated = (scores.sum(1) - np.diag(scores)) / (N - 1)
    assert np.mean(np.diag(scores) > unassociated) >= 0.9


def test_scores_are_inference_mode_and_batch_independent(trained_model, held_out):
    """Each pair's score is D_A(source ++ target) in inference mode: the same in any batch
    (batch norm's moving statistics, not the batch's), and in source-then-target order."""
    evalset, train = held_out
    d_a = trained_model.domain_discriminator
    assert networks.split_pair_conv(d_a) is not None  # the scores below come from its halves
    whole = E.dd_scores(trained_model, evalset.source, train.targets)
    pieces = E.dd_scores(trained_model, evalset.source, train.targets, batch=7)
    scale = float(np.abs(whole).max())
    np.testing.assert_allclose(pieces, whole, rtol=0, atol=1e-5 * scale)
    i, j = 3, 11
    pair = np.concatenate([evalset.source[i], train.targets[j]], -1)[None] * 2.0 - 1.0
    direct = float(np.asarray(d_a(pair, training=False)).reshape(()))
    np.testing.assert_allclose(whole[i, j], direct, rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("precision, spectral_norm", [("float32", True), ("bfloat16", False)])
def test_split_first_conv_is_domain_discriminator_of_the_stacked_pair(precision, spectral_norm):
    """`networks.split_pair_conv`: D_A's first conv on the source and on the target alone,
    summed, then the rest of D_A, is D_A on the channel-stacked pair (inference mode)."""
    from keras_pldt.precision import precision_policy

    cfg = PLDTConfig(image_size=32, base_filters=4, spectral_norm=spectral_norm)
    with precision_policy(precision):
        d_a = networks.build_domain_discriminator(cfg)
    pair = np.random.default_rng(1).uniform(-1, 1, (8, 32, 32, 6)).astype("float32")
    for _ in range(3):  # batch norm's moving statistics and the spectral norm away from init
        d_a(pair, training=True)
    half, rest = networks.split_pair_conv(d_a)
    x = tf.cast(pair, d_a.compute_dtype)
    split = np.asarray(tf.cast(rest(half(x[..., :3], 0) + half(x[..., 3:], 1)), tf.float32))
    direct = np.asarray(d_a(pair, training=False), np.float32)
    spread = float(np.ptp(direct))
    assert spread > 0
    rounding = 1e-4 if precision == "float32" else 5e-2  # of the logits' spread
    np.testing.assert_allclose(split, direct, rtol=0, atol=rounding * spread)
    swapped = np.asarray(tf.cast(rest(half(x[..., 3:], 0) + half(x[..., :3], 1)), tf.float32))
    assert np.abs(swapped - direct).max() > 10 * rounding * spread  # the halves are not alike


def test_split_first_conv_needs_a_domain_discriminator():
    cfg = PLDTConfig(image_size=32, base_filters=4)
    assert networks.split_pair_conv(networks.build_real_fake_discriminator(cfg)) is None
    assert networks.split_pair_conv(lambda pair, training=False: pair) is None
    # a layer before conv1 makes conv1 nonlinear in the pair: no split
    pair = keras.Input((32, 32, 6))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv0")(pair)
    x = keras.layers.Conv2D(4, 5, strides=2, name="conv1")(x)
    assert networks.split_pair_conv(keras.Model(pair, keras.layers.Flatten()(x))) is None


def test_needs_a_domain_discriminator(held_out):
    evalset, train = held_out
    model = PLDT(PLDTConfig(image_size=32, base_filters=4, batch_size=16, variant="rf"))
    with pytest.raises(E.EvalError, match="domain discriminator"):
        E.dd_retrieval_baseline(model, evalset, train)


def test_diagnostics_tell_an_associating_critic_from_a_source_blind_one(trained_model, held_out):
    evalset, train = held_out
    retrieved = E.dd_retrieval_baseline(trained_model, evalset, train)
    trained = E.dd_diagnostics(trained_model, evalset, retrieved)
    assert trained["dd_split_top1"] >= TOP1 and trained["dd_split_top5"] >= trained["dd_split_top1"]
    assert trained["dd_unique_retrievals"] >= N // 2

    # A critic that scores only the candidate (its mean brightness) and ignores the source.
    def blind(pair, training=False):
        return tf.reduce_mean(pair[..., 3:], axis=[1, 2, 3])

    model = types.SimpleNamespace(domain_discriminator=blind)
    retrieved = E.dd_retrieval_baseline(model, evalset, train)
    blind_scores = E.dd_diagnostics(model, evalset, retrieved)
    assert blind_scores["dd_unique_retrievals"] == 1
    assert blind_scores["dd_split_top1"] <= 1.0 / N  # one source's product at most


def test_evaluate_reports_the_diagnostics_in_the_dd_row(tmp_path):
    from keras_pldt.datasets.synthetic import generate
    from keras_pldt.train import train

    root = generate(tmp_path / "syn", num_products=8, sources_per_product=2, image_size=32)
    cfg = PLDTConfig(
        image_size=32, base_filters=4, batch_size=8, epochs=1, decay_epochs=0,
        test_fraction=0.5, val_fraction=0.0,
    )  # fmt: skip
    train(cfg, tmp_path / "run", data=root, verbose=0, print_fn=lambda *a: None)
    result = E.evaluate_run(tmp_path / "run", figure_rows=2, diagnostics=True)
    rows = {r["method"]: r for r in result["rows"]}
    dd = rows[E.DD_ROW]
    assert 1 <= dd["dd_unique_retrievals"] <= result["num_sources"]
    assert 0.0 <= dd["dd_split_top1"] <= dd["dd_split_top5"] <= 1.0
    assert dd["top1_chance"] == 1.0 / result["num_products"]
    assert not any(k.startswith("dd_") for r in result["rows"] if r is not dd for k in r)
    plain = E.evaluate_run(tmp_path / "run", figure_rows=2)  # the diagnostics are asked for
    assert not any(k.startswith("dd_") for r in plain["rows"] for k in r)
