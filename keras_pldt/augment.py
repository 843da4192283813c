"""Augmentation for small data: DiffAugment of discriminator inputs, classic source augmentation.

**DiffAugment** (Zhao et al., NeurIPS 2020), :func:`diff_augment`:

Every image a discriminator sees, real or generated, in its update and in the converter's, goes
through the same random, differentiable transformations, so that a discriminator trained on little
data cannot memorise it. Images are `[B, H, W, 3k]` in [-1, 1]; a D_A pair (k = 2, source and
target stacked on channels) gets *one* transformation for both images, so the pair stays aligned.
Policies: `color` (brightness, saturation, contrast), `translation` (up to 1/8 of the size, white
fill), `cutout` (a square of half the size set to grey).

**Source augmentation**, :func:`source_augmenter`: the converter's input photos (and with them
the sources of D_A's pairs) are flipped, cropped, rotated and relit at random in each training
step, so a converter trained on a few hundred photos sees a new view of each every epoch
instead of memorising them. Targets are left alone: the product image stays the canonical view.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_pldt.config import SOURCE_AUGMENTATIONS as SOURCE_POLICIES

POLICIES = ("color", "translation", "cutout")


def _color(x, groups: int):
    b = tf.shape(x)[0]
    brightness = tf.random.uniform([b, 1, 1, 1], -0.5, 0.5, dtype=x.dtype)
    saturation = tf.random.uniform([b, 1, 1, 1], 0.0, 2.0, dtype=x.dtype)
    contrast = tf.random.uniform([b, 1, 1, 1], 0.5, 1.5, dtype=x.dtype)
    out = []
    for img in tf.split(x, groups, axis=-1):
        img = img + brightness
        mean = tf.reduce_mean(img, axis=-1, keepdims=True)
        img = (img - mean) * saturation + mean
        mean = tf.reduce_mean(img, axis=[1, 2, 3], keepdims=True)
        out.append((img - mean) * contrast + mean)
    return tf.concat(out, axis=-1)


def _translation(x, ratio: float = 0.125):
    b, h, w = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
    sh = tf.cast(tf.cast(h, tf.float32) * ratio + 0.5, tf.int32)
    sw = tf.cast(tf.cast(w, tf.float32) * ratio + 0.5, tf.int32)
    dy = tf.random.uniform([b, 1], -sh, sh + 1, dtype=tf.int32)
    dx = tf.random.uniform([b, 1], -sw, sw + 1, dtype=tf.int32)
    ys = tf.clip_by_value(
        tf.range(h)[None, :] + dy + 1, 0, h + 1
    )  # [b, h] rows of the padded image
    xs = tf.clip_by_value(tf.range(w)[None, :] + dx + 1, 0, w + 1)
    padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=1.0)  # white border
    rows = tf.gather(padded, ys, axis=1, batch_dims=1)
    return tf.gather(rows, xs, axis=2, batch_dims=1)


def _cutout(x, ratio: float = 0.5):
    b, h, w = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
    ch = tf.cast(tf.cast(h, tf.float32) * ratio + 0.5, tf.int32)
    cw = tf.cast(tf.cast(w, tf.float32) * ratio + 0.5, tf.int32)
    cy = tf.random.uniform([b, 1, 1], 0, h + (1 - ch % 2), dtype=tf.int32)
    cx = tf.random.uniform([b, 1, 1], 0, w + (1 - cw % 2), dtype=tf.int32)
    yy = tf.range(h)[None, :, None]
    xx = tf.range(w)[None, None, :]
    inside = (
        (yy >= cy - ch // 2)
        & (yy < cy - ch // 2 + ch)
        & (xx >= cx - cw // 2)
        & (xx < cx - cw // 2 + cw)
    )
    mask = 1.0 - tf.cast(inside, x.dtype)[..., None]
    return x * mask


def parse_policy(policy: str) -> tuple[str, ...]:
    names = tuple(p for p in policy.split(",") if p)
    unknown = set(names) - set(POLICIES)
    if unknown:
        raise ValueError(f"unknown DiffAugment policy {sorted(unknown)}; choose from {POLICIES}")
    return names


def diff_augment(x, policy: str):
    """Apply the comma-separated `policy` to `x` ([B, H, W, 3k]); identity for an empty policy."""
    names = parse_policy(policy)
    if not names:
        return x
    groups = int(x.shape[-1]) // 3
    for name in names:
        if name == "color":
            x = _color(x, groups)
        elif name == "translation":
            x = _translation(x)
        else:
            x = _cutout(x)
    return x


def source_augmenter(policy: str, seed: int | None = None) -> keras.Sequential | None:
    """Keras preprocessing layers for the comma-separated source `policy` (None when empty).

    `flip`: horizontal mirror with probability 1/2. `crop`: zoom in by up to 25% and shift by up
    to 10% of the size (reflected borders): a random crop of the photo, resized back.
    `rotate`: rotation by up to +-10 degrees (reflected borders). `light`: brightness and
    contrast changed by up to 20% (hue and saturation, the product's colour, are kept).
    """
    names = tuple(p for p in policy.split(",") if p)
    unknown = set(names) - set(SOURCE_POLICIES)
    if unknown:
        raise ValueError(
            f"unknown source augmentation {sorted(unknown)}; choose from {SOURCE_POLICIES}"
        )
    if not names:
        return None
    stages = []
    if "flip" in names:
        stages.append(keras.layers.RandomFlip("horizontal", seed=seed, name="flip"))
    if "crop" in names:
        stages += [
            keras.layers.RandomZoom((-0.25, 0.0), fill_mode="reflect", seed=seed, name="zoom"),
            keras.layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=seed, name="shift"),
        ]
    if "rotate" in names:
        stages.append(keras.layers.RandomRotation(10 / 360, fill_mode="reflect", seed=seed))
    if "light" in names:
        stages += [
            keras.layers.RandomBrightness(0.2, value_range=(-1.0, 1.0), seed=seed),
            keras.layers.RandomContrast(0.2, value_range=(-1.0, 1.0), seed=seed),
        ]
    return keras.Sequential(stages, name="source_augmenter")
