"""`python -m keras_pldt.demo`: the page in a real browser, bad uploads, the command line.

The demo runs as a user runs it (`--port 0`, stopped with Ctrl-C) on a tiny converter (32 px,
base width 4) fitted for two steps on the toy data of tests/toy.py. The browser is Debian's
headless Chromium (`/usr/bin/chromium`, installed by `.ci/run`) driven by Playwright, which
downloads no browser here. Without Chromium the browser test fails rather than skips: the page
is what the demo is for, and CI installs it.

`PLDT_WRITE_SCREENSHOT=1` also writes the page to docs/demo_page.png, and `PLDT_DEMO_MODEL=PATH`
serves that model instead of the tiny one; the README's screenshot is
`PLDT_WRITE_SCREENSHOT=1 PLDT_DEMO_MODEL=runs/grocery-demo pytest tests/test_demo.py -k chromium`
on the run of `python -m keras_pldt.train --data ../shared/data/grocery_val --preset demo
--run-dir runs/grocery-demo`.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import re
import struct
import subprocess
import sys
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers import CHROMIUM, CHROMIUM_ARGS, GROCERY_VAL, demo_process, post_photo
from PIL import Image

from keras_pldt import demo as demo_mod
from keras_pldt.cards import describe_model

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A run folder: converter.keras fitted two (eager) steps on the toy data, config.json."""
    import keras
    from toy import toy_arrays

    from keras_pldt.config import get_preset
    from keras_pldt.networks import build_converter

    keras.utils.set_random_seed(0)
    config = get_preset("demo", image_size=SIZE, base_filters=4, batch_size=8)
    model = build_converter(config)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse", run_eagerly=True)
    toy = toy_arrays(16, SIZE)
    model.fit(toy["source"], toy["target"], batch_size=8, epochs=1, verbose=0)
    run = tmp_path_factory.mktemp("demo-run")
    keras.saving.save_model(model, run / "converter.keras")
    config.to_json(run / "config.json", data="tests/toy.py toy_arrays")
    return run


@pytest.fixture(scope="module")
def server(tiny_run):
    """`python -m keras_pldt.demo --model RUN --port 0` as a user runs it; SIGINT stops it.

    Yields (url, model path). At teardown the command must exit 0 after Ctrl-C.
    """
    model = Path(os.environ.get("PLDT_DEMO_MODEL") or tiny_run)
    with demo_process(model) as (url, process, _):
        yield url, model
    assert process.returncode == 0, process.log[-3000:]
    assert "demo: stopped" in process.log


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    """Two real source photos (grocery_val) when present, else two generated ones."""
    real = sorted((GROCERY_VAL / "test").glob("*_CLEAN0_*.jpg"))
    if len(real) >= 2:
        return [real[0], real[len(real) // 2]]
    root = tmp_path_factory.mktemp("demo-photos")
    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h) in enumerate(((300, 200), (120, 180))):
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        pixels[h // 4 : h // 2, w // 3 : w // 2] = (200, 40 * i, 30)
        path = root / f"photo{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims width x height: its header and one tiny data chunk, no pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\0" * 16))


def _data_url_pixels(url: str) -> np.ndarray:
    header, payload = url.split(",", 1)
    assert header == "data:image/png;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB"))


def test_page_in_chromium(server, photos, tmp_path):
    """Upload photos and a text file in Chromium; check products, download, error, screenshot."""
    from playwright.sync_api import sync_playwright

    from keras_pldt.convert import Converter
    from keras_pldt.export import read_photo

    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (as .ci/run does)")
    url, model = server
    converter = Converter(model)  # what the page's products must equal
    size = converter.image_size
    display = demo_mod.DEFAULT_DISPLAY_SIZE
    notes = tmp_path / "notes.txt"
    notes.write_text("a shopping list, not a photo\n")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1100, "height": 900},
            accept_downloads=True,
        )
        try:
            page = browser.new_page()
            page.goto(url)
            page.wait_for_selector("body[data-ready]", timeout=10_000)
            info = page.inner_text("#info")
            assert f"{size} × {size}" in info
            assert "training data" in info

            page.set_input_files("#files", [str(p) for p in photos])
            page.wait_for_function(
                "n => [...document.querySelectorAll('img.product')]"
                ".filter(i => i.complete && i.naturalWidth > 0).length === n",
                arg=len(photos),
                timeout=20_000,
            )
            shown = page.eval_on_selector_all(
                "img.product, img.source",
                "imgs => imgs.map(i => [i.className, i.naturalWidth, i.naturalHeight,"
                " i.clientWidth, i.clientHeight, getComputedStyle(i).imageRendering])",
            )
            assert len(shown) == 2 * len(photos)
            for _, natural_w, natural_h, shown_w, shown_h, rendering in shown:
                assert (natural_w, natural_h) == (size, size)
                assert (shown_w, shown_h) == (display, display)
                assert rendering == "pixelated"
            links = page.eval_on_selector_all(
                "a.download", "links => links.map(a => [a.download, a.href])"
            )
            for photo, (filename, href) in zip(photos, links, strict=True):
                assert filename == f"{photo.stem}_product.png"
                product = _data_url_pixels(href)
                assert product.shape == (size, size, 3)
                assert product.std() > 0
                assert np.array_equal(product, converter(read_photo(photo))[1])
            with page.expect_download() as download:
                page.click("a.download >> nth=0")
            saved = tmp_path / "downloaded.png"
            download.value.save_as(saved)
            assert Image.open(saved).size == (size, size)
            latency = page.inner_text("#latency")
            assert re.search(r"[\d.]+ ms last, [\d.]+ ms mean over 2 image", latency), latency

            page.set_input_files("#files", [str(notes)])
            error = page.wait_for_selector(".error", timeout=10_000).inner_text()
            assert "notes.txt is not an image" in error

            screenshot = tmp_path / "demo_page.png"
            if os.environ.get("PLDT_WRITE_SCREENSHOT") == "1":
                screenshot = ROOT / "docs" / "demo_page.png"
            page.screenshot(path=str(screenshot), full_page=True)
            assert Image.open(screenshot).size[0] >= 1000
        finally:
            browser.close()


def test_bad_uploads_get_a_message_and_the_server_keeps_running(server, photos):
    url, _ = server
    cases = {
        "empty.png": (b"", "empty.png is empty"),
        "list.txt": (b"milk, eggs\n", "list.txt is not an image"),
        "huge.png": (_png_header(10_000, 8_000), "huge.png is 10000 × 8000 = 80.0 megapixels"),
        "cut.jpg": (photos[0].read_bytes()[:2000], "cut.jpg could not be decoded"),
    }
    for name, (body, message) in cases.items():
        status, answer = post_photo(url, body, name)
        assert status == 400, (name, answer)
        assert answer["error"].startswith(message), answer

    too_big = int(demo_mod.DEFAULT_MAX_UPLOAD_MB * 1e6) + 1
    connection = http.client.HTTPConnection(url.split("/")[2], timeout=30)
    connection.putrequest("POST", "/convert")
    connection.putheader("Content-Length", str(too_big))
    connection.putheader("X-Filename", "big.jpg")
    connection.endheaders()  # the body is never sent: the server answers from the length
    response = connection.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"].startswith("big.jpg is 20.0 MB; the limit is 20 MB")
    connection.close()

    status, answer = post_photo(url, photos[0].read_bytes(), "again%20photo.jpg")
    assert status == 200, answer
    assert answer["name"] == "again photo.jpg"
    with urllib.request.urlopen(url + "info", timeout=30) as response:
        size = json.loads(response.read())["image_size"]
    assert _data_url_pixels(answer["product"]).shape == (size, size, 3)


def test_model_card_describes_an_exported_model(tmp_path):
    """Format, quantization, preset and data come from model_card.json next to the model."""
    from keras_pldt.config import get_preset

    config = {**get_preset("demo").to_dict(), "data": "/photos/grocery", "seed": 0}
    card = {"format": "TFLite (LiteRT) flatbuffer", "quantization": "int8", "config": config}
    folder = tmp_path / "tflite_int8"
    folder.mkdir()
    (folder / "converter.tflite").write_bytes(b"")
    (folder / "model_card.json").write_text(json.dumps(card))
    rows = dict(describe_model(folder / "converter.tflite", "tflite", 64))
    assert rows["format"] == "TFLite (LiteRT) flatbuffer, int8"
    assert rows["image size"] == "64 × 64"
    assert rows["preset"] == "demo"
    assert "base_filters 16" in rows["training"]
    assert "reconstruction_weight 100" in rows["beyond the paper"]
    assert rows["training data"] == "/photos/grocery"

    changed = {**config, "base_filters": 8, "spectral_norm": False}
    (folder / "model_card.json").write_text(json.dumps({**card, "config": changed}))
    rows = dict(describe_model(folder / "converter.tflite", "tflite", 64))
    assert rows["preset"] == "demo with base_filters=8, spectral_norm=off"

    (folder / "model_card.json").unlink()
    rows = dict(describe_model(folder / "converter.tflite", "tflite", 64))
    assert rows["format"] == "TFLite (LiteRT) flatbuffer"
    assert rows["training"].startswith("not recorded")


def _python(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=60, cwd=ROOT, **kwargs
    )


def test_help_documents_every_option_without_tensorflow():
    probe = (
        "import sys\nfrom keras_pldt import demo\n"
        "try:\n    demo.main(['--help'])\nexcept SystemExit as e:\n    code = e.code\n"
        "print('TF' if 'tensorflow' in sys.modules else 'no TF', code)"
    )
    result = _python("-c", probe)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("no TF 0")
    for action in demo_mod.build_parser()._actions:
        assert action.help, action.dest
        for flag in action.option_strings:
            assert flag in result.stdout


def test_missing_model_is_a_one_line_error(tmp_path):
    result = _python("-m", "keras_pldt.demo", "--model", str(tmp_path / "nowhere.tflite"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"demo: --model {tmp_path / 'nowhere.tflite'} does not exist"
