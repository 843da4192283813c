"""``--help`` of every command: exit status 0, no TensorFlow import, one default per option."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

COMMANDS = [
    ("keras_pldt.train",),
    ("keras_pldt.data",),
    ("keras_pldt.data", "verify"),
    ("keras_pldt.data", "synthetic"),
    ("keras_pldt.evaluate",),
    ("keras_pldt.reproduce",),
    ("keras_pldt.export",),
    ("keras_pldt.convert",),
    ("keras_pldt.demo",),
]

# Runs `python -m MODULE ARGS... --help` in this interpreter and appends one JSON line: the exit
# status, the heavy modules imported, and every option of each parser that printed its help.
_CHILD = r"""
import argparse, json, runpy, sys

module, *args = sys.argv[1:]
options = []
_print_help = argparse.ArgumentParser.print_help

def print_help(self, file=None):
    options.extend(
        {"flags": a.option_strings, "help": a.help}
        for a in self._actions
        if a.option_strings and a.help != argparse.SUPPRESS
    )
    return _print_help(self, file)

argparse.ArgumentParser.print_help = print_help
sys.argv = [module, *args, "--help"]
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    code = 0
except SystemExit as e:
    code = e.code
heavy = sorted(m for m in ("tensorflow", "keras", "torch", "jax") if m in sys.modules)
print("\n" + json.dumps({"code": code, "heavy": heavy, "options": options}))
"""


def _exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


@pytest.fixture(scope="module", params=[c for c in COMMANDS if _exists(c[0])], ids=" ".join)
def help_run(request):
    """(command, help text, parsed result line) of ``python -m COMMAND --help``."""
    module, *args = request.param
    env = {**os.environ, "COLUMNS": "2000"}  # one line per option: no wrapped help text
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, module, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    text, _, last = proc.stdout.rstrip("\n").rpartition("\n")
    return " ".join(request.param), text, json.loads(last), proc.stderr


def test_help_exits_zero_without_tensorflow(help_run):
    command, text, result, stderr = help_run
    assert result["code"] == 0, f"{command} --help exited {result['code']}: {stderr}"
    assert "usage:" in text
    assert result["heavy"] == [], f"{command} --help imports {result['heavy']}"
    assert stderr == "", f"{command} --help writes to stderr: {stderr}"


def test_help_shows_one_default_per_option(help_run):
    command, text, result, _ = help_run
    doubled = [line.strip() for line in text.splitlines() if line.count("(default:") > 1]
    assert not doubled, f"{command} --help shows two defaults: {doubled}"


def test_every_option_has_help_text(help_run):
    command, _, result, _ = help_run
    assert result["options"], f"{command} --help printed no options"
    missing = [o["flags"][-1] for o in result["options"] if not (o["help"] or "").strip()]
    assert not missing, f"{command} --help: options without help text: {missing}"
