import csv
import io

import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_close
from PIL import Image

from keras_pldt.data import (
    DataError,
    decode_and_preprocess,
    load_pairs,
    parse_name,
    preprocess_image,
)


@pytest.mark.parametrize(
    "name, pid, clean, iid",
    [
        ("PID000123_CLEAN0_IID004567.jpg", "000123", 0, "004567"),
        ("PID7_CLEAN1_IID8.JPEG", "7", 1, "8"),
        ("pid42_clean1_iid3.png", "42", 1, "3"),
        ("PIDab-9_CLEAN0_IIDx1.Png", "ab-9", 0, "x1"),
    ],
)
def test_parse_good_names(name, pid, clean, iid):
    parsed = parse_name(name)
    assert parsed is not None
    assert (parsed.pid, parsed.clean, parsed.iid) == (pid, clean, iid)


@pytest.mark.parametrize(
    "name",
    [
        "PID1_CLEAN2_IID3.jpg",
        "PID1_CLEAN0.jpg",
        "PID1_CLEAN0_IID3.gif",
        "xPID1_CLEAN0_IID3.jpg",
        "PID1_CLEAN0_IID3.jpg.txt",
        "PID_CLEAN0_IID3.jpg",
        "photo.jpg",
    ],
)
def test_parse_bad_names(name):
    assert parse_name(name) is None


def test_load_pairs_recursive_multiple_targets(make_lookbook, tmp_path):
    root = make_lookbook(products=3, sources=2, targets=1)
    sub = root / "more" / "deeper"
    make_lookbook(root=sub, products=1, sources=1, targets=2, start=1)  # product 1 again
    Image.new("RGB", (10, 10)).save(root / "holiday.jpg")
    (root / "notes.txt").write_text("not an image")
    data = load_pairs(root)
    assert data.folder_splits is None
    assert sorted(data.products) == ["0000", "0001", "0002"]
    p1 = data.products["0001"]
    assert len(p1.sources) == 3 and len(p1.targets) == 3
    assert any("deeper" in str(f) for f in p1.targets)
    assert [f.name for f in data.unmatched] == ["holiday.jpg"]


def test_load_pairs_missing_or_empty(tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        load_pairs(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        load_pairs(tmp_path / "empty")


def test_folder_splits(make_lookbook, tmp_path):
    make_lookbook(root=tmp_path / "d" / "train", products=3)
    make_lookbook(root=tmp_path / "d" / "test", products=2, start=5)
    make_lookbook(root=tmp_path / "d" / "ignored", products=2, start=8)
    data = load_pairs(tmp_path / "d")
    assert set(data.folder_splits) == {"train", "test"}
    assert sorted(data.folder_splits["test"]) == ["0005", "0006"]
    assert "0008" not in data.products


def test_manifest(make_lookbook, tmp_path):
    root = make_lookbook(products=3, sources=2)
    files = sorted(root.iterdir())
    targets = [f for f in files if "CLEAN1" in f.name]
    sources = [f for f in files if "CLEAN0" in f.name]
    man = tmp_path / "pairs.csv"
    with open(man, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["source", "target", "split"])
        for i, s in enumerate(sources):
            t = targets[i // 2]
            w.writerow([f"lookbook/{s.name}", f"lookbook/{t.name}", "test" if i >= 4 else "train"])
    data = load_pairs(manifest=man)
    assert len(data.products) == 3
    assert all(len(p.targets) == 1 for p in data.products.values())
    assert sum(len(p.sources) for p in data.products.values()) == len(sources)
    assert all(f.exists() for f in data.all_files())
    assert set(data.folder_splits) == {"train", "test"}
    assert len(data.folder_splits["test"]) == 1


def test_preprocess_red_100x50():
    red = np.zeros((50, 100, 3), np.uint8)
    red[..., 0] = 255
    out = preprocess_image(tf.constant(red), 64).numpy()
    assert out.shape == (64, 64, 3) and out.dtype == np.float32
    assert out.min() >= -1.0 and out.max() <= 1.0
    rows = np.flatnonzero((out != 1.0).any(axis=(1, 2)))
    assert rows.tolist() == list(range(16, 48))  # 32 rows, centred
    np.testing.assert_array_equal(out[16:48], np.broadcast_to([1.0, -1.0, -1.0], (32, 64, 3)))
    np.testing.assert_array_equal(out[:16], 1.0)
    np.testing.assert_array_equal(out[48:], 1.0)


@pytest.mark.parametrize("size", [128, 256])
def test_preprocess_portrait_sizes_and_tf_function(size):
    img = np.zeros((60, 30, 3), np.uint8)  # H=60, W=30: width becomes size/2
    img[..., 2] = 255

    @tf.function(input_signature=[tf.TensorSpec([None, None, None], tf.uint8)])
    def f(x):
        return preprocess_image(x, size)

    out = f(tf.constant(img)).numpy()
    assert out.shape == (size, size, 3)
    cols = np.flatnonzero((out != 1.0).any(axis=(0, 2)))
    assert cols.tolist() == list(range(size // 4, 3 * size // 4))


def test_gray_and_rgba_and_bytes(tmp_path):
    gray = Image.new("L", (12, 12), 100)
    buf = io.BytesIO()
    gray.save(buf, format="PNG")
    out = decode_and_preprocess(buf.getvalue(), 8).numpy()
    assert_close(out, 100 / 127.5 - 1, 2, scale=1.0)  # roundings of x / 127.5 - 1 in [-1, 1]

    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 0] = 255  # red
    rgba[:5, :, 3] = 255  # top half opaque, bottom half transparent -> white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = decode_and_preprocess(str(tmp_path / "a.png"), 10).numpy()
    np.testing.assert_array_equal(out[0, 0], [1.0, -1.0, -1.0])
    np.testing.assert_array_equal(out[9, 0], [1.0, 1.0, 1.0])

    Image.new("RGB", (16, 16), (0, 255, 0)).save(tmp_path / "g.jpg", quality=95)
    out = decode_and_preprocess(tmp_path / "g.jpg", 16).numpy()
    assert np.abs(out[8, 8] - [-1, 1, -1]).max() <= 4 * 2 / 255  # JPEG: a few 8-bit levels


def test_decode_and_preprocess_in_graph_on_bytes(tmp_path):
    img = np.zeros((10, 40, 3), np.uint8)
    img[..., 1] = 255
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")

    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def f(contents):
        return decode_and_preprocess(contents, 32)

    out = f(tf.constant(buf.getvalue())).numpy()
    rows = np.flatnonzero((out != 1.0).any(axis=(1, 2)))
    assert rows.tolist() == list(range(12, 20))  # 8 rows centred in 32
    np.testing.assert_array_equal(out[16, 0], [-1.0, 1.0, -1.0])
