"""Per-image latency and file size of every export format at the paper's width.

    KERAS_BACKEND=tensorflow python benchmarks/export_latency.py [--runs 50] [--base-filters 128]

The converter (Table 1: base width 128, 64 px, ~36M parameters) is randomly initialised, which
is fine for latency; the int8 model is calibrated on the package's synthetic set. Each format
runs batch 1 on the same input after a warm-up; the reported latency is the median of `--runs`
calls. Baseline "keras" is the eager call `model(x, training=False)`; "keras_tf_function" is the
same call wrapped in `tf.function` (graph mode, no XLA). TFLite and onnxruntime use as many
threads as TensorFlow sees CPU cores. Results: benchmarks/results/export_latency.json.
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--base-filters", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--calibration-samples", type=int, default=64)
    parser.add_argument(
        "--output",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "export_latency.json",
    )
    args = parser.parse_args(argv)

    import keras
    import tensorflow as tf

    from keras_pldt import export as ex
    from keras_pldt import runtime
    from keras_pldt.config import PLDTConfig
    from keras_pldt.networks import build_converter

    threads = os.cpu_count() or 1
    config = PLDTConfig(base_filters=args.base_filters, image_size=args.image_size)
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
            verbose=True,
            enforce=False,
        )
        export_seconds = time.time() - t0

        rng = np.random.default_rng(0)
        size = args.image_size
        x = rng.uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
        xt = tf.constant(x)
        graph_fn = tf.function(lambda t: model(t, training=False))
        runners = {
            "keras": (lambda t: model(t, training=False), xt, keras_path.stat().st_size),
            "keras_tf_function": (graph_fn, xt, keras_path.stat().st_size),
        }
        saved = runtime.SavedModelRunner(out / "savedmodel")
        saved_bytes = json.loads((out / "savedmodel" / "model_card.json").read_text())["size_bytes"]
        runners["savedmodel"] = (lambda t: saved.serving(source=t), xt, saved_bytes)
        for name in ex.TFLITE_NAMES.values():
            path = out / name / "converter.tflite"
            lite = runtime.TFLiteRunner(path, num_threads=threads)
            runners[name] = (lite.run_raw, lite.quantize_input(x), path.stat().st_size)
        onnx_path = out / "onnx" / "converter.onnx"
        session = runtime.OnnxRunner(onnx_path, threads=threads)
        runners["onnx"] = (session, x, onnx_path.stat().st_size)

        results = {}
        for name, (fn, inp, nbytes) in runners.items():
            stats = timed(fn, inp, args.runs, args.warmup)
            results[name] = {**stats, "size_bytes": int(nbytes)}
        base = results["keras"]
        graph = results["keras_tf_function"]
        fp32_size = results["tflite_fp32"]["size_bytes"]
        for r in results.values():
            r["speedup_vs_keras"] = base["median_ms"] / r["median_ms"]
            r["speedup_vs_keras_tf_function"] = graph["median_ms"] / r["median_ms"]
            r["size_vs_keras"] = r["size_bytes"] / base["size_bytes"]
            r["size_vs_tflite_fp32"] = r["size_bytes"] / fp32_size
        int8 = results["tflite_int8"]
        summary = {
            "config": {"base_filters": args.base_filters, "image_size": size},
            "params": int(model.count_params()),
            "batch": 1,
            "runs": args.runs,
            "warmup": args.warmup,
            "threads": threads,
            "baseline": "keras = eager model(x, training=False); "
            "keras_tf_function = tf.function-compiled call",
            "machine": {
                "platform": platform.platform(),
                "processor": platform.processor(),
                "cpu_count": os.cpu_count(),
                "python": sys.version.split()[0],
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
            },
            "export_seconds": round(export_seconds, 1),
            "results": results,
            "parity": {
                k: {m: v[m] for m in ("max_abs", "mean_abs", "psnr_db") if m in v}
                for k, v in report["formats"].items()
            },
            "goals": {
                "tflite_int8_speedup_vs_keras>=3": int8["speedup_vs_keras"] >= 3,
                "tflite_int8_size<=fp32/4": int8["size_vs_tflite_fp32"] <= 0.25,
            },
        }
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(summary, indent=2) + "\n")
        header = ("format", "median ms", "x keras", "x tf.fn", "MB", "size/fp32")
        print("\n{:<20}{:>10}{:>9}{:>9}{:>9}{:>11}".format(*header))
        for name, r in results.items():
            print(
                f"{name:<20}{r['median_ms']:>10.2f}{r['speedup_vs_keras']:>9.2f}"
                f"{r['speedup_vs_keras_tf_function']:>9.2f}{r['size_bytes'] / 1e6:>9.2f}"
                f"{r['size_vs_tflite_fp32']:>11.3f}"
            )
        print(json.dumps(summary["goals"]))
        print(f"wrote {args.output}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
