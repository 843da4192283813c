"""Export a trained PLDT converter for deployment: SavedModel, TFLite (LiteRT) and ONNX.

One command writes every format, a `model_card.json` next to each model file and a
`parity.json` measuring each format against Keras on a fixed batch of real sources::

    python -m keras_pldt.export --run-dir runs/demo --out exported/
    python -m keras_pldt.export --model converter.keras --out exported/ \\
        --formats tflite --quantize int8 --calibration-data photos/

Layout of `--out`::

    config.json                  the run's PLDTConfig (when known)
    parity.json                  per format: max-abs / mean-abs difference to Keras, PSNR, pass
    savedmodel/                  tf.saved_model.load-able; signatures `convert_images`
                                 (uint8 photos of any size -> uint8 products) and
                                 `serving_default` (float [N,S,S,3] in [-1,1] -> same)
    savedmodel/model_card.json
    tflite_fp32/converter.tflite     + model_card.json
    tflite_float16/converter.tflite  + model_card.json  (float16 weights, float32 I/O)
    tflite_dynamic/converter.tflite  + model_card.json  (int8 weights, float32 I/O)
    tflite_int8/converter.tflite     + model_card.json  (full integer, uint8 I/O)
    onnx/converter.onnx              + model_card.json

Everything is written to a temporary directory beside `--out` and renamed into place only when
every parity threshold is met; on failure the command exits non-zero and leaves nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FORMATS = ("savedmodel", "tflite", "onnx")
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
ONNX_OPSET = 17

# Parity thresholds against Keras on the same normalised batch (pixels in [-1, 1]).
THRESHOLDS: dict[str, float] = {
    "fp32_max_abs": 1e-4,  # SavedModel, TFLite fp32, ONNX
    "float16_max_abs": 1e-2,  # TFLite float16 weights
    "int8_min_psnr_db": 30.0,  # TFLite dynamic-range and full-integer int8
    "uint8_max_levels": 1.0,  # SavedModel `convert_images` vs Keras, in uint8 levels
}

TFLITE_NAMES = {
    "none": "tflite_fp32",
    "float16": "tflite_float16",
    "dynamic": "tflite_dynamic",
    "int8": "tflite_int8",
}

PREPROCESSING = {
    "summary": (
        "RGB uint8 photo [H, W, 3] -> bilinear resize so the longer side is S, keeping the "
        "aspect ratio -> pad to S x S with 255 (white), centred -> x / 127.5 - 1"
    ),
    "color": "RGB",
    "resize": "bilinear, longer side to S, shorter side round(short * S / long)",
    "pad_value": 255,
    "pad": "centred: top = (S - new_h) // 2, left = (S - new_w) // 2",
    "normalisation": "x / 127.5 - 1 (float models); quantize with the input's scale and "
    "zero_point (int8 model)",
}
POSTPROCESSING = "uint8 pixel = round(clip((y + 1) * 127.5, 0, 255)); y in [-1, 1] (tanh)"


class ExportError(RuntimeError):
    """Export could not produce models that meet their parity thresholds (or bad inputs)."""


# ---------------------------------------------------------------------------- preprocessing
def _data_preprocess_fn() -> Callable | None:
    """The training pipeline's `preprocess_image(uint8 [H,W,C], size)`, if the package has it."""
    try:
        from keras_pldt.data import preprocess_image
    except Exception:
        try:
            from keras_pldt.data.pipeline import preprocess_image
        except Exception:
            return None
    return preprocess_image


def _fallback_preprocess_batch(images, size: int):
    """Resize longer side to `size` (bilinear, antialiased, aspect kept), round to uint8 levels,
    pad 255 centred, x / 127.5 - 1 (the same as `keras_pldt.data.preprocess_image`)."""
    import tensorflow as tf

    images = tf.convert_to_tensor(images)
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    longer = tf.cast(tf.maximum(height, width), tf.float32)
    scale = float(size) / longer
    new_h = tf.clip_by_value(
        tf.cast(tf.round(tf.cast(height, tf.float32) * scale), tf.int32), 1, size
    )
    new_w = tf.clip_by_value(
        tf.cast(tf.round(tf.cast(width, tf.float32) * scale), tf.int32), 1, size
    )
    x = tf.image.resize(
        tf.cast(images, tf.float32), tf.stack([new_h, new_w]), method="bilinear", antialias=True
    )
    x = tf.round(tf.clip_by_value(x, 0.0, 255.0))
    top, left = (size - new_h) // 2, (size - new_w) // 2
    x = tf.pad(
        x,
        [[0, 0], [top, size - new_h - top], [left, size - new_w - left], [0, 0]],
        constant_values=255.0,
    )
    x = tf.reshape(x, [-1, size, size, 3])
    return x / 127.5 - 1.0


def preprocess_batch(images, size: int):
    """uint8 photos [N, H, W, 3] of one size -> float32 [N, S, S, 3] in [-1, 1], as in training.

    Uses `keras_pldt.data.pipeline.preprocess_image` per image when available (so exported
    graphs match the training pipeline exactly), else an equivalent built-in implementation.
    """
    import tensorflow as tf

    images = tf.convert_to_tensor(images)
    fn = _data_preprocess_fn()
    if fn is None:
        return _fallback_preprocess_batch(images, size)
    out = tf.map_fn(
        lambda image: tf.cast(fn(image, size), tf.float32),
        images,
        fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32),
    )
    return tf.reshape(out, [-1, size, size, 3])


def to_uint8(images):
    """[-1, 1] floats -> uint8 pixels: round(clip((y + 1) * 127.5, 0, 255))."""
    import tensorflow as tf

    x = tf.clip_by_value((tf.cast(images, tf.float32) + 1.0) * 127.5, 0.0, 255.0)
    return tf.cast(tf.round(x), tf.uint8)


def to_uint8_np(images: np.ndarray) -> np.ndarray:
    return np.round(np.clip((np.asarray(images, np.float32) + 1.0) * 127.5, 0, 255)).astype(
        np.uint8
    )


def read_photo(path: str | Path) -> np.ndarray:
    """Any PIL-readable photo -> RGB uint8 [H, W, 3] (EXIF orientation applied)."""
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        image.load()
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "PA") or (
            image.mode == "P" and "transparency" in image.info
        ):
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, rgba)
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def preprocess_photo(photo: np.ndarray, size: int) -> np.ndarray:
    """One RGB uint8 photo -> float32 [S, S, 3] in [-1, 1] (the training preprocessing)."""
    return np.asarray(preprocess_batch(photo[None], size)[0])


# ---------------------------------------------------------------------------- loading
def load_converter(run_dir: str | Path | None = None, model_path: str | Path | None = None):
    """(converter keras.Model, config dict or None) from a run directory or a `.keras` file.

    A `.keras` holding the full `PLDT` model (a checkpoint) gives its `converter`.
    """
    import keras

    import keras_pldt.model  # noqa: F401  (registers PLDT for deserialisation)

    config: dict[str, Any] | None = None
    if run_dir is not None:
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise ExportError(f"--run-dir {run_dir} is not a directory")
        if (run_dir / "config.json").is_file():
            config = json.loads((run_dir / "config.json").read_text())
        if model_path is None:
            candidates = [run_dir / "converter.keras"]
            candidates += sorted(
                (run_dir / "checkpoints").glob("*.keras"), key=lambda p: p.stat().st_mtime
            )[::-1]
            found = [p for p in candidates if p.is_file()]
            if not found:
                raise ExportError(
                    f"no converter.keras (or checkpoints/*.keras) in run directory {run_dir}"
                )
            model_path = found[0]
    if model_path is None:
        raise ExportError("give --run-dir or --model")
    model_path = Path(model_path)
    if not model_path.is_file():
        raise ExportError(f"model file {model_path} does not exist")
    model = keras.saving.load_model(model_path, compile=False)
    if hasattr(model, "converter") and isinstance(model.converter, keras.Model):
        if config is None and hasattr(model, "config"):
            config = model.config.to_dict()
        model = model.ema_converter() if hasattr(model, "ema_converter") else model.converter
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3:
        raise ExportError(f"expected a converter with input [None, S, S, 3], got {shape}")
    if config is None and (model_path.parent / "config.json").is_file():
        config = json.loads((model_path.parent / "config.json").read_text())
    return model, config


def list_images(directory: str | Path) -> list[Path]:
    directory = Path(directory)
    return sorted(
        p
        for p in directory.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )


def _sources_first(paths: list[Path]) -> list[Path]:
    """Prefer source photos (LookBook / synthetic `*_CLEAN0_*`) when the names say which."""
    sources = [p for p in paths if "_CLEAN0_" in p.name.upper()]
    return sources or paths


def _spread(paths: list[Path], count: int) -> list[Path]:
    """`count` paths evenly spread over the sorted list (deterministic)."""
    if len(paths) <= count:
        return list(paths)
    idx = np.linspace(0, len(paths) - 1, count).round().astype(int)
    return [paths[i] for i in sorted(set(idx.tolist()))]


def _split_paths(run_dir: Path, keys: Sequence[str]) -> list[Path]:
    """Source photos of the products listed under one of `keys` in the run's `split.json`.

    `split.json` (written by `keras_pldt.data`) holds the data `root` and product ids per split;
    lists of image paths are accepted too. Returns [] when nothing usable is found.
    """
    split_file = run_dir / "split.json"
    if not split_file.is_file():
        return []
    try:
        split = json.loads(split_file.read_text())
    except (OSError, ValueError):
        return []
    root = Path(split["root"]) if isinstance(split.get("root"), str) else None
    products = None
    for key in keys:
        names = split.get(key)
        if not isinstance(names, list) or not names:
            continue
        files = [Path(n) if Path(n).is_absolute() or root is None else root / n for n in names]
        files = [f for f in files if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file()]
        if files:
            return sorted(files)
        if root is None or not root.is_dir():
            return []
        if products is None:
            try:
                from keras_pldt.data import load_pairs

                products = load_pairs(root).products
            except Exception:
                return []
        paths = [Path(p) for n in names if n in products for p in products[n].sources]
        if paths:
            return sorted(paths)
    return []


def _synthetic_dir(image_size: int, workdir: Path) -> Path:
    """A small synthetic product set (the package's generator, or a built-in stand-in)."""
    out = workdir / "synthetic"
    try:
        from keras_pldt.datasets.synthetic import generate
    except Exception:
        generate = None
    if generate is not None:
        result = generate(
            out, num_products=24, sources_per_product=2, seed=0, image_size=max(image_size, 64)
        )
        return Path(result) if result else out
    return _fallback_synthetic(out, 24, 2, seed=0, image_size=max(image_size, 64))


def _fallback_synthetic(out: Path, products: int, sources: int, seed: int, image_size: int):
    """Coloured shapes on white (products) and on noisy backgrounds (sources)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    iid = 0
    for pid in range(products):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        for clean in (1, 0):
            for _ in range(1 if clean else sources):
                w = int(image_size * rng.uniform(0.8, 1.6))
                h = int(image_size * rng.uniform(0.8, 1.6))
                if clean:
                    bg = np.full((h, w, 3), 255, np.uint8)
                else:
                    bg = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
                image = Image.fromarray(bg)
                draw = ImageDraw.Draw(image)
                box = (w * 0.25, h * 0.2, w * 0.75, h * 0.85)
                (draw.ellipse if pid % 2 else draw.rectangle)(box, fill=color)
                image.save(out / f"PID{pid}_CLEAN{clean}_IID{iid}.jpg", quality=95)
                iid += 1
    return out


def load_sample(paths: Sequence[Path], image_size: int):
    """(float32 [N, S, S, 3] in [-1, 1], list of RGB uint8 photos) for readable `paths`."""
    photos, batch = [], []
    for path in paths:
        try:
            photo = read_photo(path)
        except Exception:
            continue
        photos.append(photo)
        batch.append(preprocess_photo(photo, image_size))
    if not batch:
        raise ExportError(f"none of {len(paths)} sample images could be read")
    return np.stack(batch).astype(np.float32), photos


# ---------------------------------------------------------------------------- metrics
def parity_metrics(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """max-abs / mean-abs difference in [-1, 1] units and PSNR (peak-to-peak 2, i.e. [0, 1])."""
    ref = np.asarray(reference, np.float64)
    cand = np.asarray(candidate, np.float64)
    if ref.shape != cand.shape:
        raise ExportError(f"output shape {cand.shape} differs from Keras {ref.shape}")
    diff = np.abs(ref - cand)
    mse = float(np.mean(diff**2))
    psnr = float("inf") if mse == 0 else 10.0 * math.log10(4.0 / mse)
    return {
        "max_abs": float(diff.max()),
        "mean_abs": float(diff.mean()),
        "psnr_db": psnr if math.isfinite(psnr) else 999.0,
    }


def criterion(name: str) -> tuple[str, str, float]:
    """(metric, comparison, bound) that the format `name` must meet."""
    if name in ("savedmodel", "tflite_fp32", "onnx"):
        return "max_abs", "<=", THRESHOLDS["fp32_max_abs"]
    if name == "tflite_float16":
        return "max_abs", "<=", THRESHOLDS["float16_max_abs"]
    if name in ("tflite_dynamic", "tflite_int8"):
        return "psnr_db", ">=", THRESHOLDS["int8_min_psnr_db"]
    if name == "savedmodel_convert_images":
        return "max_abs_levels", "<=", THRESHOLDS["uint8_max_levels"]
    raise KeyError(name)


def _passes(metrics: dict[str, float], name: str) -> bool:
    metric, op, bound = criterion(name)
    value = metrics[metric]
    return value <= bound if op == "<=" else value >= bound


# ---------------------------------------------------------------------------- runners
class TFLiteRunner:
    """Run a `.tflite` converter with LiteRT on float [N, S, S, 3] in [-1, 1]; returns floats.

    Quantized (uint8/int8) inputs and outputs are (de)quantized with the model's own params.
    """

    def __init__(self, path: str | Path, num_threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self._batch = int(self.input["shape"][0])

    def _ensure_batch(self, batch: int):
        if batch != self._batch:
            shape = [batch, *[int(s) for s in self.input["shape"][1:]]]
            self.interpreter.resize_tensor_input(self.input["index"], shape)
            self.interpreter.allocate_tensors()
            self.input = self.interpreter.get_input_details()[0]
            self.output = self.interpreter.get_output_details()[0]
            self._batch = batch

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        dtype = self.input["dtype"]
        if dtype == np.float32:
            return np.asarray(x, np.float32)
        scale, zero = self.input["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)

    def dequantize_output(self, y: np.ndarray) -> np.ndarray:
        if self.output["dtype"] == np.float32:
            return y.astype(np.float32)
        scale, zero = self.output["quantization"]
        return ((y.astype(np.float32) - zero) * scale).astype(np.float32)

    def run_raw(self, x: np.ndarray) -> np.ndarray:
        """Feed `x` as is (already in the model's input dtype)."""
        self._ensure_batch(x.shape[0])
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        return self.dequantize_output(self.run_raw(self.quantize_input(x)))


class OnnxRunner:
    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.asarray(x, np.float32)})[0]


class SavedModelRunner:
    def __init__(self, path: str | Path):
        import tensorflow as tf

        self.tf = tf
        self.loaded = tf.saved_model.load(str(path))
        self.serving = self.loaded.signatures["serving_default"]
        self.convert_images = self.loaded.signatures.get("convert_images")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = self.serving(source=self.tf.constant(np.asarray(x, np.float32)))
        return out["target"].numpy()

    def photos(self, photos: np.ndarray) -> np.ndarray:
        return self.convert_images(images=self.tf.constant(photos))["products"].numpy()


# ---------------------------------------------------------------------------- writers
def _versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    from keras_pldt import __version__

    return {"keras_pldt": __version__, "keras": keras.__version__, "tensorflow": tf.__version__}


def _converter_fn(model):
    import tensorflow as tf

    size = int(model.input_shape[1])

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, "source")])
    def serve(source):
        return {"target": tf.cast(model(source, training=False), tf.float32)}

    return serve


def write_savedmodel(model, path: Path) -> None:
    """SavedModel with `serving_default` (float) and `convert_images` (uint8 photos)."""
    import keras
    import tensorflow as tf

    size = int(model.input_shape[1])
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(source):
        return {"target": tf.cast(model(source, training=False), tf.float32)}

    def convert_images(images):
        x = preprocess_batch(images, size)
        return {"products": to_uint8(model(x, training=False))}

    archive.add_endpoint(
        "serving_default",
        serve,
        input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="source")],
    )
    archive.add_endpoint(
        "convert_images",
        convert_images,
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")],
    )
    archive.write_out(str(path), verbose=False)


def write_tflite(
    saved_model_dir: Path,
    path: Path,
    quantization: str,
    calibration: np.ndarray | None = None,
) -> None:
    """TFLite from the SavedModel's `serving_default`: fp32 / float16 / dynamic / int8."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model_dir), signature_keys=["serving_default"]
    )
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization == "int8":
        if calibration is None or len(calibration) == 0:
            raise ExportError("int8 quantization needs calibration images")
        samples = np.array(calibration, np.float32)
        # Anchor the input range to the full [-1, 1] (pixel 0 and 255) so that dark or bright
        # photos are not clipped by a calibration set that lacks them: one corner pixel each.
        samples[:, 0, 0, :] = -1.0
        samples[:, -1, -1, :] = 1.0

        def representative():
            for sample in samples:
                yield [sample[None]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    elif quantization != "none":
        raise ExportError(f"unknown quantization {quantization!r}; choose from {QUANTIZATIONS}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(converter.convert())


def _rename_onnx_io(path: Path, input_name: str, output_name: str) -> None:
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    renames = {graph.input[0].name: input_name, graph.output[0].name: output_name}
    for value in list(graph.input) + list(graph.output):
        value.name = renames.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    onnx.save(model, str(path))


def write_onnx(model, path: Path, opset: int = ONNX_OPSET) -> None:
    """ONNX via tf2onnx (input 'source', output 'target', dynamic batch)."""
    import tensorflow as tf
    import tf2onnx

    size = int(model.input_shape[1])
    spec = (tf.TensorSpec([None, size, size, 3], tf.float32, name="source"),)

    @tf.function
    def serve(source):
        return tf.cast(model(source, training=False), tf.float32)

    path.parent.mkdir(parents=True, exist_ok=True)
    tf2onnx.convert.from_function(serve, input_signature=spec, opset=opset, output_path=str(path))
    _rename_onnx_io(path, "source", "target")


def _card(name: str, shape: list[int], dtype: str, meaning: str, **extra) -> dict[str, Any]:
    """A model card's description of one input or output tensor."""
    value_range = [0, 255] if dtype == "uint8" else [-1.0, 1.0]
    return {"name": name, "shape": shape, "dtype": dtype, "value_range": value_range,
            "meaning": meaning, **extra}  # fmt: skip


def _tensor_card(detail: dict, meaning: str) -> dict[str, Any]:
    dtype = np.dtype(detail["dtype"]).name
    card = {
        "name": detail["name"],
        "shape": [int(s) for s in detail.get("shape_signature", detail["shape"])],
        "dtype": dtype,
        "meaning": meaning,
    }
    scale, zero = detail.get("quantization", (0.0, 0))
    if dtype in ("uint8", "int8") and scale:
        info = np.iinfo(dtype)
        card["quantization"] = {"scale": float(scale), "zero_point": int(zero)}
        card["value_range"] = [int(info.min), int(info.max)]
        card["real_value"] = "real = (q - zero_point) * scale, real in [-1, 1]"
        card["real_value_range"] = [
            float((info.min - zero) * scale),
            float((info.max - zero) * scale),
        ]
    else:
        card["value_range"] = [-1.0, 1.0]
    return card


def model_card(
    name: str,
    file: Path,
    image_size: int,
    config: dict | None,
    extra: dict[str, Any],
) -> dict[str, Any]:
    size = file.stat().st_size if file.is_file() else _dir_size(file)
    return {
        "name": name,
        "file": file.name,
        "size_bytes": int(size),
        "image_size": image_size,
        "task": "Pixel-level domain transfer (Yoo et al. 2016): photo of a person wearing a "
        "garment -> product image of the garment",
        **extra,
        "preprocessing": {**PREPROCESSING, "S": image_size},
        "postprocessing": POSTPROCESSING,
        "config": config,
        "versions": _versions(),
    }


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")


# ---------------------------------------------------------------------------- main flow
def resolve_data(
    run_dir: Path | None,
    calibration_data: Path | None,
    parity_data: Path | None,
    image_size: int,
    workdir: Path,
) -> tuple[list[Path], list[Path], str]:
    """(calibration paths, parity paths, description) from flags, the run, or synthetic."""
    calib: list[Path] = []
    parity: list[Path] = []
    source = ""
    if calibration_data is not None:
        if not Path(calibration_data).is_dir():
            raise ExportError(f"--calibration-data {calibration_data} is not a directory")
        calib = _sources_first(list_images(calibration_data))
        source = f"calibration: {calibration_data}"
    elif run_dir is not None:
        calib = _sources_first(_split_paths(run_dir, ("train", "training")))
        if calib:
            source = f"calibration: {run_dir / 'split.json'} train"
    if parity_data is not None:
        if not Path(parity_data).is_dir():
            raise ExportError(f"--parity-data {parity_data} is not a directory")
        parity = _sources_first(list_images(parity_data))
        source += f"; parity: {parity_data}"
    elif run_dir is not None and calibration_data is None:
        parity = _sources_first(_split_paths(run_dir, ("val", "validation", "test")))
        if parity:
            source += f"; parity: {run_dir / 'split.json'} val"
    if not calib or not parity:
        synthetic = _sources_first(list_images(_synthetic_dir(image_size, workdir)))
        if not calib:
            calib = synthetic
            source = "calibration: synthetic set" + source.replace("calibration:", ";")
        if not parity:
            parity = calib
            source += "; parity: same images as calibration"
    return calib, parity, source.strip("; ")


def export(
    out: str | Path,
    run_dir: str | Path | None = None,
    model_path: str | Path | None = None,
    formats: Sequence[str] = FORMATS,
    quantize: Sequence[str] = QUANTIZATIONS,
    calibration_data: str | Path | None = None,
    parity_data: str | Path | None = None,
    calibration_samples: int = 64,
    parity_samples: int = 16,
    overwrite: bool = False,
    verbose: bool = True,
    enforce: bool = True,
) -> dict[str, Any]:
    """Export, check parity, and move the result to `out`. Returns the parity report.

    Raises `ExportError` (leaving `out` untouched) if any format misses its threshold, unless
    `enforce=False` (benchmarks of untrained models: the report still records pass/fail).
    """
    log = print if verbose else (lambda *a, **k: None)
    out = Path(out).resolve()
    formats = [f.strip().lower() for f in formats]
    quantize = [q.strip().lower() for q in quantize]
    for f in formats:
        if f not in FORMATS:
            raise ExportError(f"unknown format {f!r}; choose from {', '.join(FORMATS)}")
    for q in quantize:
        if q not in QUANTIZATIONS:
            raise ExportError(f"unknown quantization {q!r}; choose from {', '.join(QUANTIZATIONS)}")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"--out {out} exists and is not empty (pass --overwrite to replace it)")

    model, config = load_converter(run_dir, model_path)
    size = int(model.input_shape[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    scratch = Path(tempfile.mkdtemp(prefix="pldt-export-"))
    try:
        report = _export_into(
            tmp,
            scratch,
            model,
            config,
            size,
            formats,
            quantize,
            Path(run_dir) if run_dir else None,
            Path(calibration_data) if calibration_data else None,
            Path(parity_data) if parity_data else None,
            calibration_samples,
            parity_samples,
            log,
        )
        failed = [n for n, r in report["formats"].items() if not r["pass"]]
        if failed and enforce:
            lines = [
                f"  {n}: {r['metric']} = {r[r['metric']]:.6g}, needs {r['criterion']}"
                for n, r in report["formats"].items()
                if not r["pass"]
            ]
            raise ExportError(
                "parity check failed for "
                + ", ".join(failed)
                + "\n"
                + "\n".join(lines)
                + f"\nnothing was written to {out}"
            )
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
        log(f"exported to {out}")
        return report
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)


def _export_into(
    tmp,
    scratch,
    model,
    config,
    size,
    formats,
    quantize,
    run_dir,
    calib_dir,
    parity_dir,
    calibration_samples,
    parity_samples,
    log,
) -> dict[str, Any]:
    calib_paths, parity_paths, data_note = resolve_data(
        run_dir, calib_dir, parity_dir, size, scratch
    )
    parity_paths = _spread(parity_paths, parity_samples)
    batch, photos = load_sample(parity_paths, size)
    log(f"parity batch: {len(batch)} images ({data_note})")
    reference = np.asarray(model(batch, training=False), np.float32)
    report: dict[str, Any] = {
        "image_size": size,
        "data": data_note,
        "parity_images": [str(p) for p in parity_paths][: len(batch)],
        "thresholds": dict(THRESHOLDS),
        "formats": {},
    }
    if config is not None:
        _write_json(tmp / "config.json", config)

    def record(name: str, metrics: dict[str, float]) -> None:
        metric, op, bound = criterion(name)
        entry = {**metrics, "metric": metric, "criterion": f"{op} {bound:g}"}
        entry["pass"] = bool(_passes(metrics, name))
        report["formats"][name] = entry
        status = "ok" if entry["pass"] else "FAILED"
        detail = ", ".join(f"{k}={v:.3g}" for k, v in metrics.items() if isinstance(v, float))
        log(f"  {name:<26} {detail}  [{metric} {op} {bound:g}: {status}]")

    need_sm = "savedmodel" in formats or "tflite" in formats
    sm_dir = tmp / "savedmodel" if "savedmodel" in formats else scratch / "savedmodel"
    if need_sm:
        t0 = time.time()
        write_savedmodel(model, sm_dir)
        log(f"SavedModel written in {time.time() - t0:.1f}s")
    if "savedmodel" in formats:
        runner = SavedModelRunner(sm_dir)
        record("savedmodel", parity_metrics(reference, runner(batch)))
        worst = 0.0
        expected = to_uint8_np(reference).astype(np.int16)
        for i, photo in enumerate(photos):
            products = runner.photos(photo[None])
            worst = max(worst, float(np.abs(products[0].astype(np.int16) - expected[i]).max()))
        record("savedmodel_convert_images", {"max_abs_levels": worst})
        _write_json(
            sm_dir / "model_card.json",
            model_card(
                "savedmodel",
                sm_dir,
                size,
                config,
                {
                    "format": "TensorFlow SavedModel",
                    "signatures": {
                        "convert_images": {
                            "inputs": [
                                _card(
                                    "images",
                                    [-1, -1, -1, 3],
                                    "uint8",
                                    "a batch of same-sized RGB photos, any size",
                                )
                            ],
                            "outputs": [
                                _card(
                                    "products",
                                    [-1, size, size, 3],
                                    "uint8",
                                    "generated product images (RGB)",
                                )
                            ],
                            "note": "preprocessing and postprocessing are inside the graph",
                        },
                        "serving_default": {
                            "inputs": [
                                _card(
                                    "source", [-1, size, size, 3], "float32", "preprocessed photos"
                                )
                            ],
                            "outputs": [
                                _card(
                                    "target",
                                    [-1, size, size, 3],
                                    "float32",
                                    "generated product images (tanh)",
                                )
                            ],
                        },
                    },
                    "usage": "m = tf.saved_model.load(dir); "
                    "m.signatures['convert_images'](images=uint8_batch)['products']",
                    "parity": report["formats"]["savedmodel"],
                },
            ),
        )

    if "tflite" in formats:
        calib_batch = None
        if "int8" in quantize:
            calib_batch, _ = load_sample(_spread(calib_paths, calibration_samples), size)
            log(f"int8 calibration: {len(calib_batch)} images")
        for q in quantize:
            name = TFLITE_NAMES[q]
            path = tmp / name / "converter.tflite"
            t0 = time.time()
            write_tflite(sm_dir, path, q, calib_batch)
            runner = TFLiteRunner(path)
            record(name, parity_metrics(reference, runner(batch)))
            extra = {
                "format": "TFLite (LiteRT) flatbuffer",
                "quantization": q if q != "none" else "fp32",
                "signature": "serving_default",
                "inputs": [_tensor_card(runner.input, "preprocessed photo(s)")],
                "outputs": [_tensor_card(runner.output, "generated product image(s), tanh")],
                "parity": report["formats"][name],
                "conversion_seconds": round(time.time() - t0, 2),
            }
            if q == "int8":
                extra["calibration"] = {
                    "images": len(calib_batch),
                    "note": "full-integer int8 (TFLITE_BUILTINS_INT8) with uint8 input/output",
                }
            _write_json(
                path.parent / "model_card.json", model_card(name, path, size, config, extra)
            )

    if "onnx" in formats:
        path = tmp / "onnx" / "converter.onnx"
        write_onnx(model, path)
        runner = OnnxRunner(path)
        record("onnx", parity_metrics(reference, runner(batch)))
        extra = {
            "format": f"ONNX (opset {ONNX_OPSET}, tf2onnx)",
            "inputs": [
                _card(
                    "source", [-1, size, size, 3], "float32", "preprocessed photo(s)", layout="NHWC"
                )
            ],
            "outputs": [
                _card(
                    "target",
                    [-1, size, size, 3],
                    "float32",
                    "generated product image(s), tanh",
                    layout="NHWC",
                )
            ],
            "parity": report["formats"]["onnx"],
        }
        _write_json(path.parent / "model_card.json", model_card("onnx", path, size, config, extra))

    _write_json(tmp / "parity.json", report)
    return report


def _csv(value: str) -> list[str]:
    return [v for v in (s.strip() for s in value.split(",")) if v]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m keras_pldt.export",
        description=(
            "Export a trained PLDT converter to SavedModel, TFLite (fp32/float16/dynamic/int8) "
            "and ONNX, with a model_card.json next to each model and a parity check against "
            "Keras (written to parity.json). Fails with exit code 1, writing nothing, if any "
            f"format misses its threshold: fp32 formats max-abs <= {THRESHOLDS['fp32_max_abs']:g}"
            f", float16 <= {THRESHOLDS['float16_max_abs']:g}, dynamic/int8 PSNR >= "
            f"{THRESHOLDS['int8_min_psnr_db']:g} dB."
        ),
        epilog=(
            "examples:\n"
            "  python -m keras_pldt.export --run-dir runs/demo --out exported\n"
            "  python -m keras_pldt.export --model converter.keras --out exported "
            "--formats tflite --quantize int8 --calibration-data photos/\n"
            "Then: python -m keras_pldt.convert --model exported/tflite_int8/converter.tflite "
            "--input photo.jpg --output products/"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--run-dir",
        type=Path,
        help="training run directory (uses converter.keras, config.json, split.json)",
    )
    src.add_argument(
        "--model", type=Path, help="a converter .keras file (or a full PLDT checkpoint .keras)"
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory (created)")
    parser.add_argument(
        "--formats",
        type=_csv,
        default=list(FORMATS),
        help=f"comma-separated subset of {','.join(FORMATS)} (default: all)",
    )
    parser.add_argument(
        "--quantize",
        type=_csv,
        default=list(QUANTIZATIONS),
        help="TFLite variants, comma-separated subset of none (fp32),float16,dynamic,int8 "
        "(default: all)",
    )
    parser.add_argument(
        "--calibration-data",
        type=Path,
        help="directory of photos for int8 calibration and (unless --parity-data) the parity "
        "batch; default: the run's split.json, else a generated synthetic set",
    )
    parser.add_argument("--parity-data", type=Path, help="directory of photos for parity")
    parser.add_argument("--calibration-samples", type=int, default=64)
    parser.add_argument("--parity-samples", type=int, default=16)
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a non-empty --out (only on success)"
    )
    parser.add_argument("--quiet", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        export(
            args.out,
            run_dir=args.run_dir,
            model_path=args.model,
            formats=args.formats,
            quantize=args.quantize,
            calibration_data=args.calibration_data,
            parity_data=args.parity_data,
            calibration_samples=args.calibration_samples,
            parity_samples=args.parity_samples,
            overwrite=args.overwrite,
            verbose=not args.quiet,
        )
    except ExportError as error:
        print(f"export failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
