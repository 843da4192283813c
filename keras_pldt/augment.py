"""Augmentation for small data: DiffAugment of discriminator inputs, classic source augmentation.

**DiffAugment** (Zhao et al., NeurIPS 2020), :func:`diff_augment`:

Every image a discriminator sees, real or generated, in its update and in the converter's, goes
through the same random, differentiable transformations, so that a discriminator trained on little
data cannot memorise it. Images are `[B, H, W, 3k]` in [-1, 1]; a D_A pair (k = 2, source and
target stacked on channels) gets *one* transformation for both images, so the pair stays aligned.
Policies: `color` (brightness, saturation, contrast), `translation` (up to 1/8 of the size, white
fill), `cutout` (a square of half the size set to grey).

**Source augmentation**, :func:`augment_sources`: the converter's input photos (and with them
the sources of D_A's pairs) are flipped, cropped, rotated and relit at random in each training
step, so a converter trained on a few hundred photos sees a new view of each every epoch
instead of memorising them. Targets are left alone: the product image stays the canonical view.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from keras_pldt.config import DIFF_AUGMENTATIONS as POLICIES
from keras_pldt.config import SOURCE_AUGMENTATIONS, policy_names


def _color(x, groups: int, seeds):
    b = tf.shape(x)[0]
    brightness = tf.random.stateless_uniform([b, 1, 1, 1], seeds[0], -0.5, 0.5, dtype=x.dtype)
    saturation = tf.random.stateless_uniform([b, 1, 1, 1], seeds[1], 0.0, 2.0, dtype=x.dtype)
    contrast = tf.random.stateless_uniform([b, 1, 1, 1], seeds[2], 0.5, 1.5, dtype=x.dtype)
    out = []
    for img in tf.split(x, groups, axis=-1):
        img = img + brightness
        mean = tf.reduce_mean(img, axis=-1, keepdims=True)
        img = (img - mean) * saturation + mean
        mean = tf.reduce_mean(img, axis=[1, 2, 3], keepdims=True)
        out.append((img - mean) * contrast + mean)
    return tf.concat(out, axis=-1)


def _translation(x, seeds, ratio: float = 0.125):
    b, h, w = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
    sh = tf.cast(tf.cast(h, tf.float32) * ratio + 0.5, tf.int32)
    sw = tf.cast(tf.cast(w, tf.float32) * ratio + 0.5, tf.int32)
    dy = tf.random.stateless_uniform([b, 1], seeds[0], -sh, sh + 1, dtype=tf.int32)
    dx = tf.random.stateless_uniform([b, 1], seeds[1], -sw, sw + 1, dtype=tf.int32)
    return shift(x, dy, dx)


def shift(x, dy, dx):
    """`x` moved by whole pixels, `dy` [B, 1] rows and `dx` [B, 1] columns per image, the
    uncovered border white."""
    h, w = tf.shape(x)[1], tf.shape(x)[2]
    ys = tf.clip_by_value(
        tf.range(h)[None, :] + dy + 1, 0, h + 1
    )  # [b, h] rows of the padded image
    xs = tf.clip_by_value(tf.range(w)[None, :] + dx + 1, 0, w + 1)
    padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=1.0)  # white border
    rows = tf.gather(padded, ys, axis=1, batch_dims=1)
    return tf.gather(rows, xs, axis=2, batch_dims=1)


def _cutout(x, seeds, ratio: float = 0.5):
    b, h, w, c = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2], x.shape[-1]
    ch = tf.cast(tf.cast(h, tf.float32) * ratio + 0.5, tf.int32)
    cw = tf.cast(tf.cast(w, tf.float32) * ratio + 0.5, tf.int32)
    cy = tf.random.stateless_uniform([b, 1, 1], seeds[0], 0, h + (1 - ch % 2), dtype=tf.int32)
    cx = tf.random.stateless_uniform([b, 1, 1], seeds[1], 0, w + (1 - cw % 2), dtype=tf.int32)
    yy = tf.range(h)[None, :, None]
    xx = tf.range(w)[None, None, :]
    rows = (yy >= cy - ch // 2) & (yy < cy - ch // 2 + ch)  # [B, H, 1]
    cols = (xx >= cx - cw // 2) & (xx < cx - cw // 2 + cw)  # [B, 1, W]
    # The mask over [B, H, W * C]: a product of equal shapes, not a broadcast over a channel
    # axis of 3 or 6 (half the time in bfloat16, forward and backward).
    cols = tf.reshape(tf.repeat(cols[..., None], c, axis=-1), [b, 1, w * c])
    keep = tf.cast(tf.logical_not(rows & cols), x.dtype)
    return tf.reshape(tf.reshape(x, [b, h, w * c]) * keep, tf.shape(x))


def parse_policy(policy: str) -> tuple[str, ...]:
    return policy_names(policy, POLICIES, "DiffAugment policy")


def diff_augment(x, policy: str, seed):
    """Apply the comma-separated `policy` to `x` ([B, H, W, 3k]); identity for an empty policy.

    Stateless like :func:`augment_sources`: the same `seed` (a `[2]` integer tensor) gives the
    same transformations, so a resumed run repeats the draws of an uninterrupted one.
    """
    names = parse_policy(policy)
    if not names:
        return x
    groups = int(x.shape[-1]) // 3
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3 * len(POLICIES))
    for name in names:
        i = 3 * POLICIES.index(name)
        draws = seeds[i : i + 3]
        if name == "color":
            x = _color(x, groups, draws)
        elif name == "translation":
            x = _translation(x, draws)
        else:
            x = _cutout(x, draws)
    return x


def augment_sources(images, policy: str, seed):
    """Random views of source photos `[B, S, S, 3]` in [-1, 1] for the comma-separated `policy`.

    Stateless: the same `seed` (a `[2]` integer tensor; `PLDT` uses the run's seed and the step)
    gives the same views, so a resumed run sees exactly the views an uninterrupted one would.
    `flip`: horizontal mirror with probability 1/2. `crop`: zoom in by up to 25% and shift by up
    to 10% of the size (a random crop of the photo, resized back). `rotate`: up to +-10 degrees.
    The geometric policies are one `keras.ops.image.affine_transform` (reflected borders).
    `light`: brightness shifted by up to 20% of the range and contrast scaled by 0.8-1.2, the
    same for the three channels (the product's colour is kept).
    """
    names = policy_names(policy, SOURCE_AUGMENTATIONS, "source augmentation")
    if not names:
        return images
    x = tf.cast(images, tf.float32)
    batch, size = tf.shape(x)[0], float(x.shape[1])
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 6)

    def uniform(i, low, high, shape=None):
        return tf.random.stateless_uniform(shape or [batch], seeds[i], low, high)

    if "flip" in names:
        flip = uniform(0, 0.0, 1.0) < 0.5
        x = tf.where(flip[:, None, None, None], tf.reverse(x, axis=[2]), x)
    if "crop" in names or "rotate" in names:
        crop = "crop" in names
        scale = uniform(1, 0.75, 1.0) if crop else tf.ones([batch])
        shift = uniform(2, -0.1 * size, 0.1 * size, [batch, 2]) if crop else tf.zeros([batch, 2])
        rotate = "rotate" in names
        angle = uniform(3, -10.0, 10.0) * (math.pi / 180.0) if rotate else tf.zeros([batch])
        # Output pixel (x, y) samples input s R (p - c) + c + t, about the centre c.
        c = (size - 1.0) / 2.0
        cos, sin = scale * tf.cos(angle), scale * tf.sin(angle)
        transform = tf.stack(
            [cos, -sin, c - cos * c + sin * c + shift[:, 0],
             sin, cos, c - sin * c - cos * c + shift[:, 1],
             tf.zeros([batch]), tf.zeros([batch])], axis=1,
        )  # fmt: skip
        x = keras.ops.image.affine_transform(x, transform, "bilinear", fill_mode="reflect")
    if "light" in names:
        delta = uniform(4, -0.4, 0.4)[:, None, None, None]
        factor = uniform(5, 0.8, 1.2)[:, None, None, None]
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        x = tf.clip_by_value((x - mean) * factor + mean + delta, -1.0, 1.0)
    return tf.cast(x, images.dtype)
