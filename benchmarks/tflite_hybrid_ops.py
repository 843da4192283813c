"""Why dynamic-range TFLite is slow at paper width: each decoder layer kind alone, fp32 against
dynamic-range (int8 weights, float activations: TFLite's "hybrid" kernels).

    KERAS_BACKEND=tensorflow python benchmarks/tflite_hybrid_ops.py [--runs 20] [--threads 1]

One single-layer model per row, at the shapes of the paper-width converter (base width 128,
64 px): the encoder's widest stride-2 conv, the decoder's first x2 stage as Table 1b's
transposed conv and as the `robust` preset's nearest-neighbour resize + conv, and the code's
dense projection. Each is converted twice (plain, and with `Optimize.DEFAULT` and no
representative data = dynamic range) and timed at batch 1 (median of `--runs` invokes after a
warm-up). Prints each row's dynamic / fp32 time ratio and the host.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import train_step  # noqa: E402
from export_latency import timed  # noqa: E402


def layers_at_paper_width():
    import keras

    L = keras.layers
    return {
        "conv 5x5/2 512->1024 (encoder, 8x8 in)": ((8, 8, 512), [L.Conv2D(1024, 5, 2, "same")]),
        "transposed conv 5x5/2 1024->512 (decoder, 4x4 in)": (
            (4, 4, 1024),
            [L.Conv2DTranspose(512, 5, 2, "same")],
        ),
        "resize x2 + conv 5x5 1024->512 (robust decoder, 4x4 in)": (
            (4, 4, 1024),
            [L.UpSampling2D(2), L.Conv2D(512, 5, padding="same")],
        ),
        "transposed conv 5x5/2 128->3 (decoder output, 32x32 in)": (
            (32, 32, 128),
            [L.Conv2DTranspose(3, 5, 2, "same")],
        ),
        "dense 64->16384 (code to 4x4x1024)": ((64,), [L.Dense(16384)]),
    }


def invoke_ms(blob: bytes, shape, runs: int, threads: int) -> float:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=blob, num_threads=threads)
    interpreter.allocate_tensors()
    index = interpreter.get_input_details()[0]["index"]
    x = np.random.default_rng(0).uniform(-1, 1, (1, *shape)).astype(np.float32)

    def invoke(x):
        interpreter.set_tensor(index, x)
        interpreter.invoke()

    return timed(invoke, x, runs, warmup=3)["median_ms"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import keras
    import tensorflow as tf

    host = train_step.machine()
    wide = " ".join(f for f in host["cpu_flags"] if f.startswith(("avx512", "amx")))
    print(f"host: {host['cpu']} ({wide or 'no AVX-512'}); {host['cores']} cores; "
          f"TFLite threads {args.threads}; tensorflow {tf.__version__}")  # fmt: skip
    print(f"{'layer':<58}{'fp32 ms':>10}{'dynamic ms':>12}{'ratio':>8}")
    for name, (shape, layer_list) in layers_at_paper_width().items():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input(shape), *layer_list])
        times = []
        for dynamic in (False, True):
            converter = tf.lite.TFLiteConverter.from_keras_model(model)
            if dynamic:
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
            with contextlib.redirect_stdout(io.StringIO()):  # the converter's "Saved artifact"
                blob = converter.convert()
            times.append(invoke_ms(blob, shape, args.runs, args.threads))
        print(f"{name:<58}{times[0]:>10.2f}{times[1]:>12.2f}{times[1] / times[0]:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
