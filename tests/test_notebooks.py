"""The notebooks run top to bottom at a tiny setting, and are committed without outputs.

Each notebook reads its sizes from one parameters cell that environment variables override
(``PLDT_EPOCHS``, ``PLDT_BASE_FILTERS``, ``PLDT_IMAGE_SIZE``, ...); here they are set tiny and
everything the notebook writes goes to ``PLDT_WORKDIR`` (a pytest tmp dir). The kernel's working
directory is ``notebooks/``, as for a user, so relative paths (``../../shared/data/...``) resolve
the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
ALL = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))

TINY = {
    "PLDT_EPOCHS": "1",
    "PLDT_DECAY_EPOCHS": "0",
    "PLDT_BASE_FILTERS": "4",
    "PLDT_IMAGE_SIZE": "32",
    "PLDT_BATCH_SIZE": "8",
    "PLDT_PRODUCTS": "12",
    "PLDT_SOURCES": "3",
    "PLDT_VARIANTS": "rf+dd,mse",  # paper_experiment: two of the Table 3 methods
}


def test_notebooks_exist():
    assert {"quickstart.ipynb", "paper_experiment.ipynb"} <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_committed_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not dirty, f"{name}: cells {dirty} have outputs; run python tools/strip_notebooks.py"


@pytest.mark.parametrize("name", ALL)
def test_one_parameters_cell(name):
    """The first code cell holds the parameters, each overridable by a PLDT_* variable."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert "PLDT_WORKDIR" in code[0] and "PLDT_EPOCHS" in code[0]
    for var in ("PLDT_EPOCHS", "PLDT_BASE_FILTERS", "PLDT_IMAGE_SIZE"):
        assert var in code[0], f"{name}: {var} not in the parameters cell"
        assert not any(var in later for later in code[1:]), f"{name}: {var} read outside it"


def execute(name: str, workdir: Path, monkeypatch, extra: dict[str, str] | None = None):
    """Run a notebook in a fresh kernel (cwd notebooks/) at the tiny setting; raise on error."""
    from nbclient import NotebookClient

    for key, value in {**TINY, **(extra or {})}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PLDT_WORKDIR", str(workdir))
    monkeypatch.setenv("KERAS_PLDT_HOME", str(workdir / "cache"))
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    try:
        client.execute()
    finally:
        nbformat.write(nb, workdir / f"executed_{name}")  # kept for debugging a failure
    assert os.listdir(workdir)
    return nb


def outputs_text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.append(str(out.get("data", {}).get("text/markdown", "")))
    return "\n".join(parts)


def has_image(nb) -> bool:
    return any(
        "image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", [])
    )


@pytest.mark.slow
def test_quickstart_runs(tmp_path, monkeypatch):
    nb = execute("quickstart.ipynb", tmp_path, monkeypatch)
    text = outputs_text(nb)
    assert "RMSE" in text and "C-SSIM" in text and "relevance top1_l2" in text
    assert has_image(nb)
    assert (tmp_path / "run" / "samples" / "epoch_001.png").is_file()
    assert (tmp_path / "run" / "checkpoints" / "state.json").is_file()
    assert (tmp_path / "exported" / "tflite_fp32" / "converter.tflite").is_file()


@pytest.mark.slow
def test_paper_experiment_runs(tmp_path, monkeypatch):
    nb = execute("paper_experiment.ipynb", tmp_path, monkeypatch)
    text = outputs_text(nb)
    assert "RMSE" in text and "C-SSIM" in text
    assert has_image(nb)
