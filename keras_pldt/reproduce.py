"""`python -m keras_pldt.reproduce`: Table 3 and Figure 5 of the paper in one command.

Trains the Table 2 methods with identical settings and seeds (one run folder per method under
``--out``, through :func:`keras_pldt.train.train`, so finished runs are not retrained and
interrupted ones resume), evaluates them and the retrieval / reference rows on the test split
with :mod:`keras_pldt.evaluate`, and writes ``table3.md``, ``table3.json`` and ``figure5.png``
(source | C+RF | C+MSE | C+RF+DD | ground truth) into ``--out``::

    python -m keras_pldt.reproduce --data path/to/lookbook --out runs/reproduce \\
        --image-size 64 --base-filters 32 --batch-size 32 --epochs 20 --decay-epochs 5

New recipes are one line in :data:`METHODS` (a label -> PLDTConfig overrides) and then
selectable with ``--variants``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from keras_pldt.config import ROBUST

#: The robust preset of session 4 (Adam at the paper's 2e-4): the base of its ablation lines.
_ROBUST_LR2 = {**ROBUST, "learning_rate": 2e-4, "decay_learning_rate": 2e-5}
#: The robust preset of session 2 (no source augmentation): the base of the first ablation.
_ROBUST_NOAUG = {**_ROBUST_LR2, "source_augment": ""}
_ROBUST_TRANSPOSED = {**_ROBUST_NOAUG, "upsampling": "transposed"}

#: Method label -> PLDTConfig overrides (on top of the shared settings). Table 2's converters.
METHODS: dict[str, dict[str, Any]] = {
    "C+RF": {"variant": "rf"},
    "C+MSE": {"variant": "mse"},
    "C+RF+DD-Neg": {"variant": "rf+dd-neg"},
    "C+RF+DD": {"variant": "rf+dd"},
    # Beyond the paper (issue 10): one line per recipe; run with --variants C+RF+DD+robust.
    "C+RF+DD+robust": {"variant": "rf+dd", **ROBUST},
    # Controls: C+MSE with the preset's source augmentation; the preset without it.
    "C+MSE+srcaug": {"variant": "mse", "source_augment": ROBUST["source_augment"]},
    "robust(no-srcaug)": _ROBUST_NOAUG,
    # Single switches on top of the session-4 preset (docs/results.md, "ablation on the
    # preset" and "where the blur comes from"), at its learning rate 2e-4.
    "robust(lr2e-4)": _ROBUST_LR2,
    "robust+ssim": {**_ROBUST_LR2, "ssim_weight": 100.0},
    "robust+patchD": {**_ROBUST_LR2, "real_fake_patches": True},
    "robust+L1x0.3": {**_ROBUST_LR2, "reconstruction_weight": 30.0},
    "robust+srcaug4": {**_ROBUST_LR2, "source_augment": "flip,crop,rotate,light"},
    "robust+flip-only": {**_ROBUST_LR2, "source_augment": "flip"},
    "robust+GDL": {**_ROBUST_LR2, "gradient_weight": 100.0},
    "robust+FFL": {**_ROBUST_LR2, "frequency_weight": 100.0},
    # The first ablation: single switches on top of the session-2 recipe with Table 1's
    # transposed-conv decoder (the recipe that ablation started from), then on the resize one.
    "robust(transposed)": _ROBUST_TRANSPOSED,
    "C+RF+DD+L1": {"variant": "rf+dd", "reconstruction_weight": 100.0},
    "robust+lowpass4": {**_ROBUST_TRANSPOSED, "reconstruction_lowpass": 4},
    "robust+lowpass8": {**_ROBUST_TRANSPOSED, "reconstruction_lowpass": 8},
    "robust+hinge": {**_ROBUST_TRANSPOSED, "adversarial_loss": "hinge"},
    "robust+lsgan": {**_ROBUST_TRANSPOSED, "adversarial_loss": "lsgan"},
    "robust+R1": {**_ROBUST_TRANSPOSED, "r1_weight": 1.0},
    "robust+TTUR": {**_ROBUST_TRANSPOSED, "discriminator_lr_multiplier": 2.0},
    "robust+dropout": {**_ROBUST_TRANSPOSED, "discriminator_dropout": 0.2},
    "robust+EMA": {**_ROBUST_TRANSPOSED, "ema_decay": 0.9},
    "robust+resize+lowpass4": {**_ROBUST_NOAUG, "reconstruction_lowpass": 4},
    "robust(no-srcaug)+identity": {**_ROBUST_NOAUG, "identity_weight": 100.0},
}
DEFAULT_METHODS = ("C+RF", "C+MSE", "C+RF+DD-Neg", "C+RF+DD")
#: The method whose domain discriminator scores "Retrieval by DD-score" (Table 2).
DD_METHOD = "C+RF+DD"
#: Converter columns of figure5.png (those that were run), between source and ground truth.
FIGURE_METHODS = ("C+RF", "C+MSE", "C+RF+DD")
DD_RETRIEVAL = "Retrieval by DD-score"
OURS_SUFFIX = " (Ours)"


class ReproduceError(RuntimeError):
    """A problem the user can fix; printed as one line."""


def slug(label: str) -> str:
    """Run folder name of a method label: 'C+RF+DD-Neg' -> 'c-rf-dd-neg'."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def resolve_methods(names) -> list[str]:
    """Method labels from names: labels of METHODS (any case, '-' or '–'), their folder slugs,
    or PLDTConfig variant names ('rf+dd')."""
    by_key = {}
    for label, overrides in METHODS.items():
        by_key[label.lower()] = label
        by_key[slug(label)] = label
        by_key.setdefault(str(overrides.get("variant", "")), label)
    out = []
    for name in names:
        for part in str(name).split(","):
            key = part.strip().replace("\u2013", "-").replace("\u2212", "-").lower()
            if not key:
                continue
            label = by_key.get(key) or by_key.get(slug(key))
            if label is None:
                raise ReproduceError(
                    f"unknown method {part.strip()!r}; choose from {', '.join(METHODS)}"
                )
            if label not in out:
                out.append(label)
    if not out:
        raise ReproduceError("no method selected")
    return out


def method_config(base, label: str, pinned: dict[str, Any] | None = None):
    """`base` with the method's switches, then the `pinned` fields (explicit settings) over
    them."""
    try:
        return base.replace(**{**METHODS[label], **(pinned or {})})
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
) -> dict:
    """Train (or resume / skip) each method, evaluate all, write table3.{md,json}, figure5.png.

    `pinned` fields (the command line's explicit settings) apply to every method, over its
    own switches."""
    from keras_pldt import evaluate as E
    from keras_pldt.train import train

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    labels = resolve_methods(methods)
    run_dirs = {label: out / slug(label) for label in labels}
    configs = {label: method_config(base_config, label, pinned) for label in labels}
    for label in labels:
        print_fn(f"== {label}: {run_dirs[label]}")
        train(configs[label], run_dirs[label], data=data, manifest=manifest, verbose=verbose,
              print_fn=print_fn)  # fmt: skip
    first = labels[0]
    pipelines = E.build_eval_pipelines(run_dirs[first], configs[first], data, manifest)
    evalset = E.load_eval_set(pipelines, split)
    trainset = E.load_training_set(pipelines)
    outputs: dict[str, np.ndarray] = {}
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
            label: {"run_dir": str(run_dirs[label]), **METHODS[label], **(pinned or {})}
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
    from keras_pldt.evaluate import DefaultsFormatter
    from keras_pldt.train import add_config_arguments, add_data_arguments

    p = argparse.ArgumentParser(
        prog="python -m keras_pldt.reproduce",
        description="Train C+RF, C+MSE, C+RF+DD-Neg and C+RF+DD with identical settings, "
        "evaluate them with retrieval by DD-score and reference rows, and write Table 3 "
        "(table3.md, table3.json) and Figure 5 (figure5.png) into --out. Re-running resumes; "
        "finished runs are not retrained. Settings given on the command line (flags and --set "
        "FIELD=VALUE) apply to every method, over the method's own switches.",
        formatter_class=DefaultsFormatter,
    )
    add_data_arguments(p)
    p.add_argument("--out", required=True, help="output folder: one run folder per method")
    add_config_arguments(p, variant=False)
    p.add_argument(
        "--variants",
        nargs="+",
        default=list(DEFAULT_METHODS),
        metavar="METHOD",
        help=f"methods to train (labels of METHODS: {', '.join(METHODS)}; "
        "comma- or space-separated; variant names like rf+dd work too)",
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
    from keras_pldt.train import RunError, resolve_config

    try:
        return resolve_config(args)
    except RunError as e:
        raise ReproduceError(str(e)) from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from keras_pldt.data import DataError
    from keras_pldt.evaluate import EvalError, markdown_tables
    from keras_pldt.train import RunError, explicit_overrides

    try:
        if args.data and not Path(args.data).exists():
            raise ReproduceError(f"--data {args.data} does not exist")
        config = base_config_from_args(args)
        result = reproduce(
            config, args.out, data=args.data, manifest=args.manifest, methods=args.variants,
            split=args.split, weights=args.weights, verbose=1 if args.verbose else 0,
            pinned=explicit_overrides(args),
        )  # fmt: skip
    except (ReproduceError, RunError, DataError, EvalError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(markdown_tables(result["rows"], result))
    print(f"wrote {Path(args.out) / 'table3.md'}, table3.json, figure5.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
