"""Try a PLDT converter on your own photos in a web page on this machine.

    python -m keras_pldt.demo --model runs/demo-rf+dd
    python -m keras_pldt.demo --model exported/tflite_int8/converter.tflite --port 0

`--model` takes what `keras_pldt.convert` takes: a run folder, a `.keras` file, a SavedModel or
export directory, a `.tflite` or an `.onnx` file. Open the printed URL and drop one or several
photos on the page: each is shown letterboxed to the model's input beside the generated product
(both enlarged with nearest-neighbour), with a PNG download of the product. The page also shows
the model's format, image size, training settings and data (from its model_card.json or the
run's config.json) and the measured time per image.

Uploads are only held in memory while they are converted; nothing is written to disk. The server
listens on 127.0.0.1 (this machine only) unless --host says otherwise. Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import sys
import threading
import time
import urllib.parse
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from keras_pldt.errors import UploadError
from keras_pldt.run import RunFolder

PAGE = Path(__file__).with_name("demo_page.html")
DEFAULT_PORT = 8000
DEFAULT_MAX_UPLOAD_MB = 20.0
DEFAULT_MAX_MEGAPIXELS = 40.0
DEFAULT_DISPLAY_SIZE = 256
FORMATS = {
    "keras": "Keras (.keras)",
    "savedmodel": "TensorFlow SavedModel",
    "tflite": "TFLite (LiteRT) flatbuffer",
    "onnx": "ONNX",
}
#: Training settings shown on their own line, in this order (other non-paper values follow).
KEY_SETTINGS = ("variant", "base_filters", "upsampling", "batch_size", "learning_rate")
#: Fields that do not change what a run learns; left out of the preset comparison.
EXECUTION_ONLY = ("cache", "jit_compile")


# ---------------------------------------------------------------------------- model description
def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def find_model_card(model: Path) -> dict[str, Any] | None:
    """The `model_card.json` written by `keras_pldt.export` next to (or inside) the model."""
    candidates = [model / "model_card.json", model / "savedmodel" / "model_card.json"]
    if model.is_file():
        candidates = [model.parent / "model_card.json"]
    for path in candidates:
        card = _read_json(path) if path.is_file() else None
        if card is not None:
            return card
    return None


def find_config(model: Path, card: dict[str, Any] | None) -> dict[str, Any] | None:
    """The training config: the model card's, else a config.json of the run or export folder."""
    if card is not None and isinstance(card.get("config"), dict):
        return card["config"]
    folder = model if model.is_dir() else model.parent
    for path in (RunFolder(folder).config_path, RunFolder(folder.parent).config_path):
        config = _read_json(path) if path.is_file() else None
        if config is not None:
            return config
    return None


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value) if value not in ("", None) else "none"


def preset_summary(config: dict[str, Any]) -> str:
    """The closest named preset and the fields where the config departs from it."""
    from keras_pldt.config import PRESETS, get_preset

    def departures(name: str) -> dict[str, Any]:
        full = get_preset(name).to_dict()
        return {
            k: config[k]
            for k in full
            if k in config and k not in EXECUTION_ONLY and config[k] != full[k]
        }

    name, changed = min(((n, departures(n)) for n in PRESETS), key=lambda item: len(item[1]))
    if not changed:
        return name
    return f"{name} with " + ", ".join(f"{k}={_value(v)}" for k, v in changed.items())


def training_rows(config: dict[str, Any] | None) -> list[tuple[str, str]]:
    if config is None:
        return [("training", "not recorded (no model_card.json or config.json with the model)")]
    from keras_pldt.config import PLDTConfig

    paper = PLDTConfig().to_dict()
    key = [f"{k} {_value(config[k])}" for k in KEY_SETTINGS if k in config]
    if "epochs" in config:
        key.append(f"epochs {config['epochs']} + {config.get('decay_epochs', 0)} decay")
    shown = {*KEY_SETTINGS, "epochs", "decay_epochs", "image_size", *EXECUTION_ONLY}
    beyond = [
        f"{k} {_value(v)}"
        for k, v in config.items()
        if k in paper and k not in shown and v != paper[k]
    ]
    rows = [("preset", preset_summary(config)), ("training", ", ".join(key) or "not recorded")]
    rows.append(("beyond the paper", ", ".join(beyond) or "nothing: the published recipe"))
    data = config.get("data") or config.get("manifest")
    rows.append(("training data", str(data) if data else "not recorded"))
    return rows


def describe_model(model: Path, kind: str, image_size: int) -> list[tuple[str, str]]:
    """(label, value) rows for the page: file, format, image size, training settings, data."""
    card = find_model_card(model)
    fmt = FORMATS.get(kind, kind)
    if card is not None and card.get("format"):
        fmt = str(card["format"])
        if card.get("quantization"):
            fmt += f", {card['quantization']}"
    rows = [("model", str(model)), ("format", fmt), ("image size", f"{image_size} × {image_size}")]
    return rows + training_rows(find_config(model, card))


# ---------------------------------------------------------------------------- conversion
def decode_upload(data: bytes, name: str, max_pixels: int):
    """Upload bytes -> RGB uint8 [H, W, 3], or `UploadError` with a message for the page."""
    from PIL import Image, UnidentifiedImageError

    from keras_pldt.export import read_photo

    if not data:
        raise UploadError(f"{name} is empty (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Image.DecompressionBombError as error:
        raise UploadError(f"{name} has too many pixels: {error}") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise UploadError(
            f"{name} is not an image this page can read (use JPEG, PNG, WebP, GIF, BMP or TIFF)"
        ) from None
    if width * height > max_pixels:
        raise UploadError(
            f"{name} is {width} × {height} = {width * height / 1e6:.1f} megapixels; "
            f"the limit is {max_pixels / 1e6:g} megapixels"
        )
    try:
        return read_photo(io.BytesIO(data))
    except Exception as error:  # truncated or corrupt image data
        raise UploadError(f"{name} could not be decoded: {error}") from None


def png_data_url(pixels) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class Demo:
    """A loaded converter plus the page's limits; `convert` is safe to call from many threads."""

    def __init__(
        self,
        model: str | Path,
        max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 1e6),
        max_pixels: int = int(DEFAULT_MAX_MEGAPIXELS * 1e6),
        display_size: int = DEFAULT_DISPLAY_SIZE,
    ):
        import numpy as np

        from keras_pldt.convert import Converter

        self.model = Path(model)
        self.converter = Converter(self.model)
        self.image_size = int(self.converter.image_size)
        self.max_upload_bytes = int(max_upload_bytes)
        self.max_pixels = int(max_pixels)
        self.display_size = int(display_size)
        self.rows = describe_model(self.model, self.converter.kind, self.image_size)
        self._lock = threading.Lock()
        self._count, self._total_ms = 0, 0.0
        start = time.perf_counter()  # the first call builds / traces the model
        self.converter(np.full((self.image_size, self.image_size, 3), 255, np.uint8))
        self.warmup_ms = (time.perf_counter() - start) * 1e3

    def info(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "image_size": self.image_size,
            "display_size": self.display_size,
            "max_upload_bytes": self.max_upload_bytes,
            "max_megapixels": self.max_pixels / 1e6,
            "warmup_ms": round(self.warmup_ms, 1),
        }

    def convert(self, data: bytes, name: str) -> dict[str, Any]:
        photo = decode_upload(data, name, self.max_pixels)
        with self._lock:  # the runtimes are not safe to call concurrently
            start = time.perf_counter()
            source, product = self.converter(photo)
            elapsed = (time.perf_counter() - start) * 1e3
            self._count += 1
            self._total_ms += elapsed
            count, mean = self._count, self._total_ms / self._count
        return {
            "name": name,
            "photo_size": [int(photo.shape[1]), int(photo.shape[0])],
            "source": png_data_url(source),
            "product": png_data_url(product),
            "download": f"{Path(name).stem or 'photo'}_product.png",
            "latency_ms": round(elapsed, 1),
            "mean_latency_ms": round(mean, 1),
            "images": count,
        }


# ---------------------------------------------------------------------------- server
class Handler(BaseHTTPRequestHandler):
    server_version = "pldt-demo"
    demo: Demo  # set on the subclass made by make_server

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, value: dict[str, Any]) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = urllib.parse.urlsplit(self.path).path
        if path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, PAGE.read_bytes(), "text/html; charset=utf-8")
        elif path == "/info":
            self._json(HTTPStatus.OK, self.demo.info())
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {path}"})

    def do_POST(self) -> None:  # noqa: N802
        if urllib.parse.urlsplit(self.path).path != "/convert":
            self._json(HTTPStatus.NOT_FOUND, {"error": "POST photos to /convert"})
            return
        name = urllib.parse.unquote(self.headers.get("X-Filename", "")) or "upload"
        name = Path(name.replace("\\", "/")).name[:200] or "upload"
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._json(HTTPStatus.LENGTH_REQUIRED, {"error": "send the photo with Content-Length"})
            return
        if length > self.demo.max_upload_bytes:
            self.close_connection = True  # the body is not read
            limit = self.demo.max_upload_bytes / 1e6
            self._json(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                {"error": f"{name} is {length / 1e6:.1f} MB; the limit is {limit:g} MB"},
            )
            return
        data = self.rfile.read(length) if length > 0 else b""
        try:
            result = self.demo.convert(data, name)
        except UploadError as error:
            self.log_message("rejected %s: %s", name, error)
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(error)})
            return
        except Exception as error:  # keep serving whatever one photo does
            self.log_message("failed on %s: %r", name, error)
            message = f"{name}: the conversion failed ({type(error).__name__}: {error})"
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": message})
            return
        self.log_message("converted %s in %.0f ms", name, result["latency_ms"])
        self._json(HTTPStatus.OK, result)

    def log_request(self, code="-", size="-") -> None:
        """Conversions and rejections are logged by the handlers; plain requests are not."""


def make_server(demo: Demo, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """An HTTP server for `demo` (not yet serving); port 0 picks a free port."""
    handler = type("DemoHandler", (Handler,), {"demo": demo})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def server_url(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in str(host):
        host = f"[{host}]"
    return f"http://{host}:{port}/"


# ---------------------------------------------------------------------------- command line
def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m keras_pldt.demo",
        description="Serve a web page on this machine that turns your photos into product images.",
        epilog=__doc__.split("\n\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        required=True,
        type=Path,
        help="run folder, .keras file, SavedModel or export directory, .tflite or .onnx",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every network)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port to listen on (default {DEFAULT_PORT}; 0 picks a free one)",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=_positive(float),
        default=DEFAULT_MAX_UPLOAD_MB,
        help=f"largest accepted file in MB (default {DEFAULT_MAX_UPLOAD_MB:g})",
    )
    parser.add_argument(
        "--max-megapixels",
        type=_positive(float),
        default=DEFAULT_MAX_MEGAPIXELS,
        help=f"largest accepted photo in megapixels (default {DEFAULT_MAX_MEGAPIXELS:g})",
    )
    parser.add_argument(
        "--display-size",
        type=_positive(int),
        default=DEFAULT_DISPLAY_SIZE,
        help="on-page size in pixels of the input and the product, enlarged with "
        f"nearest-neighbour (default {DEFAULT_DISPLAY_SIZE})",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.model.exists():
        print(f"demo: --model {args.model} does not exist", file=sys.stderr)
        return 2
    if not 0 <= args.port <= 65535:
        print(f"demo: --port must be between 0 and 65535, got {args.port}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        demo = Demo(
            args.model,
            max_upload_bytes=int(args.max_upload_mb * 1e6),
            max_pixels=int(args.max_megapixels * 1e6),
            display_size=args.display_size,
        )
    except Exception as error:  # a wrong or damaged model file: one line, not a traceback
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        print(f"demo: cannot load --model {args.model}: {reason}", file=sys.stderr)
        return 2
    try:
        server = make_server(demo, args.host, args.port)
    except OSError as error:
        print(f"demo: cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 2
    print(
        f"PLDT demo: {demo.converter.kind} model, {demo.image_size} x {demo.image_size}, ready in "
        f"{time.perf_counter() - start:.1f} s; open {server_url(server)} (Ctrl-C stops it)",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("demo: stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
