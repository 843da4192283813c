"""A synthetic LookBook, rendered deterministically from a seed (the package's embedded dataset).

Each product is a top with a category (:data:`CATEGORIES`), a colour (:data:`PALETTE`) and a
pattern (:data:`PATTERNS`). It has one flat product photo on white (``CLEAN1``, PNG: the category's
silhouette :func:`category_template` filled with the garment's colour and pattern, so the
silhouette is exact) and ``sources_per_product`` photos of a simple human figure wearing it
(``CLEAN0``, JPEG quality 95): varied pose, scale, position, skin/hair/trouser colours, cluttered
backgrounds. ``attributes.csv`` records pid, category, colour, pattern and the colour's RGB.

A product's images depend only on ``(seed, pid, image_size, sources_per_product)``.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "CATEGORIES",
    "PALETTE",
    "PATTERNS",
    "VERSION",
    "category_template",
    "default_dataset",
    "generate",
    "read_attributes",
    "render_product",
]

VERSION = "v1"
CATEGORIES = ("t-shirt", "long-sleeve", "tank top", "dress")
PATTERNS = ("solid", "stripes", "dots", "two-tone", "logo")
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (210, 30, 35),
    "orange": (245, 130, 20),
    "yellow": (240, 210, 30),
    "green": (40, 160, 60),
    "teal": (20, 150, 160),
    "blue": (35, 70, 205),
    "purple": (125, 45, 170),
    "pink": (240, 120, 180),
}

# Silhouettes in unit coordinates (x right, y down) of a square box.
_POLYGONS = {
    "t-shirt": [
        (0.36, 0.12), (0.50, 0.20), (0.64, 0.12), (0.90, 0.26), (0.82, 0.43), (0.72, 0.37),
        (0.72, 0.90), (0.28, 0.90), (0.28, 0.37), (0.18, 0.43), (0.10, 0.26),
    ],
    "long-sleeve": [
        (0.36, 0.12), (0.50, 0.20), (0.64, 0.12), (0.86, 0.22), (0.97, 0.80), (0.86, 0.82),
        (0.72, 0.42), (0.72, 0.90), (0.28, 0.90), (0.28, 0.42), (0.14, 0.82), (0.03, 0.80),
        (0.14, 0.22),
    ],
    "tank top": [
        (0.35, 0.10), (0.42, 0.10), (0.50, 0.26), (0.58, 0.10), (0.65, 0.10), (0.68, 0.30),
        (0.72, 0.38), (0.72, 0.90), (0.28, 0.90), (0.28, 0.38), (0.32, 0.30),
    ],
    "dress": [
        (0.36, 0.05), (0.50, 0.14), (0.64, 0.05), (0.69, 0.10), (0.66, 0.40), (0.86, 0.95),
        (0.14, 0.95), (0.34, 0.40), (0.31, 0.10),
    ],
}  # fmt: skip
_SKIN = [(255, 219, 172), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36)]
_HAIR = [(20, 20, 20), (90, 56, 37), (170, 120, 60), (220, 190, 120), (150, 150, 150)]
_TROUSERS = [(30, 40, 80), (25, 25, 30), (190, 170, 130), (110, 110, 115), (60, 90, 140)]


@lru_cache(maxsize=512)
def _template(category: str, size: int) -> np.ndarray:
    if category not in _POLYGONS:
        raise ValueError(f"unknown category {category!r}; expected one of {CATEGORIES}")
    im = Image.new("L", (size, size), 0)
    pts = [(x * size, y * size) for x, y in _POLYGONS[category]]
    ImageDraw.Draw(im).polygon(pts, fill=255)
    mask = np.asarray(im) > 127
    mask.flags.writeable = False
    return mask


def category_template(category: str, size: int) -> np.ndarray:
    """bool [size, size]: the silhouette of ``category`` centred in a square (the product photo's
    garment pixels)."""
    return _template(category, int(size)).copy()


def _secondary(colour) -> np.ndarray:
    return (np.asarray(colour, np.float32) * 0.5).astype(np.uint8)


def _texture(colour, pattern: str, size: int) -> np.ndarray:
    """uint8 [size, size, 3]: the garment's fabric in the box's unit coordinates."""
    tex = np.empty((size, size, 3), np.uint8)
    tex[:] = colour
    sec = _secondary(colour)
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size
    if pattern == "stripes":
        sel = (yy * 10.0) % 1.0 < 0.3
    elif pattern == "dots":
        fx, fy = (xx * 8.0) % 1.0 - 0.5, (yy * 8.0) % 1.0 - 0.5
        sel = fx**2 + fy**2 < 0.22**2
    elif pattern == "two-tone":
        sel = yy < 0.30
    elif pattern == "logo":
        sel = (xx - 0.5) ** 2 + (yy - 0.42) ** 2 < 0.09**2
    elif pattern == "solid":
        sel = None
    else:
        raise ValueError(f"unknown pattern {pattern!r}; expected one of {PATTERNS}")
    if sel is not None:
        tex[sel] = sec
    return tex


def render_product(category: str, colour: str, pattern: str, size: int) -> np.ndarray:
    """uint8 [size, size, 3]: the product photo (garment on white)."""
    mask = _template(category, size)
    img = np.full((size, size, 3), 255, np.uint8)
    img[mask] = _texture(PALETTE[colour], pattern, size)[mask]
    return img


def _background(rng: np.random.Generator, w: int) -> Image.Image:
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0.0, 1.0, w, dtype=np.float32)
    grad = c0[None, :] * (1 - t[:, None]) + c1[None, :] * t[:, None]  # [w, 3]
    arr = np.broadcast_to(grad[:, None, :], (w, w, 3))
    if rng.random() < 0.5:
        arr = arr.transpose(1, 0, 2)
    im = Image.fromarray(np.ascontiguousarray(arr).astype(np.uint8))
    d = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(3, 8))):
        x0, y0 = rng.uniform(-0.2, 1.0, 2) * w
        x1, y1 = x0 + rng.uniform(0.1, 0.6) * w, y0 + rng.uniform(0.1, 0.6) * w
        d.rectangle([x0, y0, x1, y1], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return im


def _person(category: str, colour, pattern: str, size: int, rng: np.random.Generator):
    w = 2 * size  # drawn at 2x, downsampled for antialiasing
    im = _background(rng, w)
    d = ImageDraw.Draw(im)
    skin = _SKIN[int(rng.integers(len(_SKIN)))]
    hair = _HAIR[int(rng.integers(len(_HAIR)))]
    trousers = _TROUSERS[int(rng.integers(len(_TROUSERS)))]
    h = rng.uniform(0.75, 0.98) * w  # figure height
    y0 = rng.uniform(0.0, w - h)
    cx = rng.uniform(0.32, 0.68) * w
    r = 0.075 * h  # head radius
    g = int(round(0.46 * h))  # garment box side
    gx, gy = int(round(cx - g / 2)), int(round(y0 + 1.8 * r - 0.12 * g))
    hip_y = gy + 0.86 * g
    # legs
    leg_c = skin if category == "dress" else trousers
    lw = max(2, int(0.075 * h))
    for side in (-1, 1):
        spread = rng.uniform(0.0, 0.12) * h
        d.line(
            [(cx + side * 0.06 * h, hip_y), (cx + side * (0.06 * h + spread), y0 + h)],
            fill=leg_c, width=lw,
        )  # fmt: skip
    # arms (under the garment: sleeves cover the upper arm)
    arm_c = tuple(int(v) for v in colour) if category == "long-sleeve" else skin
    aw = max(2, int(0.055 * h))
    for side in (-1, 1):
        sx, sy = gx + (0.5 + side * 0.30) * g, gy + 0.22 * g
        ang = np.deg2rad(rng.uniform(-25.0, 70.0))  # 0 = hanging down, >0 = raised outwards
        ln = 0.36 * h
        d.line(
            [(sx, sy), (sx + side * ln * np.sin(ang), sy + ln * np.cos(ang))],
            fill=arm_c, width=aw,
        )  # fmt: skip
    # garment
    mask = Image.fromarray(_template(category, g).astype(np.uint8) * 255)
    im.paste(Image.fromarray(_texture(colour, pattern, g)), (gx, gy), mask)
    # head and hair
    hx, hy = cx + rng.uniform(-0.02, 0.02) * h, y0 + r
    d.ellipse([hx - r, hy - r, hx + r, hy + r], fill=skin)
    d.chord([hx - r, hy - r, hx + r, hy + r * rng.uniform(0.2, 0.8)], 180, 360, fill=hair)
    return im.resize((size, size), Image.BOX)


def _product_attributes(seed: int, pid: int) -> tuple[str, str, str]:
    rng = np.random.default_rng([seed, pid, 1])
    category = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
    colour = list(PALETTE)[int(rng.integers(len(PALETTE)))]
    pattern = PATTERNS[int(rng.integers(len(PATTERNS)))]
    return category, colour, pattern


def generate(
    out_dir: str | Path,
    num_products: int = 200,
    sources_per_product: int = 8,
    seed: int = 0,
    image_size: int = 64,
) -> Path:
    """Writes a synthetic LookBook into ``out_dir`` (created if needed) and returns it.

    Files: ``PID{p:06d}_CLEAN1_IID{i:06d}.png`` (product photo) and
    ``PID{p:06d}_CLEAN0_IID{i:06d}.jpg`` (person photos), plus ``attributes.csv``.
    """
    if num_products < 1 or sources_per_product < 1 or image_size < 8:
        raise ValueError("need num_products >= 1, sources_per_product >= 1, image_size >= 8")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    per = sources_per_product + 1
    for pid in range(num_products):
        category, colour, pattern = _product_attributes(seed, pid)
        rgb = PALETTE[colour]
        iid = pid * per
        Image.fromarray(render_product(category, colour, pattern, image_size)).save(
            out / f"PID{pid:06d}_CLEAN1_IID{iid:06d}.png", optimize=False
        )
        rng = np.random.default_rng([seed, pid, 2])
        for k in range(sources_per_product):
            im = _person(category, rgb, pattern, image_size, rng)
            im.save(out / f"PID{pid:06d}_CLEAN0_IID{iid + 1 + k:06d}.jpg", quality=95)
        rows.append([f"{pid:06d}", category, colour, pattern, *rgb])
    with open(out / "attributes.csv", "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["pid", "category", "colour", "pattern", "r", "g", "b"])
        wr.writerows(rows)
    return out


def read_attributes(root: str | Path) -> dict[str, dict]:
    """pid -> {category, colour, pattern, rgb} from a generated folder's ``attributes.csv``."""
    out = {}
    with open(Path(root) / "attributes.csv", newline="") as f:
        for r in csv.DictReader(f):
            out[r["pid"]] = {
                "category": r["category"],
                "colour": r["colour"],
                "pattern": r["pattern"],
                "rgb": (int(r["r"]), int(r["g"]), int(r["b"])),
            }
    return out


def cache_root() -> Path:
    env = os.environ.get("KERAS_PLDT_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "keras_pldt"


def default_dataset(
    num_products: int = 200,
    sources_per_product: int = 8,
    seed: int = 0,
    image_size: int = 64,
    root: str | Path | None = None,
) -> Path:
    """The synthetic dataset in the cache folder (``$KERAS_PLDT_HOME`` or
    ``~/.cache/keras_pldt``), generated once (atomically: temp folder, then rename) and reused."""
    base = Path(root) if root is not None else cache_root()
    name = f"synthetic-{VERSION}-p{num_products}-s{sources_per_product}-seed{seed}-{image_size}px"
    final = base / name
    if (final / "attributes.csv").is_file():
        return final
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=base))
    try:
        generate(tmp, num_products, sources_per_product, seed, image_size)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "attributes.csv").is_file():  # not a concurrent winner: a real error
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
