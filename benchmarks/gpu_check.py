"""The GPU check: our training step against the PyTorch reference on one GPU, and a short
mixed-precision training that must learn. Writes `benchmarks/results/gpu.json`.

    bash benchmarks/gpu_check.sh                  # the real check, < 8 minutes on one GPU
    python benchmarks/gpu_check.py --dry-run --out /tmp/gpu.json   # every code path, CPU, ~1 min

Rows (persistent worker processes of `benchmarks/train_step.py`, warmed up, then timed in
alternating rounds, best of rounds reported with the median):

* ours, the paper step at width 128, batch 128, 64 px, in float32 and mixed_float16, each
  with and without XLA (`jit_compile`) and with and without the sub-pixel stride-2 kernels
  (`subpixel_convs`): 8 rows;
* the PyTorch reference (`shared/bench/torch_pldt.py`) on CUDA in float32 and under automatic
  mixed precision (float16 autocast + gradient scaling); a row that cannot run (no torch, no
  CUDA) is recorded with the reason.

Then a short `robust` training on a synthetic LookBook under mixed_float16, the PLDT built
directly (the `train` CLI refuses mixed precision on a CPU, and this check's dry run is on one):
it learns when every logged loss is finite and the converter loss and RMSE fall from the first
epoch to the last.

The host is recorded (GPU name, memory and driver from nvidia-smi; CPU model and flags;
library versions). Workers that would start after `--budget` seconds are skipped with that
reason, so the whole check ends in time.

`--dry-run` runs the same code on the CPU (GPUs hidden) at width 4, 1 step, 1 round: our
float32 row (the others recorded as skipped), the reference in float32 on the CPU where torch
is installed, and a 2-epoch mixed_float16 training on a tiny synthetic set. It writes to `--out`
(a temporary file unless given), never to `benchmarks/results/gpu.json`.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import train_step as ts

RESULTS = ts.ROOT / "benchmarks" / "results" / "gpu.json"
PRECISIONS = ("float32", "mixed_float16")


# ---------------------------------------------------------------------------- host
def gpus() -> list[dict] | None:
    """nvidia-smi's view of the GPUs (None without nvidia-smi)."""
    query = "name,memory.total,driver_version,compute_cap"
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    keys = query.split(",")
    return [dict(zip(keys, (v.strip() for v in line.split(",")), strict=False)) for line in
            out.strip().splitlines()]  # fmt: skip


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _probe(python: str, code: str, env: dict | None = None) -> tuple[str | None, str]:
    """(last stdout line, error) of `python -c code`."""
    try:
        proc = subprocess.run(
            [python, "-c", code], capture_output=True, text=True, timeout=180, env=env
        )
    except (OSError, subprocess.SubprocessError) as e:
        return None, str(e)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        return None, lines[-1] if lines else f"exit status {proc.returncode}"
    lines = proc.stdout.strip().splitlines()
    return (lines[-1] if lines else ""), ""


def tensorflow_gpus(env: dict) -> tuple[int, str]:
    """(number of GPUs TensorFlow sees, error) in a fresh process with `env`."""
    code = "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))"
    out, err = _probe(sys.executable, code, env)
    return (int(out), "") if out is not None else (0, err)


def torch_status(python: str, want_cuda: bool) -> tuple[str | None, str]:
    """(torch version, reason it cannot run) for the reference's interpreter."""
    code = "import torch; print(torch.__version__, int(torch.cuda.is_available()))"
    out, err = _probe(python, code)
    if out is None:
        return None, f"PyTorch is not importable by {python}: {err}"
    version, cuda = out.split()
    if want_cuda and cuda != "1":
        return version, f"PyTorch {version} sees no CUDA device"
    return version, ""


# ---------------------------------------------------------------------------- timing
def _since(start: float) -> str:
    return f"{time.perf_counter() - start:5.1f} s"


def _options(args, **kw) -> argparse.Namespace:
    """The options `train_step.Worker` passes to its worker process."""
    base = dict(
        batch=args.batch,
        size=args.size,
        threads=args.threads,
        precision="float32",
        preset="paper",
        set=[],
        jit_compile=False,
        separate_calls=False,
        native_convs=False,
        device="cpu",
        amp=False,
    )
    return argparse.Namespace(**{**base, **kw})


def planned_rows(args) -> dict[str, dict]:
    """Every row of the check: key -> options (or the reason it is skipped)."""
    rows = {}
    for precision in PRECISIONS:
        for xla in (False, True):
            for subpixel in (True, False):
                key = f"ours/{precision}" + ("-xla" if xla else "")
                key += "" if subpixel else "-native"
                opts = _options(
                    args, precision=precision, jit_compile=xla, native_convs=not subpixel
                )
                skip = ""
                if args.dry_run and (xla or not subpixel or precision != "float32"):
                    skip = "dry run: ours/float32 only (the training runs mixed_float16)"
                rows[key] = {"kind": "ours", "options": opts, "skip": skip}
    device = "cpu" if args.dry_run else "cuda"
    for amp in (False, True):
        key = "reference/" + ("amp" if amp else "float32")
        skip = "dry run: AMP needs CUDA" if args.dry_run and amp else ""
        opts = _options(args, device=device, amp=amp)
        rows[key] = {"kind": "torch", "options": opts, "skip": skip}
    return rows


def time_rows(args, rows: dict[str, dict], start: float, env: dict) -> dict[str, dict]:
    """Starts the workers one at a time (each warms up alone: first-call autotuning sees an
    idle GPU), then times them in alternating rounds."""
    torch_version, torch_reason = torch_status(args.torch_python, want_cuda=not args.dry_run)
    results: dict[str, dict] = {}
    workers: dict[str, ts.Worker] = {}
    try:
        for key, row in rows.items():
            opts = row["options"]
            info = {"width": args.width, "batch": opts.batch, "image_size": opts.size}
            if row["kind"] == "torch":
                info.update(device=opts.device, amp=opts.amp, torch=torch_version)
            else:
                info.update(
                    preset=opts.preset,
                    precision=opts.precision,
                    jit_compile=opts.jit_compile,
                    subpixel_convs=not opts.native_convs,
                )
            results[key] = info
            reason = row["skip"] or (torch_reason if row["kind"] == "torch" else "")
            if not reason and time.perf_counter() - start > args.budget:
                reason = f"time budget: {args.budget:.0f} s spent before this worker started"
            if reason:
                info["skipped"] = reason
                continue
            t0 = time.perf_counter()
            python = args.torch_python if row["kind"] == "torch" else sys.executable
            try:
                workers[key] = ts.Worker(row["kind"], opts, args.width, python=python, env=env)
            except RuntimeError as e:
                info["skipped"] = f"worker failed: {e}"
                continue
            info["warmup_s"] = round(time.perf_counter() - t0, 1)
            print(f"  [{_since(start)}] ready {key} (warm-up {info['warmup_s']} s)", flush=True)
        times = {key: [] for key in workers}
        for r in range(args.rounds):
            for key, worker in workers.items():
                times[key].append(worker.run(args.steps) / args.steps)
            print(f"  [{_since(start)}] round {r + 1}/{args.rounds} done", flush=True)
        for key, worker in workers.items():
            info = results[key]
            info["step_s"] = [round(t, 5) for t in times[key]]
            best = min(times[key])
            info["best_step_s"] = round(best, 5)
            info["median_step_s"] = round(statistics.median(times[key]), 5)
            info["images_per_s"] = round(args.batch / best, 2)
            info["peak_rss_mb"] = worker.close(wait=False)
    finally:
        for worker in workers.values():
            worker.kill()
    return results


def add_ratios(results: dict[str, dict], flops: float) -> None:
    """Ours against the reference of the same precision class; achieved TFLOP/s."""
    refs = {"float32": "reference/float32", "mixed_float16": "reference/amp"}
    for key, info in results.items():
        if "best_step_s" not in info:
            continue
        info["tflops"] = round(flops / info["best_step_s"] / 1e12, 3)
        ref = results.get(refs.get(info.get("precision"), ""), {})
        if key.startswith("ours/") and "best_step_s" in ref:
            info["vs_reference"] = refs[info["precision"]]
            info["ratio_best"] = round(ref["best_step_s"] / info["best_step_s"], 3)
            info["ratio_median"] = round(ref["median_step_s"] / info["median_step_s"], 3)


# ---------------------------------------------------------------------------- learning
def _finite(values) -> bool:
    return all(math.isfinite(v) for v in values)


def learning_run(args, workdir: Path) -> dict:
    """A short robust training under mixed_float16 on a synthetic LookBook."""
    import keras
    import tensorflow as tf

    from keras_pldt.config import get_preset
    from keras_pldt.data import build_pipelines
    from keras_pldt.datasets.synthetic import generate
    from keras_pldt.model import PLDT

    t0 = time.perf_counter()
    size = args.train_size
    data = generate(workdir / "synthetic", args.train_products, args.train_sources, 0, size)
    cfg = get_preset(
        "robust",
        image_size=size,
        base_filters=args.train_width,
        batch_size=args.train_batch,
        precision="mixed_float16",
        epochs=args.train_epochs,
        decay_epochs=0,
    )
    pipelines = build_pipelines(
        data, image_size=cfg.image_size, batch_size=cfg.batch_size, seed=cfg.seed,
        run_dir=workdir / "run", verbose=False,
    )  # fmt: skip
    keras.utils.set_random_seed(cfg.seed)
    model = PLDT(cfg)
    model.compile()
    val = pipelines.val if pipelines.splits["val"].num_sources and not args.dry_run else None
    history = model.fit(
        pipelines.train_for_epochs(0, cfg.epochs),
        epochs=cfg.epochs,
        steps_per_epoch=pipelines.steps_per_epoch,
        validation_data=val,
        verbose=0,
    ).history
    logged = {k: [round(float(v), 5) for v in vals] for k, vals in history.items()}
    losses = {k: v for k, v in logged.items() if k.endswith("loss")}
    converter = logged.get("converter_loss", [])
    rmse = logged.get("rmse", [])
    falling = len(converter) > 1 and converter[-1] < converter[0] and rmse[-1] < rmse[0]
    scale = getattr(model.converter_optimizer, "dynamic_scale", None)
    return {
        "preset": "robust",
        "precision": cfg.precision,
        "compute_dtype": model.converter.dtype_policy.compute_dtype,
        "width": cfg.base_filters,
        "batch": cfg.batch_size,
        "image_size": cfg.image_size,
        "products": args.train_products,
        "sources_per_product": args.train_sources,
        "epochs": cfg.epochs,
        "steps_per_epoch": pipelines.steps_per_epoch,
        "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU",
        "history": logged,
        "final_loss_scale": None if scale is None else float(keras.ops.convert_to_numpy(scale)),
        "losses_finite": all(_finite(v) for v in losses.values()),
        "converter_loss_and_rmse_fall": falling,
        "learns": all(_finite(v) for v in losses.values()) and falling,
        "seconds": round(time.perf_counter() - t0, 1),
    }


# ---------------------------------------------------------------------------- main
def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dry-run", action="store_true", help="tiny, CPU only, 1 step (CI)")
    ap.add_argument(
        "--out",
        help="results file (default: benchmarks/results/gpu.json; with --dry-run a temporary one)",
    )
    ap.add_argument("--width", type=int, help="base width of the timed steps (128; dry run 4)")
    ap.add_argument("--batch", type=int, help="batch of the timed steps (128; dry run 4)")
    ap.add_argument("--size", type=int, help="image side (64, the reference networks' only size)")
    ap.add_argument("--steps", type=int, help="timed steps per round (10; dry run 1)")
    ap.add_argument("--rounds", type=int, help="alternating timing rounds (3; dry run 1)")
    ap.add_argument(
        "--budget",
        type=float,
        default=240.0,
        help="seconds after which no further worker starts (default: 240)",
    )
    ap.add_argument(
        "--torch-python",
        default=sys.executable,
        help="interpreter with PyTorch for the reference rows (default: this one)",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="CPU threads of each worker (default: all cores)",
    )
    return ap


def _defaults(args) -> argparse.Namespace:
    dry = args.dry_run
    for name, real, tiny in (
        ("width", 128, 4), ("batch", 128, 4), ("size", 64, 64), ("steps", 10, 1),
        ("rounds", 3, 1),
    ):  # fmt: skip
        if getattr(args, name) is None:
            setattr(args, name, tiny if dry else real)
    # the learning run: robust at paper width on 120 products (dry run: width 4, 12 products
    # at 16 px)
    args.train_size = 16 if dry else args.size
    args.train_width = 4 if dry else 128
    args.train_batch = 8 if dry else 32
    args.train_products = 12 if dry else 120
    args.train_sources = 3 if dry else 6
    args.train_epochs = 2 if dry else 6
    return args


def main(argv=None) -> int:
    args = _defaults(parser().parse_args(argv))
    start = time.perf_counter()
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")  # the workers share the GPU
    if args.dry_run:
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"  # workers and this process's learning run
    env = dict(os.environ)
    out = Path(args.out) if args.out else None
    if out is None:
        out = Path(tempfile.mkdtemp(prefix="gpu-check-")) / "gpu.json" if args.dry_run else RESULTS

    n_gpus, gpu_error = (0, "dry run: GPUs hidden") if args.dry_run else tensorflow_gpus(env)
    if not args.dry_run and n_gpus == 0:
        why = f" ({gpu_error})" if gpu_error else ""
        print(f"error: TensorFlow sees no GPU{why}; use --dry-run on a CPU", file=sys.stderr)
        return 2
    host = {
        **ts.machine(),
        "gpus": gpus(),
        "tensorflow_gpus": n_gpus,
        "tensorflow": _version("tensorflow"),
        "keras": _version("keras"),
        "torch_python": args.torch_python,
    }
    print(f"gpu check{' (dry run)' if args.dry_run else ''}: GPUs {host['gpus']}, "
          f"TensorFlow sees {n_gpus}; CPU {host['cpu']}", flush=True)  # fmt: skip
    rows = time_rows(args, planned_rows(args), start, env)
    add_ratios(rows, ts.step_flops(args.width, args.size, args.batch))
    for key, info in rows.items():
        if "skipped" in info:
            print(f"  {key:28s} skipped: {info['skipped']}")
        else:
            ratio = (
                f"  x{info['ratio_best']:.2f} {info['vs_reference']}"
                if "ratio_best" in info
                else ""
            )
            print(f"  {key:28s} {info['images_per_s']:9.1f} img/s  {info['tflops']:8.3f} TFLOP/s"
                  f"{ratio}")  # fmt: skip

    print(f"  [{_since(start)}] robust mixed_float16 training", flush=True)
    with tempfile.TemporaryDirectory(prefix="gpu-check-train-") as tmp:
        if time.perf_counter() - start > args.budget + 120:
            training = {"skipped": "time budget spent by the timing rows"}
        else:
            training = learning_run(args, Path(tmp))
    if "history" in training:
        h = training["history"]
        print(f"  robust mixed_float16 training, {training['epochs']} epochs on "
              f"{training['device']}: converter loss {h.get('converter_loss')}, rmse "
              f"{h.get('rmse')}; learns: {training['learns']}", flush=True)  # fmt: skip

    result = {
        "dry_run": args.dry_run,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "host": host,
        "settings": {
            "width": args.width,
            "batch": args.batch,
            "image_size": args.size,
            "steps_per_round": args.steps,
            "rounds": args.rounds,
            "preset": "paper",
            "step_gflop": round(ts.step_flops(args.width, args.size, args.batch) / 1e9, 2),
        },  # fmt: skip
        "rows": rows,
        "training": training,
        "seconds": round(time.perf_counter() - start, 1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"wrote {out} ({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
