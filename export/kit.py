"""Shared parts of the deployment kit: reading photos, the training preprocessing in numpy/PIL,
and the convert loop. Depends only on numpy and pillow (no TensorFlow, Keras or keras_pldt)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def read_photo(path) -> np.ndarray:
    """Any PIL-readable photo -> RGB uint8 [H, W, 3]; EXIF rotation applied, alpha on white."""
    with Image.open(path) as image:
        image.load()
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "PA") or (
            image.mode == "P" and "transparency" in image.info
        ):
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(white, rgba)
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def letterbox(photo: np.ndarray, size: int) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [S, S, 3]: bilinear resize of the longer side to S, pad 255."""
    h, w = photo.shape[:2]
    scale = np.float32(size) / np.float32(max(h, w))
    nh = int(min(max(np.round(np.float32(h) * scale), 1), size))
    nw = int(min(max(np.round(np.float32(w) * scale), 1), size))
    image = Image.fromarray(photo)
    if (nw, nh) != (w, h):
        image = image.resize((nw, nh), Image.BILINEAR)
    out = np.full((size, size, 3), 255, np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top : top + nh, left : left + nw] = np.asarray(image)
    return out


def to_pixels(y: np.ndarray) -> np.ndarray:
    return np.round(np.clip((y + 1.0) * 127.5, 0, 255)).astype(np.uint8)


def run(converter, inputs: Path, output: Path, side_by_side: bool, raw: bool) -> int:
    files = sorted(p for p in inputs.rglob("*") if p.is_file()) if inputs.is_dir() else [inputs]
    output.mkdir(parents=True, exist_ok=True)
    done, skipped = 0, 0
    for file in files:
        if file.suffix.lower() not in IMAGE_EXTENSIONS:
            print(f"skipped {file}: unsupported file type", file=sys.stderr)
            skipped += 1
            continue
        try:
            photo = read_photo(file)
        except Exception as error:
            print(f"skipped {file}: cannot read image: {error}", file=sys.stderr)
            skipped += 1
            continue
        pixels = letterbox(photo, converter.image_size)
        y = converter(pixels)
        product = to_pixels(y)
        Image.fromarray(product).save(output / f"{file.stem}.png")
        if raw:
            np.save(output / f"{file.stem}.npy", y)
        if side_by_side:
            pair = np.concatenate([pixels, product], axis=1)
            Image.fromarray(pair).save(output / f"{file.stem}_side_by_side.png")
        done += 1
    print(f"converted {done} photo(s) into {output}; skipped {skipped}")
    return 0 if done else 1


def build_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, type=Path, help="the exported model file")
    parser.add_argument("--input", required=True, type=Path, help="a photo or a folder")
    parser.add_argument("--output", required=True, type=Path, help="folder for <name>.png")
    parser.add_argument("--side-by-side", action="store_true", help="also <name>_side_by_side.png")
    parser.add_argument("--raw", action="store_true", help="also <name>.npy, float in [-1, 1]")
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads (default: the runtime's own choice)"
    )
    return parser
