#!/usr/bin/env python3
"""Run an exported PLDT converter (`.onnx`) on photos with onnxruntime.

Depends only on numpy, pillow and onnxruntime (no TensorFlow, Keras or keras_pldt)::

    pip install numpy pillow onnxruntime
    python onnx_convert.py --model onnx/converter.onnx --input photo.jpg --output out/

The model takes `source` float32 [N, S, S, 3] (NHWC, RGB, in [-1, 1]) and returns `target`
float32 [N, S, S, 3] in [-1, 1]. The preprocessing (the training letterbox) and the convert
loop are kit.py's, beside this file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the kit's own modules
from kit import build_parser, run  # noqa: E402


class OnnxConverter:
    def __init__(self, model_path, num_threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
        self.session = ort.InferenceSession(
            str(model_path), options, providers=["CPUExecutionProvider"]
        )
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.image_size = int(inp.shape[1])

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 [S, S, 3] letterboxed photo -> float [S, S, 3] product in [-1, 1]."""
        x = pixels.astype(np.float32)[None] / 127.5 - 1.0
        return self.session.run(None, {self.input_name: x})[0][0]


def main(argv=None) -> int:
    args = build_parser(__doc__).parse_args(argv)
    converter = OnnxConverter(args.model, args.threads)
    return run(converter, args.input, args.output, args.side_by_side, args.raw)


if __name__ == "__main__":
    sys.exit(main())
