"""`python -m keras_pldt.reproduce` at a tiny setting on synthetic data."""

import json

import pytest

from keras_pldt import reproduce as R
from keras_pldt.datasets.synthetic import generate


def test_method_registry_and_names():
    assert R.resolve_methods(["C+RF,c-mse", "rf+dd", "C+RF+DD\u2013Neg"]) == [
        "C+RF", "C+MSE", "C+RF+DD", "C+RF+DD-Neg",
    ]  # fmt: skip
    assert R.slug("C+RF+DD-Neg") == "c-rf-dd-neg"
    with pytest.raises(R.ReproduceError, match="unknown method"):
        R.resolve_methods(["C+XYZ"])
    # a new recipe is one registry line
    R.METHODS["C+RF+DD+L1"] = {"variant": "rf+dd", "reconstruction_weight": 10.0}
    try:
        assert R.resolve_methods(["c-rf-dd-l1"]) == ["C+RF+DD+L1"]
    finally:
        del R.METHODS["C+RF+DD+L1"]


def test_reproduce_tiny_synthetic(tmp_path, capsys):
    root = generate(tmp_path / "syn", num_products=12, sources_per_product=4, image_size=32)
    out = tmp_path / "out"
    argv = [
        "--data", str(root), "--out", str(out), "--preset", "demo", "--image-size", "32",
        "--base-filters", "4", "--batch-size", "8", "--epochs", "1", "--decay-epochs", "0",
        "--set", "test_fraction=0.25",
    ]  # fmt: skip
    assert R.main(argv) == 0
    table = (out / "table3.md").read_text()
    for row in ("C+RF", "C+MSE", "C+RF+DD-Neg", "Retrieval by DD-score", "C+RF+DD (Ours)"):
        assert f"| {row} |" in table
    result = json.loads((out / "table3.json").read_text())
    methods = [r["method"] for r in result["rows"]]
    assert methods[:5] == [
        "C+RF", "C+MSE", "C+RF+DD-Neg", "Retrieval by DD-score", "C+RF+DD (Ours)",
    ]  # fmt: skip
    assert "Ground truth" in methods and "Mean target" in methods
    assert (out / "figure5.png").read_bytes()[:4] == b"\x89PNG"
    for slug in ("c-rf", "c-mse", "c-rf-dd-neg", "c-rf-dd"):
        assert (out / slug / "converter.keras").is_file()
    # resume: nothing is retrained, the table is rewritten
    stamp = (out / "c-rf" / "converter.keras").stat().st_mtime_ns
    capsys.readouterr()
    assert R.main([*argv, "--variants", "C+RF"]) == 0
    assert "already complete" in capsys.readouterr().out
    assert (out / "c-rf" / "converter.keras").stat().st_mtime_ns >= stamp
    assert [r["method"] for r in json.loads((out / "table3.json").read_text())["rows"]][0] == "C+RF"


def test_reproduce_errors(tmp_path, capsys):
    assert R.main(["--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert R.main(["--out", str(tmp_path / "o"), "--variants", "bogus"]) == 2
    assert "unknown method" in capsys.readouterr().err


def test_every_method_line_is_a_valid_config_and_its_own_folder():
    from keras_pldt.config import get_preset

    base = get_preset("paper")
    configs = {label: R.method_config(base, label) for label in R.METHODS}
    assert len({R.slug(label) for label in R.METHODS}) == len(R.METHODS)
    # The preset's method line, at the batch size docs/results.md measured it with.
    assert configs["C+RF+DD+robust"].replace(batch_size=32) == get_preset("robust")
    assert not configs["robust(no-srcaug)"].source_augment
    assert configs["C+MSE+srcaug"].source_augment == get_preset("robust").source_augment
    # Lines measured before the preset's learning rate changed keep the rate they were run at.
    assert configs["robust(lr2e-4)"].replace(batch_size=32) == get_preset(
        "robust", learning_rate=2e-4, decay_learning_rate=2e-5
    )
    assert configs["robust+ssim"].learning_rate == configs["robust(no-srcaug)"].learning_rate
    assert configs["robust+ssim"].learning_rate == base.learning_rate


def test_set_fields_apply_over_a_methods_own_switches():
    # `reproduce --variants C+RF+DD+robust --set diff_augment=translation` must train with
    # translation only, not silently with the method line's policy.
    from keras_pldt.config import get_preset
    from keras_pldt.train import set_overrides

    pinned = set_overrides(["diff_augment=translation", "spectral-norm=false"])
    assert pinned == {"diff_augment": "translation", "spectral_norm": False}
    config = R.method_config(get_preset("paper"), "C+RF+DD+robust", pinned)
    assert config.diff_augment == "translation" and not config.spectral_norm
    assert config.reconstruction_weight == R.METHODS["C+RF+DD+robust"]["reconstruction_weight"]


def test_explicit_flags_apply_over_a_methods_own_switches():
    from keras_pldt.train import explicit_overrides

    args = R.build_parser().parse_args(["--out", "o", "--learning-rate", "1e-3", "--seed", "3"])
    pinned = explicit_overrides(args)
    assert pinned == {"learning_rate": 1e-3, "seed": 3}
    config = R.method_config(R.base_config_from_args(args), "C+RF+DD+robust", pinned)
    assert config.learning_rate == 1e-3 and config.seed == 3
