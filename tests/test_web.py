"""The `web` export in a real browser: a phone-emulating headless Chromium opens the exported
folder from a plain static server and converts photos with LiteRT.js.

The converter is tiny (32 px, base width 4) and untrained: the page, the letterbox and the
runtime are under test, not the model. The browser is Debian's headless Chromium
(`/usr/bin/chromium`) driven by Playwright; LiteRT.js comes from `npm ci --prefix
keras_pldt/web`. Both are installed by CI; without them these tests fail rather than skip.

`PLDT_WRITE_SCREENSHOT=1` also writes the phone's view of the page to docs/web_page.png, and
`PLDT_WEB_RUN=RUN` exports that run folder's converter instead of the tiny one; the README's
screenshot is `PLDT_WRITE_SCREENSHOT=1 PLDT_WEB_RUN=RUN pytest -n 0 tests/test_web.py -k converts`
on a `--preset robust` run on grocery_val (experiments/README.md, its 210-update command).
"""

from __future__ import annotations

import base64
import functools
import io
import json
import os
import threading
import urllib.parse
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from helpers import CHROMIUM, CHROMIUM_ARGS, GROCERY_VAL
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
#: A Pixel 7 in Chrome: what the page is for.
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 3,
    "is_mobile": True,
    "has_touch": True,
    "user_agent": "Mozilla/5.0 (Linux; Android 14; Pixel 7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
}
#: A run folder whose converter the page runs instead of the tiny untrained one.
WEB_RUN = os.environ.get("PLDT_WEB_RUN")
SIZE = json.loads((Path(WEB_RUN) / "config.json").read_text())["image_size"] if WEB_RUN else 32
#: Lossless photos: the browser's letterbox is within this many levels of Python's.
LETTERBOX_LEVELS = 2


def _save_png(pixels: np.ndarray, path: Path) -> Path:
    Image.fromarray(pixels).save(path)
    return path


def _rng_photo(rng, height: int, width: int, channels: int = 3) -> np.ndarray:
    """Smooth colour gradients with a block and noise: something a resize must average."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / max(width - 1, 1), y * 255 / max(height - 1, 1), (x + y) % 256], -1)
    base[height // 4 : height // 2, width // 3 : 2 * width // 3] = (200, 30, 60)
    noise = rng.integers(-20, 21, (height, width, 3))
    pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
    if channels == 4:
        ramp = x * 255 / max(width - 1, 1)
        alpha = np.clip(ramp + rng.integers(-40, 41, (height, width)), 0, 255)
        alpha[: height // 5] = 0
        pixels = np.concatenate([pixels, alpha[..., None].astype(np.uint8)], -1)
    return pixels


@pytest.fixture(scope="module")
def web_export(tmp_path_factory, real_photos):
    """`python -m keras_pldt.export --formats web` of a tiny untrained converter in a run
    folder (config.json beside it), with the real photos for calibration and parity when
    present. Returns the export folder."""
    import keras

    from keras_pldt.config import get_preset
    from keras_pldt.export import export
    from keras_pldt.networks import build_converter

    if WEB_RUN:
        run = Path(WEB_RUN)
    else:
        keras.utils.set_random_seed(0)
        config = get_preset("demo", image_size=SIZE, base_filters=4, batch_size=8)
        run = tmp_path_factory.mktemp("web-run")
        keras.saving.save_model(build_converter(config), run / "converter.keras")
        config.to_json(run / "config.json", data="untrained (tests/test_web.py)")
    out = tmp_path_factory.mktemp("web-export") / "exported"
    export(
        out,
        model_path=run / "converter.keras",
        formats=["web"],
        calibration_data=real_photos("train"),
        parity_data=real_photos("test"),
        calibration_samples=8,
        parity_samples=4,
        verbose=False,
    )
    return out


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def site(web_export):
    """The exported web/ folder on `python -m http.server`'s handler, in a thread: its URL."""
    handler = functools.partial(_Quiet, directory=str(web_export / "web"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def phone(site, tmp_path_factory):
    """(page, every URL the browser asked for): the page open and its model loaded."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (as CI does)")
    requests: list[str] = []
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            accept_downloads=True,
            **PHONE,
        )
        try:
            browser.on("request", lambda request: requests.append(request.url))
            page = browser.new_page()
            page.goto(site)
            page.wait_for_selector("body[data-ready]", timeout=60_000)
            status = page.inner_text("#status")
            assert page.get_attribute("body", "data-ready") == "1", status
            yield page, requests
        finally:
            browser.close()


def _assert_local(requests: list[str]) -> None:
    """Every request went to 127.0.0.1 (or stayed in the page: data: and blob: URLs)."""
    assert requests, "no request was recorded"
    outside = [
        url
        for url in requests
        if urllib.parse.urlsplit(url).scheme not in ("data", "blob")
        and urllib.parse.urlsplit(url).hostname != "127.0.0.1"
    ]
    assert not outside, f"requests left 127.0.0.1: {outside}"


def _data_url_pixels(url: str) -> np.ndarray:
    header, payload = url.split(",", 1)
    assert header == "data:image/png;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB"))


def _upload(page, paths: list[Path]) -> dict[str, dict]:
    """Upload `paths` through the photo picker; each file's result card, by file name:
    {"error": message} or {"source", "product": uint8 arrays, "top", "left", "height",
    "width", "download": (file name, href)}."""
    names = [p.name for p in paths]
    page.set_input_files("#files", [str(p) for p in paths])
    page.wait_for_function(
        """names => names.every(n => {
            const card = [...document.querySelectorAll('.result')].find(c => c.dataset.name === n);
            return card && (card.querySelector('.error') ||
              [...card.querySelectorAll('img')].every(i => i.complete && i.naturalWidth > 0)
              && card.querySelectorAll('img').length === 2);
        })""",
        arg=names,
        timeout=60_000,
    )
    cards = page.eval_on_selector_all(
        ".result",
        """cards => cards.map(c => ({
            name: c.dataset.name,
            error: c.querySelector('.error')?.textContent ?? null,
            source: c.querySelector('img.source')?.src ?? null,
            product: c.querySelector('img.product')?.src ?? null,
            top: Number(c.dataset.top), left: Number(c.dataset.left),
            height: Number(c.dataset.height), width: Number(c.dataset.width),
            download: [c.querySelector('a.download')?.download,
                       c.querySelector('a.download')?.href],
        }))""",
    )
    results = {}
    for card in cards:  # the newest card comes first
        if card["name"] in names and card["name"] not in results:
            if card["error"] is None:
                card["source"] = _data_url_pixels(card["source"])
                card["product"] = _data_url_pixels(card["product"])
            results[card["name"]] = card
    return results


def _python_letterbox(path: Path) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """keras_pldt.runtime's letterbox of the photo at `path`, and (top, left, height, width)."""
    from keras_pldt.runtime import letterbox, read_photo

    photo = read_photo(path)
    height, width = photo.shape[:2]
    scale = np.float32(SIZE) / np.float32(max(height, width))
    new_h = int(np.clip(np.round(np.float32(height) * scale), 1, SIZE))
    new_w = int(np.clip(np.round(np.float32(width) * scale), 1, SIZE))
    box = ((SIZE - new_h) // 2, (SIZE - new_w) // 2, new_h, new_w)
    return np.asarray(letterbox(photo, SIZE)), box


@pytest.fixture(scope="module")
def real_photo(tmp_path_factory) -> Path:
    """A real source photo (grocery_val) when present, else a generated JPEG."""
    real = sorted((GROCERY_VAL / "test").glob("*_CLEAN0_*.jpg"))
    if real:
        return real[0]
    path = tmp_path_factory.mktemp("web-photo") / "generated_photo.jpg"
    Image.fromarray(_rng_photo(np.random.default_rng(1), 480, 360)).save(path, quality=92)
    return path


def test_page_converts_a_photo_as_python_litert_does(phone, web_export, real_photo, tmp_path):
    """A photo through the phone's picker: the product equals Python LiteRT's on the page's
    letterboxed input within the export's parity threshold; the card, enlargement, download."""
    from keras_pldt.export import THRESHOLDS, judge, parity_metrics
    from keras_pldt.runtime import to_float_np, to_uint8_np
    from keras_pldt.web import WebRunner

    page, requests = phone
    info = page.inner_text("#info")
    for label in ("format", "model size", "image size", "preset", "training data"):
        assert label in info
    assert f"{SIZE} × {SIZE}" in info
    assert WEB_RUN or "untrained (tests/test_web.py)" in info

    result = _upload(page, [real_photo])[real_photo.name]
    assert result["error"] is None, result["error"]
    source, product = result["source"], result["product"]
    assert source.shape == product.shape == (SIZE, SIZE, 3)
    expected_source, box = _python_letterbox(real_photo)
    assert (result["top"], result["left"], result["height"], result["width"]) == box

    runner = WebRunner(web_export / "web" / "converter.tflite")
    python_product = to_uint8_np(runner(to_float_np(source)[None]))[0]
    metrics = parity_metrics(to_float_np(python_product), to_float_np(product))
    entry = judge(metrics, runner.threshold)
    assert entry["pass"], (entry, THRESHOLDS)

    shown = page.eval_on_selector_all(
        "img.pixels",
        "imgs => imgs.map(i => [i.naturalWidth, i.clientWidth,"
        " getComputedStyle(i).imageRendering])",
    )
    for natural, displayed, rendering in shown:
        assert natural == SIZE and displayed > 2 * SIZE and rendering == "pixelated"
    filename, href = result["download"]
    assert filename == f"{real_photo.stem}_product.png"
    assert np.array_equal(_data_url_pixels(href), product)
    with page.expect_download() as download:
        page.click(f".result[data-name='{real_photo.name}'] a.download")
    saved = tmp_path / "downloaded.png"
    download.value.save_as(saved)
    assert np.array_equal(np.asarray(Image.open(saved).convert("RGB")), product)
    assert "ms last" in page.inner_text("#latency")

    screenshot = tmp_path / "web_page.png"
    if os.environ.get("PLDT_WRITE_SCREENSHOT") == "1":
        screenshot = ROOT / "docs" / "web_page.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert Image.open(screenshot).size[0] == PHONE["viewport"]["width"] * 3
    _assert_local(requests)


@pytest.fixture(scope="module")
def shaped_photos(tmp_path_factory) -> dict[str, Path]:
    """Lossless photos of several shapes: portrait, landscape, tiny, RGBA, EXIF-rotated."""
    root = tmp_path_factory.mktemp("web-shapes")
    rng = np.random.default_rng(0)
    photos = {
        "portrait": _save_png(_rng_photo(rng, 160, 90), root / "portrait.png"),
        "landscape": _save_png(_rng_photo(rng, 200, 301), root / "landscape.png"),
        "tiny": _save_png(_rng_photo(rng, 2, 3), root / "tiny.png"),
        "square": _save_png(_rng_photo(rng, SIZE, SIZE), root / "square.png"),
        "rgba": _save_png(_rng_photo(rng, 120, 150, channels=4), root / "rgba.png"),
    }
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait (rotated 90 degrees clockwise)
    rotated = root / "rotated.jpg"
    Image.fromarray(_rng_photo(rng, 70, 130)).save(rotated, quality=95, exif=exif.tobytes())
    photos["exif-rotated"] = rotated
    rotated = root / "rotated.png"
    exif[0x0112] = 8  # rotated 90 degrees counter-clockwise
    Image.fromarray(_rng_photo(rng, 50, 110)).save(rotated, exif=exif.tobytes())
    photos["exif-rotated png"] = rotated
    return photos


def test_letterbox_in_the_browser_matches_python(phone, shaped_photos):
    """Same size and padding as keras_pldt.runtime.letterbox, pixels within 2 levels."""
    page, requests = phone
    results = _upload(page, list(shaped_photos.values()))
    for kind, path in shaped_photos.items():
        result = results[path.name]
        assert result["error"] is None, (kind, result["error"])
        expected, box = _python_letterbox(path)
        assert (result["top"], result["left"], result["height"], result["width"]) == box, kind
        top, left, height, width = box
        pad = np.ones((SIZE, SIZE), bool)
        pad[top : top + height, left : left + width] = False
        assert (result["source"][pad] == 255).all(), kind
        diff = np.abs(result["source"].astype(int) - expected.astype(int))
        assert diff.max() <= LETTERBOX_LEVELS, (kind, diff.max(), (diff > 0).mean())
    assert results[shaped_photos["exif-rotated"].name]["height"] == SIZE  # portrait once turned
    _assert_local(requests)


def test_bad_input_gets_a_message_and_the_page_keeps_working(phone, tmp_path, shaped_photos):
    """A text file, an empty file, truncated photos and a huge one each get a message; a
    good photo after them still converts."""
    page, requests = phone
    good = shaped_photos["landscape"].read_bytes()
    jpeg = io.BytesIO()
    Image.fromarray(_rng_photo(np.random.default_rng(2), 64, 64)).save(jpeg, format="JPEG")
    huge = io.BytesIO()
    Image.new("L", (8000, 6000)).save(huge, format="PNG")  # 48 megapixels, a small file
    files = {
        "notes.txt": (b"a shopping list, not a photo\n", "is not an image this page can read"),
        "empty.jpg": (b"", "is empty (0 bytes)"),
        "cut.png": (good[: len(good) // 2], "is truncated"),
        "cut.jpg": (jpeg.getvalue()[: len(jpeg.getvalue()) // 2], "is truncated"),
        "huge.png": (huge.getvalue(), "megapixels; the limit is 40 megapixels"),
    }
    paths = []
    for name, (data, _) in files.items():
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    results = _upload(page, paths)
    for name, (_, message) in files.items():
        assert results[name]["error"] is not None, name
        assert message in results[name]["error"], (name, results[name]["error"])
        assert results[name]["error"].startswith(name)
    after = tmp_path / "after.png"
    after.write_bytes(good)
    assert _upload(page, [after])[after.name]["error"] is None
    _assert_local(requests)


def test_missing_runtime_is_a_one_line_error(monkeypatch, tmp_path, capsys):
    """Without `npm ci` the web export stops before loading the model, naming the command."""
    from keras_pldt import export, web

    monkeypatch.setattr(web, "NODE_MODULES", tmp_path / "node_modules")
    code = export.main(
        ["--model", str(tmp_path / "none.keras"), "--out", str(tmp_path / "o"), "--formats", "web"]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "npm ci --prefix" in err and "Traceback" not in err, err
