"""`experiments/attribute_probe.py`: which synthetic attributes D_A's score and the code read."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_pldt.config import get_preset
from keras_pldt.datasets.synthetic import generate
from keras_pldt.train import train

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "attribute_probe.py"


@pytest.fixture
def probe():
    spec = importlib.util.spec_from_file_location("attribute_probe_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shares_tell_the_attributes_a_score_reads_from_those_it_ignores(probe):
    looks = probe.looks()
    rng = np.random.default_rng(0)
    own = [looks[i] for i in rng.integers(len(looks), size=20)]
    # A critic that reads colour only: every look of the source's colour scores 1, others 0.
    colour_only = np.array([[float(look[1] == o[1]) for look in looks] for o in own])
    shares = probe.attribute_shares(colour_only, own, looks)
    assert shares["domain_colour"] == 1.0
    assert shares["domain_category"] == shares["domain_pattern"] == 0.5
    # The source's own look alone scores highest: every attribute told apart, rank 1.
    exact = np.array([[float(look == o) for look in looks] for o in own])
    shares = probe.attribute_shares(exact, own, looks)
    assert shares["own_look_top1"] == 1.0
    assert all(shares[f"domain_{a}"] == 1.0 for a in probe.ATTRIBUTES)
    # Reversed, it is never first and loses every comparison.
    shares = probe.attribute_shares(-exact, own, looks)
    assert shares["own_look_top5"] == 0.0 and shares["domain_pattern"] == 0.0


def test_code_probe_reads_a_linearly_coded_label(probe):
    rng = np.random.default_rng(1)
    labels = {
        k: list(rng.choice(["a", "b", "c"], size=n)) for k, n in (("train", 300), ("test", 60))
    }
    codes = {}
    for split, y in labels.items():
        onehot = np.eye(3)[[("a", "b", "c").index(v) for v in y]]
        codes[split] = np.concatenate([onehot, rng.normal(size=(len(y), 5))], 1) * 3.0
    assert probe.code_probe(codes, labels) > 0.95
    noise = {k: rng.normal(size=v.shape) for k, v in codes.items()}
    assert probe.code_probe(noise, labels) < 0.7


def test_command_scores_a_run_folder(tmp_path):
    data = generate(tmp_path / "syn", num_products=12, sources_per_product=4, image_size=32)
    config = get_preset(
        "demo", image_size=32, base_filters=4, batch_size=8, epochs=1, decay_epochs=0,
        test_fraction=0.25,
    )  # fmt: skip
    run = tmp_path / "run"
    train(config, run, data=data, verbose=0, print_fn=lambda *a, **k: None)
    out = tmp_path / "probe.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(run), "--json", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = json.loads(out.read_text())
    keys = [f"{part}_{a}" for part in ("domain", "code") for a in ("category", "colour", "pattern")]
    assert all(0.0 <= row[k] <= 1.0 for k in keys), row
    assert f"| {run} |" in done.stdout
