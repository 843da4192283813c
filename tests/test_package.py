"""The package's shape: nothing changed at import, Algorithm 1 on one screen, small modules."""

import inspect
import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "keras_pldt"

IMPORT_ALL = """
import importlib, json, os, pkgutil, sys
before = dict(os.environ)
import keras_pldt
names = [m.name for m in pkgutil.walk_packages(keras_pldt.__path__, "keras_pldt.")
         if not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
after = dict(os.environ)
changed = {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
           if before.get(k) != after.get(k)}
json.dump({"modules": names, "changed": changed}, sys.stdout)
"""


def test_importing_every_module_leaves_the_environment_unchanged():
    env = {k: v for k, v in __import__("os").environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "KERAS_BACKEND")}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert "keras_pldt.model" in out["modules"] and "keras_pldt.train" in out["modules"]
    assert out["changed"] == {}


def test_train_step_reads_as_algorithm_1_on_one_screen():
    from keras_pldt.model import PLDT

    source = inspect.getsource(PLDT.train_step)
    assert len(source.splitlines()) <= 40
    steps = ["self.converter(batch.source", '"real_fake_discriminator"', '"domain_discriminator"',
             '"converter"']  # fmt: skip
    positions = [source.index(step) for step in steps]
    assert positions == sorted(positions)  # generate, D_R, D_A, then the converter


def test_no_module_is_over_600_lines():
    sizes = {p.name: len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert max(sizes.values()) <= 600, {k: v for k, v in sizes.items() if v > 600}
