"""`python -m keras_pldt.export`: every format meets its parity threshold; failures write nothing.

One tiny converter (32 px, base width 8) is fitted for a few steps on real photos (or the
built-in synthetic set when the shared photos are absent) and exported once per test process
by `exported()`; test_convert.py and test_export_kit.py reuse it.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from keras_pldt import export as export_mod

GROCERY_VAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "grocery_val"
SIZE = 32
TFLITE = ("tflite_fp32", "tflite_float16", "tflite_dynamic", "tflite_int8")
ALL_FORMATS = ("savedmodel", *TFLITE, "onnx")


def photo_dir(split: str = "test") -> Path | None:
    directory = GROCERY_VAL / split
    return directory if directory.is_dir() and any(directory.glob("*.jpg")) else None


def _training_photos(root: Path) -> Path:
    real = photo_dir("train") or photo_dir("test")
    if real is not None:
        return real
    return export_mod._fallback_synthetic(root / "synthetic", 12, 2, seed=0, image_size=64)


def _fit_tiny(run_dir: Path, photos: Path):
    """A 32 px, base-8 converter fitted ~30 steps (MSE: source -> its product photo)."""
    import keras
    import tensorflow as tf

    from keras_pldt.config import PLDTConfig
    from keras_pldt.model import PLDT

    keras.utils.set_random_seed(0)
    paths = export_mod.list_images(photos)
    by_pid: dict[str, list[Path]] = {}
    for p in paths:
        by_pid.setdefault(p.name.split("_")[0], []).append(p)
    sources, targets = [], []
    for group in list(by_pid.values())[:40]:
        clean = [p for p in group if "_CLEAN1_" in p.name] or group
        for p in group:
            if "_CLEAN1_" not in p.name:
                sources.append(p)
                targets.append(clean[0])
    x, _ = export_mod.load_sample(sources, SIZE)
    y, _ = export_mod.load_sample(targets, SIZE)
    config = PLDTConfig(base_filters=8, image_size=SIZE, batch_size=16, variant="mse")
    model = PLDT(config)
    model.compile(converter_optimizer=keras.optimizers.Adam(2e-3, beta_1=0.5))
    data = {"source": x, "target": y, "unassociated": y[::-1]}
    ds = tf.data.Dataset.from_tensor_slices(data).repeat().batch(16)
    model.fit(ds, steps_per_epoch=30, epochs=1, verbose=0)
    run_dir.mkdir(parents=True)
    keras.saving.save_model(model.converter, run_dir / "converter.keras")
    config.to_json(run_dir / "config.json")
    return model.converter


@functools.cache
def exported() -> SimpleNamespace:
    """Train + export all formats once per process; cleaned up at exit."""
    root = Path(tempfile.mkdtemp(prefix="pldt-export-test-"))
    atexit.register(shutil.rmtree, root, True)
    photos = _training_photos(root)
    model = _fit_tiny(root / "run", photos)
    report = export_mod.export(
        root / "out",
        run_dir=root / "run",
        calibration_data=photos,
        parity_data=photo_dir("test"),
        calibration_samples=32,
        parity_samples=8,
        verbose=False,
    )
    return SimpleNamespace(
        root=root, run=root / "run", out=root / "out", model=model, report=report
    )


def reference(model, batch: np.ndarray) -> np.ndarray:
    return np.asarray(model(batch, training=False), np.float32)


def model_file(name: str) -> Path:
    out = exported().out
    if name == "savedmodel":
        return out / "savedmodel"
    if name == "onnx":
        return out / "onnx" / "converter.onnx"
    return out / name / "converter.tflite"


def runner(name: str):
    path = model_file(name)
    if name == "savedmodel":
        return export_mod.SavedModelRunner(path)
    if name == "onnx":
        return export_mod.OnnxRunner(path)
    return export_mod.TFLiteRunner(path)


def fresh_batch() -> np.ndarray:
    """Photos not in the export's parity batch (or random pixels), preprocessed."""
    real = photo_dir("test")
    if real is not None:
        paths = export_mod._sources_first(export_mod.list_images(real))[-6:]
        return export_mod.load_sample(paths, SIZE)[0]
    rng = np.random.default_rng(1)
    return rng.uniform(-1, 1, (6, SIZE, SIZE, 3)).astype(np.float32)


def test_tiny_model_output_is_not_degenerate():
    """Parity numbers mean little if the model outputs a constant: check the output spread."""
    art = exported()
    y = reference(art.model, fresh_batch())
    assert y.std() > 0.05, f"output std {y.std():.4f}: the test model is degenerate"
    assert y.max() - y.min() > 0.5


def test_every_format_exported_and_passes_in_parity_json():
    art = exported()
    parity = json.loads((art.out / "parity.json").read_text())
    assert set(ALL_FORMATS) <= set(parity["formats"])
    for name, entry in parity["formats"].items():
        assert entry["pass"], (name, entry)
    print(
        json.dumps({k: {m: v[m] for m in v if m != "pass"} for k, v in parity["formats"].items()})
    )


@pytest.mark.parametrize("name", ALL_FORMATS)
def test_format_meets_threshold_on_fresh_photos(name):
    """Independent of the export's own check: new photos, thresholds from the spec."""
    art = exported()
    batch = fresh_batch()
    got = runner(name)(batch)
    metrics = export_mod.parity_metrics(reference(art.model, batch), got)
    if name in ("savedmodel", "tflite_fp32", "onnx"):
        assert metrics["max_abs"] <= 1e-4, metrics
    elif name == "tflite_float16":
        assert metrics["max_abs"] <= 1e-2, metrics
    else:
        assert metrics["psnr_db"] >= 30.0, metrics
        assert metrics["max_abs"] > 0  # really quantized


def test_model_cards_describe_each_file():
    for name in ALL_FORMATS:
        path = model_file(name)
        folder = path.parent if path.is_file() else path
        card = json.loads((folder / "model_card.json").read_text())
        assert card["image_size"] == SIZE
        assert "preprocessing" in card and card["preprocessing"]["pad_value"] == 255
        assert card["parity"]["pass"]
        if path.is_file():
            assert card["size_bytes"] == path.stat().st_size
            (inp,), (outp,) = card["inputs"], card["outputs"]
            assert inp["shape"][1:] == [SIZE, SIZE, 3] and outp["shape"][1:] == [SIZE, SIZE, 3]
    int8 = json.loads((model_file("tflite_int8").parent / "model_card.json").read_text())
    for tensor in (*int8["inputs"], *int8["outputs"]):
        assert tensor["dtype"] == "uint8"
        assert tensor["quantization"]["scale"] > 0
    # The input range is anchored to the whole [-1, 1]: dark pixels are not clipped.
    low, high = int8["inputs"][0]["real_value_range"]
    assert low <= -0.99 and high >= 0.99
    fp32 = json.loads((model_file("tflite_fp32").parent / "model_card.json").read_text())
    assert fp32["inputs"][0]["dtype"] == "float32"
    assert int8["size_bytes"] < fp32["size_bytes"] / 2


def _photo(width: int, height: int) -> np.ndarray:
    from PIL import Image

    real = photo_dir("test")
    if real is None:
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    path = sorted(real.glob("*.jpg"))[0]
    return np.asarray(Image.open(path).convert("RGB").resize((width, height), Image.BILINEAR))


@pytest.mark.parametrize("width,height", [(300, 200), (50, 120)])
def test_convert_images_signature_takes_any_size(width, height):
    import tensorflow as tf

    art = exported()
    loaded = tf.saved_model.load(str(model_file("savedmodel")))
    photo = _photo(width, height)
    batch = np.stack([photo, photo[:, ::-1]])
    products = loaded.signatures["convert_images"](images=tf.constant(batch))["products"].numpy()
    assert products.shape == (2, SIZE, SIZE, 3) and products.dtype == np.uint8
    expected = export_mod.to_uint8_np(
        reference(art.model, export_mod.preprocess_batch(batch, SIZE))
    )
    assert np.abs(products.astype(int) - expected).max() <= 1
    # The letterbox padding is white in the preprocessed input (the paper's pad-255).
    pre = np.asarray(export_mod.preprocess_batch(batch, SIZE))
    assert np.all(pre[:, 0, :, :] == 1.0) if width > height else np.all(pre[:, :, 0, :] == 1.0)


def test_export_preprocessing_matches_training_pipeline():
    import tensorflow as tf

    from keras_pldt.data import preprocess_image

    photo = _photo(300, 200)
    ours = np.asarray(export_mod._fallback_preprocess_batch(photo[None], SIZE))[0]
    np.testing.assert_array_equal(ours, preprocess_image(tf.constant(photo), SIZE).numpy())
    np.testing.assert_array_equal(export_mod.preprocess_photo(photo, SIZE), ours)


def test_savedmodel_loads_in_fresh_process_without_keras_pldt(tmp_path):
    path = model_file("savedmodel")
    script = textwrap.dedent(
        f"""
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "keras_pldt" or name.startswith("keras_pldt."):
                    raise ImportError("keras_pldt is not installed here")

        sys.meta_path.insert(0, Block())
        import numpy as np
        import tensorflow as tf

        m = tf.saved_model.load({str(path)!r})
        photos = tf.constant(np.full((1, 200, 300, 3), 90, np.uint8))
        out = m.signatures["convert_images"](images=photos)["products"]
        assert out.shape == (1, {SIZE}, {SIZE}, 3) and out.dtype == tf.uint8, out
        y = m.signatures["serving_default"](source=tf.zeros([2, {SIZE}, {SIZE}, 3]))["target"]
        assert y.shape == (2, {SIZE}, {SIZE}, 3)
        assert "keras_pldt" not in sys.modules
        print("OK", sorted(m.signatures))
        """
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "OK ['convert_images', 'serving_default']" in done.stdout


def test_export_refuses_when_threshold_missed(tmp_path, monkeypatch, capsys):
    art = exported()
    monkeypatch.setitem(export_mod.THRESHOLDS, "fp32_max_abs", -1.0)
    out = tmp_path / "out"
    rc = export_mod.main(
        ["--run-dir", str(art.run), "--out", str(out), "--formats", "onnx", "--quiet"]
    )
    assert rc == 1
    assert "parity check failed for onnx" in capsys.readouterr().err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temp dir left beside --out


def test_failed_overwrite_keeps_previous_export(tmp_path, monkeypatch):
    art = exported()
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("previous export")
    # Refuses a non-empty --out without --overwrite.
    rc = export_mod.main(["--run-dir", str(art.run), "--out", str(out), "--formats", "onnx"])
    assert rc == 1
    monkeypatch.setitem(export_mod.THRESHOLDS, "int8_min_psnr_db", 1e9)
    argv = ["--run-dir", str(art.run), "--out", str(out), "--overwrite", "--quiet"]
    argv += ["--formats", "tflite", "--quantize", "int8", "--calibration-samples", "4"]
    assert export_mod.main(argv) == 1
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_cli_help_and_bad_arguments(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        export_mod.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for word in ("--run-dir", "--model", "--formats", "--quantize", "--calibration-data"):
        assert word in text
    art = exported()
    args = ["--model", str(art.run / "converter.keras"), "--out", str(tmp_path / "o")]
    assert export_mod.main([*args, "--formats", "coreml"]) == 1
    assert "unknown format" in capsys.readouterr().err
    assert export_mod.main(["--run-dir", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 1


def test_resize_decoder_converts_to_tflite(tmp_path):
    """`upsampling="resize"` keeps static shapes, so its convs lower to builtin TFLite ops."""
    import keras

    from keras_pldt.config import PLDTConfig
    from keras_pldt.model import PLDT

    keras.utils.set_random_seed(0)
    model = PLDT(PLDTConfig(image_size=32, base_filters=4, upsampling="resize"))
    converter = model.ema_converter()
    export_mod.write_savedmodel(converter, tmp_path / "sm")
    export_mod.write_tflite(tmp_path / "sm", tmp_path / "c.tflite", "none")
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    lite = export_mod.TFLiteRunner(tmp_path / "c.tflite")(x)
    np.testing.assert_allclose(lite, converter(x).numpy(), atol=1e-4)
