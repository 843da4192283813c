"""The paper's losses (Eq. 2, 5, 6) as small pure functions on discriminator *logits*.

Computing on logits (`sigmoid_cross_entropy_with_logits`) is the numerically stable form of
the sigmoid outputs of Table 1. `kind` selects the adversarial form: "bce" is the paper's;
"hinge" and "lsgan" are the alternatives a config can switch to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import keras
import tensorflow as tf

from keras_pldt.metrics import ssim_tf
from keras_pldt.networks import batch_norm_statistics


def _bce(logits, label: float):
    labels = tf.fill(tf.shape(logits), tf.constant(label, logits.dtype))
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))


def discriminator_term(logits, positive: bool, kind: str = "bce"):
    """One term of a discriminator loss: push `logits` towards label 1 (positive) or 0."""
    logits = tf.cast(logits, tf.float32)
    if kind == "bce":
        return _bce(logits, 1.0 if positive else 0.0)
    if kind == "hinge":
        return tf.reduce_mean(tf.nn.relu(1.0 - logits if positive else 1.0 + logits))
    if kind == "lsgan":
        return tf.reduce_mean(tf.square(logits - (1.0 if positive else 0.0)))
    raise ValueError(f"unknown adversarial loss {kind!r}")


def real_fake_loss(real_logits, fake_logits, kind: str = "bce"):
    """Eq. 2, the loss of D_R: real product images -> 1, generated images -> 0 (averaged)."""
    return 0.5 * (
        discriminator_term(real_logits, True, kind) + discriminator_term(fake_logits, False, kind)
    )


def domain_loss(associated_logits, unassociated_logits, generated_logits, kind: str = "bce"):
    """Eq. 5, the loss of D_A, averaged over the pairings it sees.

    (source, associated target) -> 1; (source, unassociated real target) -> 0;
    (source, generated target) -> 0. `unassociated_logits=None` is the C+RF+DD-Neg ablation.
    Using every pairing each batch is the expectation of the paper's equal-probability choice.
    """
    terms = [discriminator_term(associated_logits, True, kind)]
    if unassociated_logits is not None:
        terms.append(discriminator_term(unassociated_logits, False, kind))
    terms.append(discriminator_term(generated_logits, False, kind))
    return tf.add_n(terms) / len(terms)


def converter_adversarial_term(generated_logits, kind: str = "bce"):
    """Eq. 6 in the non-saturating form: the converter pushes D(generated) towards 'real'.

    Minimising BCE(D(C(I_S)), 1) increases the discriminator's loss on generated images with
    strong gradients early in training, instead of minimising -L^D directly.
    """
    generated_logits = tf.cast(generated_logits, tf.float32)
    if kind == "bce":
        return _bce(generated_logits, 1.0)
    if kind == "hinge":
        return -tf.reduce_mean(generated_logits)
    if kind == "lsgan":
        return tf.reduce_mean(tf.square(generated_logits - 1.0))
    raise ValueError(f"unknown adversarial loss {kind!r}")


def _info_nce(logits, product=None, column_product=None):
    """InfoNCE (van den Oord et al. 2018) of a [B, B + M] similarity matrix: row i must pick
    column i; columns of the row's own `product` other than i are not counted as negatives, nor
    the M further columns of `column_product` < 0 (empty)."""
    n = tf.shape(logits)[0]
    if product is not None:
        product = product_ids(product)
        columns = product
        if column_product is not None:
            columns = tf.concat([product, tf.reshape(tf.cast(column_product, tf.int32), [-1])], 0)
        own = tf.eye(n, tf.shape(columns)[0], dtype=tf.bool)
        ignored = (tf.equal(product[:, None], columns[None, :]) & ~own) | (columns < 0)[None, :]
        logits = tf.where(ignored, tf.fill(tf.shape(logits), -1e9), logits)
    return tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.range(n), logits=logits)
    )


def _flat(x):
    x = tf.cast(x, tf.float32)
    return tf.reshape(x, [tf.shape(x)[0], -1])


def code_contrast(source_code, target_code, product=None, temperature: float = 0.1):
    """InfoNCE (in CLIP's form) between the converter's codes of the sources and of the batch's
    product images: each source's code must be nearer (cosine, over `temperature`) to its own
    product's image than to the batch's other products' (rows of the same `product` are not
    counted as others). A product-identity signal for the encoder that needs no class count and
    holds for products never trained on."""
    unit = lambda code: tf.math.l2_normalize(_flat(code), axis=1)  # noqa: E731
    logits = tf.matmul(unit(source_code), unit(target_code), transpose_b=True) / temperature
    return _info_nce(logits, product)


def pixel_contrast(generated, target, product=None, temperature: float = 0.05, bank=None):
    """InfoNCE over pixel distances: each generated image must be nearer (mean squared pixel
    distance, over `temperature`) to its own product image than to the batch's other products'
    (rows of the same `product` are not counted as others). Where the pixel MSE pulls C(I_S)
    to its target alone, this also pushes it from the products it could be taken for: the
    relevance the paper asks of D_A's unassociated pairs (Eq. 5), as a pixel term.

    `bank` = (images [M, S, S, 3], their product ids [M]): product images of earlier batches as
    further negatives (`pixel_contrast_bank`), those of a row's own product and of an id < 0
    (an empty slot) not counted; needs `product`."""
    pixels = tf.cast(tf.reduce_prod(tf.shape(generated)[1:]), tf.float32)
    candidates, column_product = target, None
    if bank is not None:
        if product is None:
            raise ValueError("pixel_contrast's bank needs the batch's product ids")
        candidates = tf.concat([tf.cast(target, tf.float32), tf.cast(bank[0], tf.float32)], 0)
        column_product = bank[1]
    distance = pairwise_squared_distance(generated, candidates) / pixels
    return _info_nce(-distance / temperature, product, column_product)


class ContrastBank(keras.layers.Layer):
    """The pixel contrast's bank (`pixel_contrast_bank` = N): the product images of the last N
    training targets (float16) and their product ids (-1: an empty slot), a ring that `push`
    overwrites oldest first. Under several replicas it keeps the first replica's targets."""

    def __init__(self, size: int, image_size: int, **kwargs):
        super().__init__(**kwargs)
        weight = lambda name, shape, dtype, value: self.add_weight(  # noqa: E731
            shape=shape,
            initializer=keras.initializers.Constant(value),
            dtype=dtype,
            trainable=False,
            autocast=False,
            aggregation="only_first_replica",
            name=name,
        )
        self.images = weight("images", (size, image_size, image_size, 3), "float16", 0)
        self.products = weight("products", (size,), "int32", -1)
        self.next_slot = weight("next_slot", (), "int32", 0)
        self.built = True

    @property
    def contents(self):
        """(images, product ids): the `bank` argument of `pixel_contrast`."""
        return self.images, self.products

    def push(self, target, product):
        """Write a batch's product images and ids over the bank's oldest slots."""
        n, size = tf.shape(target)[0], self.products.shape[0]
        slots = ((self.next_slot + tf.range(n)) % size)[:, None]
        images = tf.tensor_scatter_nd_update(self.images.value, slots, tf.cast(target, "float16"))
        self.images.assign(images)
        ids = tf.tensor_scatter_nd_update(self.products.value, slots, product_ids(product))
        self.products.assign(ids)
        self.next_slot.assign((self.next_slot + n) % size)


def product_ids(product):
    """Product ids as a flat int32 tensor."""
    return tf.reshape(tf.cast(product, tf.int32), [-1])


def pairwise_squared_distance(a, b):
    """[A, B] squared L2 distances between the flattened rows of `a` and of `b` (float32)."""
    a, b = _flat(a), _flat(b)
    return (
        tf.reduce_sum(tf.square(a), 1)[:, None]
        + tf.reduce_sum(tf.square(b), 1)[None, :]
        - 2.0 * tf.matmul(a, b, transpose_b=True)
    )


#: The converter's terms that read a discriminator (D_R's or D_A's logits or D_A's features):
#: with `adversarial_encoder=False` their gradients stop at the converter's code.
DISCRIMINATOR_TERMS = ("adversarial_real_fake", "adversarial_domain", "feature_matching")


class Term(NamedTuple):
    """One weighted term of the converter's objective. `fn(views)` reads what it needs from
    the model's views of a batch: `source`, `target`, `generated`, `converter`, the logits
    `real_fake` = D_R(C(I_S)) and `domain` = D_A(I_S, C(I_S)), `domain_features` =
    (D_A features of (I_S, I_T), of (I_S, C(I_S))), the codes `source_code` and `target_code`,
    and the batch's `product` ids (or None): `ConverterViews`."""

    name: str
    weight: float
    fn: Callable


def converter_terms(config) -> list[Term]:
    """The converter's objective as a named list of weighted terms, built from the config.

    Eq. 6 (non-saturating): 1/2 D_R term + 1/2 D_A term (the D_R term alone for C+RF); C+MSE's
    pixel MSE; then the config's extra terms (L1, pixel MSE, SSIM, gradient difference, focal
    frequency, D_A feature matching, identity, code and pixel contrast), each with its weight. The
    objective is their weighted sum.
    """
    kind, terms = config.adversarial_loss, []
    adversarial = 0.5 if config.uses_domain else 1.0
    if config.uses_real_fake:
        fn = lambda v: converter_adversarial_term(v.real_fake, kind)  # noqa: E731
        terms.append(Term("adversarial_real_fake", adversarial, fn))
    if config.uses_domain:
        fn = lambda v: converter_adversarial_term(v.domain, kind)  # noqa: E731
        terms.append(Term("adversarial_domain", adversarial, fn))
    if config.variant == "mse":
        terms.append(Term("mse", 1.0, lambda v: pixel_mse(v.generated, v.target)))
    lowpass = config.reconstruction_lowpass
    extras = {
        "l1": (config.reconstruction_weight, lambda v: pixel_l1(v.generated, v.target, lowpass)),
        "l2": (config.mse_weight, lambda v: pixel_mse(v.generated, v.target)),
        "ssim": (config.ssim_weight, lambda v: ssim_loss(v.generated, v.target)),
        "gradient": (config.gradient_weight, lambda v: gradient_difference(v.generated, v.target)),
        "frequency": (config.frequency_weight, lambda v: focal_frequency(v.generated, v.target)),
        "feature_matching": (
            config.feature_matching_weight,
            lambda v: feature_matching(*v.domain_features),
        ),
        "identity": (config.identity_weight, lambda v: identity_l1(v.converter, v.target)),
        "code_contrast": (
            config.code_contrast_weight,
            lambda v: code_contrast(v.source_code, v.target_code, v.product),
        ),
        "pixel_contrast": (
            config.pixel_contrast_weight,
            lambda v: pixel_contrast(
                v.generated,
                v.target,
                v.product,
                temperature=config.pixel_contrast_temperature,
                bank=v.contrast_bank,
            ),
        ),
    }
    terms += [Term(name, weight, fn) for name, (weight, fn) in extras.items() if weight]
    return terms


def converter_loss(real_fake_logits, domain_logits, kind: str = "bce"):
    """Eq. 6: 1/2 of the D_R term plus 1/2 of the D_A term (just D_R when D_A is absent)."""
    if domain_logits is None:
        return converter_adversarial_term(real_fake_logits, kind)
    return 0.5 * converter_adversarial_term(real_fake_logits, kind) + 0.5 * (
        converter_adversarial_term(domain_logits, kind)
    )


def pixel_mse(generated, target):
    """The C+MSE baseline's loss: mean squared error in [-1, 1] pixel units."""
    diff = tf.cast(generated, tf.float32) - tf.cast(target, tf.float32)
    return tf.reduce_mean(tf.square(diff))


def pixel_l1(generated, target, lowpass: int = 1):
    """Mean absolute error in [-1, 1] pixel units (the optional reconstruction term).

    With `lowpass = k > 1` both images are first averaged over k x k blocks: the term then
    constrains only the layout and colours (what the source determines) and leaves the detail
    finer than k pixels, which no single target can pin down, to the discriminators.
    """
    generated, target = tf.cast(generated, tf.float32), tf.cast(target, tf.float32)
    if lowpass > 1:
        generated = tf.nn.avg_pool2d(generated, lowpass, lowpass, "VALID")
        target = tf.nn.avg_pool2d(target, lowpass, lowpass, "VALID")
    return tf.reduce_mean(tf.abs(generated - target))


def ssim_loss(generated, target):
    """1 - C-SSIM (`tf.image.ssim` with the settings of Table 3's metric, on [0, 1] images).

    Next to the L1 term it asks for the target's local contrast and structure, not only its
    mean (Zhao et al., "Loss functions for image restoration", 2017): a blurred output loses
    on SSIM's contrast term wherever the product photo has edges, where it wins on L1.
    """
    to_unit = lambda x: (tf.cast(x, tf.float32) + 1.0) / 2.0  # noqa: E731
    return 1.0 - tf.reduce_mean(ssim_tf(to_unit(generated), to_unit(target)))


def gradient_difference(generated, target):
    """The gradient difference loss of Mathieu et al. (ICLR 2016, Eq. 5, alpha = 1):
    E | |dI_gen| - |dI_T| | over horizontal and vertical neighbour differences.

    L1 to a target the source cannot pin down exactly is minimised by a median image, flat
    where the candidates' edges disagree. This term compares edge *strengths* instead of
    values: a blurred output loses wherever the product photo has an edge, an edge of the
    right strength scores the same whichever side is darker.
    """
    generated, target = tf.cast(generated, tf.float32), tf.cast(target, tf.float32)

    def strengths(x):
        return tf.abs(x[:, 1:, :, :] - x[:, :-1, :, :]), tf.abs(x[:, :, 1:, :] - x[:, :, :-1, :])

    (gy, gx), (ty, tx) = strengths(generated), strengths(target)
    return 0.5 * (tf.reduce_mean(tf.abs(gy - ty)) + tf.reduce_mean(tf.abs(gx - tx)))


def focal_frequency(generated, target, alpha: float = 1.0):
    """Focal frequency loss (Jiang et al., ICCV 2021, Eq. 2-4): the squared distance between
    the images' 2-D Fourier spectra (orthonormal, per channel), each frequency weighted by its
    own current error |F_gen - F_T|^alpha scaled to [0, 1] per image (no gradient through
    the weights).

    Networks fit low frequencies first (spectral bias); the weights move the effort to the
    frequencies still wrong, which for a converter trained briefly are the edges and detail.
    """
    generated, target = tf.cast(generated, tf.float32), tf.cast(target, tf.float32)
    size = tf.cast(tf.shape(generated)[1] * tf.shape(generated)[2], tf.float32)

    def spectrum(x):  # [B, C, H, W] complex, orthonormal
        x = tf.transpose(x, [0, 3, 1, 2])
        return tf.signal.fft2d(tf.complex(x, tf.zeros_like(x))) / tf.complex(tf.sqrt(size), 0.0)

    diff = spectrum(generated) - spectrum(target)
    distance = tf.square(tf.math.real(diff)) + tf.square(tf.math.imag(diff))
    weight = tf.pow(tf.sqrt(distance), alpha)
    weight = weight / tf.maximum(tf.reduce_max(weight, axis=[2, 3], keepdims=True), 1e-12)
    return tf.reduce_mean(tf.stop_gradient(weight) * distance)


def identity_l1(converter, target):
    """The identity term of domain transfer networks (Taigman et al. 2017, L_TID; CycleGAN's
    identity loss): a product image given as the source should convert to itself,
    E |C(I_T) - I_T|. It trains the decoder to draw every product image sharply from its code.

    The converter runs in inference mode here (batch norm with its moving statistics, which
    it does not update), as deployed: product-image batches must not shift the statistics
    that sources are normalised with. Gradients still reach every weight."""
    return pixel_l1(converter(target, training=False), target)


def accuracy(logits, positive: bool):
    """Fraction of logits on the correct side of the decision boundary (sigmoid 0.5)."""
    logits = tf.cast(logits, tf.float32)
    hit = logits > 0.0 if positive else logits < 0.0
    return tf.reduce_mean(tf.cast(hit, tf.float32))


def r1_penalty(discriminator, real_inputs):
    """R1 (Mescheder et al. 2018): 1/2 E ||grad_x D(x)||^2 on real inputs (a zero-centred
    gradient penalty that keeps the discriminator smooth around the data)."""
    with tf.GradientTape() as tape:
        tape.watch(real_inputs)
        total = tf.reduce_sum(tf.cast(discriminator(real_inputs, training=True), tf.float32))
    grads = tf.cast(tape.gradient(total, real_inputs), tf.float32)
    return 0.5 * tf.reduce_mean(tf.reduce_sum(tf.square(grads), axis=[1, 2, 3]))


def feature_matching(real_features, fake_features):
    """pix2pixHD-style feature matching: mean L1 between D_A's features of the associated pair
    (source, I_T) and of the generated pair (source, C(I_S)), layer by layer (real side fixed)."""
    terms = [
        tf.reduce_mean(tf.abs(tf.stop_gradient(tf.cast(r, tf.float32)) - tf.cast(f, tf.float32)))
        for r, f in zip(real_features, fake_features, strict=True)
    ]
    return tf.add_n(terms) / len(terms)


class ConverterViews:
    """What the converter's terms read (`Term`) from the model and a batch, each computed once,
    on first use.

    With `joint_domain_batch`, D_A sees the generated pairs in the same batch as in its own
    update (associated, unassociated and generated pairs), so its batch statistics are those
    it was trained with. With `recorded` (`recorded_domain_statistics`: D_A's batch statistics
    and (I_S, I_T) features from its update), D_A sees the generated pairs alone, normalised
    with those statistics held constant: one third of the joint view's work."""

    def __init__(
        self,
        model,
        source,
        target,
        generated,
        training: bool,
        unassociated,
        code,
        product,
        recorded=None,
    ):
        self.model, self.training = model, training
        self.source, self.target, self.generated = source, target, generated
        self.unassociated, self.product = unassociated, product
        self.recorded = recorded
        self.converter = model.converter
        self._code = code
        self._cache = {}

    def _once(self, key, fn):
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    @property
    def source_code(self):
        """The converter's code of I_S: that of the pass that made `generated` when given."""
        if self._code is not None:
            return self._code
        encoder = self.converter.get_layer("encoder")
        return self._once("source_code", lambda: encoder(self.source, training=self.training))

    @property
    def target_code(self):
        """The converter's code of I_T, in inference mode (as `identity_l1`: product images
        must not shift the statistics that sources are normalised with)."""
        encoder = self.converter.get_layer("encoder")
        return self._once("target_code", lambda: encoder(self.target, training=False))

    @property
    def contrast_bank(self):
        """(images, product ids) of the pixel contrast's bank in training
        (`pixel_contrast_bank`), else None."""
        bank = self.model.contrast_bank
        return bank.contents if self.training and bank is not None else None

    @property
    def real_fake(self):
        """D_R(C(I_S)): logits of the generated images."""
        m = self.model
        return self._once(
            "real_fake",
            lambda: m.real_fake_discriminator(
                m._augment(self.generated, self.training), training=self.training
            ),
        )

    @property
    def domain(self):
        """D_A(I_S, C(I_S)): logits of the generated pairs."""
        if self.model._domain_features is not None:
            return self._features()[1][-1]
        if self.model.config.joint_domain_batch and self.recorded is None:
            return self._joint(self.model.domain_discriminator)[-1]
        return self._once("domain", lambda: self._fake(self.model.domain_discriminator))

    def _fake(self, network):
        """`network` (D_A or its taps) on the generated pairs alone: with `recorded`, batch
        norm uses D_A's statistics of its update."""
        m = self.model
        fake_pair = m._augment(m._pair(self.source, self.generated), self.training)
        if self.recorded is None:
            return network(fake_pair, training=self.training)
        with batch_norm_statistics(m.domain_discriminator, self.recorded[0], "replay"):
            return network(fake_pair, training=self.training)

    @property
    def domain_features(self):
        """(D_A features of (I_S, I_T), D_A features of (I_S, C(I_S))), logits left out."""
        real, fake = self._features()
        return real[:-1], fake[:-1]

    def _joint(self, network):
        """`network` (D_A or its taps) on D_A's pairings of this update, as one batch."""
        m = self.model

        def outputs():
            pairs = m._domain_pairs(
                self.source, self.target, self.unassociated, self.generated, self.training
            )
            return m._discriminate(network, pairs, self.training, joint=True)

        return self._once("joint", outputs)

    def _features(self):
        m, training = self.model, self.training
        if self.recorded is not None:
            return self._once(
                "features", lambda: (self.recorded[1], self._fake(m._domain_features))
            )
        if m.config.joint_domain_batch:
            outputs = self._joint(m._domain_features)
            return outputs[0], outputs[-1]

        def taps():
            fake_pair = m._augment(m._pair(self.source, self.generated), training)
            fake = m._domain_features(fake_pair, training=training)
            real_pair = m._augment(m._pair(self.source, self.target), training)
            real = m._domain_features(real_pair, training=training)
            return real, fake

        return self._once("features", taps)
