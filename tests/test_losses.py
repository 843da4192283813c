import numpy as np
import tensorflow as tf
from helpers import assert_close, sum_ulps, tolerance

from keras_pldt import losses

# The losses are float32: a few roundings of each value (no cancellation in these sums).
ULPS = 8


def np_bce(logits, label):
    p = 1 / (1 + np.exp(-logits))
    return float(np.mean(-(label * np.log(p) + (1 - label) * np.log(1 - p))))


def test_eq2_matches_the_formula():
    real, fake = np.array([[2.0], [-1.0]]), np.array([[0.5], [-3.0]])
    got = float(losses.real_fake_loss(tf.constant(real), tf.constant(fake)))
    assert_close(got, 0.5 * (np_bce(real, 1) + np_bce(fake, 0)), ULPS)


def test_eq5_labels_and_neg_ablation():
    a, n, g = np.array([[1.5]]), np.array([[0.2]]), np.array([[-0.7]])
    full = float(losses.domain_loss(tf.constant(a), tf.constant(n), tf.constant(g)))
    assert_close(full, (np_bce(a, 1) + np_bce(n, 0) + np_bce(g, 0)) / 3, ULPS)
    no_neg = float(losses.domain_loss(tf.constant(a), None, tf.constant(g)))
    assert_close(no_neg, (np_bce(a, 1) + np_bce(g, 0)) / 2, ULPS)


def test_logits_are_numerically_stable():
    big = tf.constant([[80.0], [-80.0]])
    value = losses.real_fake_loss(big, -big)
    assert np.isfinite(float(value))
    assert_close(float(losses.converter_adversarial_term(tf.constant([[-100.0]]))), 100, ULPS)


def test_accuracy():
    assert float(losses.accuracy(tf.constant([[1.0], [-1.0], [2.0], [0.5]]), True)) == 0.75


def test_pixel_l1_and_mse_are_the_mean_errors():
    target = tf.constant(np.random.default_rng(3).uniform(-0.4, 0.4, (2, 8, 8, 3)), tf.float32)
    checker = 0.5 * tf.cast((tf.range(8)[:, None] + tf.range(8)[None, :]) % 2 * 2 - 1, tf.float32)
    detailed = target + checker[None, :, :, None]  # every pixel off by 0.5
    # Errors are roundings of the pixels (|detailed| < 1), averaged over every element.
    n = sum_ulps(target.shape.num_elements())
    assert_close(float(losses.pixel_l1(detailed, target)), 0.5, n, scale=detailed)
    assert_close(float(losses.pixel_mse(detailed, target)), 0.25, n, scale=detailed)


def test_ssim_loss_prefers_contrast_to_blur_at_equal_l1():
    rng = np.random.default_rng(0)
    target = tf.constant(rng.uniform(-0.5, 0.5, (2, 32, 32, 3)).astype("float32"))
    blurred = tf.nn.avg_pool2d(target, 5, 1, "SAME")
    l1 = float(losses.pixel_l1(blurred, target))
    shifted = tf.clip_by_value(target + l1, -1.0, 1.0)  # same structure, brightness moved
    # SSIM's statistics are sums over 11 x 11 windows; the L1 a mean over every pixel.
    assert float(losses.ssim_loss(target, target)) < tolerance(1.0, sum_ulps(11 * 11))
    assert_close(float(losses.pixel_l1(shifted, target)), l1, sum_ulps(target.shape.num_elements()))
    assert float(losses.ssim_loss(blurred, target)) > 2 * float(losses.ssim_loss(shifted, target))


def test_pixel_contrast_ranks_by_pixel_distance_and_ignores_same_product_rows():
    """InfoNCE over mean squared pixel distances: near 0 when each generated image is its own
    target and the targets are far apart, above log(n) when each is another row's target, and
    a twin row of the same product is not a negative; its gradient pulls a generated image
    towards its own target."""
    rng = np.random.default_rng(0)
    targets = rng.choice([-1.0, 1.0], (4, 8, 8, 3)).astype("float32")
    own = float(losses.pixel_contrast(tf.constant(targets), tf.constant(targets)))
    other = float(losses.pixel_contrast(tf.constant(np.roll(targets, 1, 0)), tf.constant(targets)))
    assert own < 1e-3 < np.log(4) < other
    twins = targets.copy()
    twins[1] = twins[0]
    unmasked = float(losses.pixel_contrast(tf.constant(twins), tf.constant(twins)))
    product = tf.constant([7, 7, 8, 9])
    masked = float(losses.pixel_contrast(tf.constant(twins), tf.constant(twins), product))
    assert masked < 1e-3 and unmasked > 0.5 * np.log(2)
    generated = tf.Variable(0.5 * targets)
    with tf.GradientTape() as tape:
        loss = losses.pixel_contrast(generated, tf.constant(targets))
    step = -tape.gradient(loss, generated).numpy()
    assert np.mean(step * (targets - generated.numpy())) > 0


def test_pixel_contrast_temperature_scales_the_logits():
    """The term at temperature T equals InfoNCE of -distance / T written out in numpy."""
    rng = np.random.default_rng(5)
    generated, targets = (rng.uniform(-1, 1, (4, 8, 8, 3)).astype("float32") for _ in "gt")
    flat_g, flat_t = generated.reshape(4, -1), targets.reshape(4, -1)
    distance = ((flat_g[:, None] - flat_t[None]) ** 2).mean(-1)
    for temperature in (losses.PIXEL_CONTRAST_TEMPERATURE, 0.5):
        logits = -distance / temperature
        logits -= logits.max(1, keepdims=True)
        expected = float(np.mean(np.log(np.exp(logits).sum(1)) - np.diag(logits)))
        got = float(losses.pixel_contrast(tf.constant(generated), tf.constant(targets),
                                          temperature=temperature))  # fmt: skip
        # A few roundings of each distance, scaled by 1 / T in the logits.
        assert abs(got - expected) <= 1e-4 * max(1.0, abs(expected) + np.abs(logits).max())
