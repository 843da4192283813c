import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_close, sum_ulps, tolerance

from keras_pldt.augment import augment_sources, diff_augment, parse_policy

SEED = tf.constant([0, 7], tf.int64)


def images(n=4, size=16, channels=3, seed=0):
    return tf.constant(np.random.default_rng(seed).uniform(-1, 1, (n, size, size, channels)),
                       tf.float32)  # fmt: skip


def test_empty_policy_is_identity():
    x = images()
    assert diff_augment(x, "", SEED) is x


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_shapes_kept_and_images_changed(policy):
    x = images()
    y = diff_augment(x, policy, SEED)
    assert y.shape == x.shape
    assert float(tf.reduce_mean(tf.abs(y - x))) > 1e-3


def test_a_pair_gets_one_transformation():
    half = images(channels=3, seed=1)
    y = diff_augment(tf.concat([half, half], -1), "color,translation,cutout", SEED).numpy()
    # The same arithmetic on both halves; its longest sums are the contrast means of 16 x 16 x 3.
    assert_close(y[..., :3], y[..., 3:], sum_ulps(16 * 16 * 3))


def test_translation_moves_content_and_fills_white():
    x = -tf.ones((64, 16, 16, 3))
    y = diff_augment(x, "translation", SEED).numpy()
    white = (y == 1.0).all(-1).mean(axis=(1, 2))
    # Shifts of up to 1/8 of the size (2 px here) fill at most 1 - (14/16)^2 of an image.
    assert white.max() > 0.05 and len(set(white.tolist())) > 2
    assert white.max() <= 1 - (14 / 16) ** 2  # pixel counts / 256: exact


def test_cutout_greys_a_square():
    y = diff_augment(tf.ones((8, 16, 16, 3)), "cutout", SEED).numpy()
    grey = (y == 0.0).all(-1).mean(axis=(1, 2))
    assert np.all(grey > 0.05) and np.all(grey <= 0.25)  # pixel counts / 256: exact


def test_is_differentiable():
    x = images()
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(diff_augment(x, "color,translation,cutout", SEED) ** 2)
    grad = tape.gradient(total, x)
    assert grad is not None and float(tf.reduce_sum(tf.abs(grad))) > 0


def test_same_seed_same_draws_other_seed_other_draws():
    # Stateless: what a resumed run relies on (the model seeds each call from its step).
    x = images(n=8)
    policy = "color,translation,cutout"
    first, again = diff_augment(x, policy, SEED), diff_augment(x, policy, SEED)
    np.testing.assert_array_equal(first.numpy(), again.numpy())
    other = diff_augment(x, policy, tf.constant([0, 8], tf.int64))
    assert float(tf.reduce_max(tf.abs(first - other))) > 1e-3


def test_unknown_policy():
    with pytest.raises(ValueError, match="blur"):
        parse_policy("color,blur")


def test_source_flip_mirrors_each_photo_or_keeps_it():
    x = images(n=16, size=16).numpy()
    y = augment_sources(tf.constant(x), "flip", SEED).numpy()
    mirrored = [np.array_equal(a, b[:, ::-1]) for a, b in zip(y, x, strict=True)]  # copies
    kept = [np.array_equal(a, b) for a, b in zip(y, x, strict=True)]
    assert all(m or k for m, k in zip(mirrored, kept, strict=True))
    assert any(mirrored) and any(kept)  # each image flipped with probability 1/2


def test_source_augmentation_is_a_function_of_the_seed():
    x = images(n=8, size=16)
    policy = "flip,crop,rotate,light"
    a, b = (augment_sources(x, policy, SEED).numpy() for _ in range(2))
    np.testing.assert_array_equal(a, b)
    other = augment_sources(x, policy, tf.constant([0, 8], tf.int64)).numpy()
    assert np.abs(a - other).mean() > 1e-3
    assert augment_sources(x, "", SEED) is x


def test_source_crop_zooms_in():
    # A centred square grows under a zoom-in crop (never shrinks: the scale is in [0.75, 1]).
    x = -np.ones((8, 32, 32, 3), "float32")
    x[:, 12:20, 12:20] = 1.0
    y = augment_sources(tf.constant(x), "crop", SEED).numpy()
    area = (y[..., 0] > 0).sum(axis=(1, 2))
    assert area.min() >= 60 and area.max() > 80  # 8 x 8 = 64 before


def test_source_rotate_turns_a_bar():
    # A horizontal bar rotated by up to 10 degrees covers more rows, never fewer.
    x = -np.ones((8, 32, 32, 3), "float32")
    x[:, 15:17, 4:28] = 1.0
    y = augment_sources(tf.constant(x), "rotate", SEED).numpy()
    rows = (y[..., 0] > 0).any(axis=2).sum(axis=1)
    assert rows.min() >= 2 and rows.max() > 3


def test_source_rotate_and_light_stay_in_range_and_change_the_photo():
    x = images(n=8, size=16)
    for policy in ("rotate", "light"):
        y = augment_sources(x, policy, SEED).numpy()
        # bilinear weights sum to 1 up to a few roundings
        assert y.shape == x.shape and np.abs(y).max() <= 1.0 + tolerance(1.0, 4)
        assert np.abs(y - x.numpy()).mean() > 1e-3, policy


def test_source_light_keeps_the_colour_order():
    # Brightness and contrast move every channel alike: a red pixel stays reddest.
    x = np.zeros((16, 8, 8, 3), "float32")
    x[..., 0], x[..., 1], x[..., 2] = 0.4, -0.2, -0.5
    y = augment_sources(tf.constant(x), "light", SEED).numpy()
    assert (y[..., 0] >= y[..., 1]).all() and (y[..., 1] >= y[..., 2]).all()
    assert np.abs(y - x).max() > 0.02


def test_unknown_source_policy():
    with pytest.raises(ValueError, match="unknown source augmentation"):
        augment_sources(images(), "flip,blur", SEED)
