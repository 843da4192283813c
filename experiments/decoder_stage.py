"""`python -m keras_pldt.reproduce` with another x2 stage in the resize decoder (docs/results.md,
"128 px on grocery_val"). Not part of the package: it swaps `keras_pldt.networks._upsample` for
the run of this process only, so the run folder's config is the preset's.

    python experiments/decoder_stage.py subpixel-last -- --data DIR --out OUT ...
    python experiments/decoder_stage.py bilinear -- --data DIR --out OUT ...
    python experiments/decoder_stage.py full-res-last -- --data DIR --out OUT ...
    python experiments/decoder_stage.py d-full-res -- --data DIR --out OUT ...
    python experiments/decoder_stage.py pixel-half+full-res-last -- --data DIR --out OUT ...
    python experiments/decoder_stage.py pixel-half+detail-magnitude+full-res-last -- ...
    python experiments/decoder_stage.py pixel-half+detail-energy+full-res-last -- ...
    python experiments/decoder_stage.py lattice-translation -- ...

* ``subpixel-last``: the last stage (to RGB) is a 5x5 conv at the low resolution to 4 x 3
  channels, then a pixel shuffle (depth-to-space), each 2 x 2 phase with its own kernel, so its
  response is not forced to zero at the Nyquist frequency as nearest x2 then a conv is. The
  kernel starts as the same kernel for the four phases (ICNR: the output is nearest x2 at
  initialisation). The other stages stay resize-convs.
* ``bilinear``: every stage upsamples bilinearly (nearest x2, then [1, 2, 1] / 4) before its
  5x5 conv.
* ``full-res-last``: the last stage draws at the output resolution with a nonlinearity: nearest
  x2, a 3x3 conv to the previous stage's width, batch norm, ReLU, then a 3x3 conv to RGB (the
  resize stage's RGB is a linear function of the half-resolution features).
* ``d-full-res``: D_R and D_A read the image at full resolution before their first stride-2
  conv: a 3x3 stride-1 conv to half the base width (spectral norm as the preset), LeakyReLU.
* ``pixel-half``: not a stage: the pixel terms (L1, 1 - SSIM, pixel contrast) compare 2x2
  averages of the output and the target, so that the finest octave is judged by D_R and D_A
  alone.
* ``detail-magnitude``: the L1 term also compares the magnitudes of the 2x2 Haar details
  (across columns, across rows, diagonal) of the output and the target, not their signs: with
  ``pixel-half``, the finest octave must have the target's local energy where the target has
  it and none where it is flat, and D_R and D_A decide its phase.
* ``detail-energy``: as ``detail-magnitude``, on the mean magnitude over 8x8 pixel windows
  (the local energy of the finest octave, not where in the window it lies).

* ``lattice-translation``: not a stage: DiffAugment's translation moves the images the
  discriminators see by whole multiples of 8 px only, so the decoder's 2-, 4- and 8-px lattices
  keep one phase against the discriminators' stride-2 lattices, and a texture on them is the same
  texture in every view (``keras_pldt.metrics.grid_contrast`` measures it).

Kinds combine with ``+`` (``full-res-last+pixel-half``).

A run made here loads only in a process that applies the same swap.
"""

from __future__ import annotations

import sys

import keras
import tensorflow as tf
from keras import layers

from keras_pldt import augment, losses, networks

# the package's own stages, which the swaps below wrap
RESIZE = networks._upsample
CONV_STACK = networks._conv_stack
LATTICE = 8  # px: the period of the decoder's third-finest x2 stage


@keras.saving.register_keras_serializable(package="experiments")
class ICNR(keras.initializers.Initializer):
    """`base` for one phase, repeated for the four phases of a pixel shuffle (Aitken et al.
    2017); saved without `base` (the kernel is in the weights)."""

    def __init__(self, base=None):
        self.base = base or keras.initializers.RandomNormal(0.0, 0.02)

    def get_config(self):
        return {}

    def __call__(self, shape, dtype=None):
        kernel = self.base(tuple(shape[:-1]) + (shape[-1] // 4,), dtype)
        return keras.ops.tile(kernel, [1, 1, 1, 4])


def subpixel_stage(config, filters: int, name: str):
    conv = layers.Conv2D(
        4 * filters, networks.KERNEL, padding="same", use_bias=True,
        kernel_initializer=ICNR(networks._init(config)), name=name,
    )  # fmt: skip

    def stage(x):
        h, w = x.shape[1:3]
        x = layers.Reshape((h, w, 2, 2, filters), name=f"{name}_split")(conv(x))
        x = layers.Permute((1, 3, 2, 4, 5), name=f"{name}_shuffle")(x)
        return layers.Reshape((2 * h, 2 * w, filters), name=f"{name}_merge")(x)

    return stage


def bilinear_stage(config, filters: int, name: str, use_bias: bool):
    conv = layers.Conv2D(
        filters, networks.KERNEL, padding="same", use_bias=use_bias,
        kernel_initializer=networks._init(config), name=name,
    )  # fmt: skip
    return lambda x: conv(layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_up")(x))


def full_res_stage(config, filters: int, name: str):
    width = networks.stage_widths(config.image_size, config.base_filters)[0]
    draw = RESIZE(config, width, f"{name}_full", use_bias=False)
    rgb = layers.Conv2D(
        filters, 3, padding="same", use_bias=True,
        kernel_initializer=networks._init(config), name=name,
    )  # fmt: skip

    def stage(x):
        x = networks._batch_norm(config, f"{name}_full_bn")(draw(x))
        return rgb(layers.ReLU(name=f"{name}_full_relu")(x))

    return stage


def d_full_res_stack(x, config, spectral_norm=False, grouped=False):
    if grouped:  # the discriminators' stack (the encoder's is not grouped)
        conv = layers.Conv2D(
            max(config.base_filters // 2, 1), 3, padding="same", use_bias=True,
            kernel_initializer=networks._init(config), name="conv0",
        )  # fmt: skip
        if spectral_norm:
            conv = networks._spectral_norm(conv, "sn_conv0")
        x = layers.LeakyReLU(config.leaky_slope, name="lrelu0")(conv(x))
    return CONV_STACK(x, config, spectral_norm=spectral_norm, grouped=grouped)


def swap(kinds: str) -> None:
    kinds = set(kinds.split("+"))

    def upsample(config, filters, name, use_bias):
        if "bilinear" in kinds:
            return bilinear_stage(config, filters, name, use_bias)
        if filters == 3 and use_bias:  # the decoder's last stage, to RGB
            if "subpixel-last" in kinds:
                return subpixel_stage(config, filters, name)
            if "full-res-last" in kinds:
                return full_res_stage(config, filters, name)
        return RESIZE(config, filters, name, use_bias)

    networks._upsample = upsample
    if "d-full-res" in kinds:
        networks._conv_stack = d_full_res_stack
    if "pixel-half" in kinds:
        for name in ("pixel_l1", "ssim_loss", "pixel_contrast"):
            setattr(losses, name, at_half_resolution(getattr(losses, name)))
    if "detail-magnitude" in kinds:  # on the full images, after pixel-half
        losses.pixel_l1 = with_detail_magnitude(losses.pixel_l1)
    if "detail-energy" in kinds:
        losses.pixel_l1 = with_detail_magnitude(losses.pixel_l1, window=4)
    if "lattice-translation" in kinds:
        augment._translation = lattice_translation


def lattice_translation(x, seeds, ratio: float = 0.125):
    """DiffAugment's translation (up to `ratio` of the size, white fill) in whole multiples of
    `LATTICE` px."""
    b, h, w = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]

    def shifts(size, seed):
        steps = tf.cast(tf.cast(size, tf.float32) * ratio / LATTICE, tf.int32)
        return LATTICE * tf.random.stateless_uniform([b, 1], seed, -steps, steps + 1, tf.int32)

    return augment.shift(x, shifts(h, seeds[0]), shifts(w, seeds[1]))


def at_half_resolution(term):
    """`term` (a pixel term of `keras_pldt.losses`) on the 2x2 averages of both images."""

    def half(generated, target, *args, **kwargs):
        return term(_average_2x2(generated), _average_2x2(target), *args, **kwargs)

    return half


def with_detail_magnitude(term, window: int = 1):
    """`term` plus the L1 distance between `detail_magnitudes` of both images, summed over the
    three details (a 2 px checkerboard of amplitude A costs A, as in L1)."""

    def detail(generated, target, *args, **kwargs):
        gap = tf.abs(detail_magnitudes(generated, window) - detail_magnitudes(target, window))
        return term(generated, target, *args, **kwargs) + HAAR_DETAILS * tf.reduce_mean(gap)

    return detail


HAAR_DETAILS = 3  # across columns, across rows, diagonal


def detail_magnitudes(x, window: int = 1):
    """|2x2 Haar detail| of `x` (NHWC, in its own units) at full resolution, averaged over
    `window` x `window` Haar blocks: the details across columns, across rows and diagonal of
    each channel, concatenated on the channel axis."""
    x = tf.cast(x, tf.float32)
    a, b = x[:, 0::2, 0::2], x[:, 0::2, 1::2]
    c, d = x[:, 1::2, 0::2], x[:, 1::2, 1::2]
    details = tf.concat([a - b + c - d, a + b - c - d, a - b - c + d], axis=-1) / 4.0
    return tf.nn.avg_pool2d(tf.abs(details), window, window, "VALID")


def _average_2x2(x):
    return tf.nn.avg_pool2d(x, 2, 2, "VALID")


def main(argv: list[str]) -> int:
    kinds = (
        "subpixel-last", "bilinear", "full-res-last", "d-full-res", "pixel-half",
        "detail-magnitude", "detail-energy", "lattice-translation",
    )  # fmt: skip
    if len(argv) < 2 or not set(argv[0].split("+")) <= set(kinds) or argv[1] != "--":
        usage = f"{'|'.join(kinds)}[+...] -- REPRODUCE_ARGS"
        print(f"usage: python experiments/decoder_stage.py {usage}")
        return 2
    swap(argv[0])
    from keras_pldt.reproduce import main as reproduce

    return reproduce(argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
