"""`python -m keras_pldt.evaluate`: Table 3 metrics of a trained run, plus reference rows.

For the run's converter on a split (test by default, the split saved in the run's split.json)::

    python -m keras_pldt.evaluate --run-dir runs/demo-rf+dd

writes into the run folder ``eval.json`` (every number), ``eval.md`` (tables in the layout of
Table 3) and ``figure5.png`` (rows of source | generated | ground truth).

Rows: the run's method, and reference rows that need no converter training: *Mean target* (the
mean training target image for every source), *NN pixel retrieval* (the first target of the
product of the training source nearest in pixel space) and, for runs with a domain
discriminator, *Retrieval by DD-score* (Table 2: the training product image with the highest D_A
score for the source; ``--dd-diagnostics`` adds how D_A ranks the evaluated products). On the
synthetic dataset (an ``attributes.csv`` next to the images) the colour and category accuracy of
the outputs are added, with a *Ground truth* sanity row.

Metrics are defined in :mod:`keras_pldt.metrics`. The headline RMSE / C-SSIM compare with the
**first** target image of the source's product (the target the data pipeline pairs with a test
source); ``*_nearest`` columns compare with the product's closest target image instead (the
same when a product has one target image).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
from pathlib import Path

import numpy as np


class _LazyModule:
    """A module imported on first attribute access (keeps ``--help`` free of TensorFlow)."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str):
        return getattr(importlib.import_module(self._name), attr)


M = _LazyModule("keras_pldt.metrics")  # metrics imports TensorFlow
tf = _LazyModule("tensorflow")
networks = _LazyModule("keras_pldt.networks")

from keras_pldt.errors import EvalError, PLDTError  # noqa: E402
from keras_pldt.run import WEIGHTS, RunFolder, atomic_write, load_converter  # noqa: E402

EVAL_JSON, EVAL_MD, FIGURE = "eval.json", "eval.md", "figure5.png"


# ----------------------------------------------------------------------------- data
@dataclasses.dataclass
class EvalSet:
    """One split as numpy, images in [0, 1]."""

    split: str
    source: np.ndarray  # [N, S, S, 3]
    product: np.ndarray  # int [N]: index into pids
    pids: list[str]
    first_target: np.ndarray  # [N, S, S, 3]: first target image of each source's product
    targets: np.ndarray  # [M, S, S, 3]: every target image of the split's products
    target_product: np.ndarray  # int [M]
    attributes: dict | None = None  # pid -> {category, colour, ...} (synthetic data)

    @property
    def num_products(self) -> int:
        return len(self.pids)


def _rows_to_images(pipelines, rows: np.ndarray) -> np.ndarray:
    """uint8 [len(rows), S, S, 3] of image-table rows of `pipelines`."""
    rows = np.asarray(rows, np.int64)
    cache = getattr(pipelines, "_images", None)
    if cache is not None:
        return cache.numpy()[rows] if len(rows) else np.zeros((0,) + tuple(cache.shape[1:]))
    from keras_pldt.data import decode_and_preprocess_uint8

    size = pipelines.image_size
    out = [
        decode_and_preprocess_uint8(tf.io.read_file(pipelines.paths[r]), size).numpy() for r in rows
    ]
    return np.stack(out) if out else np.zeros((0, size, size, 3), np.uint8)


def split_targets(pipelines, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(every target image of the split's products in [0, 1], product index of each)."""
    sd = pipelines.splits[split]
    product = np.repeat(np.arange(sd.num_products), sd.target_count)
    return M.uint8_to_unit(_rows_to_images(pipelines, sd.target_rows)), product


def _read_attributes(pipelines) -> dict | None:
    root = Path(getattr(pipelines.data, "root", "") or "")
    if not (root / "attributes.csv").is_file():
        return None
    from keras_pldt.datasets.synthetic import read_attributes

    return read_attributes(root)


def load_eval_set(pipelines, split: str = "test") -> EvalSet:
    if split not in pipelines.splits:
        raise EvalError(f"unknown split {split!r}; have {sorted(pipelines.splits)}")
    sd = pipelines.splits[split]
    if sd.num_sources == 0:
        raise EvalError(f"the {split} split has no source images; try --split val or train")
    arrays = pipelines.load_split_arrays(split)
    targets, target_product = split_targets(pipelines, split)
    return EvalSet(
        split=split,
        source=M.to_unit(arrays["source"]),
        product=np.asarray(arrays["product"], np.int64),
        pids=[str(p) for p in arrays["pids"]],
        first_target=M.to_unit(arrays["target"]),
        targets=targets,
        target_product=target_product,
        attributes=_read_attributes(pipelines),
    )


# ----------------------------------------------------------------------------- metrics
def attribute_scores(images: np.ndarray, evalset: EvalSet) -> dict:
    """Colour / category accuracy on the synthetic dataset (empty dict elsewhere)."""
    attrs = evalset.attributes
    if not attrs:
        return {}
    from keras_pldt.datasets.synthetic import CATEGORIES, PALETTE, category_template

    known = [i for i, p in enumerate(evalset.product) if evalset.pids[p] in attrs]
    if not known:
        return {}
    truth = [attrs[evalset.pids[evalset.product[i]]] for i in known]
    size = images.shape[1]
    templates = {c: category_template(c, size) for c in CATEGORIES}
    colours = M.colour_predictions(images[known], PALETTE)
    cats = M.category_predictions(images[known], templates)
    return {
        "colour_acc": float(
            np.mean([c == t["colour"] for c, t in zip(colours, truth, strict=True)])
        ),
        "category_acc": float(
            np.mean([c == t["category"] for c, t in zip(cats, truth, strict=True)])
        ),
        "colour_chance": 1.0 / len(PALETTE),
        "category_chance": 1.0 / len(CATEGORIES),
    }


def score_images(generated: np.ndarray, evalset: EvalSet) -> dict:
    """Every metric of generated images [N] (in [0, 1], one per source of `evalset`)."""
    g = np.asarray(generated, np.float32)
    if g.shape != evalset.source.shape:
        raise ValueError(f"generated {g.shape} does not match sources {evalset.source.shape}")
    first = evalset.first_target
    # every (output, target image) distance once: retrieval and the *_nearest columns share them
    distances = {
        "l2": M.pairwise_l2(g, evalset.targets),
        "ssim": M.pairwise_ssim_distance(g, evalset.targets),
    }
    own = evalset.target_product[None, :] == evalset.product[:, None]
    rmse_nearest = np.where(own, distances["l2"], np.inf).min(1)
    ssim_first = M.cssim_per_image(g, first)
    # C-SSIM to the nearest own target: only products with several target images differ.
    several = own.sum(1) > 1
    ssim_nearest = ssim_first.copy()
    ssim_nearest[several] = np.where(own, 1.0 - distances["ssim"], -np.inf)[several].max(1)
    out = {
        "n": int(len(g)),
        "rmse": M.rmse(g, first),
        "c_ssim": float(np.mean(ssim_first)),
        "rmse_nearest": float(np.mean(rmse_nearest)),
        "c_ssim_nearest": float(np.mean(ssim_nearest)),
        "sharpness": M.sharpness_ratio(g, first),
        **M.spectral_gap_details(g, first),
        **M.grid_contrast_details(g, first),
    }
    out.update(
        M.retrieval_scores(
            g,
            evalset.product,
            evalset.targets,
            evalset.target_product,
            evalset.num_products,
            distances=distances,
        )
    )
    out.update(attribute_scores(g, evalset))
    return out


# ----------------------------------------------------------------------------- models
def _config(run_dir: Path):
    """(PLDTConfig, config.json as saved) of a run folder."""
    run = RunFolder(run_dir)
    return run.config(), run.saved()


def load_pldt(run_dir: str | Path, weights: str = "last"):
    """The full PLDT (converter and discriminators) of a run from its checkpoint
    (`RunFolder.load_model`)."""
    return RunFolder(run_dir).load_model(weights)


def generate(converter, source01: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The converter's outputs in [0, 1] for sources in [0, 1]."""
    x = np.asarray(source01, np.float32) * 2.0 - 1.0
    out = [
        np.asarray(converter(x[i : i + batch_size], training=False), np.float32)
        for i in range(0, len(x), batch_size)
    ]
    return M.to_unit(np.concatenate(out)) if out else np.zeros_like(x)


# ----------------------------------------------------------------------------- reference rows
@dataclasses.dataclass
class TrainingSet:
    source: np.ndarray  # [Ns] in [0, 1]
    source_product: np.ndarray  # [Ns]
    targets: np.ndarray  # [Mt] in [0, 1]
    target_product: np.ndarray  # [Mt]


def load_training_set(pipelines) -> TrainingSet:
    sd = pipelines.splits["train"]
    targets, target_product = split_targets(pipelines, "train")
    source = M.uint8_to_unit(_rows_to_images(pipelines, sd.source_rows))
    return TrainingSet(source, np.asarray(sd.source_product), targets, target_product)


def mean_target_baseline(evalset: EvalSet, train: TrainingSet) -> np.ndarray:
    mean = train.targets.mean(0, keepdims=True)
    return np.repeat(mean, len(evalset.source), 0).astype(np.float32)


def nn_pixel_baseline(evalset: EvalSet, train: TrainingSet) -> np.ndarray:
    """The first target of the product of the nearest training source (pixel L2)."""
    nearest = M.pairwise_l2(evalset.source, train.source).argmin(1)
    first = {}
    for i, p in enumerate(train.target_product):
        first.setdefault(int(p), i)
    return train.targets[[first[int(train.source_product[j])] for j in nearest]]


def dd_scores(model, source01: np.ndarray, candidates01: np.ndarray, batch: int = 512):
    """float32 [N, M]: D_A's logit "associated" for every (source, candidate target) pair, in
    inference mode (batch norm's moving statistics, the spectral-normalised kernels as saved, no
    DiffAugment); images in [0, 1], paired as in training (source, then target, on channels).
    About ``batch`` pairs per call, built in D_A's compute dtype inside one traced function
    (the pairs never exist as float32 arrays). A D_A of `networks` passes each image through its
    first conv once and adds the two halves per pair (`networks.split_pair_conv`)."""
    d_a = model.domain_discriminator
    if d_a is None:
        raise EvalError("retrieval by DD-score needs a run with a domain discriminator (rf+dd)")
    dtype = getattr(d_a, "compute_dtype", "float32")
    split = networks.split_pair_conv(d_a)
    if split is None:  # any callable on the channel-stacked pair

        def prepare(cand):
            return cand

        def score(src, cand):  # [a, ...], [b, ...] -> [a * b] logits, source-major
            a, b = tf.shape(src)[0], tf.shape(cand)[0]
            pair = tf.concat([tf.repeat(src, b, axis=0), tf.tile(cand, [a, 1, 1, 1])], axis=-1)
            return d_a(pair, training=False)

    else:
        half, rest = split

        def prepare(cand):
            return half(cand, 1)

        def score(src, cand):
            both = half(src, 0)[:, None] + cand[None]
            return rest(tf.reshape(both, tf.concat([[-1], tf.shape(cand)[1:]], 0)))

    @tf.function(reduce_retracing=True)
    def candidates(cand):  # [b, S, S, 3] in [-1, 1] -> what `logits` pairs with the sources
        return prepare(tf.cast(cand, dtype))

    @tf.function(reduce_retracing=True)
    def logits(src, cand):  # [a, S, S, 3] in [-1, 1], candidates([b, ...]) -> [a, b]
        out = score(tf.cast(src, dtype), cand)
        return tf.reshape(tf.cast(out, tf.float32), [tf.shape(src)[0], tf.shape(cand)[0]])

    src = np.asarray(source01, np.float32) * 2.0 - 1.0
    cand = np.asarray(candidates01, np.float32) * 2.0 - 1.0
    n, m = len(src), len(cand)
    scores = np.empty((n, m), np.float32)
    per_call = max(1, min(m, batch))
    sources = max(1, batch // per_call)
    for cs in range(0, m, per_call):
        block = candidates(tf.constant(cand[cs : cs + per_call]))
        for s in range(0, n, sources):
            scores[s : s + sources, cs : cs + per_call] = logits(src[s : s + sources], block)
    return scores


def dd_retrieval_baseline(model, evalset: EvalSet, train: TrainingSet, batch: int = 512):
    """Table 2's "Retrieval by DD-score": for each source the training product image with the
    highest D_A(source, image) score (`dd_scores`)."""
    scores = dd_scores(model, evalset.source, train.targets, batch)
    return train.targets[scores.argmax(1)]


def dd_diagnostics(model, evalset: EvalSet, retrieved: np.ndarray) -> dict:
    """Extra keys of the DD-score row, which tell a D_A that judges association from one that
    judges only how its candidate looks:

    * ``dd_unique_retrievals``: how many different images the retrieval returned (1 when the
      candidate's own score outweighs the source for every source);
    * ``dd_split_top1`` / ``dd_split_top5``: top-k of the true product when D_A's scores rank the
      evaluated split's products (each by its best-scored image) for each source; chance k / P.
    """
    flat = np.asarray(retrieved).reshape(len(retrieved), -1)
    scores = dd_scores(model, evalset.source, evalset.targets)
    distance = M.product_distances(-scores, evalset.target_product, evalset.num_products)
    return {
        "dd_unique_retrievals": int(len(np.unique(flat, axis=0))),
        "dd_split_top1": M.retrieval_topk(distance, evalset.product, 1),
        "dd_split_top5": M.retrieval_topk(distance, evalset.product, 5),
    }


# ----------------------------------------------------------------------------- output
def showcase(evalset: EvalSet, count: int = 8) -> list[int]:
    from keras_pldt.train import showcase_rows

    return showcase_rows(evalset.product, count)


def image_grid(columns: list[np.ndarray], rows: list[int], gap: int = 2) -> np.ndarray:
    """uint8 grid: one row per index in `rows`, one column per image array (in [0, 1])."""
    s = columns[0].shape[1]
    h, w = len(rows) * (s + gap) - gap, len(columns) * (s + gap) - gap
    grid = np.full((max(h, 1), max(w, 1), 3), 255, np.uint8)
    for r, i in enumerate(rows):
        for c, col in enumerate(columns):
            img = np.clip(np.asarray(col[i], np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
            grid[r * (s + gap) : r * (s + gap) + s, c * (s + gap) : c * (s + gap) + s] = img
    return grid


def write_png(path: Path, image: np.ndarray) -> None:
    from keras_pldt.callbacks import encode_png

    atomic_write(path, encode_png(image))


def _fmt(v, digits=3):
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    return f"{v:.{digits}f}"


def markdown_tables(rows: list[dict], info: dict | None = None) -> str:
    """Table 3 layout: left the automatic stand-ins for the user study (realism = sharpness,
    spectral gap and grid contrast, attributes/category = retrieval and, on synthetic data,
    colour/category accuracy), right the pixel-level (dis)similarity."""
    has_attr = any("colour_acc" in r for r in rows)
    lines = []
    if info:
        lines.append(
            f"Split `{info.get('split')}`: {info.get('num_sources')} sources of "
            f"{info.get('num_products')} products; images {info.get('image_size')} px, "
            "values in [0, 1]."
        )
        shared = info.get("test_products_in_train")
        if shared:
            lines[-1] += (
                f" {shared} of the {info.get('num_products')} evaluated products also have "
                "(other) images in the training split, so retrieval rows can return the true "
                "product."
            )
        lines.append("")
    lines.append("**Relevance and realism** (automatic stand-in for the user study)")
    lines.append("")
    columns = {"Sharpness": "sharpness", "Spectral gap": "spectral_gap"}  # header: row key
    columns |= {"Grid contrast": "grid_contrast", "Top-1 L2": "top1_l2", "Top-5 L2": "top5_l2"}
    columns |= {"Top-1 SSIM": "top1_ssim", "Top-5 SSIM": "top5_ssim"}
    if has_attr:
        columns |= {"Colour acc": "colour_acc", "Category acc": "category_acc"}
    lines += ["| " + " | ".join(["Methods", *columns]) + " |", "|" + "---|" * (len(columns) + 1)]
    for r in rows:
        cells = [r["method"], *(_fmt(r.get(k), 2) for k in columns.values())]
        lines.append("| " + " | ".join(cells) + " |")
    if rows:  # top1_l2: top1_chance, colour_acc: colour_chance; realism has no chance level
        chance = [_fmt(rows[0].get(k.split("_")[0] + "_chance"), 2) for k in columns.values()]
        lines.append("| " + " | ".join(["*chance*", *chance]) + " |")
    lines += ["", "**Pixel-level (dis)similarity** (headline: first target image of the product)"]
    lines.append("")
    head = ["Methods", "RMSE", "C-SSIM", "RMSE (nearest)", "C-SSIM (nearest)"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["method"]] + [
            _fmt(r.get(k)) for k in ("rmse", "c_ssim", "rmse_nearest", "c_ssim_nearest")
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Sharpness: gradient energy of the outputs / that of the real targets (1 = as sharp). "
        "Spectral gap: the largest |log10| ratio of the outputs' power at one frequency (1-D "
        "spectra along rows and columns) to the real targets' (0 = the real spectrum; blur and "
        "grid or blocky artefacts raise it; a retrieval row shows the range of real photos). "
        "Grid contrast: how differently from the real targets the outputs place their gradient "
        "energy on the 2-, 4- and 8-px lattices of the decoder's finest stages (0 = as the real "
        "photos; texture on the lattice raises it at any power; read it beside sharpness). "
        "Top-k: the true product among the k test products whose target image is nearest to the "
        "output (pixel L2 or 1 - C-SSIM). C-SSIM: tf.image.ssim, max_val 1, 11-px Gaussian "
        "window, sigma 1.5, k1 0.01, k2 0.03, averaged over RGB.",
    ]
    return "\n".join(lines) + "\n"


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(type(o))


def write_json(path: Path, obj) -> None:
    text = json.dumps(obj, indent=2, default=_json_default)
    atomic_write(path, (text + "\n").encode())


# ----------------------------------------------------------------------------- run evaluation
METHOD_LABELS = {
    "rf+dd": "C+RF+DD (Ours)",
    "rf": "C+RF",
    "mse": "C+MSE",
    "rf+dd-neg": "C+RF+DD-Neg",
}


def data_of_run(run_dir: Path, data=None, manifest=None):
    """(data, manifest) to evaluate a run on: the arguments, else the run's config.json."""
    if data is not None or manifest is not None:
        return data, manifest
    _, saved = _config(run_dir)
    return saved.get("data"), saved.get("manifest")


def build_eval_pipelines(run_dir: Path, config, data=None, manifest=None, verbose=False):
    from keras_pldt.data import build_pipelines

    return build_pipelines(
        data, manifest=manifest, image_size=config.image_size, batch_size=config.batch_size,
        seed=config.seed, run_dir=run_dir, cache=True, reverse=config.reverse,
        val_fraction=config.val_fraction, test_fraction=config.test_fraction, verbose=verbose,
    )  # fmt: skip


def shared_products(pipelines, split: str) -> int:
    """How many products of `split` also appear in the training split (folder splits may share
    product ids between train/ and test/)."""
    if split == "train":
        return 0
    return len(set(pipelines.splits[split].pids) & set(pipelines.splits["train"].pids))


DD_ROW = "Retrieval by DD-score"


def reference_rows(evalset: EvalSet, train: TrainingSet, dd_model=None) -> dict[str, np.ndarray]:
    """Outputs of the methods that need no converter: label -> images [N] in [0, 1]."""
    out = {}
    if dd_model is not None:
        out[DD_ROW] = dd_retrieval_baseline(dd_model, evalset, train)
    out["NN pixel retrieval"] = nn_pixel_baseline(evalset, train)
    out["Mean target"] = mean_target_baseline(evalset, train)
    if evalset.attributes:
        out["Ground truth"] = evalset.first_target
    return out


def evaluate_run(
    run_dir: str | Path,
    data=None,
    manifest=None,
    split: str = "test",
    weights: str = "last",
    baselines: bool = True,
    figure_rows: int = 8,
    verbose: bool = False,
    diagnostics: bool = False,
) -> dict:
    """Evaluate a run folder; writes eval.json, eval.md, figure5.png there; returns eval.json.
    ``diagnostics`` adds `dd_diagnostics`' keys to the DD-score row (D_A on every pair of a
    source and an evaluated product image: as many pairs again as the row itself)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EvalError(f"run folder {run_dir} does not exist")
    config, _ = _config(run_dir)
    data, manifest = data_of_run(run_dir, data, manifest)
    converter = load_converter(run_dir, weights)
    pipelines = build_eval_pipelines(run_dir, config, data, manifest, verbose)
    evalset = load_eval_set(pipelines, split)
    generated = generate(converter, evalset.source)
    label = METHOD_LABELS.get(config.variant, config.variant)
    outputs = {label: generated}
    if baselines:
        dd_model = load_pldt(run_dir, "last" if weights == "converter" else weights)
        dd_model = dd_model if dd_model.domain_discriminator is not None else None
        outputs.update(reference_rows(evalset, load_training_set(pipelines), dd_model))
    rows = [{"method": k, **score_images(v, evalset)} for k, v in outputs.items()]
    if diagnostics and DD_ROW in outputs:
        rows[list(outputs).index(DD_ROW)].update(dd_diagnostics(dd_model, evalset, outputs[DD_ROW]))
    info = {
        "run_dir": str(run_dir),
        "data": data,
        "manifest": manifest,
        "split": split,
        "weights": weights,
        "num_sources": int(len(evalset.source)),
        "num_products": evalset.num_products,
        "image_size": config.image_size,
        "variant": config.variant,
        "test_products_in_train": shared_products(pipelines, split),
        "ssim_settings": M.SSIM_SETTINGS,
        "headline": "rmse/c_ssim against the first target image of the source's product",
    }
    result = {**info, "rows": rows}
    write_json(run_dir / EVAL_JSON, result)
    text = f"# Evaluation of {run_dir.name}\n\n" + markdown_tables(rows, info)
    atomic_write(run_dir / EVAL_MD, text.encode())
    picks = showcase(evalset, figure_rows)
    write_png(
        run_dir / FIGURE, image_grid([evalset.source, generated, evalset.first_target], picks)
    )
    return result


def build_parser() -> argparse.ArgumentParser:
    from keras_pldt.cli import HelpFormatter

    p = argparse.ArgumentParser(
        prog="python -m keras_pldt.evaluate",
        description="Evaluate a trained PLDT run as in Table 3 (RMSE, C-SSIM) plus relevance "
        "(retrieval top-k), realism (sharpness, spectral gap, grid contrast) and, on synthetic "
        "data, colour/category accuracy. Writes "
        "eval.json, eval.md and figure5.png into the run folder.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--run-dir", required=True, help="run folder made by python -m keras_pldt.train")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data", help="dataset folder (default: the run's config.json 'data')")
    src.add_argument("--manifest", help="CSV manifest (default: the run's config.json)")
    p.add_argument(
        "--split",
        default="test",
        choices=("train", "val", "test"),
        help="split of the run's split.json to evaluate",
    )
    p.add_argument(
        "--weights",
        default="last",
        choices=WEIGHTS,
        help="last/best checkpoint, or the final converter.keras",
    )
    p.add_argument("--no-baselines", action="store_true", help="skip the reference rows")
    p.add_argument("--figure-rows", type=int, default=8, help="rows of figure5.png")
    p.add_argument(
        "--dd-diagnostics",
        action="store_true",
        help="add to the DD-score row how D_A ranks the evaluated products for each source "
        "(dd_split_top1/5, dd_unique_retrievals in eval.json): D_A on as many pairs again",
    )
    p.add_argument(
        "--verbose", action="store_true", help="also print the dataset summary (files, skipped)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from keras_pldt.cli import fail

    try:
        result = evaluate_run(
            args.run_dir, data=args.data, manifest=args.manifest, split=args.split,
            weights=args.weights, baselines=not args.no_baselines,
            figure_rows=args.figure_rows, verbose=args.verbose,
            diagnostics=args.dd_diagnostics,
        )  # fmt: skip
    except PLDTError as e:
        return fail("error", e)
    print(markdown_tables(result["rows"], result))
    print(f"wrote {Path(args.run_dir) / EVAL_JSON}, {EVAL_MD}, {FIGURE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
