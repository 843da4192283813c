"""The `web` export: a static page that runs the converter in the browser with LiteRT.js.

    python -m keras_pldt.export --run-dir RUN --out exported --formats web
    cd exported/web && python -m http.server 8000   # then open http://<this host>:8000/

`--out`/web/ holds `index.html`, `app.js`, `photo.js` and `ui.js` (this package's `page/`),
`converter.tflite` (batch 1: LiteRT.js refuses a dynamic batch), its `model_card.json` (which the
page shows and reads the tensors' quantization from) and `litert/`: LiteRT.js (`@litertjs/core`
and `@litertjs/wasm-utils`, pinned in `package.json` / `package-lock.json` here) copied from
`node_modules/` after `npm ci --prefix keras_pldt/web`. The page loads nothing from another
origin, so it runs from any static host, offline, and the photo stays in the browser.

The model is the smallest TFLite variant that meets its parity threshold against Keras (int8,
then dynamic-range, float16, fp32), or the one `--web-model` names.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from keras_pldt.runtime import MissingRuntime, TFLiteRunner

HERE = Path(__file__).resolve().parent
PAGE = HERE / "page"
NODE_MODULES = HERE / "node_modules"
INSTALL = f"npm ci --prefix {HERE}"
FOLDER = "web"
MODEL_FILE = "converter.tflite"
PAGE_FILES = ("index.html", "app.js", "photo.js", "ui.js")
#: node_modules file -> its place under the page's litert/ (the import map names the two .js)
RUNTIME_FILES = {
    "@litertjs/core/dist/index.js": "core.js",
    "@litertjs/wasm-utils/dist/index.js": "wasm-utils.js",
    **{
        f"@litertjs/core/wasm/{name}": f"wasm/{name}"
        for kind in ("", "compat_", "threaded_")
        for name in (f"litert_wasm_{kind}internal.js", f"litert_wasm_{kind}internal.wasm")
    },
}
#: TFLite variants from the smallest file to the largest, and the threshold each must meet.
VARIANTS = {
    "int8": "int8_min_psnr_db",
    "dynamic": "int8_min_psnr_db",
    "float16": "float16_max_abs",
    "none": "fp32_max_abs",
}
#: --web-model values: "auto" is the first of VARIANTS that meets its threshold.
MODELS = ("auto", *VARIANTS)
DEFAULT_MODEL = "auto"


def runtime_version() -> str | None:
    """The installed @litertjs/core version, or None."""
    try:
        return json.loads((NODE_MODULES / "@litertjs/core/package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def pinned_version() -> str:
    return json.loads((HERE / "package.json").read_text())["dependencies"]["@litertjs/core"]


def require_runtime() -> None:
    """MissingRuntime, naming the npm command, unless the pinned LiteRT.js is installed."""
    missing = [name for name in RUNTIME_FILES if not (NODE_MODULES / name).is_file()]
    version, pinned = runtime_version(), pinned_version()
    if missing or version != pinned:
        found = "missing" if missing else f"version {version}"
        raise MissingRuntime(
            f"the web format needs LiteRT.js {pinned} ({found} in {NODE_MODULES}): {INSTALL}"
        )


def _variant_of(interpreter) -> str:
    """The quantization a .tflite was written with, read from its tensors."""
    if interpreter.get_input_details()[0]["dtype"] != np.float32:
        return "int8"
    dtypes = {np.dtype(t["dtype"]) for t in interpreter.get_tensor_details()}
    if np.dtype(np.float16) in dtypes:
        return "float16"
    return "dynamic" if np.dtype(np.int8) in dtypes else "none"


class WebRunner(TFLiteRunner):
    """The page's batch-1 `.tflite` in Python LiteRT, one image per call; `.quantization` and
    `.threshold` (the key of `keras_pldt.export.THRESHOLDS` it must meet) come from the file."""

    kind = "tflite"

    def __init__(self, path: str | Path, num_threads: int | None = None):
        super().__init__(path, num_threads)
        self.quantization = _variant_of(self.interpreter)
        self.threshold = VARIANTS[self.quantization]

    def __call__(self, x):
        one = super().__call__
        x = np.asarray(x, np.float32)
        return np.concatenate([one(x[i : i + 1]) for i in range(len(x))])


def write_batch1_tflite(job, quantization: str, path: Path) -> None:
    """`job.model` as a TFLite of input [1, S, S, 3] (the export's `write_tflite`)."""
    import keras
    import tensorflow as tf

    from keras_pldt import export

    model = job.model
    if quantization == "dynamic":  # as the export's dynamic-range model: convs, not transposed
        from keras_pldt.kernels import with_subpixel_transposed_convs

        model = with_subpixel_transposed_convs(model)
    saved = job.scratch / f"web-savedmodel-{quantization}"
    archive = keras.export.ExportArchive()
    archive.track(model)
    spec = tf.TensorSpec([1, job.size, job.size, 3], tf.float32, name="source")
    serve = lambda source: {"target": tf.cast(model(source, training=False), tf.float32)}
    archive.add_endpoint("serving_default", serve, input_signature=[spec])
    archive.write_out(str(saved), verbose=False)
    calibration = job.calibration if quantization == "int8" else None
    export.write_tflite(saved, path, quantization, calibration)


def write(job, fmt, folder: Path) -> Path:
    """The page folder: the model (chosen against `job.parity`), the page, LiteRT.js."""
    from keras_pldt import export

    require_runtime()
    batch, reference = job.parity
    choice = job.web_model
    if choice not in MODELS:
        raise export.ExportError(f"unknown web model {choice!r}; choose from {', '.join(MODELS)}")
    candidates = list(VARIANTS) if choice == "auto" else [choice]
    path = folder / MODEL_FILE
    for quantization in candidates:
        write_batch1_tflite(job, quantization, path)
        metrics = export.parity_metrics(reference, WebRunner(path)(batch))
        entry = export.judge(metrics, VARIANTS[quantization])
        name = "fp32" if quantization == "none" else quantization
        job.log(f"  web: {name} {entry['metric']} = {entry[entry['metric']]:.3g}")
        if entry["pass"]:
            break
    for name in PAGE_FILES:
        shutil.copyfile(PAGE / name, folder / name)
    for source, target in RUNTIME_FILES.items():
        (folder / "litert" / target).parent.mkdir(parents=True, exist_ok=True)
        data = (NODE_MODULES / source).read_bytes()
        if target.endswith(".js"):  # no source map to look for
            data = b"\n".join(
                line for line in data.split(b"\n") if not line.startswith(b"//# sourceMappingURL=")
            )
        (folder / "litert" / target).write_bytes(data)
    version = runtime_version()
    (folder / "litert" / "README.txt").write_text(
        f"LiteRT.js: @litertjs/core and @litertjs/wasm-utils {version} from the npm registry\n"
        "(https://www.npmjs.com/package/@litertjs/core), Apache License 2.0,\n"
        "https://github.com/google-ai-edge/LiteRT\n"
    )
    return path


def page_bytes(folder: Path) -> dict[str, int]:
    """What a browser downloads to open the page (the wasm build it picks) and convert a photo."""
    files = [folder / n for n in PAGE_FILES] + [folder / MODEL_FILE, folder / "model_card.json"]
    files += [folder / "litert" / n for n in ("core.js", "wasm-utils.js")]
    wasm = folder / "litert" / "wasm"
    single = sum(p.stat().st_size for p in wasm.glob("litert_wasm_internal.*"))
    threaded = sum(p.stat().st_size for p in wasm.glob("litert_wasm_threaded_internal.*"))
    common = sum(p.stat().st_size for p in files if p.is_file())
    return {"single_thread": common + single, "threaded": common + threaded}


def _rows(card_size: int, quantization: str, job) -> list[tuple[str, str]]:
    from keras_pldt.cards import training_rows

    name = "fp32" if quantization == "none" else quantization
    rows = [
        ("format", f"TFLite (LiteRT) flatbuffer, {name}, run by LiteRT.js {runtime_version()}"),
        ("model size", f"{card_size / 1e6:.2f} MB"),
        ("image size", f"{job.size} × {job.size}"),
    ]
    return rows + training_rows(job.config)


def card(fmt, runner: WebRunner, job) -> dict[str, Any]:
    """The model card's fields of the page's model; `web.rows` is what the page shows."""
    size = runner.path.stat().st_size
    chosen = job.web_model
    selection = (
        "the smallest variant that meets its parity threshold (int8, dynamic, float16, fp32)"
        if chosen == "auto"
        else f"--web-model {chosen}"
    )
    web = {
        "runtime": f"@litertjs/core {runtime_version()} (WebAssembly, XNNPack)",
        "selection": selection,
        "page": "index.html",
        "rows": _rows(size, runner.quantization, job),
    }
    return {
        "format": "TFLite (LiteRT) flatbuffer for LiteRT.js",
        "signature": "serving_default",
        "quantization": "fp32" if runner.quantization == "none" else runner.quantization,
        **runner.describe(),
        "web": web,
    }
