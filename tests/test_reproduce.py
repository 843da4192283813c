"""`python -m keras_pldt.reproduce`: its methods, recipe files, and a tiny run on synthetic data."""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from keras_pldt import reproduce as R
from keras_pldt.config import ROBUST, PLDTConfig, get_preset
from keras_pldt.datasets.synthetic import generate

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "experiments" / "recipes.py"
TABLE2 = ("C+RF", "C+MSE", "C+RF+DD-Neg", "C+RF+DD")
#: Documents whose ```bash blocks hold reproduce commands (README.md may have none).
DOCS = ("experiments/README.md", "docs/results.md", "README.md")


def reproduce_commands(text: str) -> list[list[str]]:
    """Arguments of each `python -m keras_pldt.reproduce ...` line of the ```bash blocks."""
    commands = []
    for block in re.findall(r"^```bash[^\n]*\n(.*?)^```", text, flags=re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            tokens = shlex.split(line, comments=True)
            if tokens[:3] == ["python", "-m", "keras_pldt.reproduce"]:
                commands.append(tokens[3:])
    return commands


def test_method_names():
    assert R.resolve_methods(["C+RF,c-mse", "rf+dd", "C+RF+DD\u2013Neg"]) == [
        "C+RF", "C+MSE", "C+RF+DD", "C+RF+DD-Neg",
    ]  # fmt: skip
    assert R.slug("C+RF+DD-Neg") == "c-rf-dd-neg"
    with pytest.raises(R.ReproduceError, match="unknown method"):
        R.resolve_methods(["C+XYZ"])
    # a new recipe is one dict entry, selectable by label or folder name
    table = R.methods_table([{"C+RF+DD+L1x": {"variant": "rf+dd", "reconstruction_weight": 10.0}}])
    assert R.resolve_methods(["c-rf-dd-l1x"], table) == ["C+RF+DD+L1x"]
    assert "C+RF+DD+L1x" not in R.METHODS
    # a label with a comma in its parentheses stays one name in a comma-separated list
    table = R.methods_table([{"robust(lr2e-4,joint)": {"variant": "rf+dd"}}])
    assert R.resolve_methods(["C+MSE,robust(lr2e-4,joint),C+RF"], table) == [
        "C+MSE", "robust(lr2e-4,joint)", "C+RF",
    ]  # fmt: skip


def test_builtin_methods_are_table2_and_the_recommended_recipe():
    assert len(R.METHODS) <= 6
    assert set(TABLE2) <= set(R.METHODS)
    assert tuple(R.DEFAULT_METHODS) == TABLE2
    assert [R.METHODS[m]["variant"] for m in TABLE2] == ["rf", "mse", "rf+dd-neg", "rf+dd"]
    assert R.METHODS["C+RF+DD+robust"] == {"variant": "rf+dd", **ROBUST}


def test_every_method_line_is_a_valid_config_and_its_own_folder():
    base = get_preset("paper")
    table = R.methods_table([RECIPES])
    configs = {label: R.method_config(base, label, methods=table) for label in table}
    assert len({R.slug(label) for label in table}) == len(table)
    # The preset's method line, at the batch size docs/results.md measured it with.
    assert configs["C+RF+DD+robust"].replace(batch_size=32) == get_preset("robust")
    assert configs["C+MSE+srcaug"].source_augment == get_preset("robust").source_augment
    assert configs["C+MSE+srcaug"].replace(source_augment="") == base.replace(variant="mse")
    # The ablation's base line is the preset at the paper's learning rate without its
    # relevance and structure terms, nothing else.
    terms = {"pixel_contrast_weight": 0.0, "ssim_weight": 0.0}
    assert configs["robust(lr2e-4)"].replace(batch_size=32) == get_preset(
        "robust", learning_rate=2e-4, decay_learning_rate=2e-5, joint_domain_batch=False, **terms
    )
    assert configs["robust(per-pairing)"].replace(batch_size=32) == get_preset(
        "robust", joint_domain_batch=False, **terms
    )
    assert configs["robust(recorded)"].replace(batch_size=32) == get_preset("robust", **terms)
    assert configs["robust+pixel-contrastx2+ssim"].replace(batch_size=32) == get_preset("robust")
    assert not configs["robust(no-srcaug)"].source_augment
    assert configs["robust+ssim"].learning_rate == base.learning_rate


def test_recipes_file_makes_ablation_labels_selectable():
    with pytest.raises(R.ReproduceError, match="unknown method"):
        R.resolve_methods(["robust+ssim"])
    args = R.build_parser().parse_args(
        ["--out", "o", "--recipes", str(RECIPES), "--variants", "robust+ssim,C+MSE"]
    )
    assert args.recipes == [str(RECIPES)]
    table = R.methods_table(args.recipes)
    assert set(R.METHODS) < set(table)
    assert R.resolve_methods(args.variants, table) == ["robust+ssim", "C+MSE"]
    recipe = R.load_recipes(RECIPES)["robust+ssim"]
    assert recipe["ssim_weight"] > 0
    config = R.method_config(R.base_config_from_args(args), "robust+ssim", methods=table)
    for field, value in recipe.items():
        assert getattr(config, field) == value, field
    # loaded by path, not imported as a package
    assert not any(name.split(".")[0] == "experiments" for name in sys.modules)
    # repeatable: the same file twice adds nothing new and clashes with nothing
    argv = ["--out", "o", "--recipes", str(RECIPES), "--recipes", str(RECIPES)]
    assert R.methods_table(R.build_parser().parse_args(argv).recipes) == table
    assert R.methods_table(str(RECIPES)) == table  # one path, not a sequence of characters


@pytest.mark.parametrize("doc", DOCS)
def test_documented_commands_select_valid_methods(doc, monkeypatch):
    """Every documented reproduce command parses, its --recipes load, and each method it names
    is a valid config under the command's settings (nothing is trained)."""
    from keras_pldt.train import explicit_overrides

    monkeypatch.chdir(ROOT)
    commands = reproduce_commands((ROOT / doc).read_text())
    assert commands or doc == "README.md", f"{doc} documents no reproduce command"
    for argv in commands:
        args = R.build_parser().parse_args(argv)
        table = R.methods_table(args.recipes or ())
        base, pinned = R.base_config_from_args(args), explicit_overrides(args)
        for label in R.resolve_methods(args.variants, table):
            R.method_config(base, label, pinned, table)


def test_every_recipe_docs_results_names_has_a_command():
    table = R.methods_table([RECIPES])
    text = (ROOT / "docs" / "results.md").read_text()
    named = set(re.findall(r"(?<!`)`([^`\n]+)`(?!`)", text)) & set(R.load_recipes(RECIPES))
    assert named, "docs/results.md names no line of experiments/recipes.py"
    run = set()
    for argv in reproduce_commands((ROOT / "experiments" / "README.md").read_text()):
        args = R.build_parser().parse_args(argv)
        run.update(R.resolve_methods(args.variants, table))
    assert named <= run, f"no experiments/README.md command runs {sorted(named - run)}"


@pytest.mark.parametrize(
    "text, message",
    [
        (None, "no such file"),
        ("RECIPES = {}\n", "no METHODS dict"),
        ("METHODS = {'C+RF': {'variant': 'mse'}}\n", "already a method"),
        ("METHODS = {'c-rf': {'variant': 'rf'}}\n", "share the run folder"),
        ("METHODS = {'x': {'no_such_field': 1}}\n", "unknown PLDTConfig field"),
        ("METHODS = {\n", "SyntaxError"),
    ],
)
def test_bad_recipes_file_is_a_one_line_error(tmp_path, capsys, text, message):
    path = tmp_path / "recipes.py"
    if text is not None:
        path.write_text(text)
    out = tmp_path / "out"
    assert R.main(["--out", str(out), "--recipes", str(path), "--variants", "C+RF"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --recipes {path}: ") and message in err, err
    assert err.count("\n") == 1, err
    assert not out.exists()


def test_a_recipe_may_repeat_a_builtin_line_unchanged():
    table = R.methods_table([{"C+RF": {"variant": "rf"}}])
    assert table == R.METHODS


def test_help_does_not_import_tensorflow():
    child = (
        "import runpy, sys\n"
        "sys.argv = ['reproduce', '--help']\n"
        "try:\n"
        "    runpy.run_module('keras_pldt.reproduce', run_name='__main__', alter_sys=True)\n"
        "except SystemExit as e:\n"
        "    code = e.code\n"
        "heavy = [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
        "print('RESULT', code, ','.join(heavy) or '-')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "--recipes" in proc.stdout
    assert proc.stdout.rstrip().splitlines()[-1] == "RESULT 0 -", proc.stdout[-300:]


def test_reproduce_tiny_synthetic(tmp_path, capsys):
    root = generate(tmp_path / "syn", num_products=12, sources_per_product=4, image_size=32)
    out = tmp_path / "out"
    argv = [
        "--data", str(root), "--out", str(out), "--preset", "paper", "--image-size", "32",
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
    # resume with a recipe file: C+RF is not retrained, the recipe's line is trained and scored
    recipes = tmp_path / "recipes.py"
    recipes.write_text("METHODS = {'C+MSE+flip': {'variant': 'mse', 'source_augment': 'flip'}}\n")
    stamp = (out / "c-rf" / "converter.keras").stat().st_mtime_ns
    capsys.readouterr()
    argv2 = [*argv, "--variants", "C+RF", "C+MSE+flip", "--recipes", str(recipes)]
    assert R.main(argv2) == 0
    assert "already complete" in capsys.readouterr().out
    assert (out / "c-rf" / "converter.keras").stat().st_mtime_ns == stamp
    result = json.loads((out / "table3.json").read_text())
    assert [r["method"] for r in result["rows"]][:2] == ["C+RF", "C+MSE+flip"]
    assert result["methods"]["C+MSE+flip"]["source_augment"] == "flip"
    config = PLDTConfig.from_json(out / "c-mse-flip" / "config.json")
    assert config.variant == "mse" and config.source_augment == "flip"


def test_reproduce_errors(tmp_path, capsys):
    assert R.main(["--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert R.main(["--out", str(tmp_path / "o"), "--variants", "bogus"]) == 2
    assert "unknown method" in capsys.readouterr().err


def test_set_fields_apply_over_a_methods_own_switches():
    # `reproduce --variants C+RF+DD+robust --set diff_augment=translation` must train with
    # translation only, not silently with the method line's policy.
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
    assert pinned["learning_rate"] == 1e-3 and pinned["seed"] == 3
    assert R.METHODS["C+RF+DD+robust"]["learning_rate"] != 1e-3
    config = R.method_config(R.base_config_from_args(args), "C+RF+DD+robust", pinned)
    assert {k: getattr(config, k) for k in pinned} == pinned


def test_a_set_field_a_method_cannot_use_is_refused_naming_the_method(tmp_path, capsys):
    # `--set joint_domain_batch=true` is valid over `--preset paper` (C+RF+DD) and over
    # C+RF+DD+robust; C+RF has no D_A, so that method refuses it by name.
    from keras_pldt.train import explicit_overrides

    argv = ["--out", "o", "--preset", "paper", "--set", "joint_domain_batch=true"]
    args = R.build_parser().parse_args(argv)
    base, pinned = R.base_config_from_args(args), explicit_overrides(args)
    assert base.joint_domain_batch and pinned["joint_domain_batch"] is True
    assert R.method_config(base, "C+RF+DD+robust", pinned).joint_domain_batch
    with pytest.raises(R.ReproduceError, match="method C\\+RF: joint_domain_batch"):
        R.method_config(base, "C+RF", pinned)
    argv = ["--out", str(tmp_path / "o"), "--preset", "paper", "--variants", "C+RF"]
    assert R.main([*argv, "--set", "joint_domain_batch=true"]) == 2
    assert "method C+RF:" in capsys.readouterr().err
    assert R.main([*argv, "--set", "no_such_field=1"]) == 2
    assert "no_such_field" in capsys.readouterr().err
    assert R.main([*argv, "--set", "hard_negatives=0.5"]) == 2
    assert "hard_negatives" in capsys.readouterr().err
