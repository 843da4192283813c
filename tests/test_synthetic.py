from collections import Counter

import numpy as np
import pytest
from PIL import Image

from keras_pldt.data import load_pairs, verify_dataset
from keras_pldt.data.__main__ import main
from keras_pldt.datasets import synthetic
from keras_pldt.datasets.synthetic import (
    CATEGORIES,
    PALETTE,
    PATTERNS,
    category_template,
    default_dataset,
    generate,
    read_attributes,
)

SIZE = 32


def contents(root):
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("syn") / "a", 12, 3, seed=5, image_size=SIZE)


def test_deterministic(synth, tmp_path):
    again = generate(tmp_path / "b", 12, 3, seed=5, image_size=SIZE)
    assert contents(again) == contents(synth)
    other = generate(tmp_path / "c", 12, 3, seed=6, image_size=SIZE)
    assert contents(other) != contents(synth)


def test_layout_and_attributes(synth):
    data = load_pairs(synth)
    assert len(data.products) == 12
    assert all(len(p.sources) == 3 and len(p.targets) == 1 for p in data.products.values())
    assert verify_dataset(data).ok
    attrs = read_attributes(synth)
    assert sorted(attrs) == sorted(data.products)
    for a in attrs.values():
        assert a["category"] in CATEGORIES and a["pattern"] in PATTERNS
        assert PALETTE[a["colour"]] == a["rgb"]
    assert len(PALETTE) >= 8 and len(set(PALETTE.values())) == len(PALETTE)


def test_product_photo_matches_attributes(synth):
    attrs = read_attributes(synth)
    data = load_pairs(synth)
    for pid, a in attrs.items():
        img = np.asarray(Image.open(data.products[pid].targets[0]).convert("RGB"))
        garment = np.any(img != 255, axis=-1)
        np.testing.assert_array_equal(garment, category_template(a["category"], SIZE))
        counts = Counter(map(tuple, img[garment].tolist()))
        assert counts.most_common(1)[0][0] == a["rgb"]
        if a["pattern"] == "solid":
            assert len(counts) == 1


def test_person_photos_wear_the_colour(synth):
    attrs = read_attributes(synth)
    data = load_pairs(synth)
    for pid, a in attrs.items():
        counts = []
        for f in data.products[pid].sources:
            img = np.asarray(Image.open(f).convert("RGB")).astype(int)
            counts.append(int((np.abs(img - np.asarray(a["rgb"])).max(axis=-1) < 40).sum()))
        assert min(counts) >= 4 and sum(counts) >= 30, (pid, a, counts)


def test_templates_differ():
    masks = {c: category_template(c, 48) for c in CATEGORIES}
    for m in masks.values():
        assert m.dtype == bool and 0.15 < m.mean() < 0.7
        assert not m[0].any() and not m[:, 0].any()  # centred, margins white
    for c1 in CATEGORIES:
        for c2 in CATEGORIES:
            if c1 < c2:
                iou = (masks[c1] & masks[c2]).sum() / (masks[c1] | masks[c2]).sum()
                assert iou < 0.9, (c1, c2)


def test_default_dataset_cached_atomically(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_PLDT_HOME", str(tmp_path / "home"))
    calls = []
    real = synthetic.generate
    monkeypatch.setattr(synthetic, "generate", lambda *a, **k: calls.append(a) or real(*a, **k))
    a = default_dataset(num_products=3, sources_per_product=2, image_size=SIZE)
    b = default_dataset(num_products=3, sources_per_product=2, image_size=SIZE)
    assert a == b and len(calls) == 1
    assert a.parent == tmp_path / "home"
    assert [p.name for p in a.parent.iterdir()] == [a.name]  # no temp folder left
    assert len(load_pairs(a).products) == 3


def test_cli_synthetic(tmp_path, capsys):
    assert main(["synthetic", str(tmp_path / "o"), "--products", "3", "--sources", "2"]) == 0
    assert len(list((tmp_path / "o").glob("PID*"))) == 3 * 3
    assert "3 products" in capsys.readouterr().out
