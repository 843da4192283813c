"""`python -m keras_pldt.export`: every format meets its parity threshold; failures write nothing.

The tiny converter and its export are the session fixture `exported` (tests/conftest.py).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from keras_pldt import export as export_mod
from keras_pldt import runtime
from keras_pldt.run import CONFIG
from keras_pldt.samples import load_sample, sources_first

TFLITE = ("tflite_fp32", "tflite_float16", "tflite_dynamic", "tflite_int8")
ALL_FORMATS = ("savedmodel", *TFLITE, "onnx")
KINDS = {"savedmodel": "savedmodel", "onnx": "onnx", **{name: "tflite" for name in TFLITE}}


def reference(model, batch: np.ndarray) -> np.ndarray:
    return np.asarray(model(batch, training=False), np.float32)


def fresh_batch(exported) -> np.ndarray:
    """Photos not in the export's parity batch (or random pixels), preprocessed."""
    real = exported.photos("test")
    if real is not None:
        paths = sources_first(runtime.list_images(real))[-6:]
        return load_sample(paths, exported.size)[0]
    rng = np.random.default_rng(1)
    return rng.uniform(-1, 1, (6, exported.size, exported.size, 3)).astype(np.float32)


def _photo(exported, width: int, height: int) -> np.ndarray:
    real = exported.photos("test")
    if real is None:
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    path = sorted(real.glob("*.jpg"))[0]
    return np.asarray(Image.open(path).convert("RGB").resize((width, height), Image.BILINEAR))


def test_tiny_model_output_is_not_degenerate(exported):
    """Parity numbers mean little if the model outputs a constant: check the output spread."""
    y = reference(exported.model, fresh_batch(exported))
    assert y.std() > 0.05, f"output std {y.std():.4f}: the test model is degenerate"
    assert y.max() - y.min() > 0.5


def test_every_format_exported_and_passes_in_parity_json(exported):
    parity = json.loads((exported.out / "parity.json").read_text())
    assert set(ALL_FORMATS) <= set(parity["formats"])
    for name, entry in parity["formats"].items():
        assert entry["pass"], (name, entry)
    assert sorted(p.name for p in exported.out.iterdir()) == sorted(
        [*ALL_FORMATS, CONFIG, "parity.json"]
    )
    print(
        json.dumps({k: {m: v[m] for m in v if m != "pass"} for k, v in parity["formats"].items()})
    )


@pytest.mark.parametrize("name", ALL_FORMATS)
def test_format_meets_threshold_on_fresh_photos(exported, name):
    """Independent of the export's own check: new photos, thresholds from the spec, through the
    runner that `runtime.open_model` picks for the file."""
    runner = runtime.open_model(exported.model_file(name))
    assert runner.kind == KINDS[name] and runner.image_size == exported.size
    batch = fresh_batch(exported)
    metrics = export_mod.parity_metrics(reference(exported.model, batch), runner(batch))
    if name in ("savedmodel", "tflite_fp32", "onnx"):
        assert metrics["max_abs"] <= 1e-4, metrics
    elif name == "tflite_float16":
        assert metrics["max_abs"] <= 1e-2, metrics
    else:
        assert metrics["psnr_db"] >= 30.0, metrics
        assert metrics["max_abs"] > 0  # really quantized


def test_model_cards_describe_each_file(exported):
    size = exported.size
    for name in ALL_FORMATS:
        path = exported.model_file(name)
        folder = path.parent if path.is_file() else path
        card = json.loads((folder / "model_card.json").read_text())
        assert card["name"] == name and card["image_size"] == size
        assert "preprocessing" in card and card["preprocessing"]["pad_value"] == 255
        assert card["parity"]["pass"]
        assert card["config"]["base_filters"] == 8
        if path.is_file():
            assert card["size_bytes"] == path.stat().st_size
            (inp,), (outp,) = card["inputs"], card["outputs"]
            assert inp["shape"][1:] == [size, size, 3] and outp["shape"][1:] == [size, size, 3]
    int8 = json.loads((exported.model_file("tflite_int8").parent / "model_card.json").read_text())
    for tensor in (*int8["inputs"], *int8["outputs"]):
        assert tensor["dtype"] == "uint8"
        assert tensor["quantization"]["scale"] > 0
    # The input range is anchored to the whole [-1, 1]: dark pixels are not clipped.
    low, high = int8["inputs"][0]["real_value_range"]
    assert low <= -0.99 and high >= 0.99
    assert int8["calibration"]["images"] == exported.calibration_images
    fp32 = json.loads((exported.model_file("tflite_fp32").parent / "model_card.json").read_text())
    assert fp32["inputs"][0]["dtype"] == "float32"
    assert int8["size_bytes"] < fp32["size_bytes"] / 2
    onnx = json.loads((exported.model_file("onnx").parent / "model_card.json").read_text())
    assert [t["name"] for t in (*onnx["inputs"], *onnx["outputs"])] == ["source", "target"]
    assert onnx["inputs"][0]["shape"] == [-1, size, size, 3]


@pytest.mark.parametrize("width,height", [(300, 200), (50, 120)])
def test_convert_images_signature_takes_any_size(exported, width, height):
    import tensorflow as tf

    size = exported.size
    loaded = tf.saved_model.load(str(exported.model_file("savedmodel")))
    photo = _photo(exported, width, height)
    batch = np.stack([photo, photo[:, ::-1]])
    products = loaded.signatures["convert_images"](images=tf.constant(batch))["products"].numpy()
    assert products.shape == (2, size, size, 3) and products.dtype == np.uint8
    pre = np.asarray(runtime.preprocess(batch, size))
    expected = runtime.to_uint8_np(reference(exported.model, pre))
    assert np.abs(products.astype(int) - expected).max() <= 1
    # The letterbox padding is white in the preprocessed input (the paper's pad-255).
    assert np.all(pre[:, 0, :, :] == 1.0) if width > height else np.all(pre[:, :, 0, :] == 1.0)


SIZES = [(300, 200), (50, 120), (32, 32), (7, 3), (640, 480), (33, 31)]


def test_one_letterbox_for_training_savedmodel_and_runtime(exported, tmp_path):
    """The training pipeline (tf.data, encoded PNG), the SavedModel's `convert_images` (of an
    identity model, so its products are its letterboxed input) and `runtime.letterbox` give
    the same pixels, as do `preprocess_photo` and `preprocess_image` in [-1, 1]."""
    import keras
    import tensorflow as tf

    from keras_pldt.data import decode_and_preprocess_uint8, preprocess_image

    size = exported.size
    identity = keras.Sequential([keras.Input((size, size, 3)), keras.layers.Identity()])
    export_mod.write_savedmodel(identity, tmp_path / "identity")
    convert_images = tf.saved_model.load(str(tmp_path / "identity")).signatures["convert_images"]
    for width, height in SIZES:
        photo = _photo(exported, width, height)
        ours = np.asarray(runtime.letterbox(photo, size))
        assert ours.shape == (size, size, 3) and ours.dtype == np.uint8
        png = io.BytesIO()
        Image.fromarray(photo).save(png, "PNG")
        pipeline = tf.data.Dataset.from_tensors(png.getvalue()).map(
            lambda data: decode_and_preprocess_uint8(data, size)
        )
        np.testing.assert_array_equal(next(iter(pipeline)).numpy(), ours, err_msg=str(photo.shape))
        products = convert_images(images=tf.constant(photo[None]))["products"].numpy()[0]
        np.testing.assert_array_equal(products, ours, err_msg=str(photo.shape))
        np.testing.assert_array_equal(np.asarray(runtime.letterbox(photo[None], size))[0], ours)
        floats = export_mod.preprocess_photo(photo, size)
        np.testing.assert_array_equal(floats, preprocess_image(tf.constant(photo), size).numpy())
        np.testing.assert_array_equal(floats, runtime.to_float_np(ours))
    levels = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(runtime.to_float_np(levels), runtime.to_float(levels).numpy())


def test_savedmodel_loads_in_fresh_process_without_keras_pldt(exported, tmp_path):
    path = exported.model_file("savedmodel")
    size = exported.size
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
        assert out.shape == (1, {size}, {size}, 3) and out.dtype == tf.uint8, out
        y = m.signatures["serving_default"](source=tf.zeros([2, {size}, {size}, 3]))["target"]
        assert y.shape == (2, {size}, {size}, 3)
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


def test_export_refuses_when_threshold_missed(exported, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(export_mod.THRESHOLDS, "fp32_max_abs", -1.0)
    out = tmp_path / "out"
    rc = export_mod.main(
        ["--run-dir", str(exported.run), "--out", str(out), "--formats", "onnx", "--quiet"]
    )
    assert rc == 1
    assert "parity check failed for onnx" in capsys.readouterr().err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temp dir left beside --out


def test_failed_overwrite_keeps_previous_export(exported, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("previous export")
    # Refuses a non-empty --out without --overwrite.
    rc = export_mod.main(["--run-dir", str(exported.run), "--out", str(out), "--formats", "onnx"])
    assert rc == 1
    monkeypatch.setitem(export_mod.THRESHOLDS, "int8_min_psnr_db", 1e9)
    argv = ["--run-dir", str(exported.run), "--out", str(out), "--overwrite", "--quiet"]
    argv += ["--formats", "tflite", "--quantize", "int8", "--calibration-samples", "4"]
    assert export_mod.main(argv) == 1
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize(
    "blocked,formats,message",
    [
        (
            "ai_edge_litert.interpreter",
            "tflite",
            "the tflite format needs ai-edge-litert: pip install ai-edge-litert",
        ),
        ("tf2onnx", "onnx", "the onnx format needs tf2onnx: pip install tf2onnx"),
        (
            "onnxruntime",
            "savedmodel,onnx",
            "the onnx format needs onnxruntime: pip install onnxruntime",
        ),
    ],
)
def test_missing_runtime_is_one_line(
    exported, tmp_path, monkeypatch, capsys, blocked, formats, message
):
    """A runtime that cannot be imported: one line naming the pip command, nothing written."""
    monkeypatch.setitem(sys.modules, blocked, None)  # `import blocked` now raises ImportError
    out = tmp_path / "out"
    argv = ["--model", str(exported.final), "--out", str(out), "--formats", formats, "--quiet"]
    assert export_mod.main(argv) == 1
    assert capsys.readouterr().err == f"export failed: {message}\n"
    assert list(tmp_path.iterdir()) == []


def test_cli_help_and_bad_arguments(exported, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        export_mod.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for word in ("--run-dir", "--model", "--formats", "--quantize", "--calibration-data"):
        assert word in text
    assert "--run-dir runs/demo-rf+dd --out exported" in text
    actions = [a for a in export_mod.build_parser()._actions if a.option_strings]
    assert [a.option_strings for a in actions if not a.help] == []
    args = ["--model", str(exported.final), "--out", str(tmp_path / "o")]
    assert export_mod.main([*args, "--formats", "coreml"]) == 1
    assert "unknown format 'coreml'" in capsys.readouterr().err
    assert export_mod.main([*args, "--quantize", "int4"]) == 1
    assert "unknown quantization 'int4'" in capsys.readouterr().err
    assert export_mod.main(["--run-dir", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 1
    assert "is not a directory" in capsys.readouterr().err
    not_a_run = tmp_path / "empty"
    not_a_run.mkdir()
    assert export_mod.main(["--run-dir", str(not_a_run), "--out", str(tmp_path / "o2")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("export failed: ") and err.count("\n") == 1 and "Traceback" not in err


def test_load_converter_gives_the_run_config(exported):
    model, config = export_mod.load_converter(exported.run, with_config=True)
    assert model.input_shape == (None, exported.size, exported.size, 3)
    assert config["base_filters"] == 8 and config["data"]
    model, config = export_mod.load_converter(exported.final, with_config=True)
    assert config["base_filters"] == 8  # the run's config beside the .keras file
    batch = fresh_batch(exported)
    np.testing.assert_array_equal(reference(model, batch), reference(exported.model, batch))


def test_resize_decoder_converts_to_tflite(tmp_path):
    """`upsampling="resize"` keeps static shapes, so its convs lower to builtin TFLite ops."""
    import keras

    from keras_pldt.config import PLDTConfig
    from keras_pldt.networks import build_converter

    keras.utils.set_random_seed(0)
    converter = build_converter(PLDTConfig(image_size=32, base_filters=4, upsampling="resize"))
    export_mod.write_savedmodel(converter, tmp_path / "sm")
    export_mod.write_tflite(tmp_path / "sm", tmp_path / "c.tflite", "none")
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    lite = runtime.TFLiteRunner(tmp_path / "c.tflite")(x)
    np.testing.assert_allclose(lite, converter(x).numpy(), atol=1e-4)


def test_dynamic_range_tflite_has_no_transposed_convs(exported):
    """TFLite's hybrid transposed conv is much slower than its fp32 one
    (benchmarks/tflite_hybrid_ops.py): the dynamic-range model draws the decoder's x2 stages as
    convs + depth_to_space, within its parity threshold (test_format_meets_threshold...)."""
    from ai_edge_litert.interpreter import Interpreter

    def ops(name):
        interpreter = Interpreter(model_path=str(exported.model_file(name)))
        return {op["op_name"] for op in interpreter._get_ops_details()}

    assert "TRANSPOSE_CONV" in ops("tflite_fp32")  # the exported converter has them
    dynamic = ops("tflite_dynamic")
    assert "TRANSPOSE_CONV" not in dynamic and "DEPTH_TO_SPACE" in dynamic, dynamic


def test_subpixel_copy_has_the_same_outputs_and_weights():
    """`with_subpixel_transposed_convs` copies the plain converter (the same classes and
    config) with its transposed convs as sub-pixel convs; the original stays as it was."""
    import keras

    from keras_pldt.config import PLDTConfig
    from keras_pldt.kernels import acceleration, with_subpixel_transposed_convs
    from keras_pldt.networks import build_converter

    keras.utils.set_random_seed(0)
    plain = build_converter(PLDTConfig(image_size=32, base_filters=8))
    copy = with_subpixel_transposed_convs(plain)
    assert copy.get_config() == plain.get_config()
    transposed = [la for la in copy._flatten_layers() if type(la) is keras.layers.Conv2DTranspose]
    assert transposed and {acceleration(la) for la in transposed} == {"conv2d_transpose_stride2"}
    assert {acceleration(la) for la in copy._flatten_layers()} - {None} == {
        "conv2d_transpose_stride2"
    }
    assert {acceleration(la) for la in plain._flatten_layers()} == {None}
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    expected = plain(x, training=False).numpy()
    np.testing.assert_allclose(copy(x, training=False).numpy(), expected, rtol=0, atol=1e-5)
    for a, b in zip(plain.get_weights(), copy.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_bfloat16_run_saves_and_exports_a_float32_converter(tmp_path):
    """A run trained in bfloat16 saves converter.keras computing in float32, with the trained
    weights, and it exports to TFLite (which has no bfloat16 convolutions)."""
    from keras_pldt.config import PLDTConfig
    from keras_pldt.model import PLDT
    from keras_pldt.run import RunFolder, load_converter

    trained = PLDT(PLDTConfig(image_size=32, base_filters=4, precision="bfloat16")).converter
    assert trained.compute_dtype == "bfloat16"
    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    assert run.save_final(trained)
    converter = load_converter(run.path)
    assert {layer.dtype_policy.name for layer in converter._flatten_layers()} == {"float32"}
    for saved, original in zip(converter.get_weights(), trained.get_weights(), strict=True):
        np.testing.assert_array_equal(saved, original)
    out = tmp_path / "out"
    export_mod.export(out, model_path=run.final_model, formats=["tflite"], quantize=["none"],
                      calibration_samples=4, parity_samples=4, verbose=False)  # fmt: skip
    assert (out / "tflite_fp32" / "converter.tflite").stat().st_size > 0
