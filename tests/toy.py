"""A tiny learnable transfer problem for tests: a coloured blob on clutter -> that colour on white.

The source is a random-colour square at a random place on a grey-noise background; its
associated target is a fixed centred silhouette filled with the same colour on white. An
unassociated target is another sample's target. Pixels in [-1, 1].
"""

import numpy as np
import tensorflow as tf

from keras_pldt.data.pipeline import without_autotune


def toy_arrays(n, size=32, seed=0):
    rng = np.random.default_rng(seed)
    colours = rng.uniform(-1, 1, (n, 3)).astype("float32")
    source = rng.uniform(-0.3, 0.3, (n, size, size, 3)).astype("float32")
    half = size // 4
    for i in range(n):
        y, x = rng.integers(0, size - 2 * half, 2)
        source[i, y : y + 2 * half, x : x + 2 * half] = colours[i]
    target = np.ones((n, size, size, 3), "float32")
    lo, hi = size // 4, size - size // 4
    target[:, lo:hi, lo:hi] = colours[:, None, None, :]
    unassociated = target[np.roll(np.arange(n), 1)]
    return {"source": source, "target": target, "unassociated": unassociated}


def toy_dataset(n=64, size=32, batch=16, seed=0, repeat=True):
    arrays = toy_arrays(n, size, seed)
    ds = tf.data.Dataset.from_tensor_slices(arrays)
    if repeat:
        ds = ds.shuffle(n, seed=seed).repeat()
    return without_autotune(ds.batch(batch, drop_remainder=True))
