"""LookBook naming, pairing and the paper's image preprocessing.

File names follow ``PID{product}_CLEAN{0|1}_IID{image}.{jpg,jpeg,png}`` (case-insensitive,
searched recursively): ``CLEAN1`` is a product photo on a clean background (the target domain),
``CLEAN0`` a person wearing it (the source domain). A product may have several ``CLEAN1`` images;
all of them are kept as alternative targets.

Other layouts can be described with a CSV manifest with the columns ``source,target`` (paths
relative to the CSV's folder, optional ``split`` column with ``train``/``val``/``test``). Each
distinct target path is one product.

Preprocessing (paper Sec. 5.2): resize so that the longer side is ``image_size`` keeping the aspect
ratio, fill the margins at both ends with 255 (the image is centred), scale to [-1, 1].
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import tensorflow as tf

from keras_pldt.errors import DataError
from keras_pldt.runtime import letterbox, list_files, to_float

__all__ = [
    "DataError",
    "FOLDER_SPLITS",
    "IMAGE_EXTENSIONS",
    "NAME_PATTERN",
    "ParsedName",
    "PairedDataset",
    "Product",
    "decode_and_preprocess",
    "decode_and_preprocess_uint8",
    "decode_image",
    "list_files",
    "load_pairs",
    "parse_name",
    "preprocess_image",
    "preprocess_image_uint8",
]

NAME_PATTERN = re.compile(
    r"^PID(?P<pid>[0-9A-Za-z\-]+)_CLEAN(?P<clean>[01])_IID(?P<iid>[0-9A-Za-z\-]+)"
    r"\.(?P<ext>jpe?g|png)$",
    re.IGNORECASE,
)
#: Extensions that look like images: such a file whose name does not match the pattern is reported.
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
FOLDER_SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ParsedName:
    pid: str
    clean: int  # 1 = product photo (target), 0 = person photo (source)
    iid: str


def parse_name(name: str | Path) -> ParsedName | None:
    """Parses ``PID<id>_CLEAN<0|1>_IID<id>.<ext>``; ``None`` if the name does not match."""
    m = NAME_PATTERN.match(Path(name).name)
    if m is None:
        return None
    return ParsedName(pid=m["pid"], clean=int(m["clean"]), iid=m["iid"])


@dataclass
class Product:
    """A product: person photos (``sources``, CLEAN0) and product photos (``targets``, CLEAN1)."""

    pid: str
    sources: list[Path] = field(default_factory=list)
    targets: list[Path] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return bool(self.sources) and bool(self.targets)


@dataclass
class PairedDataset:
    """The files of a dataset grouped by product.

    ``products`` maps product id -> :class:`Product` (all files, sorted). When the folder (or the
    manifest) defines its own split, ``folder_splits`` maps ``train``/``val``/``test`` to the
    products of that split (a product may then appear in several splits, e.g. its single product
    photo); otherwise it is ``None`` and :func:`keras_pldt.data.make_splits` splits by product.
    ``unmatched`` lists image-like files whose name does not follow the pattern.
    """

    root: Path
    products: dict[str, Product]
    folder_splits: dict[str, dict[str, Product]] | None = None
    unmatched: list[Path] = field(default_factory=list)
    manifest: Path | None = None

    def all_products(self) -> list[tuple[str | None, Product]]:
        """``(split or None, product)`` for every product group (per split when folder-split)."""
        if self.folder_splits is None:
            return [(None, p) for p in self.products.values()]
        return [(s, p) for s, prods in self.folder_splits.items() for p in prods.values()]

    def all_files(self) -> list[Path]:
        files = []
        for _, p in self.all_products():
            files.extend(p.sources)
            files.extend(p.targets)
        return sorted(set(files))

    def filtered(self, bad_files=()) -> PairedDataset:
        """A copy without ``bad_files`` and without products that lost all sources or targets."""
        bad = {Path(f) for f in bad_files}

        def clean(prods: dict[str, Product]) -> dict[str, Product]:
            out = {}
            for pid, p in prods.items():
                q = Product(
                    pid,
                    [f for f in p.sources if f not in bad],
                    [f for f in p.targets if f not in bad],
                )
                if q.complete:
                    out[pid] = q
            return out

        splits = None
        if self.folder_splits is not None:
            splits = {s: clean(prods) for s, prods in self.folder_splits.items()}
        return PairedDataset(self.root, clean(self.products), splits, [], self.manifest)

    def reversed(self) -> PairedDataset:
        """Swaps the domains: sources become the product photos and targets the person photos."""

        def swap(prods):
            return {pid: Product(pid, list(p.targets), list(p.sources)) for pid, p in prods.items()}

        splits = None
        if self.folder_splits is not None:
            splits = {s: swap(prods) for s, prods in self.folder_splits.items()}
        return PairedDataset(self.root, swap(self.products), splits, list(self.unmatched))

    def __repr__(self) -> str:
        n_src = sum(len(p.sources) for _, p in self.all_products())
        n_tgt = sum(len(p.targets) for _, p in self.all_products())
        splits = "" if self.folder_splits is None else f", folder splits {list(self.folder_splits)}"
        return (
            f"PairedDataset({str(self.root)!r}: {len(self.products)} products, "
            f"{n_src} sources, {n_tgt} targets{splits})"
        )


def _add(products: dict[str, Product], pid: str, clean: int, path: Path) -> None:
    p = products.setdefault(pid, Product(pid))
    (p.targets if clean == 1 else p.sources).append(path)


def _sorted(products: dict[str, Product]) -> dict[str, Product]:
    out = {}
    for pid in sorted(products):
        p = products[pid]
        out[pid] = Product(pid, sorted(p.sources), sorted(p.targets))
    return out


def _scan(folder: Path, unmatched: list[Path]) -> dict[str, Product]:
    products: dict[str, Product] = {}
    for path in list_files(folder):
        parsed = parse_name(path.name)
        if parsed is None:
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                unmatched.append(path)
            continue
        _add(products, parsed.pid, parsed.clean, path)
    return _sorted(products)


def _merge(groups) -> dict[str, Product]:
    merged: dict[str, Product] = {}
    for prods in groups:
        for pid, p in prods.items():
            q = merged.setdefault(pid, Product(pid))
            q.sources.extend(p.sources)
            q.targets.extend(p.targets)
    return _sorted(merged)


def _load_manifest(manifest: Path) -> PairedDataset:
    if not manifest.is_file():
        raise DataError(f"manifest not found: {manifest}")
    base = manifest.parent
    with open(manifest, newline="") as f:
        reader = csv.DictReader(f)
        cols = {c.strip().lower(): c for c in (reader.fieldnames or [])}
        if "source" not in cols or "target" not in cols:
            raise DataError(f"manifest {manifest} needs a header with 'source,target' columns")
        rows = list(reader)
    if not rows:
        raise DataError(f"manifest {manifest} has no rows")
    has_split = "split" in cols
    targets = sorted({r[cols["target"]].strip() for r in rows})
    pid_of = {t: f"{i:06d}" for i, t in enumerate(targets)}
    groups: dict[str, dict[str, Product]] = {}
    for n, r in enumerate(rows, start=2):
        split = r[cols["split"]].strip().lower() if has_split else None
        if split is not None and split not in FOLDER_SPLITS:
            raise DataError(f"{manifest}:{n}: split must be one of {FOLDER_SPLITS}, got {split!r}")
        src, tgt = (base / r[cols["source"]].strip()), (base / r[cols["target"]].strip())
        prods = groups.setdefault(split, {})
        pid = pid_of[r[cols["target"]].strip()]
        p = prods.setdefault(pid, Product(pid))
        if src not in p.sources:
            p.sources.append(src)
        if tgt not in p.targets:
            p.targets.append(tgt)
    groups = {s: _sorted(g) for s, g in groups.items()}
    folder_splits = None
    if has_split:
        folder_splits = {s: groups[s] for s in FOLDER_SPLITS if s in groups}
    return PairedDataset(base, _merge(groups.values()), folder_splits, [], manifest)


def load_pairs(
    data_dir: str | Path | None = None, manifest: str | Path | None = None
) -> PairedDataset:
    """Finds the paired files of a LookBook-style folder or of a CSV manifest.

    A folder with ``train/``, ``val/`` and/or ``test/`` subfolders keeps that split (only those
    subfolders are read). Files are not opened here: see :func:`keras_pldt.data.verify_dataset`.
    Raises :class:`DataError` for a missing folder or a folder without any matching file.
    """
    if manifest is not None:
        return _load_manifest(Path(manifest).expanduser())
    if data_dir is None:
        raise DataError("give a data folder or a manifest")
    root = Path(data_dir).expanduser()
    if root.is_file() and root.suffix.lower() == ".csv":
        return _load_manifest(root)
    if not root.exists():
        raise DataError(f"data folder not found: {root}")
    if not root.is_dir():
        raise DataError(f"not a folder: {root}")
    unmatched: list[Path] = []
    split_dirs = {s: root / s for s in FOLDER_SPLITS if (root / s).is_dir()}
    if split_dirs:
        folder_splits = {s: _scan(d, unmatched) for s, d in split_dirs.items()}
        products = _merge(folder_splits.values())
    else:
        folder_splits = None
        products = _scan(root, unmatched)
    if not products:
        extra = f" ({len(unmatched)} image files with other names)" if unmatched else ""
        raise DataError(
            f"no images named PID<id>_CLEAN<0|1>_IID<id>.jpg/.png found in {root}{extra}"
        )
    return PairedDataset(root, products, folder_splits, unmatched)


# ---------------------------------------------------------------------------------------------
# Preprocessing: plain TF ops (usable inside tf.function / a SavedModel, unknown H and W).
# ---------------------------------------------------------------------------------------------


def _to_rgb_float(image: tf.Tensor) -> tf.Tensor:
    """uint8 [H, W, C] with C in {1, 2, 3, 4} -> float32 [H, W, 3] in [0, 255], alpha over white."""
    image = tf.convert_to_tensor(image)
    x = tf.cast(image, tf.float32)
    if x.shape.rank == 2:
        x = x[..., None]
    c = tf.shape(x)[-1]
    has_alpha = tf.logical_or(tf.equal(c, 2), tf.equal(c, 4))
    n_color = c - tf.cast(has_alpha, tf.int32)
    color = x[..., :n_color]
    color = tf.cond(
        tf.equal(n_color, 1),
        lambda: tf.tile(color[..., :1], [1, 1, 3]),
        lambda: color[..., :3],
    )
    alpha = tf.cond(
        has_alpha,
        lambda: x[..., -1:] / 255.0,
        lambda: tf.ones_like(x[..., :1]),
    )
    rgb = color * alpha + 255.0 * (1.0 - alpha)
    rgb.set_shape([None, None, 3])
    return rgb


def preprocess_image_uint8(image: tf.Tensor, image_size: int = 64) -> tf.Tensor:
    """The paper's resize + white padding, as uint8 [S, S, 3] (what the cache stores).

    ``image``: uint8 [H, W, C] (C = 1, 2, 3 or 4; alpha is composited on white), then
    :func:`keras_pldt.runtime.letterbox`: the longer side resized to ``image_size`` (bilinear with
    antialiasing), the aspect ratio kept, the shorter side centred and padded with 255.
    """
    return letterbox(_to_rgb_float(image), image_size)


def preprocess_image(image: tf.Tensor, image_size: int = 64) -> tf.Tensor:
    """uint8 [H, W, C] -> float32 [S, S, 3] in [-1, 1] (paper Sec. 5.2). Pure TF ops."""
    return to_float(preprocess_image_uint8(image, image_size))


def decode_image(contents: tf.Tensor) -> tf.Tensor:
    """Encoded JPEG/PNG bytes -> uint8 [H, W, C] (C as stored: 1-4). Pure TF ops."""
    return tf.io.decode_image(contents, channels=0, dtype=tf.uint8, expand_animations=False)


def _read(path_or_bytes) -> tf.Tensor:
    if isinstance(path_or_bytes, Path):
        path_or_bytes = str(path_or_bytes)
    if isinstance(path_or_bytes, bytes):
        return tf.constant(path_or_bytes)
    if isinstance(path_or_bytes, str):
        return tf.io.read_file(path_or_bytes)
    t = tf.convert_to_tensor(path_or_bytes)
    return t  # a tf.string tensor: treated as encoded bytes (use tf.io.read_file for paths)


def decode_and_preprocess_uint8(path_or_bytes, image_size: int = 64) -> tf.Tensor:
    return preprocess_image_uint8(decode_image(_read(path_or_bytes)), image_size)


def decode_and_preprocess(path_or_bytes, image_size: int = 64) -> tf.Tensor:
    """A path (``str``/``Path``) or encoded bytes (``bytes`` or a scalar tf.string tensor of the
    file *contents*) -> float32 [S, S, 3] in [-1, 1]."""
    return preprocess_image(decode_image(_read(path_or_bytes)), image_size)
