"""Per-image latency and file size of every export format, at base widths 32 and 128.

    KERAS_BACKEND=tensorflow python benchmarks/export_latency.py [--runs 50] [--widths 32,128]
                                    [--threads 1,all] [--upsampling transposed|resize]

The converter (Table 1 at base width 128: 64 px, ~36M parameters) is randomly initialised,
which is fine for latency; the int8 model is calibrated on the package's synthetic set. Each
format runs batch 1 on the same input after a warm-up; the reported latency is the median of
`--runs` calls. Baseline "keras" is the eager call `model(x, training=False)`;
"keras_tf_function" is the same call wrapped in `tf.function` (graph mode, no XLA); both use
TensorFlow's thread pool (all cores). TFLite and onnxruntime run at each `--threads` count (1 =
one phone core). `--upsampling resize` times the `robust` preset's decoder. The host (CPU model
and flags) is recorded. Results: benchmarks/results/export_latency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

VECTOR_FLAGS = ("avx", "amx", "fma")  # the CPU flags the printed host line names


def timed(fn, x, runs: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(x)
        times.append((time.perf_counter() - start) * 1e3)
    return {
        "median_ms": statistics.median(times),
        "p10_ms": float(np.percentile(times, 10)),
        "p90_ms": float(np.percentile(times, 90)),
    }


def parse_threads(text: str) -> list[int]:
    """'1,all' -> [1, cores]."""
    cores = len(os.sched_getaffinity(0))
    return sorted({cores if t == "all" else int(t) for t in text.split(",") if t})


def measure_width(args, width: int, threads: list[int]) -> dict:
    """Export a randomly initialised converter of base width `width` to every format and time
    each format at batch 1 (TFLite and onnxruntime at each thread count)."""
    import keras
    import tensorflow as tf

    from keras_pldt import export as ex
    from keras_pldt import runtime
    from keras_pldt.config import PLDTConfig
    from keras_pldt.networks import build_converter

    config = PLDTConfig(  # plain Keras layers, as in a run folder's converter.keras
        base_filters=width, image_size=args.image_size, upsampling=args.upsampling,
        subpixel_convs=False,
    )  # fmt: skip
    keras.utils.set_random_seed(0)
    model = build_converter(config)
    work = Path(tempfile.mkdtemp(prefix="pldt-bench-"))
    try:
        keras_path = work / "converter.keras"
        keras.saving.save_model(model, keras_path)
        config.to_json(work / "config.json")
        out = work / "out"
        t0 = time.time()
        report = ex.export(
            out,
            model_path=keras_path,
            calibration_samples=args.calibration_samples,
            parity_samples=8,
            verbose=False,
            enforce=False,
        )
        export_seconds = time.time() - t0
        rng = np.random.default_rng(0)
        size = args.image_size
        x = rng.uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
        xt = tf.constant(x)
        graph_fn = tf.function(lambda t: model(t, training=False))
        keras_bytes = keras_path.stat().st_size
        # TensorFlow's own thread pool is fixed per process: the Keras rows use all cores.
        runners = {
            "keras": (lambda t: model(t, training=False), xt, keras_bytes, None),
            "keras_tf_function": (graph_fn, xt, keras_bytes, None),
        }
        saved = runtime.SavedModelRunner(out / "savedmodel")
        card = json.loads((out / "savedmodel" / "model_card.json").read_text())
        runners["savedmodel"] = (lambda t: saved.serving(source=t), xt, card["size_bytes"], None)
        for n in threads:
            for name in ex.TFLITE_NAMES.values():
                path = out / name / "converter.tflite"
                lite = runtime.TFLiteRunner(path, num_threads=n)
                runners[f"{name}@{n}"] = (
                    lite.run_raw,
                    lite.quantize_input(x),
                    path.stat().st_size,
                    n,
                )
            onnx_path = out / "onnx" / "converter.onnx"
            runners[f"onnx@{n}"] = (
                runtime.OnnxRunner(onnx_path, threads=n),
                x,
                onnx_path.stat().st_size,
                n,
            )
        results = {}
        for name, (fn, inp, nbytes, n) in runners.items():
            stats = timed(fn, inp, args.runs, args.warmup)
            results[name] = {**stats, "size_bytes": int(nbytes), "threads": n}
        base = results["keras"]
        graph = results["keras_tf_function"]
        for r in results.values():
            r["speedup_vs_keras"] = base["median_ms"] / r["median_ms"]
            r["speedup_vs_keras_tf_function"] = graph["median_ms"] / r["median_ms"]
        return {
            "config": {"base_filters": width, "image_size": size, "upsampling": args.upsampling},
            "params": int(model.count_params()),
            "export_seconds": round(export_seconds, 1),
            "results": results,
            "parity": {
                k: {m: v[m] for m in ("max_abs", "mean_abs", "psnr_db") if m in v}
                for k, v in report["formats"].items()
            },
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def machine() -> dict:
    """`train_step.machine()` (CPU model, cores, flags) plus the platform and versions."""
    import keras
    import tensorflow as tf
    import train_step

    return {
        **train_step.machine(),
        "platform": platform.platform(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument(
        "--widths", default="32,128", help="base widths, comma-separated (default: 32,128)"
    )
    parser.add_argument(
        "--threads",
        default="1,all",
        help="TFLite / onnxruntime thread counts: 1 is a phone core, all = every core "
        "(default: 1,all)",
    )
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--upsampling", choices=("transposed", "resize"), default="transposed")
    parser.add_argument("--calibration-samples", type=int, default=64)
    parser.add_argument(
        "--output",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "export_latency.json",
    )
    args = parser.parse_args(argv)
    threads = parse_threads(args.threads)
    widths = [int(w) for w in args.widths.split(",") if w]
    summary = {
        "batch": 1,
        "runs": args.runs,
        "warmup": args.warmup,
        "threads": threads,
        "baseline": "keras = eager model(x, training=False); "
        "keras_tf_function = tf.function-compiled call (both on all cores)",
        "machine": machine(),
        "widths": {},
    }
    for width in widths:
        summary["widths"][str(width)] = measure_width(args, width, threads)
        print(f"width {width} done", flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"\nhost: {summary['machine']['cpu']} ({summary['machine']['cores']} cores; "
        f"{' '.join(f for f in summary['machine']['cpu_flags'] if f.startswith(VECTOR_FLAGS))})"
    )
    print(f"{'format':<22}" + "".join(f"{'w' + str(w) + ' ms':>11}{'MB':>8}" for w in widths))
    names = list(summary["widths"][str(widths[0])]["results"])
    for name in names:
        cells = ""
        for w in widths:
            r = summary["widths"][str(w)]["results"][name]
            cells += f"{r['median_ms']:>11.2f}{r['size_bytes'] / 1e6:>8.2f}"
        print(f"{name:<22}{cells}")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
