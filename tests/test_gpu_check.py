"""The GPU check's dry run: the same code as on a GPU, tiny and on the CPU, in under a minute."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
RESULTS = ROOT / "benchmarks" / "results" / "gpu.json"

OURS = [
    f"ours/{p}{x}{n}"
    for p in ("float32", "mixed_float16")
    for x in ("", "-xla")
    for n in ("", "-native")
]


def test_dry_run_writes_every_row(tmp_path):
    out = tmp_path / "gpu.json"
    before = RESULTS.stat().st_mtime_ns if RESULTS.exists() else None
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert (RESULTS.stat().st_mtime_ns if RESULTS.exists() else None) == before
    result = json.loads(out.read_text())
    assert result["dry_run"] is True
    host = result["host"]
    assert host["cpu_flags"] and host["tensorflow"] and "gpus" in host

    rows = result["rows"]
    assert set(rows) == {*OURS, "reference/float32", "reference/amp"}
    timed = {k for k, row in rows.items() if "skipped" not in row}
    assert "ours/float32" in timed
    for key in timed:
        row = rows[key]
        assert len(row["step_s"]) == 1 and row["best_step_s"] > 0
        assert math.isclose(row["images_per_s"], row["batch"] / row["best_step_s"], rel_tol=1e-2)
    for key in set(rows) - timed:
        assert rows[key]["skipped"].strip(), key
    ours = rows["ours/float32"]
    assert (ours["width"], ours["precision"], ours["subpixel_convs"]) == (4, "float32", True)
    if "reference/float32" in timed:  # torch installed: the reference is compared
        assert ours["vs_reference"] == "reference/float32" and ours["ratio_best"] > 0
    else:
        assert "torch" in rows["reference/float32"]["skipped"].lower()

    training = result["training"]
    assert training["precision"] == "mixed_float16" and training["compute_dtype"] == "float16"
    history = training["history"]
    assert len(history["converter_loss"]) == training["epochs"] == 2
    losses = [v for k, values in history.items() if k.endswith("loss") for v in values]
    assert losses and all(math.isfinite(v) for v in losses)
    assert training["losses_finite"] is True
    falling = history["converter_loss"][-1] < history["converter_loss"][0] and (
        history["rmse"][-1] < history["rmse"][0]
    )
    assert training["learns"] is falling
    assert f"wrote {out}" in proc.stdout


def test_benchmark_set_changes_our_step_and_not_the_paper_step():
    """`train_step.py --set`: the field over the preset in our step and in the row's key; the
    paper step it is compared with keeps the paper's setting."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_step", SCRIPT.parent / "train_step.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = bench.parser().parse_args(
        ["--preset", "robust", "--set", "joint_domain_batch=false", "--set", "ssim_weight=5"]
    )
    ours, paper = bench.step_config(args, 8), bench.step_config(args, 8, "paper")
    assert (ours.joint_domain_batch, ours.ssim_weight, ours.spectral_norm) == (False, 5.0, True)
    assert (paper.ssim_weight, paper.spectral_norm, paper.base_filters) == (0.0, False, 8)
    key = bench.run_key(args, 8)
    assert "joint_domain_batch=false" in key and "ssim_weight=5" in key
    assert bench.run_key(bench.parser().parse_args([]), 8) == "float32/width8"
