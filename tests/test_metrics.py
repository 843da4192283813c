"""Metrics of Table 3 and the automatic user-study stand-ins on images with known answers."""

import keras
import numpy as np
from helpers import assert_close, sum_ulps, tolerance

from keras_pldt import metrics as M
from keras_pldt.datasets.synthetic import CATEGORIES, PALETTE, category_template, generate

# SSIM's statistics are Gaussian-weighted sums over 11 x 11 windows (values in [0, 1]).
SSIM_ULPS = sum_ulps(11 * 11)


def _images(n=6, size=32, seed=0):
    rng = np.random.default_rng(seed)
    # smooth random images (a few blobs), so SSIM and gradients are meaningful
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.zeros((n, size, size, 3), np.float32)
    for i in range(n):
        for _ in range(4):
            cx, cy, r = rng.random(3) * [1, 1, 0.3] + [0, 0, 0.05]
            blob = ((xx - cx) ** 2 + (yy - cy) ** 2) < r**2
            out[i][blob] = rng.random(3)
    return out


def test_identical_images_rmse_zero_ssim_one():
    x = _images()
    assert M.rmse(x, x) == 0.0  # x - x is exactly 0
    assert_close(M.cssim(x, x), 1.0, SSIM_ULPS)
    assert_close(M.ssim_numpy(x, x), 1.0, SSIM_ULPS)


def test_constant_offset_rmse():
    x = _images() * 0.5
    assert_close(M.rmse(x + 0.1, x), 0.1, 4, scale=x + 0.1)  # rounding of the float32 x + 0.1
    a, b = np.zeros((2, 16, 16, 3)), np.zeros((2, 16, 16, 3))
    b[..., 0] = 0.3  # one channel off by 0.3 -> sqrt(0.09 / 3)
    assert_close(M.rmse(a, b), np.sqrt(0.03), 4)
    assert M.cssim(x + 0.1, x) < 1.0


def test_numpy_ssim_matches_tf_and_ssim_orders_degradation():
    x = _images(4)
    rng = np.random.default_rng(1)
    slight = np.clip(x + rng.normal(0, 0.02, x.shape), 0, 1)
    heavy = np.clip(x + rng.normal(0, 0.3, x.shape), 0, 1)
    assert_close(M.ssim_numpy(x, heavy), M.cssim_per_image(x, heavy), SSIM_ULPS, scale=1.0)
    assert M.cssim(slight, x) > M.cssim(heavy, x)
    d = M.pairwise_ssim_distance(x, heavy)
    assert_close(np.diag(d), 1.0 - M.cssim_per_image(x, heavy), SSIM_ULPS, scale=1.0)


def test_ssim_tf_is_tf_image_ssim_in_values_and_gradients():
    """`ssim_tf` (two 1-D passes of the window) against `tf.image.ssim` (its 2-D window), at a
    size with the full 11 x 11 window and one that clips it to the image side: the same values
    to float32 rounding, and, against tf.image.ssim's own per-channel computation in float64
    (`tf.image.ssim` itself converts to float32), the same values and gradients to a float32
    rounding."""
    import tensorflow as tf
    from tensorflow.python.ops.image_ops_impl import _ssim_per_channel

    rng = np.random.default_rng(2)
    for size in (32, 8):
        x = _images(3, size).astype("float64")
        y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)
        settings = {**M.SSIM_SETTINGS, "filter_size": min(11, size)}
        x32, y32 = (tf.constant(v, tf.float32) for v in (x, y))
        assert_close(M.ssim_tf(x32, y32), tf.image.ssim(x32, y32, **settings), SSIM_ULPS, 1.0)
        x, y = tf.constant(x), tf.constant(y)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            ours = M.ssim_tf(x, y)
            reference = tf.reduce_mean(_ssim_per_channel(x, y, **settings)[0], -1)
        assert ours.dtype == reference.dtype == tf.float64
        assert_close(ours, reference, 1, scale=1.0)
        grad, ref_grad = tape.gradient(ours, x).numpy(), tape.gradient(reference, x).numpy()
        assert np.abs(ref_grad).max() > 0
        assert_close(grad, ref_grad, 1)


def test_keras_metrics_in_model_evaluate():
    x = _images(8) * 2.0 - 1.0  # model range
    inp = keras.Input((32, 32, 3))
    model = keras.Model(inp, keras.layers.Identity()(inp))
    model.compile(loss="mse", metrics=[M.RMSE(), M.CSSIM()])
    logs = model.evaluate(x, x, batch_size=4, verbose=0, return_dict=True)
    assert logs["rmse01"] < tolerance(1.0, 1)  # images in [0, 1]
    assert_close(logs["c_ssim"], 1.0, SSIM_ULPS)
    logs = model.evaluate(x, np.clip(x + 0.2, -1, 1), batch_size=4, verbose=0, return_dict=True)
    expected = M.rmse(M.to_unit(x), M.to_unit(np.clip(x + 0.2, -1, 1)))
    assert_close(logs["rmse01"], expected, sum_ulps(32 * 32 * 3))  # float32 mean of each image


def test_retrieval_perfect_and_chance():
    rng = np.random.default_rng(0)
    targets = _images(20, seed=3)
    product = np.arange(20)
    scores = M.retrieval_scores(targets, product, targets, product, 20)
    assert scores["top1_l2"] == 1.0 and scores["top1_ssim"] == 1.0
    assert scores["top5_chance"] == 0.25  # 5 / 20
    # random outputs: near chance (averaged over many queries)
    queries = rng.random((200, 32, 32, 3)).astype(np.float32)
    truth = rng.integers(0, 20, 200)
    d = M.product_distances(M.pairwise_l2(queries, targets), product, 20)
    assert abs(M.retrieval_topk(d, truth, 5) - 0.25) < 4 * np.sqrt(0.25 * 0.75 / 200)  # 4 SE
    # constant outputs (all distances tied) never beat chance
    assert M.retrieval_topk(np.zeros((10, 20)), np.zeros(10, int), 5) == 0.0


def test_fast_distances_equal_a_pair_by_pair_reference():
    """`pairwise_l2` (blocks of one matrix product, each distinct query once) and
    `pairwise_ssim_distance` (per-image window statistics once) against a loop over every pair
    (float64 differences; `cssim_per_image`), with duplicated queries and candidates: the same
    distances to rounding and the same top-k, ties included."""
    rng = np.random.default_rng(4)
    cands = _images(9, 16, seed=5)
    cands[7] = cands[2]  # two products share an image: exact ties
    queries = np.concatenate([_images(5, 16, seed=6), cands[[2, 4]], _images(1, 16, seed=6)])
    queries[3] = np.clip(queries[3] + rng.normal(0, 0.05, queries[3].shape), 0, 1)
    product = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8])
    l2 = M.pairwise_l2(queries, cands, chunk=4)
    ref = np.array(
        [[np.sqrt(np.mean((q.astype(np.float64) - c) ** 2)) for c in cands] for q in queries]
    )
    assert_close(l2, ref, sum_ulps(16 * 16 * 3), scale=1.0)
    assert np.all(l2[:, 2] == l2[:, 7]) and np.all(l2[0] == l2[-1])  # ties stay exact
    ssim = M.pairwise_ssim_distance(queries, cands, chunk=5)
    ref_ssim = np.array(
        [1.0 - M.cssim_per_image(np.repeat(q[None], len(cands), 0), cands) for q in queries]
    )
    assert_close(ssim, ref_ssim, SSIM_ULPS, scale=1.0)
    assert np.all(ssim[:, 2] == ssim[:, 7]) and np.all(ssim[0] == ssim[-1])
    truth = np.array([0, 1, 2, 3, 4, 2, 4, 0])
    for fast, slow in ((l2, ref), (ssim, ref_ssim)):
        for k in (1, 3):
            d_fast = M.product_distances(fast, product, 9)
            d_slow = M.product_distances(slow, product, 9)
            assert M.retrieval_topk(d_fast, truth, k) == M.retrieval_topk(d_slow, truth, k)
    first, inverse = M.unique_images(queries)
    assert list(first) == [0, 1, 2, 3, 4, 5, 6] and inverse[-1] == 0
    assert np.array_equal(queries[first][inverse], queries)


def test_sharpness_ratio():
    x = _images()
    assert M.sharpness_ratio(x, x) == 1.0  # a / a
    blurred = (x + np.roll(x, 1, 1) + np.roll(x, 1, 2) + np.roll(x, -1, 1) + np.roll(x, -1, 2)) / 5
    assert M.sharpness_ratio(blurred, x) < 0.8


def _renders(count, size, offset=0):
    """Real product photos: synthetic product renders of `count` attribute combinations."""
    from itertools import product

    from keras_pldt.datasets.synthetic import PATTERNS, render_product

    combos = list(product(CATEGORIES, PALETTE, PATTERNS))
    combos = [combos[i] for i in np.random.default_rng(0).permutation(len(combos))]
    picked = combos[offset : offset + count]
    return np.stack([render_product(c, k, p, size) for c, k, p in picked]) / np.float32(255.0)


def _grid(images, period, amplitude):
    """`images` with a checkerboard of `period` px (blocks of period / 2) of +-amplitude."""
    size = images.shape[1]
    yy, xx = np.mgrid[0:size, 0:size] // (period // 2)
    sign = ((xx + yy) % 2) * 2.0 - 1.0
    return np.clip(images + amplitude * sign[None, :, :, None], 0, 1).astype(np.float32)


def _box_blur(images):
    x = images
    return (x + np.roll(x, 1, 1) + np.roll(x, 1, 2) + np.roll(x, -1, 1) + np.roll(x, -1, 2)) / 5


def test_power_spectra_units():
    """White noise of variance v has power v at every frequency; a constant image has none."""
    rng = np.random.default_rng(0)
    noise = rng.normal(0.5, 0.1, (64, 32, 48, 3))
    rows, cols = M.power_spectra(noise)
    assert rows.shape == (24,) and cols.shape == (16,)
    # each frequency: a mean of 64 * 32 * 3 (or 64 * 48 * 3) exponential powers of mean 0.01
    for p, lines in ((rows, 32), (cols, 48)):
        assert np.all(np.abs(p / 0.01 - 1) < 6 / np.sqrt(64 * lines * 3))  # 6 standard errors
    flat = M.power_spectra(np.full((2, 16, 16, 3), 0.7))
    assert all(np.all(p < tolerance(0.7**2 * 16, 16)) for p in flat)  # DFT rounding only


def test_spectral_gap_real_photos_score_as_real_at_every_size():
    """Product photos against themselves: 0; against photos of other products: well within a
    factor 2 of power at every frequency."""
    for size in (64, 128, 256):
        real, other = _renders(40, size), _renders(40, size, offset=40)
        assert M.spectral_gap(real, real) == 0.0  # log10(p / p)
        assert M.spectral_gap(other, real) < np.log10(2) / 2


def test_spectral_gap_grid_artefacts_and_blur_score_worse_than_real():
    """A small 2- or 4-px checkerboard (about 8 grey levels) or blur puts the outputs' spectrum
    several times as far from the real photos' as the photos of other products are, where
    the sharpness ratio counts the grid as detail."""
    for size in (64, 128, 256):
        real, other = _renders(40, size), _renders(40, size, offset=40)
        real_range = M.spectral_gap(other, real)
        reference = M.power_spectra(real)
        for period in (2, 4):
            weak = M.spectral_gap_details(_grid(real, period, 0.015), reference=reference)
            strong = M.spectral_gap_details(_grid(real, period, 0.03), reference=reference)
            assert strong["spectral_gap"] > 4 * real_range, (size, period, strong)
            assert strong["spectral_gap"] > weak["spectral_gap"] > real_range, (size, period)
            assert strong["spectral_gap_period"] == period and strong["spectral_gap_sign"] == 1
            assert M.sharpness_ratio(_grid(real, period, 0.03), real) > 1.0  # sharpness is fooled
        blurred = M.spectral_gap_details(_box_blur(real), real)
        assert blurred["spectral_gap"] > 4 * real_range and blurred["spectral_gap_sign"] == -1
        twice = M.spectral_gap(_box_blur(_box_blur(real)), reference=reference)
        assert twice > blurred["spectral_gap"]


def _photos(n, size, seed):
    """Stand-ins for photos framed anywhere: stationary noise with a natural image's 1 / f
    amplitude spectrum, around mid grey."""
    rng = np.random.default_rng(seed)
    fy, fx = np.fft.fftfreq(size)[:, None], np.fft.rfftfreq(size)[None, :]
    amplitude = 1.0 / np.maximum(np.hypot(fx, fy), 1.0 / size)
    phase = np.exp(2j * np.pi * rng.random((n, size, size // 2 + 1, 3)))
    x = np.fft.irfft2(amplitude[None, :, :, None] * phase, s=(size, size), axes=(1, 2))
    x = (x - x.mean(axis=(1, 2, 3), keepdims=True)) / x.std(axis=(1, 2, 3), keepdims=True)
    return np.clip(0.5 + 0.12 * x, 0, 1).astype(np.float32)


def _blocks(images, block, amplitude, on_lattice=True):
    """`images` with a blocky texture: +-amplitude noise constant on `block` x `block` blocks,
    on the image's lattice, or moved off it by a shift per image that gives every phase of the
    lattice to as many images."""
    n, size = images.shape[:2]
    noise = np.random.default_rng(1).choice(
        [-amplitude, amplitude], (n, size // block, size // block)
    )
    texture = np.repeat(np.repeat(noise, block, axis=1), block, axis=2)
    if not on_lattice:
        shifts = [(i % block, i // block % block) for i in range(n)]
        texture = np.stack(
            [np.roll(t, s, axis=(0, 1)) for t, s in zip(texture, shifts, strict=True)]
        )
    return np.clip(images + texture[..., None], 0, 1).astype(np.float32)


def test_grid_contrast_real_photos_score_as_real():
    """Photos against themselves: exactly 0; other photos against them: a tenth of what a faint
    texture on the lattice gives (next test)."""
    for size in (64, 128):
        real, other = _photos(40, size, 0), _photos(40, size, 1)
        assert M.grid_contrast(real, real) == 0.0  # the same shares, subtracted
        renders = _renders(40, size)
        assert M.grid_contrast(renders, renders) == 0.0
        faint = M.grid_contrast(_blocks(real, 2, 0.03), real)
        assert M.grid_contrast(other, real) < faint / 10, size


def test_grid_contrast_sees_where_texture_lies_not_its_power():
    """The same blocky texture (2 or 4 px blocks, about 8 grey levels) on the decoder's lattice
    and off it (every phase alike): the spectral gap cannot tell them apart, the grid contrast
    puts the first several times past the real range and the second near it. Blur, which the
    spectral gap scores, leaves the placement as real."""
    for size in (64, 128):
        real, other = _photos(40, size, 0), _photos(40, size, 1)
        real_range = M.grid_contrast(other, real)
        reference = M.lattice_shares(real)
        for block in (2, 4):
            on, off = _blocks(real, block, 0.03), _blocks(real, block, 0.03, on_lattice=False)
            gap_on, gap_off = M.spectral_gap(on, real), M.spectral_gap(off, real)
            assert abs(gap_on - gap_off) < 0.1 * gap_on, (size, block, gap_on, gap_off)
            aligned = M.grid_contrast_details(on, reference=reference)
            assert aligned["grid_contrast"] > 8 * real_range, (size, block, aligned)
            assert aligned["grid_contrast_period"] % block == 0, (size, block, aligned)
            assert M.grid_contrast(off, reference=reference) < aligned["grid_contrast"] / 4
            weaker = M.grid_contrast(_blocks(real, block, 0.015), reference=reference)
            assert 2 * real_range < weaker < aligned["grid_contrast"], (size, block)
        blurred = _box_blur(real)
        assert M.spectral_gap(blurred, real) > 8 * M.spectral_gap(other, real)
        assert M.grid_contrast(blurred, reference=reference) < 2 * real_range, size


def test_grid_contrast_input_checks():
    real = _photos(4, 64, 0)
    with np.testing.assert_raises_regex(ValueError, "differ in size"):
        M.grid_contrast(real, _photos(4, 128, 0))
    blank = np.ones((3, 64, 64, 3), np.float32)  # no gradient: no weight, no division by 0
    assert M.grid_contrast(np.concatenate([real, blank]), real) == 0.0
    assert np.isnan(M.grid_contrast(blank, real))  # nothing to place: unknown, not "as real"


def test_colour_and_category_on_ground_truth_products(tmp_path):
    from PIL import Image

    from keras_pldt.datasets.synthetic import read_attributes

    root = generate(tmp_path / "syn", num_products=24, sources_per_product=1, image_size=32)
    attrs = read_attributes(root)
    pids = sorted(attrs)
    images = np.stack(
        [
            np.asarray(Image.open(next(root.glob(f"PID{p}_CLEAN1_*.png"))), np.float32) / 255.0
            for p in pids
        ]
    )
    colours = M.colour_predictions(images, PALETTE)
    templates = {c: category_template(c, 32) for c in CATEGORIES}
    cats = M.category_predictions(images, templates)
    colour_acc = np.mean([c == attrs[p]["colour"] for c, p in zip(colours, pids, strict=True)])
    cat_acc = np.mean([c == attrs[p]["category"] for c, p in zip(cats, pids, strict=True)])
    assert colour_acc >= 0.95 and cat_acc >= 0.95
    # a white image has no garment; a blank prediction is never right
    assert M.colour_predictions(np.ones((1, 32, 32, 3)), PALETTE) == [None]
