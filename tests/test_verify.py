import io

import numpy as np
import pytest
from helpers import decode_colour
from PIL import Image

from keras_pldt.data import DataError, build_pipelines, check_image, verify_dataset
from keras_pldt.data.__main__ import main

S = 16


@pytest.fixture
def bad_folder(make_lookbook, tmp_path):
    """6 good products (0-5) plus one problem of each kind."""
    root = make_lookbook(products=6, sources=2)
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (255, 0, 0)).save(buf, format="JPEG", quality=95)
    data = buf.getvalue()
    bad = {
        "truncated": root / "PID0000_CLEAN0_IID9001.jpg",
        "zero": root / "PID0001_CLEAN0_IID9002.jpg",
        "text": root / "PID0002_CLEAN0_IID9003.jpg",
        "misnamed": root / "person_photo.jpg",
        "tiny": root / "PID0003_CLEAN0_IID9004.png",
        "no_clean0": root / "PID0030_CLEAN1_IID9005.png",
    }
    bad["truncated"].write_bytes(data[: len(data) // 2])
    bad["zero"].write_bytes(b"")
    bad["text"].write_text("this is not an image\n")
    bad["misnamed"].write_bytes(data)
    Image.new("RGB", (4, 4), (5, 40, 0)).save(bad["tiny"])
    Image.new("RGB", (20, 16), (0, 200, 0)).save(bad["no_clean0"])
    # unusual but valid: grayscale and RGBA PNG sources of product 4,
    # a CMYK JPEG of product 5 (RGB 30, 40, 0)
    Image.new("L", (20, 16), 25).save(root / "PID0004_CLEAN0_IID9006.png")
    Image.new("RGBA", (20, 16), (25, 40, 0, 255)).save(root / "PID0004_CLEAN0_IID9007.png")
    Image.new("CMYK", (20, 16), (225, 215, 255, 0)).save(root / "PID0005_CLEAN0_IID9008.jpg")
    return root, bad


def test_verify_reports_each_problem(bad_folder):
    root, bad = bad_folder
    before = {p: p.read_bytes() for p in root.iterdir()}
    report = verify_dataset(root)
    by_path = {i.path: i for i in report.issues}
    assert by_path[str(bad["truncated"])].kind == "decode"
    assert "truncated" in by_path[str(bad["truncated"])].reason
    assert "0 bytes" in by_path[str(bad["zero"])].reason
    assert by_path[str(bad["text"])].reason == "not an image"
    assert by_path[str(bad["misnamed"])].kind == "name"
    assert by_path[str(bad["tiny"])].kind == "size"
    assert by_path["PID0030"].kind == "product" and "CLEAN0" in by_path["PID0030"].reason
    assert len(report.issues) == 6  # grayscale, RGBA and CMYK files are fine
    assert report.num_products == 6
    assert report.counts() == {"decode": 3, "size": 1, "name": 1, "product": 1}
    line = report.summary()
    assert "\n" not in line and "3 undecodable" in line and "1 incomplete products" in line
    for name in ("PID0000_CLEAN0_IID9001.jpg", "person_photo.jpg", "PID0030"):
        assert name in str(report)
    assert {p: p.read_bytes() for p in root.iterdir()} == before  # nothing modified


def test_training_skips_rejected_files(bad_folder, capsys):
    root, bad = bad_folder
    p = build_pipelines(root, image_size=S, batch_size=2, seed=0, run_dir=root.parent / "run")
    out = capsys.readouterr().out
    assert "3 undecodable" in out
    used = set(p.paths)
    assert not used & {str(f) for f in bad.values()}
    assert str(root / "PID0004_CLEAN0_IID9006.png") in used  # grayscale kept
    total = sum(sd.num_sources for sd in p.splits.values())
    assert total == 6 * 2 + 3  # good sources: 2 per product plus gray, RGBA and CMYK
    assert "0030" not in [pid for sd in p.splits.values() for pid in sd.pids]
    for split in ("val", "test"):
        arr = p.load_split_arrays(split)
        assert len(arr["source"]) == p.splits[split].num_sources
    seen = 0
    for b in p.train_for_epochs(0, 2).as_numpy_iterator():
        for i in range(len(b["product"])):
            src, clean = decode_colour(b["source"][i, S // 2, S // 2])
            assert clean == 0 and src in range(6)
            seen += 1
    assert seen == 2 * p.steps_per_epoch * 2


def test_check_image_sizes(tmp_path):
    Image.new("L", (20001, 8)).save(tmp_path / "wide.png")
    kind, reason = check_image(tmp_path / "wide.png")
    assert kind == "size" and "too large" in reason
    Image.new("RGB", (30, 10)).save(tmp_path / "ok.png")
    assert check_image(tmp_path / "ok.png") is None
    assert check_image(tmp_path / "ok.png", max_side=20)[0] == "size"
    assert check_image(tmp_path / "ok.png", min_side=11)[0] == "size"


def test_no_usable_product_is_a_data_error(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "PID1_CLEAN0_IID1.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="no usable product"):
        build_pipelines(tmp_path / "d", image_size=S, verbose=False)


def test_cli_verify(bad_folder, tmp_path, capsys):
    root, bad = bad_folder
    assert main(["verify", str(root)]) == 1
    out = capsys.readouterr().out
    assert bad["text"].name in out and "not an image" in out
    good = tmp_path / "good"
    good.mkdir()
    for f in root.glob("PID000[0-5]_CLEAN?_IID000*.png"):
        (good / f.name).write_bytes(f.read_bytes())
    assert main(["verify", str(good), "--quiet"]) == 0
    assert "no problems" in capsys.readouterr().out
    assert main(["verify", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / "missing") in err
    for argv in (["--help"], ["verify", "--help"], ["synthetic", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0
    assert np.any(capsys.readouterr().out)


def test_file_count_includes_misnamed_files(make_lookbook, capsys):
    root = make_lookbook(products=4, sources=3)
    (root / "person_photo.jpg").write_bytes((root / "PID0000_CLEAN0_IID00000000.png").read_bytes())
    (root / "notes.txt").write_text("not an image\n")  # not an image file: not counted
    images = [p for p in root.iterdir() if p.suffix in (".png", ".jpg")]
    report = verify_dataset(root)
    assert report.num_files == len(images) == 4 * 4 + 1
    assert [(i.kind, i.path) for i in report.issues] == [("name", str(root / "person_photo.jpg"))]
    assert main(["verify", str(root), "--quiet"]) == 1
    assert f"{len(images)} files" in capsys.readouterr().out
