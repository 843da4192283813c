import types

import numpy as np
import pytest
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


def test_eq6_non_saturating_half_half():
    r, d = np.array([[0.3], [-2.0]]), np.array([[1.0], [-0.5]])
    got = float(losses.converter_loss(tf.constant(r), tf.constant(d)))
    assert_close(got, 0.5 * np_bce(r, 1) + 0.5 * np_bce(d, 1), ULPS)
    assert_close(float(losses.converter_loss(tf.constant(r), None)), np_bce(r, 1), ULPS)


def test_logits_are_numerically_stable():
    big = tf.constant([[80.0], [-80.0]])
    value = losses.real_fake_loss(big, -big)
    assert np.isfinite(float(value))
    assert_close(float(losses.converter_adversarial_term(tf.constant([[-100.0]]))), 100, ULPS)


@pytest.mark.parametrize("kind", ["hinge", "lsgan"])
def test_alternative_losses_are_zero_at_their_optimum(kind):
    target_real = 1.0 if kind == "hinge" else 1.0
    real = tf.constant([[target_real + (1.0 if kind == "hinge" else 0.0)]])
    fake = tf.constant([[-2.0 if kind == "hinge" else 0.0]])
    assert float(losses.real_fake_loss(real, fake, kind)) == 0.0  # exact: relu(0), 0 ** 2
    assert float(losses.real_fake_loss(fake, real, kind)) > 0.5


def test_accuracy():
    assert float(losses.accuracy(tf.constant([[1.0], [-1.0], [2.0], [0.5]]), True)) == 0.75


def test_lowpass_l1_ignores_detail_finer_than_its_blocks():
    target = tf.constant(np.random.default_rng(3).uniform(-0.4, 0.4, (2, 8, 8, 3)), tf.float32)
    checker = 0.5 * tf.cast((tf.range(8)[:, None] + tf.range(8)[None, :]) % 2 * 2 - 1, tf.float32)
    detailed = target + checker[None, :, :, None]  # same 2x2 block means, different pixels
    # Errors are roundings of the pixels (|detailed| < 1), block means of 4 or 16 of them.
    assert_close(float(losses.pixel_l1(detailed, target)), 0.5, ULPS, scale=detailed)
    assert float(losses.pixel_l1(detailed, target, lowpass=2)) < tolerance(detailed, sum_ulps(4))
    shifted = target + 0.25  # a colour change is still penalised in full
    assert_close(
        float(losses.pixel_l1(shifted, target, lowpass=4)), 0.25, sum_ulps(16), scale=shifted
    )


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


def test_gradient_difference_penalises_blur_not_edge_polarity():
    rng = np.random.default_rng(1)
    target = tf.constant(rng.uniform(-0.5, 0.5, (2, 32, 32, 3)).astype("float32"))
    # Up to the rounding of a difference of neighbouring pixels (|pixels| < 1):
    assert float(losses.gradient_difference(target, target)) < tolerance(1.0, ULPS)
    # The same edges with the other side darker, or on a brighter background, cost nothing ...
    assert float(losses.gradient_difference(-target, target)) < tolerance(1.0, ULPS)
    assert float(losses.gradient_difference(target + 0.3, target)) < tolerance(1.0, ULPS)
    # ... a blurred copy, which L1 prefers to the inverted one, costs the lost edge strength.
    blurred = tf.nn.avg_pool2d(target, 5, 1, "SAME")
    assert float(losses.pixel_l1(blurred, target)) < float(losses.pixel_l1(-target, target))
    assert float(losses.gradient_difference(blurred, target)) > 0.1


def test_focal_frequency_weights_the_worst_frequencies_fully():
    rng = np.random.default_rng(2)
    target = tf.constant(rng.uniform(-0.5, 0.5, (2, 32, 32, 3)).astype("float32"))
    assert float(losses.focal_frequency(target, target)) < tolerance(1.0, ULPS) ** 2  # squares
    # An error at one frequency (a stripe pattern) gets weight 1: the loss is its MSE.
    stripes = 0.2 * np.cos(2 * np.pi * 4 * np.arange(32) / 32)[None, None, :, None]
    striped = target + tf.constant(stripes, tf.float32)
    # (Parseval; the 2D FFT sums 32 x 32 pixels)
    assert_close(
        float(losses.focal_frequency(striped, target)),
        float(losses.pixel_mse(striped, target)),
        sum_ulps(32 * 32),
    )
    # Noise of the same energy spreads over every frequency, each far from the worst one.
    noise = rng.normal(0.0, 1.0, (2, 32, 32, 3)).astype("float32")
    noise *= np.sqrt(float(losses.pixel_mse(striped, target)) / np.mean(noise**2))
    noisy = target + tf.constant(noise)
    assert float(losses.focal_frequency(noisy, target)) < 0.7 * float(
        losses.pixel_mse(noisy, target)
    )


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


def test_code_contrast_is_low_for_matching_codes_and_ignores_same_product_rows():
    """InfoNCE over the batch: near 0 when each source's code is its own product image's (and
    the others orthogonal), log(n)-ish when codes are unrelated; rows of the same product are
    not negatives."""
    eye = np.eye(4, 8, dtype="float32")[:, None, None, :]  # codes shaped [B, 1, 1, d]
    matched = float(losses.code_contrast(tf.constant(eye), tf.constant(eye)))
    shifted = float(losses.code_contrast(tf.constant(eye), tf.constant(np.roll(eye, 1, 0))))
    assert matched < 1e-3 < np.log(4) < shifted
    twins = eye.copy()
    twins[1] = twins[0]  # rows 0 and 1: the same product, the same image
    unmasked = float(losses.code_contrast(tf.constant(twins), tf.constant(twins)))
    product = tf.constant([7, 7, 8, 9])
    masked = float(losses.code_contrast(tf.constant(twins), tf.constant(twins), product))
    assert masked < 1e-3 and unmasked > 0.5 * np.log(2)


def test_pixel_contrast_bank_adds_negatives_but_not_the_row_own_product_or_empty_slots():
    """`bank`: product images of earlier batches as further columns of the InfoNCE. An image of
    another product that a generated image is nearer to raises the loss; one of the row's own
    product, or an empty slot (id < 0), leaves it as without the bank."""
    rng = np.random.default_rng(1)
    targets = tf.constant(rng.choice([-1.0, 1.0], (4, 8, 8, 3)).astype("float32"))
    generated = 0.9 * targets
    product = tf.constant([0, 1, 2, 3])
    alone = float(losses.pixel_contrast(generated, targets, product))
    decoys = generated + 0.01  # nearer to each generated image than its own target is

    def with_bank(ids):
        bank = (tf.concat([decoys, targets], 0), tf.constant(ids))
        return float(losses.pixel_contrast(generated, targets, product, bank=bank))

    own = with_bank([0, 1, 2, 3, -1, -1, -1, -1])
    assert abs(own - alone) <= 1e-6 * max(1.0, abs(alone))
    other = with_bank([1, 2, 3, 0, -1, -1, -1, -1])
    assert other > alone + np.log(2) - 0.1
    with pytest.raises(ValueError, match="bank needs the batch's product ids"):
        losses.pixel_contrast(generated, targets, bank=(targets, tf.constant([5, 6, 7, 8])))


def test_pixel_contrast_temperature_is_the_term_temperature_and_refused_alone():
    """`pixel_contrast_temperature` reaches the converter's term; without the term it is
    refused, and it must be positive."""
    from keras_pldt.config import PLDTConfig

    rng = np.random.default_rng(5)
    generated, targets = (tf.constant(rng.uniform(-1, 1, (4, 8, 8, 3)), tf.float32) for _ in "gt")
    views = types.SimpleNamespace(
        generated=generated, target=targets, product=None, contrast_bank=None
    )
    for temperature in (0.05, 0.5):
        config = PLDTConfig(
            variant="rf", pixel_contrast_weight=1.0, pixel_contrast_temperature=temperature
        )
        (term,) = [t for t in losses.converter_terms(config) if t.name == "pixel_contrast"]
        expected = losses.pixel_contrast(generated, targets, temperature=temperature)
        assert float(term.fn(views)) == float(expected)
    sharp, soft = (
        float(losses.pixel_contrast(generated, targets, temperature=t)) for t in (0.05, 0.5)
    )
    assert sharp != soft
    with pytest.raises(ValueError, match="pixel_contrast_temperature=0.5 would be ignored"):
        PLDTConfig(pixel_contrast_temperature=0.5)
    with pytest.raises(ValueError, match="pixel_contrast_temperature must be > 0"):
        PLDTConfig(variant="rf", pixel_contrast_weight=1.0, pixel_contrast_temperature=0.0)
