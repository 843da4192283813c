"""Throughput of the training input pipeline (decode + resize + pad + negative sampling).

    python benchmarks/input_pipeline.py [--data DIR] [--image-size 64] [--batch-size 128]
                                        [--epochs 3] [--model] [--steps 5]

Prints images/s for: the cold start (TF-decoding every file into the cache), an uncached epoch
(files decoded every epoch), cached epochs, and, with ``--model`` (when ``keras_pldt.model.PLDT``
is importable), the training step's consumption at the ``paper`` preset and the ratio.
A training element is a triplet (source, target, unassociated): "triplets/s" counts elements.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _drain(ds) -> tuple[int, float]:
    n, t = 0, time.perf_counter()
    for b in ds:
        n += int(b["product"].shape[0])
    return n, time.perf_counter() - t


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", default=None, help="dataset folder (default: synthetic LookBook)")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=3, help="cached epochs to time")
    ap.add_argument("--model", action="store_true", help="also time PLDT train steps (paper)")
    ap.add_argument("--steps", type=int, default=5, help="timed train steps with --model")
    args = ap.parse_args(argv)

    import tensorflow as tf

    from keras_pldt.data import build_pipelines
    from keras_pldt.datasets.synthetic import default_dataset

    data = args.data or default_dataset()
    kw = dict(image_size=args.image_size, batch_size=args.batch_size, seed=0, verbose=False)
    print(f"data: {data}  cores: {os.cpu_count()}  tf {tf.__version__}")

    t = time.perf_counter()
    p = build_pipelines(data, cache=True, **kw)
    t_build = time.perf_counter() - t
    n_files = len(p.paths)
    print(
        f"cold start (verify + TF-decode {n_files} files into the cache): {t_build:.2f} s "
        f"= {n_files / t_build:,.0f} images/s"
    )
    n, dt = _drain(p.train_dataset(0))
    print(
        f"cached epoch 0 (first, includes tracing): {n / dt:,.0f} triplets/s "
        f"({3 * n / dt:,.0f} images/s), {p.steps_per_epoch} steps"
    )
    n, dt = _drain(p.train_for_epochs(1, 1 + args.epochs))
    cached = n / dt
    print(f"cached epochs 1-{args.epochs}: {cached:,.0f} triplets/s ({3 * cached:,.0f} images/s)")

    q = build_pipelines(data, cache=False, **kw)
    n, dt = _drain(q.train_dataset(0))
    print(
        f"uncached epoch (decode 3 files per triplet): {n / dt:,.0f} triplets/s "
        f"({3 * n / dt:,.0f} images/s)"
    )
    uncached = n / dt

    if not args.model:
        return
    try:
        from keras_pldt.config import get_preset
        from keras_pldt.model import PLDT
    except ImportError as e:
        print(f"model not importable ({e}); skipped")
        return
    cfg = get_preset("paper", image_size=args.image_size, batch_size=args.batch_size)
    model = PLDT(cfg)
    model.compile()
    ds = p.train  # infinite: epochs 0, 1, ... (what model.fit consumes)
    model.fit(ds, epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)  # trace + warm up
    t = time.perf_counter()
    model.fit(ds, epochs=1, steps_per_epoch=args.steps, verbose=0, shuffle=False)
    step_rate = args.steps * p.batch_size / (time.perf_counter() - t)
    dev = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    print(
        f"train step (paper preset, {dev}): {step_rate:,.0f} triplets/s; "
        f"pipeline/step ratio: cached {cached / step_rate:.1f}x, "
        f"uncached {uncached / step_rate:.1f}x"
    )


if __name__ == "__main__":
    main()
