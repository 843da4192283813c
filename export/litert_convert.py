#!/usr/bin/env python3
"""Run an exported PLDT converter (`.tflite`) on photos with LiteRT: what runs on a device.

Depends only on numpy, pillow and ai-edge-litert (no TensorFlow, Keras or keras_pldt)::

    pip install numpy pillow ai-edge-litert
    python litert_convert.py --model tflite_int8/converter.tflite --input photo.jpg --output out/

The model runs with LiteRT's `CompiledModel` API (`ai_edge_litert.compiled_model`), or with the
`Interpreter` where an older ai-edge-litert has no `CompiledModel` (`--api` chooses; both give
the same output). Preprocessing is the training one (see README.md, "Tensor contract"): RGB,
bilinear resize so the longer side is S keeping the aspect ratio, pad to S x S with 255 centred,
then x / 127.5 - 1 for float models, or that value quantized with the model's input scale and
zero point for the full-integer (uint8) model. The output is read back the same way and saved
as an S x S PNG.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the kit's own modules
from kit import build_parser, run  # noqa: E402

APIS = ("auto", "compiled", "interpreter")


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


@contextlib.contextmanager
def native_log_held_back():
    """Hold back what LiteRT's native runtime writes to stderr (accelerator and delegate set-up
    at INFO level) while a model is loaded; it is written out only if loading fails."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _flatbuffer_quantization(model_bytes: bytes, tensor_index: int) -> tuple[float, int]:
    """(scale, zero_point) of a tensor of the model's first subgraph; (0.0, 0) if float."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(model_bytes, 0)
    params = model.Subgraphs(0).Tensors(tensor_index).Quantization()
    if params is None or params.ScaleLength() == 0:
        return 0.0, 0
    return float(params.Scale(0)), int(params.ZeroPoint(0)) if params.ZeroPointLength() else 0


class CompiledModelRunner:
    """uint8 / float [1, S, S, 3] in the model's dtype -> its raw output, via `CompiledModel`."""

    api = "CompiledModel"

    def __init__(self, model_path, num_threads: int | None = None):
        # ImportError on an ai-edge-litert without CompiledModel: the caller falls back.
        from ai_edge_litert import schema_py_generated  # noqa: F401  (quantization reader)
        from ai_edge_litert.compiled_model import CompiledModel, CpuOptions, Options

        data = Path(model_path).read_bytes()
        options = Options(cpu_options=CpuOptions(num_threads=num_threads)) if num_threads else None
        with native_log_held_back():
            self.model = CompiledModel.from_buffer(data, options=options)
            signature = self.model.get_signature_by_index(0)
            key = signature["key"]
            details_in = self.model.get_input_tensor_details(key)[signature["inputs"][0]]
            details_out = self.model.get_output_tensor_details(key)[signature["outputs"][0]]
            self.input = self._details(details_in, data)
            self.output = self._details(details_out, data)
            self._inputs = self.model.create_input_buffers(0)
            self._outputs = self.model.create_output_buffers(0)
            # The first write sets up the buffers' own environment (and logs it).
            self._inputs[0].write(np.zeros(self.input["shape"], self.input["dtype"]))

    @staticmethod
    def _details(details: dict, data: bytes) -> dict:
        return {
            "shape": [int(s) for s in details["shape"]],
            "dtype": np.dtype(details["dtype"]),
            "quantization": _flatbuffer_quantization(data, int(details["index"])),
        }

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self._inputs[0].write(x)
        self.model.run_by_index(0, self._inputs, self._outputs)
        shape = self.output["shape"]
        return self._outputs[0].read(int(np.prod(shape)), self.output["dtype"]).reshape(shape)


class InterpreterRunner:
    """The same with the `Interpreter` API (ai-edge-litert releases before CompiledModel)."""

    api = "Interpreter"

    def __init__(self, model_path, num_threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        with native_log_held_back():
            self.interpreter = Interpreter(model_path=str(model_path), num_threads=num_threads)
            detail = self.interpreter.get_input_details()[0]
            if int(detail["shape"][0]) != 1:
                self.interpreter.resize_tensor_input(detail["index"], [1, *detail["shape"][1:]])
            self.interpreter.allocate_tensors()
        self._in = self.interpreter.get_input_details()[0]
        self._out = self.interpreter.get_output_details()[0]
        self.input, self.output = self._details(self._in), self._details(self._out)

    @staticmethod
    def _details(detail: dict) -> dict:
        scale, zero_point = detail["quantization"]
        return {
            "shape": [int(s) for s in detail["shape"]],
            "dtype": np.dtype(detail["dtype"]),
            "quantization": (float(scale), int(zero_point)),
        }

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self._in["index"], x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._out["index"])


class LiteRTConverter:
    """uint8 [S, S, 3] letterboxed photo -> float [S, S, 3] product in [-1, 1].

    `api="auto"` runs the model with `CompiledModel` and falls back to the `Interpreter` where
    `ai_edge_litert.compiled_model` is missing; "compiled" or "interpreter" forces one.
    """

    def __init__(self, model_path, num_threads: int | None = None, api: str = "auto"):
        if api not in APIS:
            raise ValueError(f"api must be one of {APIS}, got {api!r}")
        self.runner: CompiledModelRunner | InterpreterRunner | None = None
        if api in ("auto", "compiled"):
            try:
                self.runner = CompiledModelRunner(model_path, num_threads)
            except ImportError:
                if api == "compiled":
                    raise
        if self.runner is None:
            self.runner = InterpreterRunner(model_path, num_threads)
        self.api = self.runner.api
        self.input, self.output = self.runner.input, self.runner.output
        self.image_size = int(self.input["shape"][1])

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        x = to_model_input(pixels, self.input["dtype"], self.input["quantization"])
        y = self.runner(x)
        return from_model_output(y, self.output["dtype"], self.output["quantization"])[0]


def main(argv=None) -> int:
    parser = build_parser(__doc__)
    parser.add_argument(
        "--api",
        choices=APIS,
        default="auto",
        help="LiteRT API: CompiledModel where available, else Interpreter (default: auto)",
    )
    args = parser.parse_args(argv)
    if not args.model.is_file():
        print(f"litert_convert: --model {args.model} is not a file", file=sys.stderr)
        return 2
    converter = LiteRTConverter(args.model, args.threads, args.api)
    code = run(converter, args.input, args.output, args.side_by_side, args.raw)
    with native_log_held_back():  # the runtime logs its teardown too
        del converter
    return code


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is written: drop the INFO lines LiteRT's runtime logs as the process exits.
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
    sys.exit(code)
