#!/usr/bin/env python3
"""Run an exported PLDT converter (`.tflite`) on photos with LiteRT: what runs on a device.

Depends only on numpy, pillow and ai-edge-litert (no TensorFlow, Keras or keras_pldt)::

    pip install numpy pillow ai-edge-litert
    python litert_convert.py --model tflite_int8/converter.tflite --input photo.jpg --output out/

Preprocessing is the training one (see README.md, "Tensor contract"): RGB, bilinear resize so
the longer side is S keeping the aspect ratio, pad to S x S with 255 centred, then
x / 127.5 - 1 for float models, or that value quantized with the model's input scale and
zero point for the full-integer (uint8) model. The output is read back the same way and saved
as an S x S PNG.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the kit's own modules
from kit import build_parser, run  # noqa: E402


def to_model_input(pixels: np.ndarray, dtype, quantization) -> np.ndarray:
    """uint8 [S, S, 3] -> the model's input [1, S, S, 3] (float in [-1, 1] or quantized)."""
    x = pixels.astype(np.float32)[None] / 127.5 - 1.0
    if np.dtype(dtype) == np.float32:
        return x
    scale, zero_point = quantization
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)


def from_model_output(y: np.ndarray, dtype, quantization) -> np.ndarray:
    """The model's output -> float in [-1, 1]."""
    if np.dtype(dtype) == np.float32:
        return y.astype(np.float32)
    scale, zero_point = quantization
    return (y.astype(np.float32) - zero_point) * scale


class LiteRTConverter:
    def __init__(self, model_path, num_threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(model_path), num_threads=num_threads)
        self.input = self.interpreter.get_input_details()[0]
        if int(self.input["shape"][0]) != 1:
            self.interpreter.resize_tensor_input(self.input["index"], [1, *self.input["shape"][1:]])
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.image_size = int(self.input["shape"][1])

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 [S, S, 3] letterboxed photo -> float [S, S, 3] product in [-1, 1]."""
        x = to_model_input(pixels, self.input["dtype"], self.input["quantization"])
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self.output["index"])
        return from_model_output(y, self.output["dtype"], self.output["quantization"])[0]


def main(argv=None) -> int:
    args = build_parser(__doc__).parse_args(argv)
    converter = LiteRTConverter(args.model, args.threads)
    return run(converter, args.input, args.output, args.side_by_side, args.raw)


if __name__ == "__main__":
    sys.exit(main())
