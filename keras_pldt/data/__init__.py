"""Data: LookBook-style paired datasets, verification and tf.data pipelines.

Entry points::

    from keras_pldt.data import build_pipelines
    p = build_pipelines("path/to/lookbook", image_size=64, batch_size=128, seed=0, run_dir="runs/a")
    model.fit(p.train_for_epochs(k, n), epochs=n, initial_epoch=k,
              steps_per_epoch=p.steps_per_epoch)

See :mod:`keras_pldt.data.pipeline` for the batch format and the determinism contract.

The names below are imported from their submodules on first use, so that importing the package
(e.g. for ``python -m keras_pldt.data --help``) does not import TensorFlow.
"""

from __future__ import annotations

import importlib

# name -> submodule that defines it
_LAZY = {
    **dict.fromkeys(
        (
            "NAME_PATTERN",
            "DataError",
            "PairedDataset",
            "ParsedName",
            "Product",
            "decode_and_preprocess",
            "decode_and_preprocess_uint8",
            "decode_image",
            "load_pairs",
            "parse_name",
            "preprocess_image",
            "preprocess_image_uint8",
        ),
        "lookbook",
    ),
    **dict.fromkeys(
        (
            "Pipelines",
            "SplitData",
            "build_pipelines",
            "make_splits",
            "resolve_split",
            "without_autotune",
        ),
        "pipeline",
    ),
    **dict.fromkeys(("Issue", "Report", "check_image", "verify_dataset"), "verify"),
    **dict.fromkeys(("Batch", "unpack_batch"), "batch"),
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


def load_split_arrays(pipelines, split: str, limit: int | None = None):
    """Numpy arrays (source, target, unassociated, product, pids) of a split of ``pipelines``."""
    return pipelines.load_split_arrays(split, limit)


__all__ = sorted([*_LAZY, "load_split_arrays"])
