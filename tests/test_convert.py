"""`python -m keras_pldt.convert`: every exported format on real photos; bad files skipped."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from test_export import SIZE, exported, model_file, photo_dir

from keras_pldt import convert as convert_mod
from keras_pldt import export as export_mod


@pytest.fixture
def photos(tmp_path):
    """A real photo, an odd-sized RGBA PNG, a corrupted JPEG and a text file."""
    folder = tmp_path / "photos"
    folder.mkdir()
    real = photo_dir("test")
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


MODELS = ("keras", "run_dir", "savedmodel", "tflite_fp32", "tflite_int8", "onnx")


def _model_path(kind: str):
    art = exported()
    if kind == "keras":
        return art.run / "converter.keras"
    if kind == "run_dir":
        return art.run
    return model_file(kind)


@pytest.mark.parametrize("kind", MODELS)
def test_convert_every_format_skips_bad_files(kind, photos, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--model", str(_model_path(kind)), "--input", str(photos), "--output", str(out)]
    assert convert_mod.main([*argv, "--side-by-side"]) == 0
    captured = capsys.readouterr()
    assert "skipped 2" in captured.out
    assert "c_corrupt.jpg: cannot read image" in captured.err
    assert "d_notes.txt: unsupported file type" in captured.err
    assert sorted(p.name for p in out.iterdir()) == [
        "a_photo.png",
        "a_photo_side_by_side.png",
        "b_odd.png",
        "b_odd_side_by_side.png",
    ]
    product = np.asarray(Image.open(out / "b_odd.png"))
    assert product.shape == (SIZE, SIZE, 3) and product.dtype == np.uint8
    pair = np.asarray(Image.open(out / "b_odd_side_by_side.png"))
    assert pair.shape == (SIZE, 2 * SIZE, 3)
    assert np.all(pair[0, :SIZE] == 255)  # the 300x200 photo is padded white at the top


def test_convert_outputs_agree_with_keras(photos, tmp_path):
    art = exported()
    photo = export_mod.read_photo(photos / "b_odd.png")
    expected = export_mod.to_uint8_np(
        art.model(export_mod.preprocess_batch(photo[None], SIZE), training=False)
    )[0].astype(int)
    for kind, levels in (("savedmodel", 1), ("tflite_fp32", 1), ("onnx", 1), ("tflite_int8", 12)):
        _, product = convert_mod.Converter(_model_path(kind))(photo)
        assert np.abs(product.astype(int) - expected).max() <= levels, kind


def test_convert_single_bad_file_fails(tmp_path, photos, capsys):
    art = exported()
    rc = convert_mod.main(
        [
            "--model",
            str(art.run / "converter.keras"),
            "--input",
            str(photos / "c_corrupt.jpg"),
            "--output",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 1
    assert "skipped 1" in capsys.readouterr().out
    assert (
        convert_mod.main(
            ["--model", str(tmp_path / "nope.tflite"), "--input", "x", "--output", "y"]
        )
        == 1
    )
