"""The inference runtime: reading photos, the Sec. 5.2 letterbox, and one runner per format.

* `read_photo(path)`: any PIL-readable photo -> RGB uint8 [H, W, 3].
* `letterbox(images, size)`: the paper's preprocessing as TF ops (graph-safe, unknown H and W):
  longer side to S (bilinear, antialiased), rounded to uint8 levels, padded with 255 centred.
  The training pipeline (`keras_pldt.data`), the SavedModel's `convert_images` signature and
  `convert` all call it; `to_float` then scales to [-1, 1] (x / 127.5 - 1).
* `open_model(path) -> Runner` for a `.keras` converter or run folder, a SavedModel (or export)
  folder, a `.tflite` (LiteRT) or an `.onnx` (onnxruntime) file. Every runner has `.kind`,
  `.image_size`, `.card` (the model card or run config, or None) and maps a float batch
  [N, S, S, 3] in [-1, 1] to the generated float batch.
* `Converter(path)`: one photo of any size -> (letterboxed source, product), both uint8 [S, S, 3].

TensorFlow and the runtimes are imported inside the functions that need them.
"""

from __future__ import annotations

import importlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from keras_pldt.errors import MissingRuntime, ModelError
from keras_pldt.run import RunFolder, load_converter

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
#: Names in an export folder (`keras_pldt.export`) that the runtime reads.
SAVEDMODEL = "savedmodel"
MODEL_CARD = "model_card.json"


def require(module: str, package: str, purpose: str):
    """`importlib.import_module(module)`, or MissingRuntime naming `pip install package`."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingRuntime(f"{purpose} needs {package}: pip install {package}") from None


# ---------------------------------------------------------------------------- pixels
def read_photo(path: str | Path) -> np.ndarray:
    """Any PIL-readable photo -> RGB uint8 [H, W, 3]; EXIF rotation applied, alpha on white."""
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        image.load()
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "PA") or (
            image.mode == "P" and "transparency" in image.info
        ):
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(white, rgba)
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def letterbox(images, size: int):
    """RGB [H, W, 3] or [N, H, W, 3] (uint8, or floats in [0, 255]) -> uint8 [..., S, S, 3].

    The longer side is resized to `size` (bilinear, antialiased; the shorter one to
    round(short * S / long), at least 1), rounded to uint8 levels and centred on white (255):
    top = (S - new_h) // 2, left = (S - new_w) // 2. Plain TF ops.
    """
    import tensorflow as tf

    x = tf.cast(images, tf.float32)
    batched = x.shape.rank == 4
    shape = tf.shape(x)
    h, w = tf.cast(shape[-3], tf.float32), tf.cast(shape[-2], tf.float32)
    scale = tf.constant(float(size)) / tf.maximum(h, w)
    nh = tf.clip_by_value(tf.cast(tf.round(h * scale), tf.int32), 1, size)
    nw = tf.clip_by_value(tf.cast(tf.round(w * scale), tf.int32), 1, size)
    x = tf.image.resize(x, tf.stack([nh, nw]), method="bilinear", antialias=True)
    x = tf.round(tf.clip_by_value(x, 0.0, 255.0))
    top, left = (size - nh) // 2, (size - nw) // 2
    pads = [tf.stack([top, size - nh - top]), tf.stack([left, size - nw - left]), [0, 0]]
    x = tf.pad(x, tf.stack(([[0, 0]] if batched else []) + pads), constant_values=255.0)
    x = tf.cast(x, tf.uint8)
    x.set_shape(([x.shape[0]] if batched else []) + [size, size, 3])
    return x


def to_float(images_uint8):
    """uint8 pixels -> float32 in [-1, 1]: x / 127.5 - 1 (TF ops)."""
    import tensorflow as tf

    return tf.cast(images_uint8, tf.float32) / 127.5 - 1.0


def to_float_np(images_uint8: np.ndarray) -> np.ndarray:
    """`to_float` in numpy (the same float32 operations, the same values)."""
    return np.asarray(images_uint8).astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def preprocess(images, size: int):
    """uint8 photos [N, H, W, 3] of one size (or one [H, W, 3]) -> float32 in [-1, 1]."""
    return to_float(letterbox(images, size))


def preprocess_photo(photo: np.ndarray, size: int) -> np.ndarray:
    """One RGB uint8 photo -> float32 [S, S, 3] in [-1, 1], as in training."""
    return np.asarray(preprocess(photo, size))


def to_uint8(images):
    """[-1, 1] floats -> uint8 pixels: round(clip((y + 1) * 127.5, 0, 255)) (TF ops)."""
    import tensorflow as tf

    x = tf.clip_by_value((tf.cast(images, tf.float32) + 1.0) * 127.5, 0.0, 255.0)
    return tf.cast(tf.round(x), tf.uint8)


def to_uint8_np(images) -> np.ndarray:
    """`to_uint8` in numpy."""
    y = (np.asarray(images, np.float32) + 1.0) * 127.5
    return np.round(np.clip(y, 0, 255)).astype(np.uint8)


#: The letterbox and its inverse as the model cards describe them.
PREPROCESSING = {
    "summary": "RGB uint8 photo [H, W, 3] -> bilinear resize so the longer side is S, keeping the "
    "aspect ratio -> pad to S x S with 255 (white), centred -> x / 127.5 - 1",
    "color": "RGB",
    "resize": "bilinear, longer side to S, shorter side round(short * S / long)",
    "pad_value": 255,
    "pad": "centred: top = (S - new_h) // 2, left = (S - new_w) // 2",
    "normalisation": "x / 127.5 - 1 (float models); quantize with the input's scale and "
    "zero_point (int8 model)",
}
POSTPROCESSING = "uint8 pixel = round(clip((y + 1) * 127.5, 0, 255)); y in [-1, 1] (tanh)"
INPUT, OUTPUT = "preprocessed photo(s)", "generated product image(s), tanh"


def _leads_nowhere(path: Path) -> bool:
    """A link that reaches no file or folder: a loop, a dangling link, an unreadable target."""
    return path.is_symlink() and not os.path.exists(path)


#: An oversized photo is shrunk by the largest whole factor that keeps its longer side at
#: least this long (16 times the paper's 64 px): the letterbox still averages 16 x 16 boxes.
SHRUNK_SIDE = 1024
#: PIL's transposition of each EXIF orientation (as `PIL.ImageOps.exif_transpose`).
ORIENTATIONS = {
    2: "FLIP_LEFT_RIGHT",
    3: "ROTATE_180",
    4: "FLIP_TOP_BOTTOM",
    5: "TRANSPOSE",
    6: "ROTATE_270",
    7: "TRANSVERSE",
    8: "ROTATE_90",
}


def read_photo_reduced(image, full_pixels: int):
    """An opened, oversized photo -> RGB uint8 [H / k, W / k, 3] of at most `full_pixels`
    pixels, its longer side at least `SHRUNK_SIDE`, holding one full-size copy at a time: JPEG
    is decoded at a reduced DCT scale (`draft`), then PIL's `reduce` averages k x k boxes (of
    alpha-premultiplied pixels, so a transparent pixel adds nothing), and each image is closed
    once the next is made. EXIF rotation and alpha on white as `read_photo`.
    """
    from PIL import Image

    def shrink(width: int, height: int) -> int:
        under = math.ceil(math.sqrt(width * height / full_pixels))
        return max(1, under, max(width, height) // SHRUNK_SIDE)

    orientation = image.getexif().get(0x0112)
    width, height = image.size
    factor = shrink(width, height)
    image.draft("RGB", (math.ceil(width / factor), math.ceil(height / factor)))
    image.load()
    alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )

    def swap(new) -> None:
        nonlocal image
        if new is not image:
            image.close()
            image = new

    for mode in ("RGBA", "RGBa") if alpha else ("RGB",):
        if image.mode != mode:
            swap(image.convert(mode))
    factor = shrink(image.width, image.height)
    if factor > 1:
        swap(image.reduce(factor))
    if orientation in ORIENTATIONS:
        swap(image.transpose(getattr(Image.Transpose, ORIENTATIONS[orientation])))
    pixels = np.asarray(image, dtype=np.uint8)
    image.close()
    if alpha:  # premultiplied colour over white: c * a / 255 + 255 - a
        pixels = (pixels[..., :3] + (255 - pixels[..., 3:]).astype(np.uint16)).clip(0, 255)
    return np.ascontiguousarray(pixels, dtype=np.uint8)


def list_files(folder: str | Path) -> list[Path]:
    """The files under `folder`, recursively and sorted, names starting with "." left out at
    any depth; with them every link there that leads nowhere (a loop such as ``ln -s B.jpg
    A.jpg; ln -s A.jpg B.jpg``, a dangling link, a target that cannot be read), so that the
    code that opens them names and counts them as unreadable files. Links to folders are not
    followed. The one listing of a folder's files: the data tools, training, convert and export.
    """
    folder = Path(folder)
    found = []
    for path in folder.rglob("*"):
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        try:
            wanted = path.is_file() or _leads_nowhere(path)
        except OSError:  # e.g. a link into a folder this user may not read
            wanted = True
        if wanted:
            found.append(path)
    return sorted(found)


def list_images(folder: str | Path) -> list[Path]:
    """The image files under `folder` by extension (`list_files`), sorted."""
    return [p for p in list_files(folder) if p.suffix.lower() in IMAGE_EXTENSIONS]


def load_photos(paths, size: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """(float32 [N, S, S, 3] in [-1, 1], the N RGB uint8 photos) of the readable `paths`."""
    photos = []
    for path in paths:
        try:
            photos.append(read_photo(path))
        except Exception:  # unreadable, truncated, not an image: left out
            continue
    batch = [preprocess_photo(photo, size) for photo in photos]
    return np.stack(batch) if batch else np.zeros((0, size, size, 3), np.float32), photos


# ---------------------------------------------------------------------------- runners
def _read_card(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def tensor_card(name: str, shape, dtype: str, meaning: str, **extra) -> dict[str, Any]:
    """A model card's description of one input or output tensor (-1 for a dynamic size)."""
    shape = [int(s) if isinstance(s, (int, np.integer)) and s >= 0 else -1 for s in shape]
    value_range = [0, 255] if dtype == "uint8" else [-1.0, 1.0]
    card = {"name": name, "shape": shape, "dtype": dtype, "value_range": value_range}
    return {**card, "meaning": meaning, **extra}


class Runner:
    """A converter in some format: float [N, S, S, 3] in [-1, 1] -> the same, generated.
    `describe()` gives its input and output tensors as a model card lists them."""

    kind = ""

    def __init__(self, path: str | Path | None, image_size: int, card: dict | None = None):
        self.path = Path(path) if path is not None else None
        self.image_size = int(image_size)
        self.card = card

    def __call__(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, image_size={self.image_size})"

    def describe(self) -> dict[str, list[dict[str, Any]]]:
        square = [-1, self.image_size, self.image_size, 3]
        source = tensor_card("source", square, "float32", INPUT)
        return {"inputs": [source], "outputs": [tensor_card("target", square, "float32", OUTPUT)]}


class KerasRunner(Runner):
    kind = "keras"

    def __init__(self, model, path: str | Path | None = None, config: dict | None = None):
        super().__init__(path, model.input_shape[1], config)
        self.model = model

    @classmethod
    def open(cls, path: str | Path, weights: str = "converter") -> KerasRunner:
        model, config = load_converter(path, weights, with_config=True)
        return cls(model, path, config)

    def __call__(self, x):
        return np.asarray(self.model(np.asarray(x, np.float32), training=False), np.float32)


class SavedModelRunner(Runner):
    """`serving_default` (floats) and, with `photos`, `convert_images` (uint8 photos)."""

    kind = "savedmodel"

    def __init__(self, path: str | Path):
        import tensorflow as tf

        self.tf = tf
        self.loaded = tf.saved_model.load(str(path))
        self.serving = self.loaded.signatures["serving_default"]
        self.convert_images = self.loaded.signatures.get("convert_images")
        size = self.serving.structured_input_signature[1]["source"].shape[1]
        super().__init__(path, size, _read_card(Path(path) / MODEL_CARD))

    def __call__(self, x):
        out = self.serving(source=self.tf.constant(np.asarray(x, np.float32)))
        return out["target"].numpy()

    def photos(self, photos: np.ndarray) -> np.ndarray:
        """uint8 photos [N, H, W, 3] of one size -> uint8 products [N, S, S, 3], in the graph."""
        return self.convert_images(images=self.tf.constant(photos))["products"].numpy()


class TFLiteRunner(Runner):
    """A `.tflite` converter on LiteRT; quantized inputs and outputs use the model's own
    scale and zero point."""

    kind = "tflite"

    def __init__(self, path: str | Path, num_threads: int | None = None):
        litert = require("ai_edge_litert.interpreter", "ai-edge-litert", "the tflite format")
        self.interpreter = litert.Interpreter(model_path=str(path), num_threads=num_threads)
        self.interpreter.allocate_tensors()
        self._details()
        super().__init__(path, self.input["shape"][1], _read_card(Path(path).parent / MODEL_CARD))

    def _details(self) -> None:
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self._batch = int(self.input["shape"][0])

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
        if x.shape[0] != self._batch:
            shape = [x.shape[0], *[int(s) for s in self.input["shape"][1:]]]
            self.interpreter.resize_tensor_input(self.input["index"], shape)
            self.interpreter.allocate_tensors()
            self._details()
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"])

    def __call__(self, x):
        return self.dequantize_output(self.run_raw(self.quantize_input(np.asarray(x, np.float32))))

    def describe(self):
        """The tensors as stored (dynamic batch -1), with the quantization of (u)int8 ones."""
        inputs, outputs = [self._tensor(self.input, INPUT)], [self._tensor(self.output, OUTPUT)]
        return {"inputs": inputs, "outputs": outputs}

    @staticmethod
    def _tensor(detail: dict, meaning: str) -> dict[str, Any]:
        dtype = np.dtype(detail["dtype"]).name
        card = tensor_card(detail["name"], detail["shape_signature"], dtype, meaning)
        scale, zero = detail["quantization"]
        if dtype in ("uint8", "int8") and scale:
            info = np.iinfo(dtype)
            card["value_range"] = [int(info.min), int(info.max)]
            card["quantization"] = {"scale": float(scale), "zero_point": int(zero)}
            card["real_value"] = "real = (q - zero_point) * scale, real in [-1, 1]"
            card["real_value_range"] = [float((q - zero) * scale) for q in (info.min, info.max)]
        return card


class OnnxRunner(Runner):
    kind = "onnx"

    def __init__(self, path: str | Path, threads: int | None = None):
        ort = require("onnxruntime", "onnxruntime", "the onnx format")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        super().__init__(path, inp.shape[1], _read_card(Path(path).parent / MODEL_CARD))

    def __call__(self, x):
        return self.session.run(None, {self.input_name: np.asarray(x, np.float32)})[0]

    def describe(self):
        """The graph's tensors (NHWC; dynamic sizes -1)."""
        dtypes = {"tensor(float)": "float32", "tensor(uint8)": "uint8"}

        def cards(tensors, meaning):
            return [
                tensor_card(t.name, t.shape, dtypes.get(t.type, t.type), meaning, layout="NHWC")
                for t in tensors
            ]

        session = self.session
        return {
            "inputs": cards(session.get_inputs(), INPUT),
            "outputs": cards(session.get_outputs(), OUTPUT),
        }


def open_model(path: str | Path, weights: str = "converter") -> Runner:
    """The runner of a run folder or `.keras` file, a SavedModel or export folder, a `.tflite`
    or an `.onnx` file. FileNotFoundError, ModelError, RunError or MissingRuntime otherwise."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_dir():
        for folder in (path, path / SAVEDMODEL):
            if (folder / "saved_model.pb").is_file():
                return SavedModelRunner(folder)
        run = RunFolder(path)
        if run.is_run() or run.final_model.is_file():
            return KerasRunner.open(path, weights)
        raise ModelError(f"{path} is neither a SavedModel, an export folder nor a run folder")
    suffix = path.suffix.lower()
    if suffix == ".keras":
        return KerasRunner.open(path)
    if suffix == ".tflite":
        return TFLiteRunner(path)
    if suffix == ".onnx":
        return OnnxRunner(path)
    raise ModelError(f"unsupported model {path}: use .keras, .tflite, .onnx or a folder")


class Converter:
    """`converter(photo uint8 [H, W, 3]) -> (source uint8 [S, S, 3], product uint8 [S, S, 3])`.

    `source` is the letterboxed photo the model sees. `.kind` ("keras", "savedmodel",
    "tflite" or "onnx"), `.image_size` (S), `.card` (the model card, or the run's config; None
    when neither is there) and `.runner` describe the model.
    """

    def __init__(self, model: str | Path, weights: str = "converter"):
        path = Path(model)
        if not path.exists():
            raise FileNotFoundError(f"--model {path} does not exist")
        self.runner = open_model(path, weights)
        self.kind, self.image_size = self.runner.kind, self.runner.image_size
        self.card = self.runner.card

    def __call__(self, photo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        source = np.asarray(letterbox(photo, self.image_size))
        runner = self.runner
        if isinstance(runner, SavedModelRunner) and runner.convert_images is not None:
            product = runner.photos(photo[None])[0]
        else:
            product = to_uint8_np(runner(to_float_np(source)[None]))[0]
        return source, product


__all__ = [
    "IMAGE_EXTENSIONS",
    "Converter",
    "KerasRunner",
    "MissingRuntime",
    "ModelError",
    "OnnxRunner",
    "Runner",
    "SavedModelRunner",
    "TFLiteRunner",
    "letterbox",
    "list_images",
    "load_converter",
    "load_photos",
    "open_model",
    "preprocess",
    "preprocess_photo",
    "read_photo",
    "require",
    "to_float",
    "to_float_np",
    "to_uint8",
    "tensor_card",
    "to_uint8_np",
]
