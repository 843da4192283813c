"""The deployment kit in export/ (numpy + pillow + LiteRT / onnxruntime only) against Keras.

Measured on the tiny test model (32 px): PIL's bilinear letterbox and the training pipeline's TF
letterbox differ by at most 1 uint8 level, so

* on photos already S x S (the preprocessing is then exact) each format meets the export
  thresholds: fp32 max-abs <= 1e-4 (measured ~3e-7), float16 <= 1e-2, dynamic / int8
  PSNR >= 30 dB (measured ~45-57 dB);
* on odd-sized photos (300x200, 50x120) the resize difference passes through the model:
  fp32 max-abs ~2e-4, mean-abs ~1e-5, so the looser bound is max-abs <= 2e-3 and
  mean-abs <= 1e-4 for float models, PSNR >= 30 dB for quantized ones.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_pldt import export as export_mod
from keras_pldt import runtime
from keras_pldt.samples import sources_first

KIT = Path(__file__).resolve().parents[1] / "export"
FLOAT = {"tflite_fp32": 1e-4, "tflite_float16": 1e-2, "onnx": 1e-4}
QUANTIZED = ("tflite_dynamic", "tflite_int8")


def _sources(real, count: int = 4) -> list[Image.Image]:
    if real is None:
        rng = np.random.default_rng(0)
        return [
            Image.fromarray(rng.integers(0, 256, (80, 60, 3), dtype=np.uint8)) for _ in range(count)
        ]
    paths = sources_first(sorted(real.glob("*.jpg")))
    return [Image.open(p).convert("RGB") for p in paths[:: max(1, len(paths) // count)][:count]]


@pytest.fixture(scope="module")
def kit():
    """export/kit.py as a module."""
    spec = importlib.util.spec_from_file_location("pldt_export_kit", KIT / "kit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def photo_sets(tmp_path_factory, exported):
    """PNG (lossless) photos: already S x S, and odd-sized."""
    root = tmp_path_factory.mktemp("kit-photos")
    square, odd = root / "square", root / "odd"
    square.mkdir()
    odd.mkdir()
    real = exported.photos("test")
    for i, image in enumerate(_sources(real)):
        image.resize((exported.size, exported.size), Image.BILINEAR).save(square / f"p{i}.png")
    image = _sources(real, 1)[0]
    image.resize((300, 200), Image.BILINEAR).save(odd / "wide_300x200.png")
    image.resize((50, 120), Image.BILINEAR).save(odd / "tall_50x120.png")
    (odd / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return {"square": square, "odd": odd}


def run_kit(script: str, model: Path, inputs: Path, output: Path) -> subprocess.CompletedProcess:
    """Run a kit script in a fresh interpreter; fail if TF, Keras or keras_pldt were imported."""
    wrapper = textwrap.dedent(
        f"""
        import runpy, sys
        sys.argv = [{script!r}, "--model", {str(model)!r}, "--input", {str(inputs)!r},
                    "--output", {str(output)!r}, "--raw", "--side-by-side"]
        try:
            runpy.run_path({str(KIT / script)!r}, run_name="__main__")
        except SystemExit as e:
            code = e.code
        else:
            code = 0
        banned = [m for m in ("tensorflow", "keras", "keras_pldt") if m in sys.modules]
        if banned:
            print("IMPORTED", banned)
            sys.exit(3)
        sys.exit(code)
        """
    )
    return subprocess.run(
        [sys.executable, "-c", wrapper],
        cwd=output.parent,
        env={**os.environ, "PYTHONPATH": ""},
        capture_output=True,
        text=True,
    )


def _compare(exported, folder: Path, out: Path) -> dict[str, float]:
    size = exported.size
    refs, outs = [], []
    for png in sorted(folder.glob("*.png")):
        if png.name == "broken.png":
            continue
        photo = runtime.read_photo(png)
        x = runtime.preprocess(photo[None], size)
        refs.append(np.asarray(exported.model(x, training=False))[0])
        outs.append(np.load(out / f"{png.stem}.npy"))
        product = np.asarray(Image.open(out / f"{png.stem}.png"))
        assert product.shape == (size, size, 3) and product.dtype == np.uint8
    return export_mod.parity_metrics(np.stack(refs), np.stack(outs))


@pytest.mark.parametrize("name", [*FLOAT, *QUANTIZED])
def test_kit_matches_keras(exported, name, photo_sets, tmp_path):
    script = "onnx_convert.py" if name == "onnx" else "litert_convert.py"
    results = {}
    for kind, folder in photo_sets.items():
        out = tmp_path / kind
        done = run_kit(script, exported.model_file(name), folder, out)
        assert done.returncode == 0, done.stdout + done.stderr[-3000:]
        if kind == "odd":
            assert "skipped 1" in done.stdout and "broken.png" in done.stderr
        results[kind] = _compare(exported, folder, out)
    print(name, results)
    square, odd = results["square"], results["odd"]
    if name in FLOAT:
        assert square["max_abs"] <= FLOAT[name], square
        assert odd["max_abs"] <= max(2e-3, FLOAT[name]) and odd["mean_abs"] <= 1e-3, odd
        if name != "tflite_float16":
            assert odd["mean_abs"] <= 1e-4, odd
    else:
        assert square["psnr_db"] >= 30.0 and odd["psnr_db"] >= 30.0, results


def test_kit_scripts_do_not_import_tensorflow():
    for script in ("litert_convert.py", "onnx_convert.py"):
        text = (KIT / script).read_text()
        imports = re.findall(r"^\s*(?:import|from)\s+([\w.]+)", text, flags=re.M)
        roots = {name.split(".")[0] for name in imports}
        assert not roots & {"tensorflow", "keras", "keras_pldt", "tf_keras"}, (script, roots)


@pytest.mark.parametrize("width,height", [(300, 200), (50, 120), (7, 3), (640, 480), (33, 31)])
def test_kit_letterbox_is_the_runtime_one(kit, exported, width, height):
    """The kit's PIL letterbox is `runtime.letterbox`: the same resized size and placement
    (the white margins are the same pixels), the same pixels on an S x S photo, and within one
    uint8 level (PIL's bilinear against TF's) elsewhere."""
    size = exported.size
    real = exported.photos("test")
    source = np.asarray(_sources(real, 1)[0])
    photo = np.asarray(Image.fromarray(source).resize((width, height), Image.BILINEAR))
    ours = np.asarray(runtime.letterbox(photo, size)).astype(int)
    theirs = kit.letterbox(photo, size).astype(int)
    assert theirs.shape == ours.shape == (size, size, 3)
    scale = np.float32(size) / np.float32(max(width, height))
    new_h, new_w = (
        max(1, min(size, int(np.round(np.float32(n) * scale)))) for n in (height, width)
    )
    top, left = (size - new_h) // 2, (size - new_w) // 2
    inside = np.zeros((size, size), bool)
    inside[top : top + new_h, left : left + new_w] = True
    np.testing.assert_array_equal(ours[~inside], 255)
    np.testing.assert_array_equal(theirs[~inside], 255)
    assert np.abs(theirs - ours).max() <= 1
    square = np.asarray(Image.fromarray(source).resize((size, size), Image.BILINEAR))
    np.testing.assert_array_equal(kit.letterbox(square, size), runtime.letterbox(square, size))
    np.testing.assert_array_equal(kit.to_pixels(runtime.to_float_np(square)), square)
