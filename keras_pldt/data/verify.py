"""Checks a dataset before training: every problem is reported with its file name.

Problems found: files that do not decode (truncated, zero bytes, not an image), unsupported modes
(e.g. CMYK JPEG are accepted: TF converts them; exotic modes are reported), names that do not
match the LookBook pattern, products without a CLEAN1 or a CLEAN0 image, images too small or
absurdly large, links that lead to no file (a symbolic link loop, a dangling link), which count as
undecodable. The user's files are only read, never modified.
"""

from __future__ import annotations

import errno
import os
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

if TYPE_CHECKING:  # lookbook imports TensorFlow: imported where used
    from .lookbook import PairedDataset

__all__ = ["Issue", "Report", "verify_dataset", "check_image", "unreadable"]

MIN_SIDE = 8
MAX_SIDE = 20000
MAX_PIXELS = 100_000_000
_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "I;16", "I;16B", "I;16L", "I", "YCbCr"}


@dataclass(frozen=True)
class Issue:
    kind: str  # "name" | "decode" | "size" | "product"
    path: str  # file path, or "PID<id>" (plus " [split]") for a product issue
    reason: str

    def __str__(self) -> str:
        return f"{self.kind:8s} {self.path}: {self.reason}"


@dataclass
class Report:
    """Result of :func:`verify_dataset`. ``bad_files`` are skipped by the pipelines."""

    root: str
    num_files: int = 0  # every image file found, misnamed ones included
    num_products: int = 0
    issues: list[Issue] = field(default_factory=list)

    @property
    def bad_files(self) -> set[Path]:
        return {Path(i.path) for i in self.issues if i.kind in ("decode", "size")}

    @property
    def ok(self) -> bool:
        return not self.issues

    def counts(self) -> dict[str, int]:
        return dict(Counter(i.kind for i in self.issues))

    def add(self, kind: str, path, reason: str) -> None:
        self.issues.append(Issue(kind, str(path), reason))

    def summary(self) -> str:
        """One line with counts."""
        c = self.counts()
        if not c:
            return (
                f"data {self.root}: {self.num_files} files, {self.num_products} products, "
                "no problems"
            )
        parts = []
        if c.get("decode"):
            parts.append(f"{c['decode']} undecodable")
        if c.get("size"):
            parts.append(f"{c['size']} bad size")
        if c.get("name"):
            parts.append(f"{c['name']} unmatched names")
        if c.get("product"):
            parts.append(f"{c['product']} incomplete products")
        return (
            f"data {self.root}: {self.num_files} files, {self.num_products} usable products; "
            f"skipped: {', '.join(parts)}"
        )

    def __str__(self) -> str:
        lines = [self.summary()] + [f"  {i}" for i in self.issues]
        return "\n".join(lines)


def unreadable(path: str | Path) -> str | None:
    """Why `path` cannot be opened (a loop of symbolic links, a link to nothing, no
    permission), or None when it can be."""
    path = Path(path)
    try:
        path.stat()
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "a loop of symbolic links"
        if e.errno == errno.ENOENT and path.is_symlink():
            return f"a symbolic link to {os.readlink(path)}, which does not exist"
        return e.strerror or str(e)
    return None


def check_image(
    path: str | Path, min_side: int = MIN_SIDE, max_side: int = MAX_SIDE, max_pixels=MAX_PIXELS
) -> tuple[str, str] | None:
    """``None`` if the image is usable, else ``(kind, reason)``. Reads the file only."""
    path = Path(path)
    why = unreadable(path)
    if why is not None:
        return "decode", f"cannot read ({why})"
    size = path.stat().st_size
    if size == 0:
        return "decode", "empty file (0 bytes)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                fmt, mode, (w, h) = im.format, im.mode, im.size
                if fmt not in ("JPEG", "PNG", "MPO"):
                    return "decode", f"unsupported format {fmt} (JPEG or PNG expected)"
                if w < min_side or h < min_side:
                    return "size", f"too small ({w}x{h} < {min_side} px)"
                if w > max_side or h > max_side or w * h > max_pixels:
                    return "size", f"too large ({w}x{h})"
                if mode not in _MODES:
                    return "decode", f"unsupported image mode {mode}"
                im.verify()
            with Image.open(path) as im:
                im.load()
    except Image.DecompressionBombError:
        return "size", "too large (decompression bomb)"
    except Image.DecompressionBombWarning:
        return "size", "too large (decompression bomb)"
    except Image.UnidentifiedImageError:
        return "decode", "not an image"
    except (OSError, SyntaxError, ValueError) as e:
        msg = str(e) or type(e).__name__
        if "truncated" in msg.lower():
            return "decode", "truncated image"
        return "decode", f"does not decode ({msg})"
    return None


def verify_dataset(
    data: str | Path | PairedDataset,
    manifest: str | Path | None = None,
    min_side: int = MIN_SIDE,
    max_side: int = MAX_SIDE,
    max_pixels: int = MAX_PIXELS,
    workers: int | None = None,
) -> Report:
    """Verifies every file of a dataset (a folder, a manifest or a :class:`PairedDataset`).

    Raises :class:`DataError` when the folder is missing or holds no matching file at all; a
    dataset without any usable product gives a report with ``num_products == 0``.
    """
    from .lookbook import PairedDataset, load_pairs

    if not isinstance(data, PairedDataset):
        data = load_pairs(data, manifest=manifest)
    report = Report(str(data.manifest or data.root))
    for path in data.unmatched:
        why = unreadable(path)
        if why is not None:
            report.add("decode", path, f"cannot read ({why})")
        else:
            report.add("name", path, "name does not match PID<id>_CLEAN<0|1>_IID<id>.<jpg|png>")
    files = data.all_files()
    report.num_files = len(files) + len(set(data.unmatched) - set(files))
    workers = workers or min(8, (os.cpu_count() or 2) * 2)
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda f: check_image(f, min_side, max_side, max_pixels), files))
    bad = set()
    for path, res in zip(files, results, strict=True):
        if res is not None:
            report.add(res[0], path, res[1])
            bad.add(path)
    usable = 0
    for split, p in data.all_products():
        where = f" [{split}]" if split else ""
        n_src = sum(f not in bad for f in p.sources)
        n_tgt = sum(f not in bad for f in p.targets)
        if n_tgt == 0:
            why = "no CLEAN1 (product) image" if not p.targets else "no readable CLEAN1 image"
            report.add("product", f"PID{p.pid}{where}", why)
        elif n_src == 0:
            why = "no CLEAN0 (person) image" if not p.sources else "no readable CLEAN0 image"
            report.add("product", f"PID{p.pid}{where}", why)
        else:
            usable += 1
    report.num_products = usable
    return report
