"""The paper's losses (Eq. 2, 5, 6) and the recommended recipe's pixel terms, as pure functions.

The discriminator losses take *logits*: `sigmoid_cross_entropy_with_logits` is the numerically
stable form of Table 1's sigmoid outputs. Pixel terms take images in [-1, 1].
"""

from __future__ import annotations

import tensorflow as tf

from keras_pldt.metrics import ssim_tf

#: The temperature of `pixel_contrast`, over mean squared pixel distances in [-1, 1] units.
PIXEL_CONTRAST_TEMPERATURE = 0.05


def discriminator_term(logits, positive: bool):
    """One term of a discriminator loss: BCE pushing `logits` towards label 1 (positive) or 0."""
    logits = tf.cast(logits, tf.float32)
    labels = tf.fill(tf.shape(logits), 1.0 if positive else 0.0)
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))


def real_fake_loss(real_logits, fake_logits):
    """Eq. 2, the loss of D_R: real product images -> 1, generated images -> 0 (averaged)."""
    return 0.5 * (discriminator_term(real_logits, True) + discriminator_term(fake_logits, False))


def domain_loss(associated_logits, unassociated_logits, generated_logits):
    """Eq. 5, the loss of D_A, averaged over the pairings it sees.

    (source, associated target) -> 1; (source, unassociated real target) -> 0;
    (source, generated target) -> 0. `unassociated_logits=None` is the C+RF+DD-Neg ablation.
    Using every pairing each batch is the expectation of the paper's equal-probability choice.
    """
    terms = [discriminator_term(associated_logits, True)]
    if unassociated_logits is not None:
        terms.append(discriminator_term(unassociated_logits, False))
    terms.append(discriminator_term(generated_logits, False))
    return tf.add_n(terms) / len(terms)


def converter_adversarial_term(generated_logits):
    """Eq. 6 in the non-saturating form: the converter pushes D(generated) towards 'real'.

    Minimising BCE(D(C(I_S)), 1) increases the discriminator's loss on generated images with
    strong gradients early in training, instead of minimising -L^D directly.
    """
    return discriminator_term(generated_logits, True)


def accuracy(logits, positive: bool):
    """Fraction of logits on the correct side of the decision boundary (sigmoid 0.5)."""
    logits = tf.cast(logits, tf.float32)
    hit = logits > 0.0 if positive else logits < 0.0
    return tf.reduce_mean(tf.cast(hit, tf.float32))


def pixel_mse(generated, target):
    """The C+MSE baseline's loss: mean squared error in [-1, 1] pixel units."""
    diff = tf.cast(generated, tf.float32) - tf.cast(target, tf.float32)
    return tf.reduce_mean(tf.square(diff))


def pixel_l1(generated, target):
    """Mean absolute error to the associated target in [-1, 1] pixel units (pix2pix's L1)."""
    return tf.reduce_mean(tf.abs(tf.cast(generated, tf.float32) - tf.cast(target, tf.float32)))


def ssim_loss(generated, target):
    """1 - C-SSIM (Table 3's metric, on [0, 1] images) to the associated target.

    Beside L1 it asks for the target's local contrast and structure, not only its mean (Zhao
    et al., "Loss functions for image restoration", 2017): a blurred output loses on SSIM's
    contrast term wherever the product photo has edges.
    """
    to_unit = lambda x: (tf.cast(x, tf.float32) + 1.0) / 2.0
    return 1.0 - tf.reduce_mean(ssim_tf(to_unit(generated), to_unit(target)))


def feature_matching(real_features, fake_features):
    """pix2pixHD-style feature matching: mean L1 between D_A's features of the associated pair
    (source, I_T) and of the generated pair (source, C(I_S)), layer by layer (real side fixed)."""
    terms = [
        tf.reduce_mean(tf.abs(tf.stop_gradient(tf.cast(r, tf.float32)) - tf.cast(f, tf.float32)))
        for r, f in zip(real_features, fake_features, strict=True)
    ]
    return tf.add_n(terms) / len(terms)


def pixel_contrast(generated, target, product=None, temperature=PIXEL_CONTRAST_TEMPERATURE):
    """InfoNCE (van den Oord et al. 2018) over pixel distances: each generated image must be
    nearer (mean squared pixel distance, over `temperature`) to its own product image than to
    the batch's other products' (rows of the same `product` id are not counted as others).

    Where the pixel L1 pulls C(I_S) to its target alone, this also pushes it from the products
    it could be taken for: the relevance Eq. 5's unassociated pairs ask of D_A, as a pixel term.
    """
    pixels = tf.cast(tf.reduce_prod(tf.shape(generated)[1:]), tf.float32)
    logits = -pairwise_squared_distance(generated, target) / pixels / temperature
    n = tf.shape(logits)[0]
    if product is not None:
        product = tf.reshape(tf.cast(product, tf.int32), [-1])
        others_same = tf.equal(product[:, None], product[None, :]) & ~tf.eye(n, dtype=tf.bool)
        logits = tf.where(others_same, tf.fill(tf.shape(logits), -1e9), logits)
    return tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.range(n), logits=logits)
    )


def pairwise_squared_distance(a, b):
    """[A, B] squared L2 distances between the flattened rows of `a` and of `b` (float32)."""
    flat = lambda x: tf.reshape(tf.cast(x, tf.float32), [tf.shape(x)[0], -1])
    a, b = flat(a), flat(b)
    return (
        tf.reduce_sum(tf.square(a), 1)[:, None]
        + tf.reduce_sum(tf.square(b), 1)[None, :]
        - 2.0 * tf.matmul(a, b, transpose_b=True)
    )
