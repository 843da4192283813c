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
listens on 127.0.0.1 (this machine only) unless --host says otherwise, and then answers only
requests addressed to this machine (a Host header of the bound address or localhost), which a
web page that renames itself (DNS rebinding) cannot send. Ctrl-C stops it.

Memory: at most --workers photos (default 1) are decoded and converted at once; a photo of up to
--full-megapixels (default 12.5) is decoded at full size and letterboxed exactly as in training,
a larger one (up to --max-megapixels) is shrunk by a whole factor while it is decoded (JPEG at a
reduced DCT scale, then PIL's reduce) to a longer side of about 1024 to 2048 pixels. At most
--queue more uploads (default 4, each at most --max-upload-mb) wait in memory; further ones get
503 until one is done. A connection idle, or slow to send its request, for --timeout seconds
(default 30) is closed; a client that leaves mid-upload is logged in one line.
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import io
import ipaddress
import json
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from keras_pldt.cards import describe_model
from keras_pldt.cli import quiet_tensorflow
from keras_pldt.errors import UploadError

PAGE = Path(__file__).with_name("demo_page.html")
UI = Path(__file__).parent / "web" / "page" / "ui.js"
DEFAULT_PORT = 8000
DEFAULT_MAX_UPLOAD_MB = 20.0
DEFAULT_MAX_MEGAPIXELS = 40.0
DEFAULT_DISPLAY_SIZE = 256
#: Photos up to this size are decoded whole; larger ones are shrunk while decoding.
DEFAULT_FULL_MEGAPIXELS = 12.5
#: Photos decoded and converted at once, and uploads that may wait for them.
DEFAULT_WORKERS = 1
DEFAULT_QUEUE = 4
#: Seconds a connection may stay idle, or take to send one request, before it is closed.
DEFAULT_TIMEOUT_S = 30.0
#: Host names that reach a server bound to a loopback address (besides that address).
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")


# ---------------------------------------------------------------------------- conversion
def decode_upload(
    data: bytes, name: str, max_pixels: int, full_pixels: int = int(DEFAULT_FULL_MEGAPIXELS * 1e6)
):
    """Upload bytes -> RGB uint8 [H, W, 3], or `UploadError` with a message for the page.

    A photo of at most `full_pixels` pixels is read by `keras_pldt.runtime.read_photo` (so its
    letterbox is training's); a larger one, up to `max_pixels`, is shrunk while it is decoded
    (`keras_pldt.runtime.read_photo_reduced`) so no upload holds more than one full-size copy
    of its pixels.
    """
    from PIL import Image, UnidentifiedImageError

    from keras_pldt.runtime import read_photo, read_photo_reduced

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
        if width * height <= full_pixels:
            return read_photo(io.BytesIO(data))
        with Image.open(io.BytesIO(data)) as image:
            return read_photo_reduced(image, full_pixels)
    except Exception as error:  # truncated or corrupt image data
        raise UploadError(f"{name} could not be decoded: {error}") from None


def release_memory() -> None:
    """Give the heap freed by a conversion back to the system (glibc's `malloc_trim`), so
    the server's resident memory returns towards idle between photos; a no-op elsewhere."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def png_data_url(pixels) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class Demo:
    """A loaded converter plus the page's limits; `convert` is safe to call from many threads.

    Photos are decoded and converted by `workers` threads of their own (so at most `workers`
    photos are in memory at full size), and `admit` lets at most `workers + queue` uploads in
    at once: the memory an upload can take is bounded by these and the size limits.
    """

    def __init__(
        self,
        model: str | Path,
        max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 1e6),
        max_pixels: int = int(DEFAULT_MAX_MEGAPIXELS * 1e6),
        display_size: int = DEFAULT_DISPLAY_SIZE,
        full_pixels: int = int(DEFAULT_FULL_MEGAPIXELS * 1e6),
        workers: int = DEFAULT_WORKERS,
        queue: int = DEFAULT_QUEUE,
    ):
        import numpy as np

        from keras_pldt.convert import Converter

        self.model = Path(model)
        self.converter = Converter(self.model)
        self.image_size = int(self.converter.image_size)
        self.max_upload_bytes = int(max_upload_bytes)
        self.max_pixels = int(max_pixels)
        self.display_size = int(display_size)
        self.full_pixels = int(full_pixels)
        self.workers, self.queue = int(workers), int(queue)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="convert")
        self._slots = threading.BoundedSemaphore(self.workers + self.queue)
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

    def admit(self) -> bool:
        """Take one of the `workers + queue` upload slots; False when all are taken. Each
        True must be followed by one `leave`."""
        return self._slots.acquire(blocking=False)

    def leave(self) -> None:
        self._slots.release()

    def convert(self, data: bytes, name: str) -> dict[str, Any]:
        """The page's answer for one upload, computed on one of the `workers` threads."""
        return self._pool.submit(self._convert, data, name).result()

    def _convert(self, data: bytes, name: str) -> dict[str, Any]:
        try:
            return self._answer(data, name)
        finally:
            release_memory()

    def _answer(self, data: bytes, name: str) -> dict[str, Any]:
        photo = decode_upload(data, name, self.max_pixels, self.full_pixels)
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
def host_name(header: str) -> str:
    """The host of a Host header, lower case, without port, brackets or a final dot."""
    value = header.strip().lower()
    if value.startswith("["):
        value = value[1 : value.find("]")] if "]" in value else value[1:]
    elif value.count(":") == 1:
        value = value.rsplit(":", 1)[0]
    return value.rstrip(".")


def local_hosts(*addresses: str) -> frozenset[str] | None:
    """The Host names a server bound to `addresses` answers: the addresses and localhost's
    names when they are loopback addresses (this machine only), else None (any name)."""
    names = {host_name(a) for a in addresses}
    for name in names:
        try:
            loopback = ipaddress.ip_address(name).is_loopback
        except ValueError:
            loopback = name == "localhost"
        if not loopback:
            return None
    return frozenset(names | set(LOCAL_NAMES))


class DemoServer(ThreadingHTTPServer):
    """A threading server that closes connections idle, or slow to send a request, for
    `timeout_s` seconds (`service_actions` shuts them down), answers only the `allowed_hosts`
    (None: any) and logs a client that breaks its connection in one line."""

    daemon_threads = True

    def __init__(self, address, handler, timeout_s: float, allowed_hosts=None):
        super().__init__(address, handler)
        self.timeout_s = float(timeout_s)
        self.allowed_hosts = allowed_hosts
        self._deadlines: dict[socket.socket, float] = {}
        self._guard = threading.Lock()

    def reading(self, connection: socket.socket) -> None:
        """`connection` starts reading a request: it has `timeout_s` to send all of it."""
        with self._guard:
            self._deadlines[connection] = time.monotonic() + self.timeout_s

    def read(self, connection: socket.socket) -> None:
        with self._guard:
            self._deadlines.pop(connection, None)

    def service_actions(self) -> None:
        """Called by `serve_forever` about twice a second: shut down the late connections."""
        now = time.monotonic()
        with self._guard:
            late = [c for c, deadline in self._deadlines.items() if deadline <= now]
            for connection in late:
                del self._deadlines[connection]
        for connection in late:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)
            return
        when = time.strftime("%d/%b/%Y %H:%M:%S")
        print(
            f"{client_address[0]} - - [{when}] the client closed the connection "
            f"({type(error).__name__})",
            file=sys.stderr,
        )


class Handler(BaseHTTPRequestHandler):
    server_version = "pldt-demo"
    demo: Demo  # set on the subclass made by make_server
    server: DemoServer

    def setup(self) -> None:
        self.timeout = self.server.timeout_s + 1.0  # each read's; the server keeps the total
        super().setup()

    def handle_one_request(self) -> None:
        self.server.reading(self.connection)
        try:
            super().handle_one_request()
        finally:
            self.server.read(self.connection)

    def log_error(self, format: str, *args) -> None:  # noqa: A002 (http.server's naming)
        if format.startswith("Request timed out"):
            self.log_message("closed a connection idle for %g s", self.server.timeout_s)
        else:
            super().log_error(format, *args)

    def _host_allowed(self) -> bool:
        """False (after a 403) when the server serves this machine only and the request's
        Host is another name: a page that rebinds its own name to 127.0.0.1 gets nothing. A
        request without a Host header (HTTP/1.0; never a browser's) is answered."""
        allowed, host = self.server.allowed_hosts, self.headers.get("Host")
        if allowed is None or host is None or host_name(host) in allowed:
            return True
        self.close_connection = True
        self.log_message("refused a request for Host %r", host[:100])
        url = server_url(self.server)
        self._json(HTTPStatus.FORBIDDEN, {"error": f"this server answers {url} only"})
        return False

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)
        except (ConnectionError, TimeoutError) as error:
            self.close_connection = True
            self.log_message("the client left before the answer (%s)", type(error).__name__)

    def _json(self, status: int, value: dict[str, Any]) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.read(self.connection)
        if not self._host_allowed():
            return
        path = urllib.parse.urlsplit(self.path).path
        if path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, PAGE.read_bytes(), "text/html; charset=utf-8")
        elif path == "/ui.js":  # the page's parts shared with the web export's page
            self._send(HTTPStatus.OK, UI.read_bytes(), "text/javascript; charset=utf-8")
        elif path == "/info":
            self._json(HTTPStatus.OK, self.demo.info())
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {path}"})

    def do_POST(self) -> None:  # noqa: N802
        if not self._host_allowed():
            return
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
        if not self.demo.admit():
            self.close_connection = True  # the body is not read
            waiting = self.demo.workers + self.demo.queue
            self.log_message("refused %s: %d uploads already in hand", name, waiting)
            message = f"{name}: the server is busy with {waiting} photos; send it again shortly"
            self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": message})
            return
        try:
            self._convert(name, length)
        finally:
            self.demo.leave()

    def _convert(self, name: str, length: int) -> None:
        data = self.rfile.read(length) if length > 0 else b""
        self.server.read(self.connection)
        if len(data) < length:
            self.close_connection = True
            self.log_message(
                "dropped %s: the connection ended after %d of %d bytes (the client left, or "
                "sent slower than the %g s timeout)",
                name,
                len(data),
                length,
                self.server.timeout_s,
            )
            return
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


def make_server(
    demo: Demo, host: str = "127.0.0.1", port: int = 0, timeout_s: float = DEFAULT_TIMEOUT_S
) -> DemoServer:
    """An HTTP server for `demo` (not yet serving); port 0 picks a free port. Bound to a
    loopback address it answers only requests whose Host is that address or localhost."""
    handler = type("DemoHandler", (Handler,), {"demo": demo})
    server = DemoServer((host, port), handler, timeout_s)
    server.allowed_hosts = local_hosts(host, str(server.server_address[0]))
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
    parser.add_argument(
        "--full-megapixels",
        type=_positive(float),
        default=DEFAULT_FULL_MEGAPIXELS,
        help="photos up to this size are decoded whole and letterboxed exactly as in training; "
        "larger ones are shrunk by a whole factor to it while decoding (default "
        f"{DEFAULT_FULL_MEGAPIXELS:g})",
    )
    parser.add_argument(
        "--workers",
        type=_positive(int),
        default=DEFAULT_WORKERS,
        help="photos decoded and converted at once, which bounds the server's memory "
        f"(default {DEFAULT_WORKERS})",
    )
    parser.add_argument(
        "--queue",
        type=_positive(int),
        default=DEFAULT_QUEUE,
        help="uploads held in memory waiting for a worker; more get 503 until one is done "
        f"(default {DEFAULT_QUEUE})",
    )
    parser.add_argument(
        "--timeout",
        type=_positive(float),
        default=DEFAULT_TIMEOUT_S,
        help="seconds after which a connection that is idle, or has not sent its whole "
        f"request, is closed (default {DEFAULT_TIMEOUT_S:g})",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_tensorflow()
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
            full_pixels=int(args.full_megapixels * 1e6),
            workers=args.workers,
            queue=args.queue,
        )
    except Exception as error:  # a wrong or damaged model file: one line, not a traceback
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        print(f"demo: cannot load --model {args.model}: {reason}", file=sys.stderr)
        return 2
    try:
        server = make_server(demo, args.host, args.port, args.timeout)
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
