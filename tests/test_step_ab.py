"""benchmarks/step_ab.py: recipes timed in one process, relative to the first."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "step_ab.py"


def _run(tmp_path, *args):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )


def test_every_spec_gets_a_row_relative_to_the_first(tmp_path):
    out = tmp_path / "ab.json"
    specs = ["paper", "paper:spectral_norm=true,diff_augment=translation@keras-batch-norm"]
    proc = _run(
        tmp_path, "--width", "8", "--size", "32", "--batch", "4", "--steps", "1",
        "--alternations", "2", "--out", str(out), *specs,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    (host,) = json.loads(out.read_text())["hosts"].values()
    assert host["machine"]["cpu_flags"]
    (run,) = host["runs"].values()
    assert list(run["rows"]) == specs
    assert run["rows"]["paper"]["vs_first_median"] == 1.0
    other = run["rows"][specs[1]]
    assert other["step_s_best"] > 0
    ratio = other["step_s_best"] / run["rows"]["paper"]["step_s_best"]
    assert other["vs_first_best"] == pytest.approx(ratio, rel=0.01)
    assert specs[1] in proc.stdout


def test_a_bad_field_fails_before_any_timing(tmp_path):
    proc = _run(tmp_path, "--out", str(tmp_path / "ab.json"), "paper", "paper:no_such_field=1")
    assert proc.returncode != 0
    assert "no_such_field" in proc.stderr
    assert not (tmp_path / "ab.json").exists()
