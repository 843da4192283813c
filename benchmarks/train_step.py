"""Images/s of one PLDT training step (Algorithm 1) against the PyTorch reference, side by side.

    python benchmarks/train_step.py [--widths 32,128] [--batch 32] [--size 64] [--steps 3]
                                    [--rounds 2] [--precision float32|bfloat16|mixed_float16]
                                    [--preset paper|robust|demo] [--jit-compile]
                                    [--native-convs] [--threads N] [--curve STEPS]

For each width, persistent worker processes are started and warmed up (tracing, first
step): ours (`PLDT.train_step` through `model.fit` on a cached, repeated, prefetched tf.data of
random tensors in [-1, 1]) and the reference (the step of `shared/bench/torch_pldt.py`, its
networks imported from that file, the step copied verbatim), both with the same thread count.
Then they are timed alternately, `--rounds` times `--steps` steps each (ours, ref, ours, ref,
...), so machine noise hits both alike; the best round of each is reported (the median too).
The reference's networks are built for 64 px images only: at another `--size` one line says
so and our step is timed alone (its row's reference fields are null).

`--preset` picks the recipe of our step (`paper` by default; `robust` adds the L1, SSIM and
pixel-contrast terms, spectral norm, DiffAugment, feature matching, D_A's joint batch with its
recorded statistics, source augmentation and resize upsampling). For a preset other
than `paper` a third worker runs our paper step at the same width, alternating with the
others, and the row adds the preset's step time relative to the paper's (`step_vs_paper`).
`--set FIELD=VALUE` (repeatable) changes one field of our step over the preset, e.g.
`--preset robust --set joint_domain_batch=false`, and compares with the paper step too.
`--native-convs` turns off the sub-pixel stride-2 kernels (`subpixel_convs`).

Printed per width: images/s of each and the ratio ours/reference; the step's FLOPs (analytic,
from the layer shapes of the paper step: 3x forward for every forward+backward pass it makes;
resize upsampling counted, the extra discriminator passes of feature matching not) and the
achieved GFLOP/s and fraction of the machine's fp32 peak; the peak RSS of each worker.
Results are merged into `benchmarks/results/train_step.json`, per host (CPU model, cores and
its fastest instruction set: `host_key`) with that machine's description (CPU flags included),
then by precision, options and width. Both pools of TensorFlow get `--threads` threads, as a
user's run on that many cores does; torch gets `torch.set_num_threads(--threads)`.

The timing functions (`ours_step`, `reference_step`, `Worker`) are shared with
`benchmarks/gpu_check.py`.

`--curve STEPS` instead trains the converter on the toy transfer problem of `tests/toy.py` for
STEPS steps in float32 and in the `--precision` policy from the same initial weights and prints
both RMSE curves (does it still learn in bfloat16?).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "bench" / "torch_pldt.py"
RESULTS = ROOT / "benchmarks" / "results" / "train_step.json"
#: Image sizes the reference's networks are built for (its encoder ends in a 4x4 map at 64 px).
REFERENCE_SIZES = (64,)
FMA_UNITS_PER_CORE = 2  # assumption: two FMA pipes per core (Zen 3, Skylake-SP/Ice Lake server)


# ---------------------------------------------------------------------------- machine and FLOPs
def machine() -> dict:
    """CPU model, cores, clock, vector width and the fp32 peak derived from them."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    field = lambda key: (re.findall(rf"^{key}\s*:\s*(.*)$", info, re.M) or [""])[0]  # noqa: E731
    flags = set(field("flags").split())
    mhz = None
    try:
        mhz = int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()) / 1e3
    except (OSError, ValueError):
        pass
    if not mhz:
        mhz = float(field("cpu MHz") or 0.0)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags or "avx" in flags else 4
    peak = cores * mhz * 1e6 * lanes * FMA_UNITS_PER_CORE * 2 / 1e9  # 2 flops per FMA
    return {
        "cpu": field("model name") or platform.processor(),
        "cores": cores,
        "clock_mhz": round(mhz, 1),
        "fp32_lanes": lanes,
        "fma_units_per_core_assumed": FMA_UNITS_PER_CORE,
        "avx512f": "avx512f" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "fp32_peak_gflops": round(peak, 1),
        "python": platform.python_version(),
        "cpu_flags": sorted(flags),
    }


def _conv_macs(out_hw: int, out_c: int, k: int, in_c: int) -> int:
    return out_hw * out_hw * out_c * k * k * in_c


def network_macs(
    width: int, size: int, code: int = 64, upsampling: str = "transposed"
) -> dict[str, int]:
    """Forward multiply-accumulates per image of the converter, D_R and D_A (Table 1), as the
    layers define them; with `upsampling="resize"` each decoder stage is a 5x5 conv at the
    doubled size (4x the MACs). The sub-pixel kernels (`subpixel_convs`) compute the same
    values with 36/25 of a transposed conv's MACs and 36/100 of a resize stage's."""
    from keras_pldt.networks import stage_widths

    widths = stage_widths(size, width)

    def stack(in_c):
        macs, hw, c = 0, size, in_c
        for f in widths:
            hw //= 2
            macs += _conv_macs(hw, f, 5, c)
            c = f
        return macs, c

    enc, c = stack(3)
    enc += 16 * c * code  # 4x4 valid conv to the code
    dec, hw = code * 16 * widths[-1], 4  # projection to 4x4x(8b)
    chans = list(reversed(widths[:-1])) + [3]
    c = widths[-1]
    for f in chans:  # transposed conv: each input pixel scatters k*k*f outputs
        dec += _conv_macs(hw, c, 5, f) * (4 if upsampling == "resize" else 1)
        hw, c = hw * 2, f
    d_r, c = stack(3)
    d_a, _ = stack(6)
    d_r += 16 * c
    d_a += 16 * c
    return {"converter": enc + dec, "real_fake": d_r, "domain": d_a}


def step_flops(width: int, size: int, batch: int, upsampling: str = "transposed") -> float:
    """FLOPs of one train step: every network pass as 3x its forward (forward + backward).

    Converter fwd+bwd; D_R on real and fake (its update) and on fake again (converter's update);
    D_A on 3 pairings (its update) and on the generated pair again (converter's update).
    """
    m = network_macs(width, size, upsampling=upsampling)
    passes = m["converter"] + 3 * m["real_fake"] + 4 * m["domain"]
    return 2.0 * 3.0 * passes * batch


# ---------------------------------------------------------------------------- workers
def _set_threads(n: int) -> None:
    """n threads for TensorFlow's intra-op and inter-op pools (what a user's run gets with n
    cores). One inter-op thread runs the step's independent ops one after another: on a 2-core
    AMX host the best bf16 steps at width 32 took 0.23-0.28 s with one against 0.17-0.21 s
    with two (in-process, 8 rounds each)."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(n)
    tf.config.threading.set_inter_op_parallelism_threads(n)


def step_config(args, width: int, preset: str | None = None):
    """The `PLDTConfig` of our timed step: `preset` (default `args.preset`, with the `--set`
    fields) at `width`; the paper step of a comparison (`preset="paper"`) without them."""
    from keras_pldt.config import get_preset
    from keras_pldt.train import set_overrides

    preset = preset or args.preset
    overrides = set_overrides(args.set) if preset == args.preset else {}
    return get_preset(
        preset,
        **overrides,
        image_size=args.size,
        base_filters=width,
        batch_size=args.batch,
        precision=args.precision,
        jit_compile=args.jit_compile,
        subpixel_convs=not args.native_convs,
    )


def ours_step(config, separate_calls: bool = False):
    """A warmed-up `run(n)` timing n steps of `model.fit` of `PLDT(config)` on a cached random
    tf.data (the model's precision and XLA setting are the config's)."""
    import keras
    import tensorflow as tf

    from keras_pldt.data.pipeline import without_autotune
    from keras_pldt.model import PLDT

    keras.utils.set_random_seed(0)
    model = PLDT(config)
    if separate_calls:
        model.fuse_discriminator_calls = False
    model.compile()
    shape = (config.batch_size, config.image_size, config.image_size, 3)
    rand = lambda: tf.random.uniform(shape, -1.0, 1.0, seed=None)  # noqa: E731
    batch = {"source": rand(), "target": rand(), "unassociated": rand()}
    # as the package's pipelines: with autotuning, ending fit's iterator waits for a timer
    ds = without_autotune(tf.data.Dataset.from_tensors(batch).cache().repeat().prefetch(2))
    model.fit(ds, steps_per_epoch=1, epochs=1, verbose=0)  # trace + warm up

    def run(n):
        t = time.perf_counter()
        model.fit(ds, steps_per_epoch=n, epochs=1, verbose=0)
        return time.perf_counter() - t

    return run


def _ours(args):
    _set_threads(args.threads)
    return ours_step(step_config(args, args.width, args.worker_preset), args.separate_calls)


def reference_step(width: int, batch: int, size: int, device: str = "cpu", amp: bool = False):
    """The reference's step (copied from torch_pldt.py) on its own networks, warmed up: a
    `run(n)` timing n steps. On `device="cuda"`, `amp` runs it under float16 autocast with a
    gradient scaler per network (PyTorch's automatic mixed precision)."""
    import importlib.util

    import torch
    from torch import nn

    spec = importlib.util.spec_from_file_location("torch_pldt", REFERENCE)
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    torch.manual_seed(0)
    dev = torch.device(device)
    conv = nn.Sequential(ref.encoder(3, 64, width, True), ref.decoder(width)).to(dev)
    dr = ref.encoder(3, 1, width, False).to(dev)
    da = ref.encoder(6, 1, width, False).to(dev)
    opt = lambda m: torch.optim.Adam(m.parameters(), 2e-4, betas=(0.5, 0.999))  # noqa: E731
    oc, orr, oa = opt(conv), opt(dr), opt(da)
    bce = nn.BCEWithLogitsLoss()
    B, S = batch, size
    src, tgt, neg = (torch.rand(B, 3, S, S, device=dev) * 2 - 1 for _ in range(3))
    ones, zeros = torch.ones(B, 1, device=dev), torch.zeros(B, 1, device=dev)

    def step():  # verbatim from torch_pldt.py
        fake = conv(src)
        orr.zero_grad()
        lr = bce(dr(tgt), ones) + bce(dr(fake.detach()), zeros)
        lr.backward()
        orr.step()
        oa.zero_grad()
        la = (
            bce(da(torch.cat([src, tgt], 1)), ones)
            + bce(da(torch.cat([src, neg], 1)), zeros)
            + bce(da(torch.cat([src, fake.detach()], 1)), zeros)
        )
        la.backward()
        oa.step()
        oc.zero_grad()
        lg = 0.5 * bce(dr(fake), ones) + 0.5 * bce(da(torch.cat([src, fake], 1)), ones)
        lg.backward()
        oc.step()
        return lr.item(), la.item(), lg.item()

    scalers = [torch.amp.GradScaler("cuda") for _ in range(3)] if amp else None

    def amp_step():  # the same step under autocast, each loss scaled for its own optimizer
        autocast = lambda: torch.autocast("cuda", dtype=torch.float16)  # noqa: E731
        s_r, s_a, s_c = scalers
        with autocast():
            fake = conv(src)
            lr = bce(dr(tgt), ones) + bce(dr(fake.detach()), zeros)
        orr.zero_grad()
        s_r.scale(lr).backward()
        s_r.step(orr)
        s_r.update()
        with autocast():
            la = (
                bce(da(torch.cat([src, tgt], 1)), ones)
                + bce(da(torch.cat([src, neg], 1)), zeros)
                + bce(da(torch.cat([src, fake.detach()], 1)), zeros)
            )
        oa.zero_grad()
        s_a.scale(la).backward()
        s_a.step(oa)
        s_a.update()
        with autocast():
            lg = 0.5 * bce(dr(fake), ones) + 0.5 * bce(da(torch.cat([src, fake], 1)), ones)
        oc.zero_grad()
        s_c.scale(lg).backward()
        s_c.step(oc)
        s_c.update()
        return lr.item(), la.item(), lg.item()

    one = amp_step if amp else step
    one()

    def run(n):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(n):
            one()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t

    return run


def _reference(args):
    import torch

    torch.set_num_threads(args.threads)
    return reference_step(args.width, args.batch, args.size, args.device, args.amp)


def worker(args) -> None:
    """Line protocol on stdin/stdout: 'run N' -> 'time S'; 'quit' -> 'rss_mb M'."""
    run = _ours(args) if args.worker == "ours" else _reference(args)
    print("ready", flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if cmd and cmd[0] == "run":
            print(f"time {run(int(cmd[1])):.6f}", flush=True)
        elif cmd and cmd[0] == "quit":
            break
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"rss_mb {rss:.1f}", flush=True)


class Worker:
    """A persistent `--worker` process (`kind` "ours" or "torch") at `width`, started with the
    options of `args`; `run(n)` times n steps in it. With `wait=False` the constructor returns
    at once (start several, then `wait_ready()` each)."""

    def __init__(
        self,
        kind: str,
        args,
        width: int,
        preset: str | None = None,
        python: str | None = None,
        env: dict | None = None,
        wait: bool = True,
    ):
        cmd = [python or sys.executable, __file__, "--worker", kind, "--width", str(width)]
        cmd += ["--batch", str(args.batch), "--size", str(args.size)]
        cmd += ["--threads", str(args.threads), "--precision", args.precision]
        cmd += ["--worker-preset", preset or args.preset]
        cmd += [f"--set={item}" for item in args.set]
        cmd += ["--jit-compile"] if args.jit_compile else []
        cmd += ["--separate-calls"] if args.separate_calls else []
        cmd += ["--native-convs"] if args.native_convs else []
        cmd += ["--device", args.device] + (["--amp"] if args.amp else [])
        self.p = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        self._expect("ready")

    def _expect(self, word: str) -> str:
        for line in self.p.stdout:
            if line.startswith(word):
                return line.split()[1] if len(line.split()) > 1 else ""
        raise RuntimeError(f"worker exited with {self.p.wait()} before '{word}'")

    def run(self, n: int) -> float:
        self.p.stdin.write(f"run {n}\n")
        self.p.stdin.flush()
        return float(self._expect("time"))

    def close(self, wait: bool = True) -> float:
        """Ends the worker; returns its peak RSS (MB). `wait=False` kills it once it has
        reported (TensorFlow's own shutdown can take seconds)."""
        self.p.stdin.write("quit\n")
        self.p.stdin.flush()
        rss = float(self._expect("rss_mb"))
        if not wait:
            self.p.kill()
        self.p.wait()
        return rss

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


# ---------------------------------------------------------------------------- comparisons
def reference_note(size: int) -> str | None:
    """The line printed when the reference has no networks of `size` px, else None."""
    if size in REFERENCE_SIZES:
        return None
    sizes = ", ".join(str(s) for s in REFERENCE_SIZES)
    return (
        f"reference: torch_pldt.py builds {sizes} px networks only, none of {size} px; "
        "timing ours alone"
    )


def bench_width(args, width: int, mach: dict) -> dict:
    ours = Worker("ours", args, width)
    compare = args.preset != "paper" or args.set
    paper = Worker("ours", args, width, preset="paper") if compare else None
    ref = Worker("torch", args, width) if reference_note(args.size) is None else None
    t_ours, t_paper, t_ref = [], [], []
    for _ in range(args.rounds):
        t_ours.append(ours.run(args.steps) / args.steps)
        if paper is not None:
            t_paper.append(paper.run(args.steps) / args.steps)
        if ref is not None:
            t_ref.append(ref.run(args.steps) / args.steps)
    rss_ours = ours.close()
    rss_ref = ref.close() if ref is not None else None
    if paper is not None:
        paper.close()
    upsampling = step_config(args, width).upsampling
    flops = step_flops(width, args.size, args.batch, upsampling)
    best_o = min(t_ours)
    best_r = min(t_ref) if t_ref else None
    ips_o = args.batch / best_o
    ips_r = args.batch / best_r if best_r else None
    gf_o = flops / best_o / 1e9
    gf_r = flops / best_r / 1e9 if best_r else None
    peak = mach["fp32_peak_gflops"]

    def ratio(value, of):
        return round(value / of, 3) if value is not None and of else None

    row = {
        "width": width,
        "batch": args.batch,
        "image_size": args.size,
        "preset": args.preset,
        "set": list(args.set),
        "precision": args.precision,
        "jit_compile": args.jit_compile,
        "subpixel_convs": not args.native_convs,
        "fused_discriminator_calls": not args.separate_calls,
        "threads": args.threads,
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "step_gflop": round(flops / 1e9, 2),
        "ours_step_s": [round(t, 4) for t in t_ours],
        "reference_step_s": [round(t, 4) for t in t_ref],
        "ours_images_per_s": round(ips_o, 3),
        "reference_images_per_s": round(ips_r, 3) if ips_r else None,
        "ratio_best": ratio(ips_o, ips_r),
        "ratio_median": ratio(statistics.median(t_ref), statistics.median(t_ours))
        if t_ref
        else None,
        "ours_gflops": round(gf_o, 1),
        "reference_gflops": round(gf_r, 1) if gf_r is not None else None,
        "ours_fraction_of_fp32_peak": round(gf_o / peak, 3),
        "reference_fraction_of_fp32_peak": ratio(gf_r, peak),
        "ours_peak_rss_mb": rss_ours,
        "reference_peak_rss_mb": rss_ref,
    }
    vs_paper, recipe = "", " ".join([args.preset, *args.set])
    if t_paper:
        row["paper_step_s"] = [round(t, 4) for t in t_paper]
        row["step_vs_paper"] = round(best_o / min(t_paper), 3)
        row["step_vs_paper_median"] = round(
            statistics.median(t_ours) / statistics.median(t_paper), 3
        )
        vs_paper = (
            f"\n    {recipe} step / paper step {row['step_vs_paper']:.3f} "
            f"(median {row['step_vs_paper_median']:.3f}); paper step_s {row['paper_step_s']}"
        )
    if ref is None:
        print(
            f"width {width:4d} B={args.batch} {args.size}px {recipe} {args.precision:8s} "
            f"ours {ips_o:7.2f} img/s alone\n"
            f"    step {flops / 1e9:.1f} GFLOP: ours {gf_o:.1f} GFLOP/s = {gf_o / peak:.1%} of "
            f"peak; peak RSS ours {rss_ours:.0f} MB\n    ours step_s {row['ours_step_s']}"
            f"{vs_paper}",
            flush=True,
        )
        return row
    print(
        f"width {width:4d} B={args.batch} {args.size}px {recipe} {args.precision:8s} "
        f"ours {ips_o:7.2f} img/s  ref(fp32 torch) {ips_r:7.2f} img/s  "
        f"ratio {row['ratio_best']:.3f} (median {row['ratio_median']:.3f})\n"
        f"    step {flops / 1e9:.1f} GFLOP: ours {gf_o:.1f} GFLOP/s = {gf_o / peak:.1%} of peak, "
        f"ref {gf_r:.1f} GFLOP/s = {gf_r / peak:.1%}; peak RSS ours {rss_ours:.0f} MB, "
        f"ref {rss_ref:.0f} MB\n    ours step_s {row['ours_step_s']}  ref step_s "
        f"{row['reference_step_s']}{vs_paper}",
        flush=True,
    )
    return row


def run_key(args, width: int) -> str:
    """The row's key in the results: precision, options, width."""
    key = args.precision + ("-xla" if args.jit_compile else "")
    key += "" if args.preset == "paper" else f"-{args.preset}"
    key += "-native" if args.native_convs else ""
    key += "-separate" if args.separate_calls else ""
    key += "".join(f"-{item}" for item in args.set)
    return key + f"/width{width}"


def curve(args) -> dict:
    """RMSE curves of float32 and the --precision policy on the toy problem, same init."""
    _set_threads(args.threads)
    sys.path.insert(0, str(ROOT / "tests"))
    import keras
    from toy import toy_dataset

    from keras_pldt.config import PLDTConfig
    from keras_pldt.model import PLDT

    curves = {}
    for precision in ("float32", args.precision):
        keras.utils.set_random_seed(0)
        cfg = PLDTConfig(image_size=32, base_filters=16, batch_size=16, precision=precision)
        model = PLDT(cfg)
        model.compile()
        hist = model.fit(
            toy_dataset(256, 32, 16, seed=0), steps_per_epoch=args.curve // 10, epochs=10, verbose=0
        )
        curves[precision] = [round(float(v), 4) for v in hist.history["rmse"]]
        keras.backend.clear_session()
    print(f"toy problem, rmse per {args.curve // 10} steps (epoch means):")
    for name, values in curves.items():
        print(f"  {name:9s} " + " ".join(f"{v:.3f}" for v in values))
    return {"steps": args.curve, "rmse_per_epoch": curves}


def host_key(mach: dict) -> str:
    """The results' key of a host: CPU model, cores and the instruction sets that decide speed."""
    isa = "AMX-BF16" if mach["amx_bf16"] else "AVX512_BF16" if mach["avx512_bf16"] else None
    isa = isa or ("AVX-512" if mach["avx512f"] else "AVX2")
    return f"{mach['cpu']}, {mach['cores']} cores, {isa}"


def load_results(path: Path) -> dict:
    """The results file as {"hosts": {host_key: {"machine", "runs", ...}}} (a file of one
    machine, {"machine", "runs"}, is read as that host's)."""
    results = json.loads(path.read_text()) if path.exists() else {}
    if "machine" in results:
        results = {"hosts": {host_key(results["machine"]): results}}
    results.setdefault("hosts", {})
    return results


PRECISIONS = ("float32", "bfloat16", "mixed_float16")
PRESETS = ("paper", "robust", "demo")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--widths", default="32,128", help="base widths, comma-separated")
    ap.add_argument("--batch", type=int, default=32, help="batch size")
    ap.add_argument("--size", type=int, default=64, help="image side (px); the reference: 64 only")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=2, help="alternating timing rounds")
    ap.add_argument("--precision", choices=PRECISIONS, default="float32", help="our precision")
    ap.add_argument("--preset", choices=PRESETS, default="paper", help="recipe of our step")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a PLDTConfig field of our step over --preset, as train's --set (repeatable); "
        "the row then adds the step relative to the paper step",
    )
    ap.add_argument("--jit-compile", action="store_true", help="XLA (slow on CPU, not default)")
    ap.add_argument(
        "--native-convs", action="store_true", help="TensorFlow's stride-2 convs (no sub-pixel)"
    )
    ap.add_argument(
        "--separate-calls", action="store_true", help="ours without fused D calls (A/B)"
    )
    ap.add_argument(
        "--threads", type=int, default=len(os.sched_getaffinity(0)), help="CPU threads of each"
    )
    ap.add_argument("--curve", type=int, default=0, help="toy-problem RMSE curves, STEPS")
    ap.add_argument("--out", default=str(RESULTS), help="results file (merged)")
    ap.add_argument("--worker", choices=("ours", "torch"), help=argparse.SUPPRESS)
    ap.add_argument("--width", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--worker-preset", choices=PRESETS, help=argparse.SUPPRESS)
    ap.add_argument("--device", default="cpu", help=argparse.SUPPRESS)  # the reference's
    ap.add_argument("--amp", action="store_true", help=argparse.SUPPRESS)  # the reference's
    return ap


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    if args.worker:
        return worker(args)

    mach = machine()
    print(
        f"machine: {mach['cpu']}, {mach['cores']} cores @ {mach['clock_mhz']:.0f} MHz, "
        f"{mach['fp32_lanes']} fp32 lanes ({'AVX-512' if mach['avx512f'] else 'AVX2'}), "
        f"{FMA_UNITS_PER_CORE} FMA units/core (assumed) -> fp32 peak "
        f"{mach['fp32_peak_gflops']:.1f} GFLOP/s; avx512_bf16={mach['avx512_bf16']}; "
        f"threads {args.threads} (TF intra-op and torch)",
        flush=True,
    )
    out = Path(args.out)
    results = load_results(out)
    host = results["hosts"].setdefault(host_key(mach), {})
    host["machine"] = mach
    runs = host.setdefault("runs", {})
    if args.curve:
        host["curve_" + args.precision] = curve(args)
    else:
        note = reference_note(args.size)
        if note is not None:
            print(note, flush=True)
        for width in [int(w) for w in args.widths.split(",") if w]:
            key = run_key(args, width)
            runs[key] = bench_width(args, width, mach)
            runs[key]["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            runs[key]["host"] = host_key(mach)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
