import numpy as np
import pytest
import tensorflow as tf

from keras_pldt.augment import diff_augment, parse_policy


def images(n=4, size=16, channels=3, seed=0):
    return tf.constant(np.random.default_rng(seed).uniform(-1, 1, (n, size, size, channels)),
                       tf.float32)  # fmt: skip


def test_empty_policy_is_identity():
    x = images()
    assert diff_augment(x, "") is x


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_shapes_kept_and_images_changed(policy):
    x = images()
    y = diff_augment(x, policy)
    assert y.shape == x.shape
    assert float(tf.reduce_mean(tf.abs(y - x))) > 1e-3


def test_a_pair_gets_one_transformation():
    half = images(channels=3, seed=1)
    y = diff_augment(tf.concat([half, half], -1), "color,translation,cutout").numpy()
    np.testing.assert_allclose(y[..., :3], y[..., 3:], atol=1e-6)


def test_translation_moves_content_and_fills_white():
    tf.random.set_seed(0)
    x = -tf.ones((64, 16, 16, 3))
    y = diff_augment(x, "translation").numpy()
    white = (y == 1.0).all(-1).mean(axis=(1, 2))
    # Shifts of up to 1/8 of the size (2 px here) fill at most 1 - (14/16)^2 of an image.
    assert white.max() > 0.05 and len(set(white.tolist())) > 2
    assert white.max() <= 1 - (14 / 16) ** 2 + 1e-6


def test_cutout_greys_a_square():
    y = diff_augment(tf.ones((8, 16, 16, 3)), "cutout").numpy()
    grey = (y == 0.0).all(-1).mean(axis=(1, 2))
    assert np.all(grey > 0.05) and np.all(grey <= 0.25 + 1e-6)


def test_is_differentiable():
    x = images()
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(diff_augment(x, "color,translation,cutout") ** 2)
    grad = tape.gradient(total, x)
    assert grad is not None and float(tf.reduce_sum(tf.abs(grad))) > 0


def test_unknown_policy():
    with pytest.raises(ValueError, match="blur"):
        parse_policy("color,blur")
