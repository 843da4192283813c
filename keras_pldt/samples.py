"""The sample photos of an export: what int8 calibrates on and what parity is checked on.

The flags' folders, else the run's split (training photos to calibrate, validation ones for
parity), else a synthetic set.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from keras_pldt import runtime
from keras_pldt.errors import DataError, ExportError, RunError
from keras_pldt.run import RunFolder
from keras_pldt.runtime import list_images


def sources_first(paths: list[Path]) -> list[Path]:
    """Prefer source photos (LookBook / synthetic `*_CLEAN0_*`) when the names say which."""
    return [p for p in paths if "_CLEAN0_" in p.name.upper()] or paths


def spread(paths: list[Path], count: int) -> list[Path]:
    """`count` paths evenly spread over the sorted list (deterministic)."""
    if len(paths) <= count:
        return list(paths)
    idx = np.linspace(0, len(paths) - 1, count).round().astype(int)
    return [paths[i] for i in sorted(set(idx.tolist()))]


def split_sources(run_dir: Path, keys: Sequence[str]) -> list[Path]:
    """Source photos of the first of `keys` (train / val / test) that the run's split lists;
    [] when the run has no split or its data is gone."""
    from keras_pldt.data import load_pairs

    run = RunFolder(run_dir)
    try:
        split, (data_dir, manifest) = run.read_split(), run.data_of_run()
        if not split:
            return []
        data = load_pairs(data_dir or (None if manifest else split.get("root")), manifest)
    except (RunError, DataError, OSError):
        return []
    for key in keys:
        groups = data.products if data.folder_splits is None else data.folder_splits.get(key, {})
        paths = [p for pid in split.get(key) or [] if pid in groups for p in groups[pid].sources]
        if paths:
            return sorted(paths)
    return []


def folder_photos(folder: str | Path, flag: str) -> list[Path]:
    if not Path(folder).is_dir():
        raise ExportError(f"{flag} {folder} is not a directory")
    return sources_first(list_images(folder))


def resolve_data(run_dir, calibration_data, parity_data, image_size: int, workdir: Path):
    """(calibration paths, parity paths, description): the flags' folders, else the run's
    split (training photos to calibrate, validation ones for parity), else a synthetic set;
    parity photos default to the calibration ones."""
    calib, parity, notes = [], [], []
    if calibration_data is not None:
        calib = folder_photos(calibration_data, "--calibration-data")
        notes.append(f"calibration: {calibration_data}")
    elif run_dir is not None and (calib := split_sources(run_dir, ("train",))):
        notes.append(f"calibration: {RunFolder(run_dir).split_path} train")
    if parity_data is not None:
        parity = folder_photos(parity_data, "--parity-data")
        notes.append(f"parity: {parity_data}")
    elif run_dir is not None and calibration_data is None:
        if parity := split_sources(run_dir, ("val", "test")):
            notes.append(f"parity: {RunFolder(run_dir).split_path} val")
    if not calib:
        from keras_pldt.datasets.synthetic import generate

        folder = generate(workdir / "synthetic", 24, 2, seed=0, image_size=max(image_size, 64))
        calib = sources_first(list_images(folder))
        notes.insert(0, "calibration: synthetic set")
    if not parity:
        parity = calib
        notes.append("parity: same images as calibration")
    return calib, parity, "; ".join(notes)


def load_sample(paths: Sequence[Path], image_size: int):
    """(float32 [N, S, S, 3] in [-1, 1], list of RGB uint8 photos) for readable `paths`."""
    batch, photos = runtime.load_photos(paths, image_size)
    if not photos:
        raise ExportError(f"none of {len(paths)} sample images could be read")
    return batch, photos
