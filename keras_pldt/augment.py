"""Differentiable augmentation (DiffAugment; Zhao et al., NeurIPS 2020) of discriminator inputs.

Every image a discriminator sees, real or generated, in its update and in the converter's, goes
through the same random, differentiable transformations, so that a discriminator trained on little
data cannot memorise it. Images are `[B, H, W, 3k]` in [-1, 1]; a D_A pair (k = 2, source and
target stacked on channels) gets *one* transformation for both images, so the pair stays aligned.
Policies: `color` (brightness, saturation, contrast), `translation` (up to 1/8 of the size, white
fill), `cutout` (a square of half the size set to grey).
"""

from __future__ import annotations

import tensorflow as tf

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
