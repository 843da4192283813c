"""Step time of recipes relative to the first, alternating in one process (what each switch costs).

    python benchmarks/step_ab.py [--width 32] [--batch 32] [--alternations 14] [--steps 2]
                                 [--precision float32|bfloat16] [--out FILE]
                                 paper robust robust:joint_domain_batch=false ...

Each SPEC is a preset, optionally followed by `:FIELD=VALUE,...` (PLDTConfig fields, as train's
`--set`) and by `@keras-batch-norm` (batch norm through Keras' element-wise ops instead of the
fused CPU kernel of `networks.GroupedBatchNormalization`). All models are built and warmed up
in this process (`train_step.ours_step`: our `model.fit` on a cached random tf.data), then
timed in turn, `--steps` steps each, for
`--alternations` rounds: machine noise hits every recipe alike, and one process leaves out the
between-process swings that limit `train_step.py --preset` (up to 2x between rounds on shared
hosts). Prints the median and best step time of each and both relative to the first SPEC, and
merges them, with the host (CPU flags included), into `benchmarks/results/step_ab.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

sys.path.insert(0, str(Path(__file__).resolve().parent))
RESULTS = Path(__file__).resolve().parent / "results" / "step_ab.json"
KERAS_BN = "@keras-batch-norm"


def spec_config(spec: str, args):
    """The `PLDTConfig` of `preset[:FIELD=VALUE,...]` at the benchmark's width and batch."""
    from keras_pldt.config import get_preset
    from keras_pldt.train import set_overrides

    spec = spec.removesuffix(KERAS_BN)
    preset, _, fields = spec.partition(":")
    overrides = set_overrides([f for f in fields.split(",") if f])
    return get_preset(
        preset,
        **overrides,
        image_size=args.size,
        base_filters=args.width,
        batch_size=args.batch,
        precision=args.precision,
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("specs", nargs="+", metavar="SPEC", help="preset[:FIELD=VALUE,...]")
    ap.add_argument("--width", type=int, default=32, help="base width")
    ap.add_argument("--batch", type=int, default=32, help="batch size")
    ap.add_argument("--size", type=int, default=64, help="image side (px)")
    ap.add_argument("--steps", type=int, default=2, help="steps per timing")
    ap.add_argument("--alternations", type=int, default=14, help="rounds over all SPECs")
    ap.add_argument("--precision", choices=("float32", "bfloat16"), default="float32")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="CPU threads")
    ap.add_argument("--out", default=str(RESULTS), help="results file (merged)")
    args = ap.parse_args(argv)

    from train_step import _set_threads, host_key, machine, ours_step

    _set_threads(args.threads)
    try:  # every spec checked before any model is built
        configs = {spec: spec_config(spec, args) for spec in args.specs}
    except (ValueError, TypeError, RuntimeError) as err:  # RunError: a bad --set field
        ap.error(f"{err}")
    from keras_pldt import kernels

    # Every batch norm's fused kernel (the discriminators' and the accelerated converter's)
    # asks kernels.fused_batch_norm_applies when fit traces the step.
    fused_kernel = kernels.fused_batch_norm_applies
    runs = {}
    for spec, cfg in configs.items():
        if spec.endswith(KERAS_BN):
            kernels.fused_batch_norm_applies = lambda dtype: False
        try:
            runs[spec] = ours_step(cfg)
        finally:
            kernels.fused_batch_norm_applies = fused_kernel
    times = {spec: [] for spec in runs}
    for _ in range(args.alternations):
        for spec, run in runs.items():
            times[spec].append(run(args.steps) / args.steps)
    first = args.specs[0]
    med0, best0 = statistics.median(times[first]), min(times[first])
    rows = {}
    print(f"width {args.width} B={args.batch} {args.size}px {args.precision}, {args.threads} thr")
    for spec, t in times.items():
        med, best = statistics.median(t), min(t)
        rows[spec] = {
            "step_s_median": round(med, 4),
            "step_s_best": round(best, 4),
            "vs_first_median": round(med / med0, 3),
            "vs_first_best": round(best / best0, 3),
        }
        print(
            f"{spec:50s} median {med:.4f} s  best {best:.4f} s  "
            f"vs {first}: {med / med0:.3f} (best {best / best0:.3f})"
        )
    mach = machine()
    key = f"{args.precision}/width{args.width}/batch{args.batch}/" + " vs ".join(args.specs)
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {"hosts": {}}
    host = results["hosts"].setdefault(host_key(mach), {"machine": mach, "runs": {}})
    host["machine"] = mach
    host["runs"][key] = {
        "rows": rows,
        "alternations": args.alternations,
        "steps": args.steps,
        "threads": args.threads,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
