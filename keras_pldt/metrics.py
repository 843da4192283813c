"""Metrics of Table 3 (RMSE, C-SSIM) and automatic stand-ins for the user study.

Conventions. The numpy functions take images as float arrays ``[N, S, S, 3]`` in **[0, 1]**
(the units of Table 3: "all values normalized to [0, 1]"); use :func:`to_unit` for model-range
images in [-1, 1] and :func:`uint8_to_unit` for uint8. The Keras metrics (:class:`RMSE`,
:class:`CSSIM`) take ``(y_true, y_pred)`` in [-1, 1] (the model's range) by default, so they
work in ``converter.compile(metrics=[RMSE(), CSSIM()])`` / ``converter.evaluate(src, tgt)``.

* **RMSE**: per image ``sqrt(mean((g - t)^2))`` over pixels and channels, then averaged over
  images (Table 3, right).
* **C-SSIM**: ``tf.image.ssim`` with ``max_val=1``, a Gaussian window of ``filter_size=11``
  (clamped to the image side for images smaller than 11 px), ``filter_sigma=1.5``, ``k1=0.01``,
  ``k2=0.03``. ``tf.image.ssim`` computes SSIM per channel and averages the channels, which is
  exactly the paper's "colour version of SSIM by averaging SSIMs for each channel". At 32 px an
  11-px window leaves a 22 x 22 valid map, still enough; we keep 11 at every size so numbers are
  comparable across image sizes.
* **Relevance** (stand-in for the user study's Att/Cat): rank the test products by distance of
  their target images to a generated image (L2 in pixel space, or 1 - C-SSIM); top-k accuracy of
  the true product, next to chance ``k / P``.
* **Sharpness**: mean gradient energy (squared finite differences of the grey image) of the
  generated images divided by that of the ground-truth targets (1.0 = as sharp as real).
* **Spectral gap** (:func:`spectral_gap`, realism that an artefact cannot raise): the power
  spectra of the generated images and of the real targets along rows and along columns (1-D
  DFT power at each frequency, averaged over images, lines and channels; powers below the 8-bit
  quantisation noise :data:`SPECTRUM_FLOOR` count as that floor); the gap is the largest
  ``|log10(P_generated / P_real)|`` over both axes and every frequency but 0, in decades. 0 =
  the real photos' spectrum; blur lacks power at high frequencies and a grid, blocky or mottled
  texture adds power at its frequencies (periods 2, 4, 8 px for the x2 upsampling stages), so
  both raise it.
* **Grid contrast** (:func:`grid_contrast`, realism that sees where detail lies): the decoder
  draws on a lattice fixed in image coordinates (its x2 stages), so its texture puts gradient
  energy at some positions of a 2-, 4- or 8-px lattice more than at others, where photos, framed
  anywhere, spread it evenly. Each image's squared finite differences of the grey image (across
  columns, and across rows) over their mean in that image, averaged over images and lines, give
  a profile over positions; each position's share is its profile value over the profile's mean
  across the ``p`` positions around it, minus 1, averaged over the positions of one phase
  (position mod ``p``) (:func:`lattice_shares`). The grid contrast is the largest RMS difference
  between the generated images' shares and the real images', over the phases of both axes and
  ``p`` in :data:`GRID_PERIODS`. 0 = the real photos' placement; a grid, blocky or streaked
  texture on the lattice raises it at any power, blur and detail off the lattice do not. It
  judges where detail lies, not how much: read it beside the sharpness.
* **Synthetic attributes** (:func:`colour_predictions`, :func:`category_predictions`): the
  dominant garment colour (nearest palette colour, votes over garment pixels) and the category
  whose silhouette template has the highest IoU with the garment mask.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

SSIM_SETTINGS = {"max_val": 1.0, "filter_size": 11, "filter_sigma": 1.5, "k1": 0.01, "k2": 0.03}
"""The documented settings of C-SSIM (Wang et al. 2004 defaults; max_val 1 for [0, 1] images)."""

SPECTRUM_FLOOR = (1.0 / 255.0) ** 2 / 12.0
"""Power per frequency of 8-bit quantisation noise (variance of a uniform error of 1/255), in
the units of :func:`power_spectra`: the least power a photo saved as uint8 resolves."""

GRID_PERIODS = (2, 4, 8)
"""Periods (px) of the lattices :func:`grid_contrast` reads: those of the decoder's three
finest x2 stages."""

GARMENT_THRESHOLD = 0.25
"""A pixel belongs to the garment when some channel is this far below white (in [0, 1])."""


# ----------------------------------------------------------------------------- conversions
def to_unit(images) -> np.ndarray:
    """Model-range images in [-1, 1] -> float32 in [0, 1] (clipped)."""
    return np.clip((np.asarray(images, np.float32) + 1.0) / 2.0, 0.0, 1.0)


def uint8_to_unit(images) -> np.ndarray:
    return np.asarray(images, np.float32) / 255.0


def _batch(images) -> np.ndarray:
    x = np.asarray(images, np.float32)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected images [N, H, W, 3] in [0, 1], got shape {x.shape}")
    return x


def _filter_size(images: np.ndarray | tf.Tensor, filter_size: int) -> int:
    side = min(int(images.shape[-3]), int(images.shape[-2]))
    return max(1, min(int(filter_size), side))


# ----------------------------------------------------------------------------- Table 3
def rmse_per_image(generated, target) -> np.ndarray:
    """float64 [N]: RMSE of each image pair, images in [0, 1]."""
    g, t = _batch(generated), _batch(target)
    return np.sqrt(np.mean((g.astype(np.float64) - t) ** 2, axis=(1, 2, 3)))


def rmse(generated, target) -> float:
    """Mean over images of the per-image RMSE (Table 3), images in [0, 1]."""
    return float(np.mean(rmse_per_image(generated, target)))


def ssim_tf(a, b, filter_size: int = 11):
    """Per-image C-SSIM as a (differentiable) tensor, equal to `tf.image.ssim` with
    SSIM_SETTINGS (the window clipped to the image size) to float32 rounding; images in [0, 1],
    computed in float32 (float64 images in float64).

    The Gaussian window is applied as two 1-D passes over the four statistics' maps at once:
    forward and backward half the time of `tf.image.ssim`'s 2-D window, which the `ssim` loss
    term pays every training step."""
    dtype = tf.float64 if tf.as_dtype(a.dtype) == tf.float64 else tf.float32
    x, y = tf.cast(a, dtype), tf.cast(b, dtype)
    f = _filter_size(a, filter_size)
    g = tf.constant(_gaussian_window(f, SSIM_SETTINGS["filter_sigma"], dtype.as_numpy_dtype))
    maps = tf.concat([x, y, x * y, x * x + y * y], -1)
    channels, size = maps.shape[-1], g.shape[0]
    for shape in ([size, 1, 1, 1], [1, size, 1, 1]):
        kernel = tf.tile(tf.reshape(g, shape), [1, 1, channels, 1])
        maps = tf.nn.depthwise_conv2d(maps, kernel, [1, 1, 1, 1], "VALID")
    mx, my, exy, exx_eyy = tf.split(maps, 4, -1)
    c1 = (SSIM_SETTINGS["k1"] * SSIM_SETTINGS["max_val"]) ** 2
    c2 = (SSIM_SETTINGS["k2"] * SSIM_SETTINGS["max_val"]) ** 2
    num0, den0 = 2.0 * mx * my, mx * mx + my * my
    luminance = (num0 + c1) / (den0 + c1)
    contrast_structure = (2.0 * exy - num0 + c2) / (exx_eyy - den0 + c2)
    return tf.reduce_mean(luminance * contrast_structure, [1, 2, 3])


def cssim_per_image(generated, target, filter_size: int = 11, batch: int = 256) -> np.ndarray:
    """float64 [N]: channel-averaged SSIM of each image pair (see module doc), images in [0, 1]."""
    g, t = _batch(generated), _batch(target)
    if g.shape != t.shape:
        raise ValueError(f"shapes differ: {g.shape} vs {t.shape}")
    out = [
        ssim_tf(g[i : i + batch], t[i : i + batch], filter_size).numpy()
        for i in range(0, len(g), batch)
    ]
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def cssim(generated, target, filter_size: int = 11) -> float:
    """Mean C-SSIM over images (Table 3), images in [0, 1]."""
    return float(np.mean(cssim_per_image(generated, target, filter_size)))


# ----------------------------------------------------------------------------- distances
def unique_images(images) -> tuple[np.ndarray, np.ndarray]:
    """(first index of each distinct image, index of each image's distinct image): ``images``
    equals ``images[first][inverse]`` exactly. Retrieval computes each distinct query once (a
    reference row repeats one image for every source)."""
    import hashlib

    x = np.ascontiguousarray(images)
    seen: dict[bytes, list[int]] = {}
    first, inverse = [], np.empty(len(x), np.int64)
    for i, img in enumerate(x):
        group = seen.setdefault(hashlib.blake2b(img.tobytes(), digest_size=16).digest(), [])
        for u in group:  # a digest shared by different images is told apart here
            if np.array_equal(x[first[u]], img):
                inverse[i] = u
                break
        else:
            group.append(len(first))
            inverse[i] = len(first)
            first.append(i)
    return np.asarray(first, np.int64), inverse


def pairwise_l2(queries, candidates, chunk: int = 512) -> np.ndarray:
    """float64 [N, M]: RMSE between every query and every candidate image (both in [0, 1]):
    ``sqrt(max(|q|^2 + |c|^2 - 2 q.c, 0) / D)`` in float64, one matrix product per block of
    ``chunk`` distinct queries and ``chunk`` candidates."""
    q, c = _batch(queries), _batch(candidates)
    first, inverse = unique_images(q)
    qf, cf = q.reshape(len(q), -1)[first], c.reshape(len(c), -1)
    out = np.empty((len(qf), len(cf)))
    for cs in range(0, len(cf), chunk):
        cc = cf[cs : cs + chunk].astype(np.float64)
        cn = (cc**2).sum(1)
        for qs in range(0, len(qf), chunk):
            qq = qf[qs : qs + chunk].astype(np.float64)
            d2 = (qq**2).sum(1)[:, None] + cn[None, :] - 2.0 * qq @ cc.T
            out[qs : qs + chunk, cs : cs + chunk] = d2
    return np.sqrt(np.maximum(out, 0.0) / qf.shape[1])[inverse]


def _gaussian_window(f: int, sigma: float, dtype=np.float32) -> np.ndarray:
    """[f]: the 1-D factor of tf.image.ssim's f x f Gaussian window (sum 1)."""
    x = np.arange(f, dtype=np.float64) - (f - 1) / 2.0
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    return (g / g.sum()).astype(dtype)


def _gaussian_matrix(size: int, filter_size: int, sigma: float) -> np.ndarray:
    """[size - f + 1, size]: the 'valid' 1-D Gaussian filter of tf.image.ssim as a matrix."""
    f = _filter_size(np.zeros((size, size, 3)), filter_size)
    g = _gaussian_window(f, sigma).astype(np.float64)
    a = np.zeros((size - f + 1, size))
    for i in range(size - f + 1):
        a[i, i : i + f] = g
    return a


def _ssim_parts(filter_size: int, h: int, w: int):
    ah = _gaussian_matrix(h, filter_size, SSIM_SETTINGS["filter_sigma"]).astype(np.float32)
    aw = _gaussian_matrix(w, filter_size, SSIM_SETTINGS["filter_sigma"]).astype(np.float32)

    def blur(z):  # [N, H, W, C] -> [N, C, H', W']
        return ah @ np.ascontiguousarray(np.moveaxis(np.asarray(z, np.float32), -1, 1)) @ aw.T

    c1 = (SSIM_SETTINGS["k1"] * SSIM_SETTINGS["max_val"]) ** 2
    c2 = (SSIM_SETTINGS["k2"] * SSIM_SETTINGS["max_val"]) ** 2
    return blur, c1, c2


def _ssim_from_stats(mx, my, exx, eyy, exy, c1, c2) -> np.ndarray:
    num0, den0 = 2.0 * mx * my, mx**2 + my**2
    lum = (num0 + c1) / (den0 + c1)
    cs = (2.0 * exy - num0 + c2) / (exx + eyy - den0 + c2)
    return (lum * cs).mean(axis=(2, 3)).mean(axis=1).astype(np.float64)


def ssim_numpy(a, b, filter_size: int = 11) -> np.ndarray:
    """Per-image C-SSIM in numpy, equal to ``tf.image.ssim`` with :data:`SSIM_SETTINGS` (to
    float32 rounding)."""
    x, y = _batch(a), _batch(b)
    blur, c1, c2 = _ssim_parts(filter_size, *x.shape[1:3])
    return _ssim_from_stats(blur(x), blur(y), blur(x * x), blur(y * y), blur(x * y), c1, c2)


def _window_mean(z, ah, aw):
    """[..., H', W', C]: the valid Gaussian window mean of ``z`` [..., H, W, C], the window's two
    1-D passes as matrix products with its band matrices ``ah`` [H', H] and ``aw`` [W', W]
    (:func:`_gaussian_matrix`; dense products keep the CPU's vector units busier than a
    depthwise conv over three channels)."""
    return tf.einsum("jw,...iwc->...ijc", aw, tf.einsum("ih,...hwc->...iwc", ah, z))


@tf.function(reduce_retracing=True)
def _pair_window_means(q, c, ah, aw):
    """[a, b, H', W', 3]: the window mean (:func:`_window_mean`) of ``q[i] * c[j]``, each pair."""
    return _window_mean(q[:, None] * c[None], ah, aw)


@tf.function(jit_compile=True)
def _pair_ssim(exy, mq, vq, mc, vc, c1, c2):
    """Mean C-SSIM [a, b] of queries x candidates from their window statistics (``exy``
    [a, b, H', W', 3]; means and variances [a | b, H', W', 3]), fused into one pass."""
    mx, my = mq[:, None], mc[None]
    p = mx * my
    ssim = (2.0 * p + c1) * (2.0 * (exy - p) + c2)
    ssim /= (mx * mx + my * my + c1) * (vq[:, None] + vc[None] + c2)
    return tf.reduce_mean(ssim, [2, 3, 4])


def pairwise_ssim_distance(queries, candidates, filter_size: int = 11, chunk: int = 512):
    """float64 [N, M]: 1 - C-SSIM between every query and every candidate (both in [0, 1]),
    equal to :func:`ssim_tf` of each pair to float32 rounding. The window statistics of each
    distinct image are computed once; per pair only the window mean of ``query * candidate``
    (`_pair_window_means`) and one fused pass of the SSIM formula, ``chunk`` pairs at a time."""
    q, c = _batch(queries), _batch(candidates)
    first, inverse = unique_images(q)
    q = q[first]
    n, m = len(q), len(c)
    out = np.empty((n, m), np.float64)
    if n == 0 or m == 0:
        return (1.0 - out)[inverse]
    c1 = (SSIM_SETTINGS["k1"] * SSIM_SETTINGS["max_val"]) ** 2
    c2 = (SSIM_SETTINGS["k2"] * SSIM_SETTINGS["max_val"]) ** 2
    f = _filter_size(q, filter_size)
    ah, aw = (
        tf.constant(_gaussian_matrix(side, f, SSIM_SETTINGS["filter_sigma"]), tf.float32)
        for side in q.shape[1:3]
    )

    def stats(x):  # window mean and variance of each image, [P, H', W', 3] each
        mean = _window_mean(x, ah, aw)
        return mean, _window_mean(x * x, ah, aw) - mean * mean

    ct = tf.constant(c)
    mc, vc = stats(ct)
    block_c = min(m, chunk)
    block_q = max(1, chunk // block_c)
    for qs in range(0, n, block_q):
        qt = tf.constant(q[qs : qs + block_q])
        mq, vq = stats(qt)
        for cs in range(0, m, block_c):
            cb = ct[cs : cs + block_c]
            a, b = len(qt), len(cb)
            exy = _pair_window_means(qt, cb, ah, aw)
            ssim = _pair_ssim(exy, mq, vq, mc[cs : cs + b], vc[cs : cs + b], c1, c2)
            out[qs : qs + a, cs : cs + b] = ssim.numpy()
    return (1.0 - out)[inverse]


def product_distances(pair_dist: np.ndarray, candidate_product: np.ndarray, num_products: int):
    """[N, M] distances to candidate images -> [N, P] distance to each product's nearest image."""
    candidate_product = np.asarray(candidate_product)
    out = np.full((pair_dist.shape[0], num_products), np.inf)
    for p in range(num_products):
        cols = candidate_product == p
        if cols.any():
            out[:, p] = pair_dist[:, cols].min(axis=1)
    return out


# ----------------------------------------------------------------------------- relevance
def retrieval_topk(distances, true_index, k: int = 1) -> float:
    """Fraction of rows of ``distances [N, P]`` whose ``true_index`` is among the k smallest.

    Ties are broken pessimistically (a product tied with the true one counts as ranked ahead),
    so constant outputs score at most chance, never 1.0 by accident.
    """
    d = np.asarray(distances, np.float64)
    true_index = np.asarray(true_index)
    if len(d) == 0:
        return float("nan")
    true_d = d[np.arange(len(d)), true_index]
    ahead = (d <= true_d[:, None]).sum(axis=1) - 1  # other products at least as close
    return float(np.mean(ahead < k))


def chance_topk(num_products: int, k: int) -> float:
    """Expected top-k accuracy of a random ranking of ``num_products`` products."""
    return min(1.0, k / max(1, num_products))


def retrieval_scores(
    generated, product, candidates, candidate_product, num_products, ks=(1, 5), distances=None
):
    """Top-k retrieval accuracy of the true product, in pixel (L2) and SSIM space, plus chance.

    ``generated [N]`` in [0, 1] with true product index ``product [N]``; ``candidates [M]`` the
    products' target images with ``candidate_product [M]``. A product's distance is that of its
    nearest target image. ``distances``: ``{"l2": pairwise_l2(generated, candidates), "ssim":
    pairwise_ssim_distance(generated, candidates)}`` when the caller has them already.
    """
    out = {}
    distances = distances or {}
    for name, fn in (("l2", pairwise_l2), ("ssim", pairwise_ssim_distance)):
        pair = distances[name] if name in distances else fn(generated, candidates)
        d = product_distances(pair, candidate_product, num_products)
        for k in ks:
            out[f"top{k}_{name}"] = retrieval_topk(d, product, k)
    for k in ks:
        out[f"top{k}_chance"] = chance_topk(num_products, k)
    return out


# ----------------------------------------------------------------------------- sharpness
def gradient_energy(images) -> float:
    """Mean squared finite-difference gradient of the grey images (in [0, 1])."""
    x = _batch(images).astype(np.float64).mean(axis=-1)
    dx, dy = np.diff(x, axis=2), np.diff(x, axis=1)
    return float((np.mean(dx**2) + np.mean(dy**2)) / 2.0)


def sharpness_ratio(generated, target) -> float:
    """Gradient energy of ``generated`` over that of ``target`` (1.0 = as sharp as the real)."""
    ref = gradient_energy(target)
    return float(gradient_energy(generated) / ref) if ref > 0 else float("nan")


# ----------------------------------------------------------------------------- spectral gap
def power_spectra(images, chunk: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(along rows [W // 2], along columns [H // 2]) float64: power of the 1-D DFT of each
    image line at the frequencies k / W (k = 1 .. W // 2) and k / H, averaged over images, lines
    and channels (images in [0, 1]). Power is ``|DFT|^2 / length``, so white noise of variance v
    has power v at every frequency."""
    x = _batch(images)
    n, h, w, c = x.shape
    if n == 0:
        raise ValueError("power_spectra needs at least one image")
    rows, cols = np.zeros(w // 2 + 1), np.zeros(h // 2 + 1)
    for s in range(0, n, chunk):
        part = x[s : s + chunk].astype(np.float64)
        rows += (np.abs(np.fft.rfft(part, axis=2)) ** 2).sum(axis=(0, 1, 3))
        cols += (np.abs(np.fft.rfft(part, axis=1)) ** 2).sum(axis=(0, 2, 3))
    return rows[1:] / (n * h * c * w), cols[1:] / (n * w * c * h)


def spectral_log_ratio(generated, target=None, reference=None) -> tuple[np.ndarray, np.ndarray]:
    """(along rows, along columns): ``log10`` of the generated images' power over the real
    images' at each frequency of :func:`power_spectra`, both floored at :data:`SPECTRUM_FLOOR`;
    > 0 where the generated images have too much power (artefacts, noise), < 0 too little (blur).
    ``reference`` is ``power_spectra(target)``, for scoring several sets against one."""
    ref = power_spectra(target) if reference is None else reference
    gen = power_spectra(generated)
    if [len(a) for a in gen] != [len(a) for a in ref]:
        raise ValueError("generated and real images differ in size")
    return tuple(
        np.log10(np.maximum(g, SPECTRUM_FLOOR) / np.maximum(r, SPECTRUM_FLOOR))
        for g, r in zip(gen, ref, strict=True)
    )


def spectral_gap_details(generated, target=None, reference=None) -> dict:
    """The spectral gap (module doc) and where it lies: ``spectral_gap`` (decades, >= 0),
    ``spectral_gap_period`` (px: the period of that frequency along its axis) and
    ``spectral_gap_sign`` (+1 too much power there, -1 too little)."""
    g = _batch(generated)
    rows, cols = spectral_log_ratio(g, target, reference)
    best = {}
    for ratio, length in ((rows, g.shape[2]), (cols, g.shape[1])):
        k = int(np.argmax(np.abs(ratio)))
        if not best or abs(ratio[k]) > best["spectral_gap"]:
            best = {
                "spectral_gap": float(abs(ratio[k])),
                "spectral_gap_period": float(length / (k + 1)),
                "spectral_gap_sign": 1 if ratio[k] >= 0 else -1,
            }
    return best


def spectral_gap(generated, target=None, reference=None) -> float:
    """Largest ``|log10|`` ratio of the generated images' power spectrum to the real images'
    (module doc): 0 for the real spectrum; blur and grid artefacts raise it."""
    return spectral_gap_details(generated, target, reference)["spectral_gap"]


# ----------------------------------------------------------------------------- grid contrast
def lattice_shares(images, periods=GRID_PERIODS, chunk: int = 256) -> dict:
    """{(p, axis, side): float64 [p]}: the share of gradient energy at each phase of the
    ``p``-px lattice along ``axis`` ("x" across columns, "y" across rows; ``side`` px long),
    relative to the mean (0 = even; module doc). Images with no gradient carry no weight; with
    none that has one, every share is NaN."""
    x = _batch(images)
    n, h, w, _ = x.shape
    profiles = {("x", w): np.zeros(w - 1), ("y", h): np.zeros(h - 1)}
    weighted = 0
    for s in range(0, n, chunk):
        grey = x[s : s + chunk].astype(np.float64).mean(axis=-1)
        dx, dy = np.diff(grey, axis=2) ** 2, np.diff(grey, axis=1) ** 2
        energy = dx.mean(axis=(1, 2)) + dy.mean(axis=(1, 2))
        keep = energy > 0  # a blank image has no placement
        profiles[("x", w)] += (dx[keep].mean(axis=1) / energy[keep, None]).sum(axis=0)
        profiles[("y", h)] += (dy[keep].mean(axis=2) / energy[keep, None]).sum(axis=0)
        weighted += int(keep.sum())
    shares = {}
    for p in periods:
        for (axis, side), e in profiles.items():
            if len(e) < 2 * p:
                continue
            if not weighted:
                shares[(p, axis, side)] = np.full(p, np.nan)
                continue
            # mean over p consecutive positions (one of each phase): the lattice averages out
            sums = np.cumsum(np.r_[0.0, e])
            around = (sums[p:] - sums[:-p]) / p  # around[s] = mean of e[s : s + p]
            j = np.arange(p // 2, len(e) - p + p // 2 + 1)
            j = j[around[j - p // 2] > 0]
            excess = e[j] / around[j - p // 2] - 1.0
            shares[(p, axis, side)] = np.array([excess[j % p == k].mean() for k in range(p)])
    return shares


def grid_contrast_details(generated, target=None, reference=None) -> dict:
    """The grid contrast (module doc) and where it lies: ``grid_contrast`` (>= 0) and
    ``grid_contrast_period`` (px). ``reference`` is ``lattice_shares(target)``, for scoring
    several sets against one."""
    ref = lattice_shares(target) if reference is None else reference
    gen = lattice_shares(generated)
    if gen.keys() != ref.keys():
        raise ValueError("generated and real images differ in size")
    best = {"grid_contrast": 0.0, "grid_contrast_period": float("nan")}
    for key, share in gen.items():
        value = float(np.sqrt(np.mean((share - ref[key]) ** 2)))
        if not np.isfinite(value):  # a set without any gradient has no placement to compare
            return {"grid_contrast": float("nan"), "grid_contrast_period": float("nan")}
        if value > best["grid_contrast"]:
            best = {"grid_contrast": value, "grid_contrast_period": float(key[0])}
    return best


def grid_contrast(generated, target=None, reference=None) -> float:
    """RMS difference of the generated images' lattice shares from the real images' (module
    doc): 0 for the real placement; texture on the decoder's lattice raises it."""
    return grid_contrast_details(generated, target, reference)["grid_contrast"]


# ----------------------------------------------------------------------------- synthetic attributes
def garment_mask(images, threshold: float = GARMENT_THRESHOLD) -> np.ndarray:
    """bool [N, S, S]: pixels of a product photo (on white) that belong to the garment."""
    return (1.0 - _batch(images)).max(axis=-1) > threshold


def colour_predictions(images, palette: dict[str, tuple[int, int, int]]) -> list[str | None]:
    """The dominant garment colour of each image (on white) as a ``palette`` name.

    Each garment pixel votes for the nearest of the palette colours and their half-bright
    shades (the synthetic patterns' secondary colour); a shade's vote counts for its colour.
    ``None`` when an image has no garment pixel.
    """
    names = list(palette)
    base = np.asarray([palette[n] for n in names], np.float64) / 255.0
    refs = np.concatenate([base, np.floor(base * 255.0 * 0.5) / 255.0])
    x = _batch(images).astype(np.float64)
    masks = garment_mask(x)
    out = []
    for img, mask in zip(x, masks, strict=True):
        pix = img[mask]
        if len(pix) == 0:
            out.append(None)
            continue
        nearest = ((pix[:, None, :] - refs[None]) ** 2).sum(-1).argmin(1) % len(names)
        out.append(names[int(np.bincount(nearest, minlength=len(names)).argmax())])
    return out


def category_predictions(images, templates: dict[str, np.ndarray]) -> list[str]:
    """The category whose silhouette (bool [S, S] template) has the highest IoU with the
    image's garment mask."""
    names = list(templates)
    tm = np.stack([np.asarray(templates[n], bool) for n in names])  # [C, S, S]
    masks = garment_mask(images)
    inter = np.einsum("nhw,chw->nc", masks.astype(np.float64), tm.astype(np.float64))
    union = masks.sum((1, 2))[:, None] + tm.sum((1, 2))[None, :] - inter
    iou = inter / np.maximum(union, 1.0)
    return [names[int(i)] for i in iou.argmax(1)]


# ----------------------------------------------------------------------------- Keras metrics
def _to_unit_tensor(x, value_range):
    lo, hi = value_range
    x = (tf.cast(x, tf.float32) - lo) / (hi - lo)
    return tf.clip_by_value(x, 0.0, 1.0)


@keras.saving.register_keras_serializable(package="keras_pldt")
class RMSE(keras.metrics.Metric):
    """Mean per-image RMSE in [0, 1] units (Table 3); inputs in ``value_range`` ([-1, 1])."""

    def __init__(self, name="rmse01", value_range=(-1.0, 1.0), **kwargs):
        super().__init__(name=name, **kwargs)
        self.value_range = tuple(value_range)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        t = _to_unit_tensor(y_true, self.value_range)
        g = _to_unit_tensor(y_pred, self.value_range)
        per = tf.sqrt(tf.reduce_mean(tf.square(g - t), axis=[1, 2, 3]))
        self.total.assign_add(tf.reduce_sum(per))
        self.count.assign_add(tf.cast(tf.shape(per)[0], tf.float32))

    def result(self):
        return tf.math.divide_no_nan(self.total, self.count)

    def get_config(self):
        return {**super().get_config(), "value_range": list(self.value_range)}


@keras.saving.register_keras_serializable(package="keras_pldt")
class CSSIM(keras.metrics.Metric):
    """Mean channel-averaged SSIM (:data:`SSIM_SETTINGS`); inputs in ``value_range``."""

    def __init__(self, name="c_ssim", value_range=(-1.0, 1.0), filter_size=11, **kwargs):
        super().__init__(name=name, **kwargs)
        self.value_range = tuple(value_range)
        self.filter_size = int(filter_size)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        t = _to_unit_tensor(y_true, self.value_range)
        g = _to_unit_tensor(y_pred, self.value_range)
        per = ssim_tf(g, t, self.filter_size)
        self.total.assign_add(tf.reduce_sum(per))
        self.count.assign_add(tf.cast(tf.shape(per)[0], tf.float32))

    def result(self):
        return tf.math.divide_no_nan(self.total, self.count)

    def get_config(self):
        return {
            **super().get_config(),
            "value_range": list(self.value_range),
            "filter_size": self.filter_size,
        }
