"""`python -m keras_pldt.convert`: every exported format on real photos; bad files skipped.

The models are the session fixture `exported` (tests/conftest.py).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from keras_pldt import convert as convert_mod
from keras_pldt import runtime


@pytest.fixture
def photos(tmp_path, real_photos):
    """A real photo, an odd-sized RGBA PNG, a corrupted JPEG and a text file."""
    folder = tmp_path / "photos"
    folder.mkdir()
    real = real_photos("test")
    if real is not None:
        image = Image.open(sorted(real.glob("*.jpg"))[0]).convert("RGB")
    else:
        rng = np.random.default_rng(0)
        image = Image.fromarray(rng.integers(0, 256, (90, 70, 3), dtype=np.uint8))
    image.save(folder / "a_photo.jpg", quality=95)
    image.resize((300, 200)).convert("RGBA").save(folder / "b_odd.png")
    (folder / "c_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (folder / "d_notes.txt").write_text("not an image")
    return folder


MODELS = ("keras", "run_dir", "savedmodel", "export_dir", "tflite_fp32", "tflite_int8", "onnx")
KINDS = {"keras": "keras", "run_dir": "keras", "export_dir": "savedmodel"}


def _model_path(exported, kind: str):
    return {"keras": exported.final, "run_dir": exported.run, "export_dir": exported.out}.get(
        kind
    ) or exported.model_file(kind)


@pytest.mark.parametrize("kind", MODELS)
def test_convert_every_format_skips_bad_files(exported, kind, photos, tmp_path, capsys):
    size = exported.size
    out = tmp_path / "out"
    argv = ["--model", str(_model_path(exported, kind)), "--input", str(photos)]
    assert convert_mod.main([*argv, "--output", str(out), "--side-by-side"]) == 0
    captured = capsys.readouterr()
    assert "skipped 2" in captured.out
    assert f"with {KINDS.get(kind, kind.split('_')[0])} model ({size}x{size})" in captured.out
    assert "c_corrupt.jpg: cannot read image" in captured.err
    assert "d_notes.txt: unsupported file type" in captured.err
    assert sorted(p.name for p in out.iterdir()) == [
        "a_photo.png",
        "a_photo_side_by_side.png",
        "b_odd.png",
        "b_odd_side_by_side.png",
    ]
    product = np.asarray(Image.open(out / "b_odd.png"))
    assert product.shape == (size, size, 3) and product.dtype == np.uint8
    pair = np.asarray(Image.open(out / "b_odd_side_by_side.png"))
    assert pair.shape == (size, 2 * size, 3)
    assert np.all(pair[0, :size] == 255)  # the 300x200 photo is padded white at the top


def test_convert_outputs_agree_with_keras(exported, photos):
    photo = runtime.read_photo(photos / "b_odd.png")
    source = np.asarray(runtime.letterbox(photo, exported.size))
    x = np.asarray(runtime.preprocess(photo[None], exported.size))
    expected = runtime.to_uint8_np(exported.model(x, training=False))[0].astype(int)
    for kind, levels in (("savedmodel", 1), ("tflite_fp32", 1), ("onnx", 1), ("tflite_int8", 12)):
        converter = convert_mod.Converter(_model_path(exported, kind))
        got_source, product = converter(photo)
        np.testing.assert_array_equal(got_source, source)
        assert product.shape == source.shape and product.dtype == np.uint8
        assert np.abs(product.astype(int) - expected).max() <= levels, kind


def test_converter_describes_its_model(exported):
    """`.kind`, `.image_size` and `.card`: the model card of an exported file, the run's
    config for a run folder or its `.keras` file."""
    for kind, name in (("savedmodel", "savedmodel"), ("tflite_int8", "tflite_int8")):
        converter = convert_mod.Converter(_model_path(exported, kind))
        assert converter.image_size == exported.size
        assert converter.card["name"] == name and converter.card["image_size"] == exported.size
    for kind in ("keras", "run_dir"):
        converter = convert_mod.Converter(_model_path(exported, kind))
        assert converter.kind == "keras" and converter.image_size == exported.size
        assert converter.card["base_filters"] == 8 and converter.card["image_size"] == exported.size


def test_convert_single_bad_file_fails(exported, tmp_path, photos, capsys):
    argv = ["--model", str(exported.final), "--input", str(photos / "c_corrupt.jpg")]
    assert convert_mod.main([*argv, "--output", str(tmp_path / "o")]) == 1
    assert "skipped 1" in capsys.readouterr().out
    photo = str(photos / "c_corrupt.jpg")
    argv = ["--model", str(tmp_path / "nope.tflite"), "--input", photo, "--output", "y"]
    assert convert_mod.main(argv) == 1
    missing = tmp_path / "nope.tflite"
    assert capsys.readouterr().err == f"convert failed: --model {missing} does not exist\n"


def test_convert_bad_model_is_one_line(exported, tmp_path, photos, monkeypatch, capsys):
    """An unsupported file, a broken .keras, a folder that is no model, a missing runtime:
    one line each."""
    (tmp_path / "model.pt").write_bytes(b"")
    (tmp_path / "broken.keras").write_bytes(b"PK not a zip")
    (tmp_path / "empty").mkdir()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    cases = [
        (tmp_path / "model.pt", "unsupported model"),
        (tmp_path / "broken.keras", f"cannot load a Keras model from {tmp_path / 'broken.keras'}"),
        (tmp_path / "empty", "is neither a SavedModel, an export folder nor a run folder"),
        (exported.model_file("onnx"), "the onnx format needs onnxruntime: pip install onnxruntime"),
    ]
    for model, message in cases:
        argv = ["--model", str(model), "--input", str(photos), "--output", str(tmp_path / "o")]
        assert convert_mod.main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith("convert failed: ") and message in err, err
        assert err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_convert_help_has_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        convert_mod.main(["--help"])
    assert exit_info.value.code == 0
    assert "--quiet" in capsys.readouterr().out
    actions = [a for a in convert_mod.build_parser()._actions if a.option_strings]
    assert [a.option_strings for a in actions if not a.help] == []
