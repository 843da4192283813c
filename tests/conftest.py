import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

#: Real photos in LookBook naming (train/ and test/ subfolders), outside the repo.
GROCERY_VAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "grocery_val"

SOURCE_G, TARGET_G = 40, 200  # green channel of tiny test images: which domain


def product_colour(pid: int, clean: int, k: int = 0) -> tuple[int, int, int]:
    """Colour of tiny test image k of product pid: R encodes the product (< 50), G the domain."""
    return (5 * (pid + 1), TARGET_G if clean else SOURCE_G, 30 * k)


def decode_colour(pixel) -> tuple[int, int]:
    """(pid, clean) of a pixel of a tiny test image after [-1, 1] scaling."""
    rgb = np.round((np.asarray(pixel) + 1.0) * 127.5)
    return int(round(rgb[0] / 5)) - 1, int(rgb[1] == TARGET_G)


@pytest.fixture
def make_lookbook(tmp_path):
    """Factory writing a tiny LookBook folder of flat-coloured PNGs (colour = product/domain)."""

    def make(root=None, products=6, sources=3, targets=1, size=(20, 16), start=0):
        root = Path(root) if root is not None else tmp_path / "lookbook"
        root.mkdir(parents=True, exist_ok=True)
        iid = 0
        for p in range(start, start + products):
            for clean, n in ((0, sources), (1, targets)):
                for k in range(n):
                    im = Image.new("RGB", size, product_colour(p, clean, k))
                    im.save(root / f"PID{p:04d}_CLEAN{clean}_IID{p:04d}{iid:04d}.png")
                    iid += 1
        return root

    return make
