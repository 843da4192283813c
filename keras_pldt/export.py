"""Export a trained PLDT converter to SavedModel, TFLite (LiteRT) and ONNX, checked against Keras.

    python -m keras_pldt.export --run-dir runs/demo-rf+dd --out exported/
    python -m keras_pldt.export --model my_converter.keras --out exported/ --formats tflite \\
        --quantize int8 --calibration-data photos/

`--out` gets one folder per row of `TABLE` (savedmodel/, tflite_fp32/, tflite_float16/,
tflite_dynamic/, tflite_int8/, onnx/), each with its model and a `model_card.json`, the run's
config, and `parity.json`: each format's difference to Keras on a fixed batch of real sources
and whether it meets its threshold. It is written into a hidden `.tmp-<pid>-export-*` folder
inside `--out` and moved into place only when every format meets its threshold: on failure
nothing is left. A `--out` folder that exists is kept (never removed or replaced); what the
export creates gets the user's umask. Reading photos, the letterbox and running the models are
`keras_pldt.runtime`'s.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from keras_pldt import __version__, runtime, web
from keras_pldt.cli import fail, quiet_tensorflow
from keras_pldt.errors import ExportError, PLDTError
from keras_pldt.run import (
    CONFIG,
    FINAL,
    SPLIT,
    TEMP_PREFIX,
    load_converter,
    remove_interrupted_writes,
    writable_folder_problem,
)
from keras_pldt.runtime import MODEL_CARD, SAVEDMODEL, Runner
from keras_pldt.runtime import preprocess_photo as preprocess_photo
from keras_pldt.runtime import read_photo as read_photo
from keras_pldt.samples import load_sample, resolve_data, spread

FORMATS = ("savedmodel", "tflite", "onnx")
#: Formats written only when --formats names them: the LiteRT.js page (`keras_pldt.web`).
NAMED_FORMATS = ("web",)
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
TFLITE_NAMES = {q: f"tflite_{'fp32' if q == 'none' else q}" for q in QUANTIZATIONS}
ONNX_OPSET = 17
PARITY = "parity.json"

#: Parity thresholds against Keras on the same normalised batch (pixels in [-1, 1]).
THRESHOLDS: dict[str, float] = {
    "fp32_max_abs": 1e-4,  # SavedModel, TFLite fp32, ONNX
    "float16_max_abs": 1e-2,  # TFLite float16 weights
    "int8_min_psnr_db": 30.0,  # TFLite dynamic-range and full-integer int8
    "uint8_max_levels": 1.0,  # SavedModel `convert_images` vs Keras, in uint8 levels
}
#: threshold -> (the metric it bounds, comparison)
CRITERIA = {
    "fp32_max_abs": ("max_abs", "<="),
    "float16_max_abs": ("max_abs", "<="),
    "int8_min_psnr_db": ("psnr_db", ">="),
    "uint8_max_levels": ("max_abs_levels", "<="),
}
#: --formats value -> (module, pip package) that it needs beyond TensorFlow
NEEDS = {
    "tflite": (("ai_edge_litert.interpreter", "ai-edge-litert"),),
    "web": (("ai_edge_litert.interpreter", "ai-edge-litert"),),
    "onnx": (("tf2onnx", "tf2onnx"), ("onnx", "onnx"), ("onnxruntime", "onnxruntime")),
}

TASK = "Pixel-level domain transfer (Yoo et al. 2016): a garment worn in a photo -> its product"


def _source(run_dir: str | Path | None, model_path: str | Path | None) -> Path:
    """The run folder or `.keras` file to export (`load_converter` loads it); ExportError,
    one line, naming the flag when it is not there."""
    if (run_dir is None) == (model_path is None):
        raise ExportError("give --run-dir or --model (one of them)")
    if run_dir is not None and not Path(run_dir).is_dir():
        raise ExportError(f"--run-dir {run_dir} is not a directory")
    if model_path is not None and not Path(model_path).is_file():
        raise ExportError(f"model file {model_path} does not exist")
    return Path(run_dir if run_dir is not None else model_path)


# ---------------------------------------------------------------------------- parity
def parity_metrics(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """max-abs / mean-abs difference in [-1, 1] units and PSNR (peak-to-peak 2, i.e. [0, 1])."""
    ref, cand = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
    if ref.shape != cand.shape:
        raise ExportError(f"output shape {cand.shape} differs from Keras {ref.shape}")
    diff = np.abs(ref - cand)
    mse = float(np.mean(diff**2))
    psnr = 999.0 if mse == 0 else min(10.0 * math.log10(4.0 / mse), 999.0)
    return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()), "psnr_db": psnr}


def judge(metrics: dict[str, float], threshold: str) -> dict[str, Any]:
    """`metrics` with the criterion of THRESHOLDS[`threshold`] and whether they meet it."""
    (metric, op), bound = CRITERIA[threshold], THRESHOLDS[threshold]
    passed = metrics[metric] <= bound if op == "<=" else metrics[metric] >= bound
    return {**metrics, "metric": metric, "criterion": f"{op} {bound:g}", "pass": bool(passed)}


def _convert_images_levels(runner, photos, reference) -> dict[str, float]:
    """The worst uint8 difference of `convert_images` (photo by photo, any size) to Keras."""
    expected = runtime.to_uint8_np(reference).astype(np.int16)
    worst = 0.0
    for i, photo in enumerate(photos):
        products = runner.photos(photo[None]).astype(np.int16)
        worst = max(worst, float(np.abs(products[0] - expected[i]).max()))
    return {"max_abs_levels": worst}


# ---------------------------------------------------------------------------- writers
def write_savedmodel(model, path: Path) -> None:
    """SavedModel with `serving_default` (float) and `convert_images` (uint8 photos)."""
    import keras
    import tensorflow as tf

    size = int(model.input_shape[1])

    def serve(source):
        return {"target": tf.cast(model(source, training=False), tf.float32)}

    def convert_images(images):  # the letterbox, the model and to_uint8, all in the graph
        products = model(runtime.preprocess(images, size), training=False)
        return {"products": runtime.to_uint8(products)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    spec = tf.TensorSpec([None, size, size, 3], tf.float32, name="source")
    archive.add_endpoint("serving_default", serve, input_signature=[spec])
    spec = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")
    archive.add_endpoint("convert_images", convert_images, input_signature=[spec])
    archive.write_out(str(path), verbose=False)


def write_tflite(
    saved_model_dir: Path, path: Path, quantization: str, calibration: np.ndarray | None = None
) -> None:
    """TFLite from the SavedModel's `serving_default`: fp32 / float16 / dynamic / int8."""
    import tensorflow as tf

    if quantization not in QUANTIZATIONS:
        raise ExportError(f"unknown quantization {quantization!r}; choose from {QUANTIZATIONS}")
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model_dir), signature_keys=["serving_default"]
    )
    if quantization != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        if calibration is None or len(calibration) == 0:
            raise ExportError("int8 quantization needs calibration images")
        samples = np.array(calibration, np.float32)
        # Anchor the input range to the full [-1, 1] (pixel 0 and 255) so that dark or bright
        # photos are not clipped by a calibration set that lacks them: one corner pixel each.
        samples[:, 0, 0, :] = -1.0
        samples[:, -1, -1, :] = 1.0
        converter.representative_dataset = lambda: ([s[None]] for s in samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(converter.convert())


def write_onnx(model, path: Path, opset: int = ONNX_OPSET) -> None:
    """ONNX via tf2onnx (input 'source', output 'target', dynamic batch, NHWC)."""
    import tensorflow as tf

    tf2onnx = runtime.require("tf2onnx", "tf2onnx", "the onnx format")
    onnx = runtime.require("onnx", "onnx", "the onnx format")
    size = int(model.input_shape[1])
    spec = (tf.TensorSpec([None, size, size, 3], tf.float32, name="source"),)
    serve = tf.function(lambda source: tf.cast(model(source, training=False), tf.float32))
    path.parent.mkdir(parents=True, exist_ok=True)
    tf2onnx.convert.from_function(serve, input_signature=spec, opset=opset, output_path=str(path))
    proto = onnx.load(str(path))
    graph = proto.graph
    renames = {graph.input[0].name: "source", graph.output[0].name: "target"}
    for value in [*graph.input, *graph.output]:
        value.name = renames.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    onnx.save(proto, str(path))


# ---------------------------------------------------------------------------- model cards
def _savedmodel_card(fmt: Format, runner: Runner, job: _Job) -> dict[str, Any]:
    square = [-1, job.size, job.size, 3]
    photos = "a batch of same-sized RGB photos, any size"
    convert = [runtime.tensor_card("images", [-1, -1, -1, 3], "uint8", photos)]
    products = [runtime.tensor_card("products", square, "uint8", "generated product images (RGB)")]
    note = "preprocessing and postprocessing are inside the graph"
    serving = (
        [runtime.tensor_card("source", square, "float32", runtime.INPUT)],
        [runtime.tensor_card("target", square, "float32", runtime.OUTPUT)],
    )
    return {
        "format": "TensorFlow SavedModel",
        "signatures": {
            "convert_images": {"inputs": convert, "outputs": products, "note": note},
            "serving_default": {"inputs": serving[0], "outputs": serving[1]},
        },
        "usage": "m = tf.saved_model.load(dir); "
        "m.signatures['convert_images'](images=uint8_batch)['products']",
    }


def _tflite_card(fmt: Format, runner: Runner, job: _Job) -> dict[str, Any]:
    card = {"format": "TFLite (LiteRT) flatbuffer", "signature": "serving_default"}
    card["quantization"] = "fp32" if fmt.quantization == "none" else fmt.quantization
    if fmt.quantization == "int8":
        note = "full-integer int8 (TFLITE_BUILTINS_INT8) with uint8 input/output"
        card["calibration"] = {"images": len(job.calibration), "note": note}
    return {**card, **runner.describe()}


def _onnx_card(fmt: Format, runner: Runner, job: _Job) -> dict[str, Any]:
    return {"format": f"ONNX (opset {ONNX_OPSET}, tf2onnx)", **runner.describe()}


def model_card(fmt: Format, path: Path, runner: Runner, job: _Job, **fields) -> dict[str, Any]:
    """The `model_card.json` of one exported model: what it takes, gives and meets."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return {
        **{"name": fmt.name, "file": path.name, "size_bytes": sum(f.stat().st_size for f in files)},
        **{"image_size": job.size, "task": TASK},
        **fmt.card(fmt, runner, job),
        **fields,
        "preprocessing": {**runtime.PREPROCESSING, "S": job.size},
        "postprocessing": runtime.POSTPROCESSING,
        "config": job.config,
        "versions": job.versions,
    }


# ---------------------------------------------------------------------------- the formats
@dataclass
class _Job:
    """One export: the model, where it goes, and the parts that formats share (made once)."""

    model: Any
    config: dict | None
    tmp: Path
    scratch: Path
    names: list[str]
    calibration_paths: list[Path]
    calibration_samples: int
    log: Callable
    web_model: str = web.DEFAULT_MODEL
    parity: tuple | None = None  # (parity batch, Keras' output): set by _export_into

    size = property(lambda self: int(self.model.input_shape[1]))

    @cached_property
    def savedmodel(self) -> Path:
        """The SavedModel: in the export when chosen, else in scratch (TFLite's source)."""
        path = (self.tmp if SAVEDMODEL in self.names else self.scratch) / SAVEDMODEL
        write_savedmodel(self.model, path)
        return path

    @cached_property
    def versions(self) -> dict[str, str]:
        import keras
        import tensorflow as tf

        return {"keras_pldt": __version__, "keras": keras.__version__, "tensorflow": tf.__version__}

    @cached_property
    def calibration(self) -> np.ndarray:
        paths = spread(self.calibration_paths, self.calibration_samples)
        batch, _ = load_sample(paths, self.size)
        self.log(f"int8 calibration: {len(batch)} images")
        return batch


@dataclass(frozen=True)
class Format:
    """One exported model: its folder, how it is written and run, what it must meet."""

    name: str  # folder under --out and key in parity.json
    family: str  # the --formats value
    threshold: str  # key of THRESHOLDS
    write: Callable[[_Job, Format, Path], Path]  # (job, format, folder) -> model path
    runner: Callable[[Path], Runner]
    card: Callable[[Format, Runner, _Job], dict]  # the model card's fields of this format
    quantization: str | None = None
    checks: tuple = ()  # (name in parity.json, threshold, fn(runner, photos, reference))


def _tflite(job: _Job, fmt: Format, folder: Path) -> Path:
    calibration = job.calibration if fmt.quantization == "int8" else None
    source = job.savedmodel
    if fmt.quantization == "dynamic":  # TFLite's hybrid transposed conv is slow: draw it as convs
        from keras_pldt.kernels import with_subpixel_transposed_convs

        source = job.scratch / "subpixel"
        write_savedmodel(with_subpixel_transposed_convs(job.model), source)
    write_tflite(source, folder / "converter.tflite", fmt.quantization, calibration)
    return folder / "converter.tflite"


def _onnx(job: _Job, fmt: Format, folder: Path) -> Path:
    write_onnx(job.model, folder / "converter.onnx")
    return folder / "converter.onnx"


def _tflite_row(quantization: str, threshold: str) -> Format:
    name = TFLITE_NAMES[quantization]
    runner = runtime.TFLiteRunner
    return Format(name, "tflite", threshold, _tflite, runner, _tflite_card, quantization)


_CONVERT_IMAGES = ("savedmodel_convert_images", "uint8_max_levels", _convert_images_levels)
#: Every exported model, in the order they are written (TFLite converts the SavedModel).
TABLE: tuple[Format, ...] = (
    Format(
        SAVEDMODEL,
        "savedmodel",
        "fp32_max_abs",
        lambda job, fmt, folder: job.savedmodel,
        runtime.SavedModelRunner,
        _savedmodel_card,
        checks=(_CONVERT_IMAGES,),
    ),
    _tflite_row("none", "fp32_max_abs"),
    _tflite_row("float16", "float16_max_abs"),
    _tflite_row("dynamic", "int8_min_psnr_db"),
    _tflite_row("int8", "int8_min_psnr_db"),
    Format("onnx", "onnx", "fp32_max_abs", _onnx, runtime.OnnxRunner, _onnx_card),
    # the page's model meets the threshold of the variant it is (web.WebRunner.threshold)
    Format("web", "web", "int8_min_psnr_db", web.write, web.WebRunner, web.card),
)


def select(formats: Sequence[str], quantize: Sequence[str]) -> list[Format]:
    """The rows of TABLE for `--formats` and `--quantize`; ExportError naming an unknown one."""
    formats = [f.strip().lower() for f in formats]
    quantize = [q.strip().lower() for q in quantize]
    known = (*FORMATS, *NAMED_FORMATS)
    unknown = [("format", f, known) for f in formats if f not in known]
    unknown += [("quantization", q, QUANTIZATIONS) for q in quantize if q not in QUANTIZATIONS]
    for what, value, allowed in unknown[:1]:
        raise ExportError(f"unknown {what} {value!r}; choose from {', '.join(allowed)}")
    return [f for f in TABLE if f.family in formats and f.quantization in (None, *quantize)]


def check_runtimes(selected: Sequence[Format]) -> None:
    """MissingRuntime (naming the pip command) when a chosen format's package is absent."""
    for family in dict.fromkeys(f.family for f in selected):
        for module, package in NEEDS.get(family, ()):
            runtime.require(module, package, f"the {family} format")
    if any(f.family == "web" for f in selected):
        web.require_runtime()


# ---------------------------------------------------------------------------- main flow
def export(
    out: str | Path,
    run_dir: str | Path | None = None,
    model_path: str | Path | None = None,
    formats: Sequence[str] = FORMATS,
    quantize: Sequence[str] = QUANTIZATIONS,
    calibration_data: str | Path | None = None,
    parity_data: str | Path | None = None,
    calibration_samples: int = 64,
    parity_samples: int = 16,
    overwrite: bool = False,
    verbose: bool = True,
    enforce: bool = True,
    web_model: str = web.DEFAULT_MODEL,
) -> dict[str, Any]:
    """Export, check parity, and move the result to `out`. Returns the parity report.

    Raises `ExportError` (leaving `out` as it was) if `out` cannot be written (before any
    model is loaded) or any format misses its threshold, unless `enforce=False` (benchmarks of
    untrained models: the report still records pass/fail), and `MissingRuntime` when a chosen
    format's package is not installed.
    """
    log = print if verbose else (lambda *a, **k: None)
    out = Path(out).absolute()
    selected = select(formats, quantize)
    check_out(out, overwrite)
    check_runtimes(selected)
    model, config = load_converter(_source(run_dir, model_path), with_config=True)
    created = [folder for folder in (out, *out.parents) if not folder.exists()]
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-export-", dir=out))
    try:
        with tempfile.TemporaryDirectory(prefix="pldt-export-") as scratch:
            scratch, size = Path(scratch), int(model.input_shape[1])
            calib, parity, note = resolve_data(
                run_dir, calibration_data, parity_data, size, scratch
            )
            names = [f.name for f in selected]
            job = _Job(model, config, tmp, scratch, names, calib, calibration_samples, log)
            job.web_model = web_model
            report = _export_into(job, selected, spread(parity, parity_samples), note)
        failed = {n: r for n, r in report["formats"].items() if not r["pass"]}
        if failed and enforce:
            lines = "".join(
                f"\n  {n}: {r['metric']} = {r[r['metric']]:.6g}, needs {r['criterion']}"
                for n, r in failed.items()
            )
            raise ExportError(
                f"parity check failed for {', '.join(failed)}{lines}\nnothing was written to {out}"
            )
        _move_into(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in created:  # only the folders this export made, deepest first
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    log(f"exported to {out}")
    return report


def check_out(out: Path, overwrite: bool) -> None:
    """ExportError, one line naming `--out` and the reason, when the export could not be
    written there: a file in the way, a folder this user cannot write, or a non-empty folder
    without `overwrite`. Removes only the temp folders of an export that a kill interrupted."""
    problem = writable_folder_problem(out)
    if problem is not None:
        raise ExportError(f"cannot write --out {out}: {problem}")
    if out.is_dir():
        remove_interrupted_writes(out, recursive=False)
        if any(out.iterdir()) and not overwrite:
            raise ExportError(
                f"--out {out} exists and is not empty (pass --overwrite to replace the export)"
            )


def _move_into(tmp: Path, out: Path) -> None:
    """Move the finished export from `tmp` into `out` (kept as it is): each entry replaces the
    one of the same name, and the entries of an earlier export that this one did not write
    (other formats) are removed; other files of the user stay."""
    written = {entry.name for entry in tmp.iterdir()}
    ours = {fmt.name for fmt in TABLE} | {CONFIG, PARITY}
    for name in sorted(written | (ours - written)):
        target = out / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        if name in written:
            os.replace(tmp / name, target)
    tmp.rmdir()


def _export_into(job: _Job, selected: Sequence[Format], parity: list[Path], note: str):
    """Write every row of `selected` into `job.tmp`, measure it against Keras, describe it."""
    batch, photos = load_sample(parity, job.size)
    job.log(f"parity batch: {len(batch)} images ({note})")
    reference = np.asarray(job.model(batch, training=False), np.float32)
    job.parity = (batch, reference)
    report: dict[str, Any] = {
        "image_size": job.size,
        "data": note,
        "parity_images": [str(p) for p in parity][: len(batch)],
        "thresholds": dict(THRESHOLDS),
        "formats": {},
    }
    if job.config is not None:
        _write_json(job.tmp / CONFIG, job.config)

    def record(name: str, threshold: str, metrics: dict[str, float]) -> dict[str, Any]:
        entry = report["formats"][name] = judge(metrics, threshold)
        detail = ", ".join(f"{k}={v:.3g}" for k, v in metrics.items())
        status = "ok" if entry["pass"] else "FAILED"
        job.log(f"  {name:<26} {detail}  [{entry['metric']} {entry['criterion']}: {status}]")
        return entry

    for fmt in selected:
        start = time.time()
        path = fmt.write(job, fmt, job.tmp / fmt.name)
        seconds = round(time.time() - start, 2)
        runner = fmt.runner(path)
        threshold = getattr(runner, "threshold", fmt.threshold)
        entry = record(fmt.name, threshold, parity_metrics(reference, runner(batch)))
        for name, threshold, check in fmt.checks:
            record(name, threshold, check(runner, photos, reference))
        card = model_card(fmt, path, runner, job, parity=entry, conversion_seconds=seconds)
        _write_json(job.tmp / fmt.name / MODEL_CARD, card)
    _write_json(job.tmp / PARITY, report)
    return report


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, default=str) + "\n")


# ---------------------------------------------------------------------------- command line
def _csv(value: str) -> list[str]:
    return [v for v in (s.strip() for s in value.split(",")) if v]


def build_parser() -> argparse.ArgumentParser:
    t = THRESHOLDS
    parser = argparse.ArgumentParser(
        prog="python -m keras_pldt.export",
        description=(
            "Export a trained PLDT converter to SavedModel, TFLite (fp32/float16/dynamic/int8) "
            f"and ONNX, with a {MODEL_CARD} next to each model and a parity check against "
            f"Keras (written to {PARITY}). Fails with exit code 1, writing nothing, if any "
            f"format misses its threshold: fp32 formats max-abs <= {t['fp32_max_abs']:g}, "
            f"float16 <= {t['float16_max_abs']:g}, dynamic/int8 PSNR >= "
            f"{t['int8_min_psnr_db']:g} dB. The calibration and parity photos default to the "
            f"run's training and validation photos ({SPLIT}), else a generated synthetic set."
        ),
        epilog=(
            "examples:\n"
            "  python -m keras_pldt.export --run-dir runs/demo-rf+dd --out exported\n"
            f"  python -m keras_pldt.export --model runs/demo-rf+dd/{FINAL} --out exported "
            "--formats tflite --quantize int8 --calibration-data photos/\n"
            "Then: python -m keras_pldt.convert --model exported/tflite_int8/converter.tflite "
            "--input photo.jpg --output products/"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--run-dir", type=Path, help=f"a training run folder (its {FINAL})")
    src.add_argument("--model", type=Path, dest="model_path", metavar="MODEL", help="a .keras file")
    add = parser.add_argument
    add("--out", type=Path, required=True, help="output folder (created)")
    add(
        "--formats",
        type=_csv,
        default=list(FORMATS),
        help=f"subset of {','.join(FORMATS)} (all), or any of them and web: a static page "
        "that runs the converter in the browser (LiteRT.js; see export/README.md)",
    )
    add(
        "--quantize",
        type=_csv,
        default=list(QUANTIZATIONS),
        help="TFLite variants: subset of none (fp32),float16,dynamic,int8 (all)",
    )
    add(
        "--calibration-data",
        type=Path,
        help="folder of photos that calibrate int8 (and "
        "give the parity batch unless --parity-data)",
    )
    add("--parity-data", type=Path, help="folder of photos for the parity batch")
    add("--calibration-samples", type=int, default=64, help="photos that calibrate int8 (64)")
    add("--parity-samples", type=int, default=16, help="photos in the parity batch (16)")
    add("--overwrite", action="store_true", help="replace a non-empty --out (only on success)")
    add(
        "--web-model",
        choices=web.MODELS,
        default=web.DEFAULT_MODEL,
        help="the web page's TFLite variant: auto (default) is the smallest that meets its "
        "parity threshold, int8 first",
    )
    add("--quiet", action="store_true", help="print only errors, not each format's parity")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    options = vars(build_parser().parse_args(argv))
    quiet_tensorflow()
    try:
        export(verbose=not options.pop("quiet"), **options)
    except PLDTError as error:
        return fail("export failed", error, 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
