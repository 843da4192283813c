"""`python -m keras_pldt.evaluate` on tiny synthetic runs."""

import json

import numpy as np
import pytest
from helpers import assert_close, sum_ulps

from keras_pldt import evaluate as E
from keras_pldt.config import PLDTConfig
from keras_pldt.datasets.synthetic import generate
from keras_pldt.train import train


@pytest.fixture(scope="module")
def mse_run(tmp_path_factory):
    """A short C+MSE run on 40 synthetic products, half of them held out for the test split."""
    tmp = tmp_path_factory.mktemp("eval")
    root = generate(tmp / "syn", num_products=40, sources_per_product=4, image_size=32)
    cfg = PLDTConfig(
        image_size=32, base_filters=8, batch_size=16, epochs=20, decay_epochs=0,
        variant="mse", learning_rate=2e-3, test_fraction=0.5, val_fraction=0.0,
    )  # fmt: skip
    run = tmp / "run"
    train(cfg, run, data=root, verbose=0, print_fn=lambda *a: None)
    return run


def test_evaluate_writes_outputs_and_relevance_above_chance(mse_run, capsys):
    assert E.main(["--run-dir", str(mse_run)]) == 0
    result = json.loads((mse_run / "eval.json").read_text())
    rows = {r["method"]: r for r in result["rows"]}
    assert set(rows) >= {"C+MSE", "NN pixel retrieval", "Mean target", "Ground truth"}
    assert result["num_products"] == 20
    ours = rows["C+MSE"]
    # the converter's outputs identify their product clearly better than chance (0.25)
    assert ours["top5_chance"] == 0.25  # 5 / 20
    assert ours["top5_l2"] >= ours["top5_chance"] + 0.15
    # a constant output is exactly at chance; C+MSE is blurry (sharpness < 1)
    assert rows["Mean target"]["top5_l2"] <= ours["top5_chance"]  # fractions of counts: exact
    assert ours["sharpness"] < 0.8
    # sanity row: colour / category accuracy of the real product images
    gt = rows["Ground truth"]
    assert gt["colour_acc"] >= 0.95 and gt["category_acc"] >= 0.95
    assert gt["rmse"] == 0.0 and gt["top1_l2"] == 1.0
    # the real product photos have the real spectrum; blurry C+MSE lacks high frequencies
    assert gt["spectral_gap"] == 0.0
    assert gt["grid_contrast"] == 0.0  # its own lattice shares, exactly
    assert ours["spectral_gap"] > rows["NN pixel retrieval"]["spectral_gap"]
    assert ours["spectral_gap_sign"] == -1
    md = (mse_run / "eval.md").read_text()
    assert "C-SSIM" in md and "| C+MSE |" in md and "*chance*" in md and "Spectral gap" in md
    assert "Grid contrast" in md
    png = (mse_run / "figure5.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Top-5 L2" in capsys.readouterr().out


def test_evaluate_converter_weights_match_checkpoint(mse_run):
    saved = json.loads((mse_run / "config.json").read_text())
    config = PLDTConfig.from_dict(saved)
    ds = E.build_eval_pipelines(mse_run, config, data=saved["data"])
    evalset = E.load_eval_set(ds, "test")
    a = E.generate(E.load_converter(mse_run, "converter"), evalset.source[:4])
    b = E.generate(E.load_converter(mse_run, "last"), evalset.source[:4])
    # Plain and sub-pixel transposed convs: sums of 5 x 5 taps of up to 8 x base_filters channels.
    assert_close(a, b, sum_ulps(25 * 8 * config.base_filters), scale=1.0)  # outputs in [0, 1]


def test_evaluate_errors_are_one_line(tmp_path, capsys):
    assert E.main(["--run-dir", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "does not exist" in err and "\n" not in err
    (tmp_path / "empty").mkdir()
    assert E.main(["--run-dir", str(tmp_path / "empty")]) == 2
    assert "no config.json" in capsys.readouterr().err


def test_image_grid_layout():
    cols = [np.zeros((3, 8, 8, 3)), np.ones((3, 8, 8, 3))]
    grid = E.image_grid(cols, [0, 2], gap=2)
    assert grid.shape == (18, 18, 3) and grid.dtype == np.uint8
    assert grid[0, 0, 0] == 0 and grid[0, 10, 0] == 255


def test_score_images_headline_and_nearest_columns():
    """`rmse` / `c_ssim` score each output against its product's first target image (the mean
    of `tf.image.ssim` per image); the `*_nearest` columns against the nearer of the product's
    images, which differs only for the product with two."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    targets = rng.uniform(0, 1, (4, 16, 16, 3)).astype(np.float32)  # products 0, 1, 2, 2
    target_product = np.array([0, 1, 2, 2])
    product = np.array([0, 1, 2])
    first = targets[[0, 1, 2]]
    generated = np.clip(targets[[0, 1, 3]] + rng.normal(0, 0.05, (3, 16, 16, 3)), 0, 1)
    evalset = E.EvalSet(
        split="test", source=generated.astype(np.float32), product=product,
        pids=["a", "b", "c"], first_target=first, targets=targets, target_product=target_product,
    )  # fmt: skip
    out = E.score_images(generated.astype(np.float32), evalset)

    def ssim(a, b):
        return tf.image.ssim(a, b, max_val=1.0, filter_size=11, filter_sigma=1.5).numpy()

    g = generated.astype(np.float32)
    assert_close(out["c_ssim"], float(np.mean(ssim(g, first))), 100)
    nearest = ssim(g, targets[[0, 1, 3]])  # the third output is near product 2's second image
    assert_close(out["c_ssim_nearest"], float(np.mean(nearest)), 100)
    assert out["c_ssim_nearest"] > out["c_ssim"] + 0.1
    rmse_first = np.sqrt(((g.astype(np.float64) - first) ** 2).mean((1, 2, 3)))
    rmse_near = np.sqrt(((g.astype(np.float64) - targets[[0, 1, 3]]) ** 2).mean((1, 2, 3)))
    assert_close(out["rmse"], float(rmse_first.mean()), 16)
    assert_close(out["rmse_nearest"], float(rmse_near.mean()), 16)
