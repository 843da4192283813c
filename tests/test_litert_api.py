"""export/litert_convert.py on LiteRT's two Python APIs: `CompiledModel` and the `Interpreter`.

Both run the same flatbuffer, so on the same input they must give the same output: identical
bytes for the uint8 model, and float outputs equal to a small fraction of their magnitude.
Without `ai_edge_litert.compiled_model` the kit falls back to the `Interpreter`.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

KIT = Path(__file__).resolve().parents[1] / "export"
SIZE = 16


@pytest.fixture(scope="module")
def kit():
    """export/litert_convert.py as a module (it puts export/ on sys.path for kit.py)."""
    spec = importlib.util.spec_from_file_location("litert_convert", KIT / "litert_convert.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tflite_models(tmp_path_factory) -> dict[str, Path]:
    """A tiny converter (16 px, base width 4) as fp32 and full-integer (uint8 I/O) `.tflite`."""
    import keras
    import tensorflow as tf

    from keras_pldt.config import PLDTConfig
    from keras_pldt.networks import build_converter

    keras.utils.set_random_seed(0)
    model = build_converter(PLDTConfig(image_size=SIZE, base_filters=4))
    for weight in model.weights:  # at initialisation the output is ~1e-5: one uint8 level
        if weight.path.endswith("kernel"):  # x5 spreads it over most of [-1, 1]
            weight.assign(weight.numpy() * 5)
    root = tmp_path_factory.mktemp("litert")
    model.export(str(root / "savedmodel"), format="tf_saved_model", verbose=False)
    rng = np.random.default_rng(0)
    calibration = rng.uniform(-1, 1, (8, 1, SIZE, SIZE, 3)).astype(np.float32)
    calibration[:, :, 0, 0] = -1.0  # the full input range, as keras_pldt.export anchors it
    calibration[:, :, -1, -1] = 1.0
    paths = {}
    for name in ("fp32", "int8"):
        converter = tf.lite.TFLiteConverter.from_saved_model(str(root / "savedmodel"))
        if name == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([x] for x in calibration)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.uint8
        paths[name] = root / f"{name}.tflite"
        paths[name].write_bytes(converter.convert())
    return paths


def _pixels(count: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(count - 1)]
    return [*images, np.full((SIZE, SIZE, 3), 255, np.uint8)]


@pytest.mark.parametrize("name", ["fp32", "int8"])
def test_compiled_model_and_interpreter_agree(kit, tflite_models, name):
    compiled = kit.LiteRTConverter(tflite_models[name], api="compiled")
    interpreter = kit.LiteRTConverter(tflite_models[name], api="interpreter")
    assert (compiled.api, interpreter.api) == ("CompiledModel", "Interpreter")
    assert compiled.input == interpreter.input
    assert compiled.output == interpreter.output
    assert compiled.image_size == SIZE
    if name == "int8":
        assert compiled.input["dtype"] == np.uint8
        assert compiled.input["quantization"][0] > 0
    for pixels in _pixels():
        a, b = compiled(pixels), interpreter(pixels)
        assert a.shape == (SIZE, SIZE, 3)
        assert a.std() > 0
        if name == "int8":  # dequantized from identical uint8 outputs
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 * max(1.0, np.abs(b).max()))


def test_auto_prefers_compiled_model_and_falls_back(kit, tflite_models, monkeypatch):
    assert kit.LiteRTConverter(tflite_models["fp32"]).api == "CompiledModel"
    monkeypatch.setitem(sys.modules, "ai_edge_litert.compiled_model", None)  # an older release
    fallback = kit.LiteRTConverter(tflite_models["fp32"])
    assert fallback.api == "Interpreter"
    assert fallback(_pixels(1)[0]).shape == (SIZE, SIZE, 3)
    with pytest.raises(ImportError):
        kit.LiteRTConverter(tflite_models["fp32"], api="compiled")
    with pytest.raises(ValueError, match="api must be one of"):
        kit.LiteRTConverter(tflite_models["fp32"], api="gpu")


def test_command_gives_the_same_product_with_either_api(tflite_models, tmp_path):
    """The kit's command line, quiet on stderr, with --api compiled and --api interpreter."""
    photo = tmp_path / "in" / "photo.png"
    photo.parent.mkdir()
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (40, 30, 3), np.uint8)).save(photo)
    products = {}
    for api in ("compiled", "interpreter"):
        out = tmp_path / api
        result = subprocess.run(
            [sys.executable, str(KIT / "litert_convert.py"), "--model", str(tflite_models["int8"]),
             "--input", str(photo.parent), "--output", str(out), "--api", api],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "converted 1 photo(s)" in result.stdout
        assert "INFO:" not in result.stderr  # LiteRT's native log is held back
        products[api] = np.asarray(Image.open(out / "photo.png"))
    assert products["compiled"].shape == (SIZE, SIZE, 3)
    np.testing.assert_array_equal(products["compiled"], products["interpreter"])

    missing = subprocess.run(
        [sys.executable, str(KIT / "litert_convert.py"), "--model", str(tmp_path / "no.tflite"),
         "--input", str(photo), "--output", str(tmp_path / "x")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert missing.returncode == 2
    assert missing.stderr.strip().endswith("no.tflite is not a file")
