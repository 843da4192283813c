"""README.md and docs/cli.md stay true.

* Every ``python -m keras_pldt.X ...`` command in README.md (```bash blocks and inline code) uses
  only flags that ``python -m keras_pldt.X [subcommand] --help`` lists, and parses with the
  module's own argparse parser.
* The first two ```bash blocks are the two set-up commands (install and train; ``bash
  tools/test``), and ``tools/test`` installs what the tests need before it runs pytest.
* README.md is at most 200 lines, and every `keras_pldt.module.name` it names exists.
* The ```python API block runs verbatim at a tiny setting: ``keras_pldt.config.get_preset`` and
  ``keras_pldt.data.build_pipelines`` are wrapped so the preset gets a 32 px, width-4 network and
  the embedded synthetic set is a 12-product one (nothing else of the snippet changes).
* every `keras_pldt.module.name` that docs/architecture.md names exists.
* docs/cli.md is the ``--help`` of every command; regenerate it with
  ``python tests/test_readme.py --write-cli-docs``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CLI_DOC = ROOT / "docs" / "cli.md"

#: Commands documented in docs/cli.md: (module, subcommand or None); missing modules skipped.
CLI_COMMANDS = [
    ("keras_pldt.train", None),
    ("keras_pldt.data", None),
    ("keras_pldt.data", "verify"),
    ("keras_pldt.data", "synthetic"),
    ("keras_pldt.evaluate", None),
    ("keras_pldt.reproduce", None),
    ("keras_pldt.export", None),
    ("keras_pldt.convert", None),
    ("keras_pldt.demo", None),
]
#: The README's first two ```bash blocks, exactly: install and train; the test command.
SETUP_BLOCKS = ["pip install -e . && python -m keras_pldt.train", "bash tools/test"]
README_MAX_LINES = 200
HELP_ENV = {"COLUMNS": "100", "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}


# ----------------------------------------------------------------------------- README parsing
def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}[^\n]*\n(.*?)^```", text, flags=re.M | re.S)


def shell_commands(text: str) -> list[str]:
    """Commands of the ```bash blocks (split on && and ;, comments dropped; the body of a
    `for VAR in ...; do ...; done` loop with its variable as 0) and inline
    `python -m keras_pldt...` spans."""
    commands = []
    for block in code_blocks(text, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if not line or line.startswith("#"):
                continue
            for part in re.split(r"&&|;", line):
                part = re.sub(r"\$\{?\w+\}?", "0", part.strip().removeprefix("do ").strip())
                if part and not part.startswith("for ") and part != "done":
                    commands.append(part)
    commands += re.findall(r"`(python -m keras_pldt[^`]*)`", text)
    return commands


def module_commands(commands: list[str]) -> list[tuple[str, list[str]]]:
    """(module, arguments) of each `python -m keras_pldt.X ...` command."""
    out = []
    for command in commands:
        tokens = shlex.split(command)
        if tokens[:2] == ["python", "-m"] and tokens[2].startswith("keras_pldt"):
            out.append((tokens[2], tokens[3:]))
    return out


def run_help(module: str, subcommand: str | None = None) -> str:
    argv = [sys.executable, "-m", module, *([subcommand] if subcommand else []), "--help"]
    env = {**os.environ, **HELP_ENV}
    result = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert result.returncode == 0, f"{' '.join(argv[1:])} failed:\n{result.stderr[-2000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def help_text():
    """`help_text(module, subcommand=None)`: that command's --help, each run once per module."""
    texts: dict[tuple[str, str | None], str] = {}

    def get(module: str, subcommand: str | None = None) -> str:
        if (module, subcommand) not in texts:
            texts[module, subcommand] = run_help(module, subcommand)
        return texts[module, subcommand]

    return get


def subcommands(module: str, help_text) -> list[str]:
    """The subcommands a module's --help lists as {a,b}, if any."""
    match = re.search(r"\{([\w,-]+)\}", help_text(module))
    return match.group(1).split(",") if match else []


def parser_of(module: str):
    mod = importlib.import_module(
        module if module != "keras_pldt.data" else "keras_pldt.data.__main__"
    )
    for factory in ("build_parser", "_parser"):
        if hasattr(mod, factory):
            return getattr(mod, factory)()
    return None


# ----------------------------------------------------------------------------- tests
def test_readme_has_commands():
    commands = shell_commands(README.read_text())
    modules = {m for m, _ in module_commands(commands)}
    assert "keras_pldt.train" in modules and "keras_pldt.export" in modules


def test_setup_commands():
    """The first two ```bash blocks are the set-up commands; `[test]` exists, and tools/test
    installs it, Chromium and the web page's npm packages before it runs pytest."""
    blocks = [b.strip() for b in code_blocks(README.read_text(), "bash")]
    assert blocks[:2] == SETUP_BLOCKS, blocks[:2]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r"^test = \[", pyproject, flags=re.M), "pyproject has no [test] extra"
    script = (ROOT / "tools" / "test").read_text()
    for step in ('pip install -q -e ".[test]"', "/usr/bin/chromium", "npm", "-m pytest"):
        assert step in script, f"tools/test does not run {step}"
    assert script.index(".[test]") < script.index("-m pytest")


def missing_names(text: str) -> list[str]:
    """The `keras_pldt.x.y` names written in backticks in `text` that do not import."""
    missing = []
    for ref in sorted(set(re.findall(r"`(keras_pldt(?:\.\w+)+)`", text))):
        try:
            resolve(ref)
        except (ImportError, AttributeError):
            missing.append(ref)
    return missing


def test_readme_is_short_and_its_names_exist():
    text = README.read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    assert not missing_names(text), f"README.md names what does not exist: {missing_names(text)}"


@pytest.mark.parametrize(
    "module,args",
    module_commands(shell_commands(README.read_text())),
    ids=lambda v: v if isinstance(v, str) else " ".join(v),
)
def test_readme_command_flags(module, args, help_text):
    assert importlib.util.find_spec(module) is not None, f"{module} does not exist"
    sub = args[0] if args and args[0] in subcommands(module, help_text) else None
    text = help_text(module, sub)
    for token in args:
        if token.startswith("--"):
            flag = token.split("=")[0]
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text), (
                f"README: `python -m {module}` uses {flag}, not in its --help"
            )
    parser = parser_of(module)
    if parser is not None and "--help" not in args:
        try:
            parser.parse_args(args)
        except SystemExit as e:  # argparse error: missing required argument, bad choice, ...
            pytest.fail(f"README: `python -m {module} {' '.join(args)}` does not parse ({e})")


def tiny_setting(monkeypatch, tmp_path):
    """Wrap get_preset and build_pipelines so a README snippet runs in seconds."""
    import keras_pldt.config
    import keras_pldt.data
    from keras_pldt.datasets.synthetic import default_dataset

    real_preset, real_build = keras_pldt.config.get_preset, keras_pldt.data.build_pipelines

    def get_preset(name, **overrides):
        tiny = {"image_size": 32, "base_filters": 4, "batch_size": 8, "epochs": 1}
        return real_preset(name, **{**overrides, **tiny})

    def build_pipelines(data=None, manifest=None, **kwargs):
        if data is None and manifest is None:
            data = default_dataset(
                num_products=12, sources_per_product=3, image_size=32, root=tmp_path
            )
        return real_build(data, manifest=manifest, **kwargs)

    monkeypatch.setattr(keras_pldt.config, "get_preset", get_preset)
    monkeypatch.setattr(keras_pldt.data, "build_pipelines", build_pipelines)


def run_snippet(source: str, monkeypatch, tmp_path) -> dict:
    tiny_setting(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(source, "README.md (python block)", "exec"), namespace)
    return namespace


@pytest.mark.slow
def test_readme_python_api_runs(monkeypatch, tmp_path):
    blocks = code_blocks(README.read_text(), "python")
    api = [b for b in blocks if "PLDT(" in b]
    assert api, "README has no ```python block using PLDT"
    namespace = run_snippet(api[0], monkeypatch, tmp_path)
    model = namespace["model"]
    assert model.config.image_size == 32  # the tiny setting reached the snippet
    # A plain compile(); fit() follows the paper's schedule: the decay epochs ran at the
    # decayed rate.
    if model.config.decay_epochs:
        import keras

        rate = float(keras.ops.convert_to_numpy(model.converter_optimizer.learning_rate))
        assert rate == pytest.approx(model.config.decay_learning_rate)
    if "products" in namespace:
        products = namespace["products"]
        assert products.shape[1:] == (32, 32, 3)
        assert abs(products).max() <= 1.0


# ----------------------------------------------------------------------------- docs/architecture.md
def resolve(dotted: str):
    """The object named `keras_pldt.module.attr[.attr]`: longest importable module, then attrs."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def test_architecture_doc_names_exist():
    """Every `keras_pldt.x.y` named in docs/architecture.md imports (functions, classes)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    assert len(set(re.findall(r"`(keras_pldt(?:\.\w+)+)`", text))) > 30
    missing = missing_names(text)
    assert not missing, f"docs/architecture.md names what does not exist: {missing}"
    for eq in ("Eq. 2", "Eq. 5", "Eq. 6", "Algorithm 1", "Table 1", "Sec. 5.2", "Table 3"):
        assert eq in text


# ----------------------------------------------------------------------------- docs/cli.md
def render_cli_doc(help_text=run_help) -> str:
    parts = [
        "# Command-line reference\n",
        "The `--help` of every command, generated by "
        "`python tests/test_readme.py --write-cli-docs` (`tests/test_readme.py` checks that this "
        "file is up to date). Every command also has a `main(argv)` callable from Python.\n",
    ]
    for module, sub in CLI_COMMANDS:
        if importlib.util.find_spec(module) is None:
            continue
        name = f"python -m {module}" + (f" {sub}" if sub else "")
        parts.append(f"## `{name}`\n\n```text\n{help_text(module, sub).rstrip()}\n```\n")
    return "\n".join(parts)


def test_cli_doc_in_sync(help_text):
    assert CLI_DOC.is_file(), "docs/cli.md missing: python tests/test_readme.py --write-cli-docs"
    assert CLI_DOC.read_text() == render_cli_doc(help_text), (
        "docs/cli.md is out of date: python tests/test_readme.py --write-cli-docs"
    )


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-cli-docs"]:
        CLI_DOC.parent.mkdir(exist_ok=True)
        CLI_DOC.write_text(render_cli_doc())
        print(f"wrote {CLI_DOC}")
    else:
        sys.exit("usage: python tests/test_readme.py --write-cli-docs")
