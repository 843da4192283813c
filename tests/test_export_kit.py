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

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_export import SIZE, exported, model_file, photo_dir

from keras_pldt import export as export_mod

KIT = Path(__file__).resolve().parents[1] / "export"
FLOAT = {"tflite_fp32": 1e-4, "tflite_float16": 1e-2, "onnx": 1e-4}
QUANTIZED = ("tflite_dynamic", "tflite_int8")


def _sources(count: int = 4) -> list[Image.Image]:
    real = photo_dir("test")
    if real is None:
        rng = np.random.default_rng(0)
        return [
            Image.fromarray(rng.integers(0, 256, (80, 60, 3), dtype=np.uint8)) for _ in range(count)
        ]
    paths = export_mod._sources_first(sorted(real.glob("*.jpg")))
    return [Image.open(p).convert("RGB") for p in paths[:: max(1, len(paths) // count)][:count]]


@pytest.fixture(scope="module")
def photo_sets(tmp_path_factory):
    """PNG (lossless) photos: already S x S, and odd-sized."""
    root = tmp_path_factory.mktemp("kit-photos")
    square, odd = root / "square", root / "odd"
    square.mkdir()
    odd.mkdir()
    for i, image in enumerate(_sources()):
        image.resize((SIZE, SIZE), Image.BILINEAR).save(square / f"p{i}.png")
    image = _sources(1)[0]
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


def _compare(name: str, folder: Path, out: Path) -> dict[str, float]:
    art = exported()
    refs, outs = [], []
    for png in sorted(folder.glob("*.png")):
        if png.name == "broken.png":
            continue
        photo = export_mod.read_photo(png)
        x = export_mod.preprocess_batch(photo[None], SIZE)
        refs.append(np.asarray(art.model(x, training=False))[0])
        outs.append(np.load(out / f"{png.stem}.npy"))
        product = np.asarray(Image.open(out / f"{png.stem}.png"))
        assert product.shape == (SIZE, SIZE, 3) and product.dtype == np.uint8
    return export_mod.parity_metrics(np.stack(refs), np.stack(outs))


@pytest.mark.parametrize("name", [*FLOAT, *QUANTIZED])
def test_kit_matches_keras(name, photo_sets, tmp_path):
    script = "onnx_convert.py" if name == "onnx" else "litert_convert.py"
    results = {}
    for kind, folder in photo_sets.items():
        out = tmp_path / kind
        done = run_kit(script, model_file(name), folder, out)
        assert done.returncode == 0, done.stdout + done.stderr[-3000:]
        if kind == "odd":
            assert "skipped 1" in done.stdout and "broken.png" in done.stderr
        results[kind] = _compare(name, folder, out)
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
