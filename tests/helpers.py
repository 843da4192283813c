"""Constants and functions shared by the tests (fixtures live in conftest.py).

Float tolerances are counted in float32 roundings (`EPS32`) of the magnitude the compared values
were computed at, so they hold at any scale and on any host's kernels.
"""

from pathlib import Path

import numpy as np

#: Real photos in LookBook naming (train/ and test/ subfolders), outside the repo.
GROCERY_VAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "grocery_val"

SOURCE_G, TARGET_G = 40, 200  # green channel of tiny test images: which domain

#: One float32 rounding, relative (2**-23).
EPS32 = float(np.finfo(np.float32).eps)


def product_colour(pid: int, clean: int, k: int = 0) -> tuple[int, int, int]:
    """Colour of tiny test image k of product pid: R encodes the product (< 50), G the domain."""
    return (5 * (pid + 1), TARGET_G if clean else SOURCE_G, 30 * k)


def decode_colour(pixel) -> tuple[int, int]:
    """(pid, clean) of a pixel of a tiny test image after [-1, 1] scaling."""
    rgb = np.round((np.asarray(pixel) + 1.0) * 127.5)
    return int(round(rgb[0] / 5)) - 1, int(rgb[1] == TARGET_G)


def sum_ulps(terms: int, margin: float = 8.0) -> float:
    """Float32 roundings by which two evaluation orders of a sum of `terms` products may differ,
    relative to the largest result: rounding errors of a sum grow like sqrt(terms) (Higham and
    Mary's probabilistic bound), times `margin`."""
    return margin * float(np.sqrt(terms))


def tolerance(scale, ulps: float) -> float:
    """`ulps` float32 roundings of the largest |scale| (what the values were computed at)."""
    return ulps * EPS32 * float(np.max(np.abs(np.asarray(scale, np.float64))))


def assert_close(actual, desired, ulps: float, scale=None, err_msg: str = "") -> None:
    """Assert |actual - desired| <= `ulps` float32 roundings of `scale` at every element.

    `scale` defaults to the largest |desired|: an element near 0 carries the rounding of the
    large terms it was computed from, so it is judged at their magnitude, not its own.
    """
    desired = np.asarray(desired, np.float64)
    atol = tolerance(desired if scale is None else scale, ulps)
    np.testing.assert_allclose(
        np.asarray(actual, np.float64), desired, rtol=0, atol=atol, err_msg=err_msg
    )


def adam_step(config) -> float:
    """About the most one Adam update moves a weight, whatever its gradient (Adam divides the
    step by the gradient's own scale): the learning rate, which every network's Adam uses."""
    return config.learning_rate
