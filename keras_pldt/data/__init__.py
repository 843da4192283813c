"""Data: LookBook-style paired datasets, verification and tf.data pipelines.

Entry points::

    from keras_pldt.data import build_pipelines
    p = build_pipelines("path/to/lookbook", image_size=64, batch_size=128, seed=0, run_dir="runs/a")
    model.fit(p.train_for_epochs(k, n), epochs=n, initial_epoch=k,
              steps_per_epoch=p.steps_per_epoch)

See :mod:`keras_pldt.data.pipeline` for the batch format and the determinism contract.
"""

from .lookbook import (
    NAME_PATTERN,
    DataError,
    PairedDataset,
    ParsedName,
    Product,
    decode_and_preprocess,
    decode_and_preprocess_uint8,
    decode_image,
    load_pairs,
    parse_name,
    preprocess_image,
    preprocess_image_uint8,
)
from .pipeline import Pipelines, SplitData, build_pipelines, make_splits, resolve_split
from .verify import Issue, Report, check_image, verify_dataset


def load_split_arrays(pipelines: Pipelines, split: str, limit: int | None = None):
    """Numpy arrays (source, target, unassociated, product, pids) of a split of ``pipelines``."""
    return pipelines.load_split_arrays(split, limit)


__all__ = [
    "NAME_PATTERN",
    "DataError",
    "Issue",
    "PairedDataset",
    "ParsedName",
    "Pipelines",
    "Product",
    "Report",
    "SplitData",
    "build_pipelines",
    "check_image",
    "decode_and_preprocess",
    "decode_and_preprocess_uint8",
    "decode_image",
    "load_pairs",
    "load_split_arrays",
    "make_splits",
    "parse_name",
    "preprocess_image",
    "preprocess_image_uint8",
    "resolve_split",
    "verify_dataset",
]
