"""`python -m keras_pldt.reproduce`: Table 3 and Figure 5 of the paper in one command.

Trains the Table 2 methods with identical settings and seeds (one run folder per method under
``--out``, through :func:`keras_pldt.train.train`, so finished runs are not retrained and
interrupted ones resume), evaluates them and the retrieval / reference rows on the test split
with :mod:`keras_pldt.evaluate`, and writes ``table3.md``, ``table3.json`` and ``figure5.png``
(source | C+RF | C+MSE | C+RF+DD | ground truth) into ``--out``::

    python -m keras_pldt.reproduce --data path/to/lookbook --out runs/reproduce \\
        --image-size 64 --base-filters 32 --batch-size 32 --epochs 20 --decay-epochs 5

:data:`METHODS` holds Table 2's four converters, the recommended recipe and its baseline. Other
recipes live in Python files with a module-level ``METHODS`` dict of the same form (label ->
PLDTConfig overrides), such as ``experiments/recipes.py``; ``--recipes FILE`` (or
``reproduce(..., recipes=[FILE])``) makes their labels selectable with ``--variants``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from keras_pldt.config import ROBUST, PLDTConfig
from keras_pldt.errors import PLDTError, ReproduceError, RunError

#: Method label -> PLDTConfig overrides, applied over the run's base settings.
METHODS: dict[str, dict[str, Any]] = {
    # Table 2's converters.
    "C+RF": {"variant": "rf"},
    "C+MSE": {"variant": "mse"},
    "C+RF+DD-Neg": {"variant": "rf+dd-neg"},
    "C+RF+DD": {"variant": "rf+dd"},
    # The recommended recipe: C+RF+DD with the `robust` preset's switches.
    "C+RF+DD+robust": {"variant": "rf+dd", **ROBUST},
    # Its fair baseline: C+MSE with the recipe's source augmentation.
    "C+MSE+srcaug": {"variant": "mse", "source_augment": ROBUST["source_augment"]},
}
DEFAULT_METHODS = ("C+RF", "C+MSE", "C+RF+DD-Neg", "C+RF+DD")
#: The method whose domain discriminator scores "Retrieval by DD-score" (Table 2).
DD_METHOD = "C+RF+DD"
#: Converter columns of figure5.png (those that were run), between source and ground truth.
FIGURE_METHODS = ("C+RF", "C+MSE", "C+RF+DD")
DD_RETRIEVAL = "Retrieval by DD-score"
OURS_SUFFIX = " (Ours)"

#: A methods table: label -> PLDTConfig overrides.
Methods = dict[str, dict[str, Any]]


def slug(label: str) -> str:
    """Run folder name of a method label: 'C+RF+DD-Neg' -> 'c-rf-dd-neg'."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def _checked(methods: Any, where: str) -> Methods:
    """`methods` as a methods table, or a one-line error naming `where` it came from."""
    if not isinstance(methods, Mapping):
        raise ReproduceError(f"{where}: no METHODS dict (label -> PLDTConfig overrides)")
    fields = {f.name for f in dataclasses.fields(PLDTConfig)}
    table = {}
    for label, overrides in methods.items():
        if not isinstance(label, str) or not slug(label) or not isinstance(overrides, Mapping):
            raise ReproduceError(
                f"{where}: METHODS[{label!r}] must map a label to a dict of PLDTConfig fields"
            )
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ReproduceError(f"{where}: {label}: unknown PLDTConfig field {unknown[0]!r}")
        table[label] = dict(overrides)
    return table


def load_recipes(path: str | os.PathLike) -> Methods:
    """The ``METHODS`` dict of the Python file at `path`, loaded by path (not imported as a
    package)."""
    path = Path(path)
    where = f"--recipes {path}"
    if not path.is_file():
        raise ReproduceError(f"{where}: no such file")
    spec = importlib.util.spec_from_file_location(f"_pldt_recipes_{slug(path.stem)}", path)
    if spec is None or spec.loader is None:
        raise ReproduceError(f"{where}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # the user's file: its error in one line, not a traceback
        raise ReproduceError(f"{where}: {type(e).__name__}: {e}") from None
    return _checked(getattr(module, "METHODS", None), where)


def methods_table(
    recipes: str | os.PathLike | Mapping | Sequence[str | os.PathLike | Mapping] = (),
) -> Methods:
    """:data:`METHODS` plus `recipes`: paths of recipe files (see :func:`load_recipes`) or
    label -> overrides dicts. A label may repeat a built-in one only with the same overrides,
    and no two labels may share a run folder. A single path or dict counts as a list of one."""
    if isinstance(recipes, (str, os.PathLike, Mapping)):
        recipes = [recipes]
    table = {label: dict(overrides) for label, overrides in METHODS.items()}
    folders = {slug(label): label for label in table}
    for item in recipes:
        if isinstance(item, Mapping):
            where, extra = "recipes", _checked(item, "recipes")
        else:
            where, extra = f"--recipes {item}", load_recipes(item)
        for label, overrides in extra.items():
            if label in table:
                if table[label] != overrides:
                    raise ReproduceError(
                        f"{where}: {label!r} is already a method with other overrides "
                        f"({table[label]}); give the recipe another label"
                    )
                continue
            other = folders.get(slug(label))
            if other is not None:
                raise ReproduceError(
                    f"{where}: {label!r} and {other!r} would share the run folder "
                    f"{slug(label)!r}; give the recipe another label"
                )
            table[label] = overrides
            folders[slug(label)] = label
    return table


def resolve_methods(names, methods: Mapping[str, Mapping[str, Any]] | None = None) -> list[str]:
    """Method labels from names: labels of `methods` (default :data:`METHODS`; any case, '-'
    or '–'), their folder slugs, or PLDTConfig variant names ('rf+dd')."""
    methods = METHODS if methods is None else methods
    by_key = {}
    for label, overrides in methods.items():
        by_key[label.lower()] = label
        by_key[slug(label)] = label
        by_key.setdefault(str(overrides.get("variant", "")), label)
    out = []
    for name in names:
        for part in re.split(r",(?![^()]*\))", str(name)):  # not the commas of a label's (...)
            key = part.strip().replace("\u2013", "-").replace("\u2212", "-").lower()
            if not key:
                continue
            label = by_key.get(key) or by_key.get(slug(key))
            if label is None:
                raise ReproduceError(
                    f"unknown method {part.strip()!r}; choose from {', '.join(methods)} "
                    "(or add recipe files with --recipes)"
                )
            if label not in out:
                out.append(label)
    if not out:
        raise ReproduceError("no method selected")
    return out


def method_config(
    base, label: str, pinned: dict[str, Any] | None = None, methods: Mapping | None = None
):
    """`base` with the method's switches (from `methods`, default :data:`METHODS`), then the
    `pinned` fields (explicit settings) over them, each by :meth:`PLDTConfig.override` (the
    switches a variant or a pinned field leaves without use reset)."""
    methods = METHODS if methods is None else methods
    try:
        return base.override(**methods[label]).override(**(pinned or {}))
    except (TypeError, ValueError) as e:
        raise ReproduceError(f"method {label}: {e}") from None


def display(label: str) -> str:
    return label + OURS_SUFFIX if label == DD_METHOD else label


def table_order(labels: list[str], reference: list[str]) -> list[str]:
    """Table 3's row order: the baselines, retrieval by DD-score, ours last; then references."""
    converters = [m for m in labels if m != DD_METHOD]
    rows = converters + ([DD_RETRIEVAL] if DD_RETRIEVAL in reference else [])
    rows += [DD_METHOD] if DD_METHOD in labels else []
    return rows + [r for r in reference if r != DD_RETRIEVAL]


def reproduce(
    base_config,
    out: str | Path,
    data=None,
    manifest=None,
    methods=DEFAULT_METHODS,
    split: str = "test",
    weights: str = "last",
    verbose: int = 0,
    print_fn=print,
    pinned: dict[str, Any] | None = None,
    recipes: str | os.PathLike | Mapping | Sequence[str | os.PathLike | Mapping] = (),
) -> dict:
    """Train (or resume / skip) each method, evaluate all, write table3.{md,json}, figure5.png.

    `methods` are names of :data:`METHODS` or of the `recipes` (recipe files or dicts, see
    :func:`methods_table`). `pinned` fields (the command line's explicit settings) apply to
    every method, over its own switches."""
    table = methods_table(recipes)
    labels = resolve_methods(methods, table)
    configs = {label: method_config(base_config, label, pinned, table) for label in labels}

    from keras_pldt import evaluate as E
    from keras_pldt.train import train

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    run_dirs = {label: out / slug(label) for label in labels}
    for label in labels:
        print_fn(f"== {label}: {run_dirs[label]}")
        train(configs[label], run_dirs[label], data=data, manifest=manifest, verbose=verbose,
              print_fn=print_fn)  # fmt: skip
    first = labels[0]
    pipelines = E.build_eval_pipelines(run_dirs[first], configs[first], data, manifest)
    evalset = E.load_eval_set(pipelines, split)
    trainset = E.load_training_set(pipelines)
    outputs = {}
    for label in labels:
        converter = E.load_converter(run_dirs[label], weights)
        outputs[label] = E.generate(converter, evalset.source)
    dd_model = None
    if DD_METHOD in labels:
        dd_model = E.load_pldt(run_dirs[DD_METHOD], "last" if weights == "converter" else weights)
    reference = E.reference_rows(evalset, trainset, dd_model)
    outputs.update(reference)
    rows = []
    for name in table_order(labels, list(reference)):
        print_fn(f"evaluating {name}")
        rows.append({"method": display(name), **E.score_images(outputs[name], evalset)})
    info = {
        "data": str(data) if data else None,
        "manifest": str(manifest) if manifest else None,
        "split": split,
        "weights": weights,
        "num_sources": int(len(evalset.source)),
        "num_products": evalset.num_products,
        "num_train_products": int(pipelines.splits["train"].num_products),
        "image_size": base_config.image_size,
        "test_products_in_train": E.shared_products(pipelines, split),
        "settings": base_config.to_dict(),
        "methods": {
            label: {"run_dir": str(run_dirs[label]), **table[label], **(pinned or {})}
            for label in labels
        },
        "headline": "rmse/c_ssim against the first target image of the source's product",
    }
    result = {**info, "rows": rows}
    E.write_json(out / "table3.json", result)
    settings = ", ".join(
        f"{k} {getattr(base_config, k)}"
        for k in ("image_size", "base_filters", "batch_size", "epochs", "decay_epochs", "seed")
    )
    header = (
        f"# Table 3 (reproduction)\n\nData: `{data or manifest or 'synthetic default'}`; "
        f"settings: {settings}; weights: {weights}.\n\n"
    )
    (out / "table3.md").write_text(header + E.markdown_tables(rows, info))
    columns = [evalset.source]
    columns += [outputs[m] for m in FIGURE_METHODS if m in outputs]
    columns += [outputs[m] for m in labels if m not in FIGURE_METHODS and m not in DEFAULT_METHODS]
    columns.append(evalset.first_target)
    E.write_png(out / "figure5.png", E.image_grid(columns, E.showcase(evalset, 8)))
    return result


def build_parser() -> argparse.ArgumentParser:
    from keras_pldt.cli import HelpFormatter
    from keras_pldt.train import add_config_arguments, add_data_arguments

    p = argparse.ArgumentParser(
        prog="python -m keras_pldt.reproduce",
        description="Train C+RF, C+MSE, C+RF+DD-Neg and C+RF+DD with identical settings, "
        "evaluate them with retrieval by DD-score and reference rows, and write Table 3 "
        "(table3.md, table3.json) and Figure 5 (figure5.png) into --out. Re-running resumes; "
        "finished runs are not retrained. Settings given on the command line (flags and --set "
        "FIELD=VALUE) apply to every method, over the method's own switches.",
        formatter_class=HelpFormatter,
    )
    add_data_arguments(p)
    p.add_argument("--out", required=True, help="output folder: one run folder per method")
    add_config_arguments(p, variant=False)
    p.add_argument(
        "--variants",
        nargs="+",
        default=list(DEFAULT_METHODS),
        metavar="METHOD",
        help=f"methods to train: {', '.join(METHODS)} or a label of a --recipes file "
        "(comma- or space-separated; variant names like rf+dd work too)",
    )
    p.add_argument(
        "--recipes",
        action="extend",
        nargs="+",
        metavar="FILE",
        help="Python file with a METHODS dict (label -> PLDTConfig overrides) whose labels "
        "--variants may select, e.g. experiments/recipes.py (repeatable)",
    )
    p.add_argument(
        "--split", default="test", choices=("train", "val", "test"), help="split to evaluate"
    )
    p.add_argument(
        "--weights",
        default="last",
        choices=("last", "best", "converter"),
        help="last/best checkpoint or the final converter.keras of each run",
    )
    p.add_argument("--verbose", action="store_true", help="Keras progress bars")
    return p


def base_config_from_args(args):
    """The preset with the command line's settings. The --set fields also apply over each
    method's own switches (`pinned`): a method that cannot use one is named."""
    from keras_pldt.train import resolve_config

    try:
        return resolve_config(args)
    except RunError as e:
        raise ReproduceError(str(e)) from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from keras_pldt.cli import fail, quiet_tensorflow

    quiet_tensorflow(args.verbose)
    from keras_pldt.evaluate import markdown_tables
    from keras_pldt.train import explicit_overrides

    try:
        if args.data and not Path(args.data).exists():
            raise ReproduceError(f"--data {args.data} does not exist")
        config = base_config_from_args(args)
        result = reproduce(
            config, args.out, data=args.data, manifest=args.manifest, methods=args.variants,
            split=args.split, weights=args.weights, verbose=1 if args.verbose else 0,
            pinned=explicit_overrides(args), recipes=args.recipes or (),
        )  # fmt: skip
    except PLDTError as e:
        return fail("error", e)
    print(markdown_tables(result["rows"], result))
    print(f"wrote {Path(args.out) / 'table3.md'}, table3.json, figure5.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
