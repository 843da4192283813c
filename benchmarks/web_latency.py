"""Milliseconds per image of the web page's model in Chromium beside Python LiteRT, and the
page's download size, at base widths 32 and 128, int8 and fp32.

    KERAS_BACKEND=tensorflow python benchmarks/web_latency.py [--runs 20] [--widths 32,128]
        [--variants int8,none] [--output benchmarks/results/web_latency.json]

Needs `npm ci --prefix keras_pldt/web` and Debian's Chromium (/usr/bin/chromium). Each model
is a randomly initialised converter (64 px, Table 1b's transposed-conv decoder) exported with
`--formats web --web-model VARIANT`. The page is served from this host over HTTP with the
cross-origin isolation headers (COOP / COEP) that LiteRT.js's threaded WebAssembly needs and
opened in headless Chromium; `window.pldt.benchmark` times the model (input tensor to output
array) on one white photo: the median of `--runs` calls after `--warmup`. "1 thread" is the
single-threaded build that any static host gets; "all threads" is the threaded build with
`navigator.hardwareConcurrency` workers. Python LiteRT (`ai_edge_litert`) runs the same
`.tflite` at 1 thread and at all cores. The download is what the browser fetches to open the
page and convert a photo (page, LiteRT.js, the one WebAssembly build it loads, the model).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class IsolatedHandler(SimpleHTTPRequestHandler):
    """A static server whose pages are cross-origin isolated (SharedArrayBuffer, threads)."""

    def end_headers(self) -> None:
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()

    def log_message(self, *args) -> None:
        pass


def host_cpu() -> str:
    """`lscpu`'s model name."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    names = [line.split(":", 1)[1].strip() for line in out.splitlines() if "Model name" in line]
    return names[0] if names else "unknown"


def python_litert(path: Path, threads: int, runs: int, warmup: int) -> float:
    """Median ms of one batch-1 call of the `.tflite` in Python LiteRT."""
    from keras_pldt.web import WebRunner

    runner = WebRunner(path, num_threads=threads)
    x = runner.quantize_input(np.zeros((1, *runner.input["shape"][1:]), np.float32) + 1.0)
    times = []
    for i in range(warmup + runs):
        start = time.perf_counter()
        runner.run_raw(x)
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def chromium(folder: Path, runs: int, warmup: int, profile: Path) -> dict[str, dict]:
    """Median ms in Chromium with one thread and with all threads, and every URL requested."""
    from playwright.sync_api import sync_playwright

    handler = functools.partial(IsolatedHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    results = {}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch_persistent_context(
                str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            try:
                for name, query in (("1 thread", "?threads=1"), ("all threads", "")):
                    page = browser.new_page()
                    page.goto(url + query)
                    page.wait_for_selector("body[data-ready]", timeout=300_000)
                    if page.get_attribute("body", "data-ready") != "1":
                        raise RuntimeError(page.inner_text("#status"))
                    results[name] = page.evaluate(
                        "([runs, warmup]) => window.pldt.benchmark(runs, warmup)", [runs, warmup]
                    )
                    page.close()
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()
    return results


def measure(width: int, variant: str, args, work: Path) -> dict:
    import keras

    from keras_pldt import export, web
    from keras_pldt.config import PLDTConfig
    from keras_pldt.networks import build_converter

    config = PLDTConfig(base_filters=width, image_size=args.image_size, subpixel_convs=False)
    keras.utils.set_random_seed(0)
    keras_path = work / f"converter-{width}.keras"
    if not keras_path.exists():
        keras.saving.save_model(build_converter(config), keras_path)
    out = work / f"out-{width}-{variant}"
    export.export(
        out,
        model_path=keras_path,
        formats=["web"],
        web_model=variant,
        calibration_samples=args.calibration_samples,
        parity_samples=4,
        verbose=False,
        enforce=False,
    )
    folder = out / web.FOLDER
    cores = len(os.sched_getaffinity(0))
    model = folder / web.MODEL_FILE
    browser = chromium(folder, args.runs, args.warmup, work / f"profile-{width}-{variant}")
    return {
        "width": width,
        "variant": "fp32" if variant == "none" else variant,
        "model_bytes": model.stat().st_size,
        "download_bytes": web.page_bytes(folder),
        "chromium_ms": {k: v["median_ms"] for k, v in browser.items()},
        "chromium_threads": {k: v["threads"] for k, v in browser.items()},
        "python_litert_ms": {
            "1 thread": python_litert(model, 1, args.runs, args.warmup),
            f"{cores} threads": python_litert(model, cores, args.runs, args.warmup),
        },
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| width | model | Chromium 1 thread ms | Chromium all threads ms "
        "| Python LiteRT 1 thread ms | Python LiteRT all threads ms "
        "| model MB | page download MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        py = list(r["python_litert_ms"].values())
        lines.append(
            f"| {r['width']} | {r['variant']} | {r['chromium_ms']['1 thread']:.1f} "
            f"| {r['chromium_ms']['all threads']:.1f} ({r['chromium_threads']['all threads']}) "
            f"| {py[0]:.1f} | {py[1]:.1f} | {r['model_bytes'] / 1e6:.2f} "
            f"| {r['download_bytes']['single_thread'] / 1e6:.1f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--widths", default="32,128")
    parser.add_argument("--variants", default="int8,none", help="of int8,dynamic,float16,none")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--calibration-samples", type=int, default=16)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/web_latency.json"))
    args = parser.parse_args(argv)
    from keras_pldt import web

    web.require_runtime()
    work = Path(tempfile.mkdtemp(prefix="pldt-web-bench-"))
    rows = []
    try:
        for width in [int(w) for w in args.widths.split(",")]:
            for variant in args.variants.split(","):
                rows.append(measure(width, variant, args, work))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {"host": host_cpu(), "cores": len(os.sched_getaffinity(0)), "runs": args.runs}
    result["rows"] = rows
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"host: {result['host']}, {result['cores']} cores\n{table(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
