"""Train/val/test tf.data pipelines for PLDT.

Batch format (what the model consumes)::

    {"source": float32 [B, S, S, 3], "target": float32 [B, S, S, 3],
     "unassociated": float32 [B, S, S, 3], "product": int32 [B]}

pixels in [-1, 1]; ``product`` indexes ``pipelines.splits[split].pids``.

Determinism and resume. The content of training epoch ``k`` is a pure function of ``(seed, k)``:
``np.random.default_rng([seed, k])`` draws the permutation of the source images, the associated
target among the product's images and the unassociated target (a random image of a random *other*
product). Nothing depends on earlier epochs, so ``train_for_epochs(k, n)`` yields exactly the
batches that epochs ``k..n-1`` of a full run yield::

    p = build_pipelines("path/to/lookbook", run_dir="runs/x")
    model.fit(p.train_for_epochs(k, n), epochs=n, initial_epoch=k,
              steps_per_epoch=p.steps_per_epoch)

Files are decoded with TF ops (``tf.io.read_file`` + ``tf.io.decode_image``) in a parallel
``map``. With ``cache=True`` (default) every image is decoded once into a uint8 array (when it fits
``cache_max_bytes``) and batches are gathered from it; otherwise files are decoded every epoch.
Both give identical pixels (the preprocessing rounds to uint8 before scaling to [-1, 1]).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_pldt.run import SPLIT, atomic_write

from .lookbook import (
    FOLDER_SPLITS,
    DataError,
    PairedDataset,
    decode_and_preprocess_uint8,
    load_pairs,
    to_float,
)
from .verify import Report, verify_dataset

__all__ = [
    "Pipelines",
    "SplitData",
    "build_pipelines",
    "make_splits",
    "resolve_split",
    "without_autotune",
]

AUTOTUNE = tf.data.AUTOTUNE


def without_autotune(ds: tf.data.Dataset) -> tf.data.Dataset:
    """`ds` with tf.data's autotuning model turned off (`AUTOTUNE` parallelism and buffers then
    take their static defaults: as many parallel calls as cores).

    With autotuning on (TF 2.21), deleting an iterator often waits for the autotuner's thread
    to wake, and it sleeps 10 ms, 20 ms, 40 ms, ... doubling: a `model.fit` whose steps end at
    6.7 s returns at 10.2 s, and a 3-step timing round ends at 1.27 s however fast its steps
    were. Every `fit`, `evaluate` and loop over a pipeline ends an iterator.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


SPLIT_FILE = SPLIT  # the run folder's split file (keras_pldt.run)
_EVAL_STREAM = 0x5EED_E7A1  # mixed into the seed for the fixed val/test negatives


def make_splits(
    product_ids, seed: int = 0, val_fraction: float = 0.05, test_fraction: float = 0.05
) -> dict[str, list[str]]:
    """Splits products (not images) into train/val/test, deterministically for ``seed``.

    ``round(fraction * P)`` products each for val and test, at least 1 each when there are >= 3
    products; the rest is train.
    """
    pids = sorted({str(p) for p in product_ids})
    n = len(pids)
    n_val = int(round(n * val_fraction))
    n_test = int(round(n * test_fraction))
    if n >= 3:
        n_val, n_test = max(1, n_val), max(1, n_test)
    while n_val + n_test >= n and (n_val or n_test):  # keep at least one training product
        if n_val >= n_test and n_val:
            n_val -= 1
        else:
            n_test -= 1
    order = np.random.default_rng(seed).permutation(n)
    val = sorted(pids[i] for i in order[:n_val])
    test = sorted(pids[i] for i in order[n_val : n_val + n_test])
    train = sorted(pids[i] for i in order[n_val + n_test :])
    return {"train": train, "val": val, "test": test}


def resolve_split(
    data: PairedDataset,
    seed: int = 0,
    run_dir: str | Path | None = None,
    val_fraction: float = 0.05,
    test_fraction: float = 0.05,
) -> dict[str, list[str]]:
    """The split of ``data``: its folder split, else ``run_dir/split.json`` when present, else a
    new product split (written to ``run_dir/split.json`` when ``run_dir`` is given)."""
    path = Path(run_dir) / SPLIT_FILE if run_dir is not None else None
    if data.folder_splits is not None:
        split = {s: sorted(data.folder_splits.get(s, {})) for s in FOLDER_SPLITS}
        if path is not None and not path.exists():
            record = {"source": "folders", "root": str(data.root), **split}
            atomic_write(path, json.dumps(record, indent=1).encode())
        return split
    if path is not None and path.exists():
        try:
            saved = json.loads(path.read_text())
            split = {s: [str(p) for p in saved.get(s, [])] for s in FOLDER_SPLITS}
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read {path}: {e}") from e
        known = {p for s in split.values() for p in s}
        new = sorted(set(data.products) - known)
        if new:
            warnings.warn(
                f"{len(new)} products are not in {path}; they are added to the training split",
                stacklevel=2,
            )
            split["train"] = sorted(split["train"] + new)
        return split
    split = make_splits(data.products, seed, val_fraction, test_fraction)
    if path is not None:
        record = {"source": "products", "seed": seed, "root": str(data.root), **split}
        atomic_write(path, json.dumps(record, indent=1).encode())
    return split


@dataclass
class SplitData:
    """The usable images of one split, as rows of the pipeline's image table."""

    name: str
    pids: list[str]  # product index -> product id
    source_rows: np.ndarray  # int32 [Ns]: row of each source image
    source_product: np.ndarray  # int32 [Ns]: product index of each source
    target_rows: np.ndarray  # int32 [Nt]: rows of target images, grouped by product
    target_start: np.ndarray  # int32 [P]: first position in target_rows of each product
    target_count: np.ndarray  # int32 [P]

    @property
    def num_sources(self) -> int:
        return len(self.source_rows)

    @property
    def num_products(self) -> int:
        return len(self.pids)


def _decode_all(paths: list[str], image_size: int) -> tuple[np.ndarray, list[int]]:
    """Decodes files with TF ops in parallel -> (uint8 [N, S, S, 3], indices that failed)."""
    n = len(paths)
    out = np.empty((n, image_size, image_size, 3), np.uint8)
    done = np.zeros(n, bool)
    ds = tf.data.Dataset.from_tensor_slices((np.arange(n, dtype=np.int64), paths))
    ds = ds.map(
        lambda i, p: (i, decode_and_preprocess_uint8(tf.io.read_file(p), image_size)),
        num_parallel_calls=AUTOTUNE,
        deterministic=False,
    )
    ds = without_autotune(ds.ignore_errors().batch(256).prefetch(2))
    for idx, imgs in ds.as_numpy_iterator():
        out[idx] = imgs
        done[idx] = True
    return out, [int(i) for i in np.flatnonzero(~done)]


class Pipelines:
    """Train/val/test pipelines of a dataset. Build with :func:`build_pipelines`."""

    def __init__(
        self,
        data: PairedDataset,
        split: dict[str, list[str]],
        report: Report,
        image_size: int = 64,
        batch_size: int = 128,
        seed: int = 0,
        cache: bool = True,
        cache_max_bytes: int = 4 * 2**30,
        reverse: bool = False,
        drop_remainder: bool = True,
        verbose: bool = True,
    ):
        self.image_size = int(image_size)
        self.seed = int(seed)
        self.reverse = reverse
        self.drop_remainder = drop_remainder
        self.report = report
        self.split = split
        self.verbose = verbose
        if reverse:
            data = data.reversed()
        groups = self._groups(data, split)
        paths = sorted(
            {str(f) for prods in groups.values() for p in prods for f in (*p.sources, *p.targets)}
        )
        need = len(paths) * self.image_size**2 * 3
        self.cached = bool(cache) and need <= cache_max_bytes
        if cache and not self.cached:
            self._log(f"not caching: {need / 2**30:.1f} GiB of images > cache_max_bytes")
        self._images = None
        if self.cached:
            images, failed = _decode_all(paths, self.image_size)
            if failed:  # verify accepted them but TF could not decode them: skip as well
                bad = {paths[i] for i in failed}
                for f in sorted(bad):
                    report.add("decode", f, "TensorFlow cannot decode it")
                keep = [i for i, p in enumerate(paths) if p not in bad]
                images, paths = images[keep], [paths[i] for i in keep]
                data = data.filtered(Path(f) for f in bad)
                groups = self._groups(data, split)
            with tf.device("/CPU:0"):
                self._images = tf.Variable(images, trainable=False, name="pldt_image_cache")
        self.paths = paths
        self.data = data
        with tf.device("/CPU:0"):
            self._paths = tf.constant(paths if paths else [""], tf.string)
        row = {p: i for i, p in enumerate(paths)}
        self.splits: dict[str, SplitData] = {}
        for name, prods in groups.items():
            prods = [p for p in prods if p.complete]
            src_rows, src_prod, tgt_rows, start, count = [], [], [], [], []
            for j, p in enumerate(prods):
                src_rows += [row[str(f)] for f in p.sources]
                src_prod += [j] * len(p.sources)
                start.append(len(tgt_rows))
                count.append(len(p.targets))
                tgt_rows += [row[str(f)] for f in p.targets]
            i32 = lambda x: np.asarray(x, np.int32)
            self.splits[name] = SplitData(
                name, [p.pid for p in prods], i32(src_rows), i32(src_prod), i32(tgt_rows),
                i32(start), i32(count),
            )  # fmt: skip
        tr = self.splits["train"]
        if tr.num_products < 2:
            raise DataError(
                f"the training split of {data.root} has {tr.num_products} usable product(s); "
                "at least 2 are needed (unassociated targets come from other products)"
            )
        self.batch_size = int(batch_size)
        if drop_remainder and tr.num_sources < self.batch_size:
            self._log(
                f"batch_size {batch_size} > {tr.num_sources} training sources: "
                f"using batch_size {tr.num_sources}"
            )
            self.batch_size = tr.num_sources
        b = self.batch_size
        self.steps_per_epoch = tr.num_sources // b if drop_remainder else -(-tr.num_sources // b)
        self._log(report.summary())
        sizes = ", ".join(
            f"{s} {d.num_products} products/{d.num_sources} sources" for s, d in self.splits.items()
        )
        self._log(f"splits: {sizes}; {self.steps_per_epoch} steps per epoch of {b}")

    # -- construction helpers -----------------------------------------------------------------

    @staticmethod
    def _groups(data: PairedDataset, split: dict[str, list[str]]):
        groups = {}
        for s in FOLDER_SPLITS:
            prods = (
                data.folder_splits.get(s, {}) if data.folder_splits is not None else data.products
            )
            groups[s] = [prods[pid] for pid in split.get(s, []) if pid in prods]
        return groups

    def _log(self, msg: str) -> None:
        if self.verbose:
            print(f"[keras_pldt.data] {msg}", flush=True)

    # -- index tables ------------------------------------------------------------------------

    def epoch_indices(self, epoch: int) -> np.ndarray:
        """int32 [Ns, 4] (source row, target row, unassociated row, product) of training epoch
        ``epoch``, a pure function of ``(seed, epoch)``."""
        sd = self.splits["train"]
        rng = np.random.default_rng([self.seed, int(epoch)])
        perm = rng.permutation(sd.num_sources)
        return self._table(sd, rng, perm, random_target=True)

    def eval_indices(self, split: str) -> np.ndarray:
        """int32 [Ns, 4] for val/test: every source once in order, its product's first target,
        a fixed (seeded) unassociated target."""
        sd = self.splits[split]
        rng = np.random.default_rng([self.seed, _EVAL_STREAM])
        return self._table(sd, rng, np.arange(sd.num_sources), random_target=False)

    @staticmethod
    def _table(sd: SplitData, rng, perm, random_target: bool) -> np.ndarray:
        n, num_p = len(perm), sd.num_products
        prod = sd.source_product[perm]
        if n == 0:
            return np.zeros((0, 4), np.int32)
        u_assoc, u_neg = rng.random(n), rng.random(n)
        if random_target:
            assoc = sd.target_start[prod] + (u_assoc * sd.target_count[prod]).astype(np.int32)
        else:
            assoc = sd.target_start[prod]
        if num_p >= 2:
            other = (prod + 1 + rng.integers(0, num_p - 1, n)) % num_p
        else:  # a single product: no other product exists
            other = prod
        neg = sd.target_start[other] + (u_neg * sd.target_count[other]).astype(np.int32)
        table = np.stack(
            [sd.source_rows[perm], sd.target_rows[assoc], sd.target_rows[neg], prod], axis=1
        )
        return table.astype(np.int32)

    # -- datasets ----------------------------------------------------------------------------

    def _batched(self, ds: tf.data.Dataset, batch_size: int, drop: bool) -> tf.data.Dataset:
        """Dataset of int32 [4] rows -> batches of the output dict (not prefetched)."""
        s = self.image_size
        if self.cached:
            images = self._images

            def gather(t):
                return {
                    "source": to_float(tf.gather(images, t[:, 0])),
                    "target": to_float(tf.gather(images, t[:, 1])),
                    "unassociated": to_float(tf.gather(images, t[:, 2])),
                    "product": t[:, 3],
                }

            ds = ds.batch(batch_size, drop_remainder=drop)
            return ds.map(gather, num_parallel_calls=AUTOTUNE, deterministic=True)

        paths = self._paths

        def load(t):
            def one(i):
                return to_float(decode_and_preprocess_uint8(tf.io.read_file(paths[t[i]]), s))

            return {"source": one(0), "target": one(1), "unassociated": one(2), "product": t[3]}

        ds = ds.map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
        ds = ds.ignore_errors(log_warning=True)  # never crash mid-epoch on an unreadable file
        return ds.batch(batch_size, drop_remainder=drop)

    def train_for_epochs(
        self, initial_epoch: int = 0, epochs: int | None = None
    ) -> tf.data.Dataset:
        """ONE dataset with training epochs ``initial_epoch .. epochs-1`` (infinite when
        ``epochs`` is None), ``steps_per_epoch`` batches each, each epoch in its own
        deterministic order. Use with ``model.fit(ds, epochs=epochs, initial_epoch=initial_epoch,
        steps_per_epoch=pipelines.steps_per_epoch)``."""
        b, drop = self.batch_size, self.drop_remainder
        n = self.splits["train"].num_sources

        def table(e):
            return self.epoch_indices(int(e))

        def epoch_table(e):
            t = tf.numpy_function(table, [e], tf.int32, stateful=False)
            t.set_shape([n, 4])
            return t

        stop = np.iinfo(np.int64).max if epochs is None else int(epochs)
        eps = tf.data.Dataset.range(int(initial_epoch), max(int(initial_epoch), stop))
        if self.cached:
            # an epoch is a whole number of batches, so batches never straddle two epochs
            if drop:
                rows = eps.map(epoch_table).flat_map(
                    lambda t: tf.data.Dataset.from_tensor_slices(t[: (n // b) * b])
                )
                ds = self._batched(rows, b, True)
            else:
                ds = eps.map(epoch_table).flat_map(
                    lambda t: self._batched(tf.data.Dataset.from_tensor_slices(t), b, False)
                )
        else:
            ds = eps.map(epoch_table).flat_map(
                lambda t: self._batched(tf.data.Dataset.from_tensor_slices(t), b, drop)
            )
        return without_autotune(ds.prefetch(AUTOTUNE))

    def train_dataset(self, epoch: int) -> tf.data.Dataset:
        """The batches of training epoch ``epoch`` alone."""
        return self.train_for_epochs(epoch, epoch + 1)

    @property
    def train(self) -> tf.data.Dataset:
        """Infinite training dataset (epoch 0, 1, 2, ...). Pass ``steps_per_epoch``:
        ``model.fit(p.train, epochs=E, steps_per_epoch=p.steps_per_epoch)``."""
        return self.train_for_epochs(0, None)

    def eval_dataset(self, split: str, batch_size: int | None = None) -> tf.data.Dataset | None:
        """Deterministic val/test dataset: every source once, in order, batched, last batch kept.
        ``None`` when the split is empty."""
        sd = self.splits[split]
        if sd.num_sources == 0:
            return None
        rows = tf.data.Dataset.from_tensor_slices(self.eval_indices(split))
        return without_autotune(
            self._batched(rows, batch_size or self.batch_size, False).prefetch(AUTOTUNE)
        )

    @property
    def val(self) -> tf.data.Dataset | None:
        return self.eval_dataset("val")

    @property
    def test(self) -> tf.data.Dataset | None:
        return self.eval_dataset("test")

    def load_split_arrays(self, split: str, limit: int | None = None) -> dict[str, np.ndarray]:
        """A split as numpy: ``source``, ``target``, ``unassociated`` (float32 [N, S, S, 3] in
        [-1, 1]), ``product`` (int32 [N]) and ``pids`` (product ids); the first ``limit``
        sources only when given (a whole training split can be large)."""
        sd = self.splits[split]
        s = self.image_size
        out = {k: np.zeros((0, s, s, 3), np.float32) for k in ("source", "target", "unassociated")}
        out["product"] = np.zeros((0,), np.int32)
        ds = self.eval_dataset(split)
        if ds is not None and limit is not None:
            ds = ds.unbatch().take(int(limit)).batch(self.batch_size)
        if ds is not None and limit != 0:
            parts = list(ds.as_numpy_iterator())
            out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        out["pids"] = np.asarray(sd.pids)
        return out

    def __repr__(self) -> str:
        sizes = {s: (d.num_products, d.num_sources) for s, d in self.splits.items()}
        return (
            f"Pipelines(image_size={self.image_size}, batch_size={self.batch_size}, "
            f"seed={self.seed}, cached={self.cached}, reverse={self.reverse}, "
            f"splits(products, sources)={sizes}, steps_per_epoch={self.steps_per_epoch})"
        )


def build_pipelines(
    data: str | Path | PairedDataset | None = None,
    manifest: str | Path | None = None,
    image_size: int = 64,
    batch_size: int = 128,
    seed: int = 0,
    run_dir: str | Path | None = None,
    cache: bool = True,
    reverse: bool = False,
    drop_remainder: bool = True,
    val_fraction: float = 0.05,
    test_fraction: float = 0.05,
    verify: bool = True,
    cache_max_bytes: int = 4 * 2**30,
    verbose: bool = True,
) -> Pipelines:
    """Loads, verifies, splits and builds the pipelines of a dataset.

    ``data``: a folder (LookBook naming, optional train/val/test subfolders), a CSV manifest, a
    :class:`PairedDataset`, or None for the embedded synthetic LookBook
    (:func:`keras_pldt.datasets.synthetic.default_dataset`). Files rejected by
    :func:`verify_dataset` are skipped and a one-line summary is printed.
    """
    if data is None and manifest is None:
        from keras_pldt.datasets.synthetic import default_dataset

        data = default_dataset()
    if not isinstance(data, PairedDataset):
        data = load_pairs(data, manifest=manifest)
    if verify:
        report = verify_dataset(data)
    else:
        report = Report(str(data.manifest or data.root), num_files=len(data.all_files()))
    if verify and report.num_products == 0:
        raise DataError(f"no usable product (with CLEAN0 and CLEAN1 images) in {report.root}")
    split = resolve_split(data, seed, run_dir, val_fraction, test_fraction)
    clean = data.filtered(report.bad_files)
    return Pipelines(
        clean, split, report, image_size=image_size, batch_size=batch_size, seed=seed,
        cache=cache, cache_max_bytes=cache_max_bytes, reverse=reverse,
        drop_remainder=drop_remainder, verbose=verbose,
    )  # fmt: skip
