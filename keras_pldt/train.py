"""`python -m keras_pldt.train`: the paper's training run (Algorithm 1), observable and resumable.

With no data argument it trains the `demo` preset on the embedded synthetic LookBook. The run
folder holds config.json, split.json, checkpoints/, logs/ (TensorBoard), samples/, history.csv
and, at the end, converter.keras. Re-running the same command resumes after the last
completed epoch; a run folder of a different config is refused unless --overwrite.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from keras_pldt.config import PRESETS, VARIANTS, PLDTConfig, get_preset

STRATEGIES = ("auto", "default", "mirrored", "multiworker", "tpu")
ARTEFACTS = ("config.json", "split.json", "checkpoints", "logs", "samples", "history.csv")
FINAL_MODEL = "converter.keras"


class RunError(RuntimeError):
    """A problem the user can fix (bad folder, config mismatch): printed as one line."""


class TrainingDiverged(RunError):
    """A loss became NaN/inf; the last good checkpoint is kept."""


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """--data / --manifest, shared by the train and reproduce commands."""
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--data",
        help="dataset folder: PID*_CLEAN{0,1}_IID*.jpg files, optionally in train/ val/ test/ "
        "subfolders (default: the synthetic LookBook)",
    )
    src.add_argument("--manifest", help="CSV file with source,target columns of relative paths")


def add_config_arguments(p: argparse.ArgumentParser, variant: bool = True) -> None:
    """The run settings (preset, sizes, schedule, seed, --set), shared by train and reproduce."""
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="named settings; 'paper' is the published recipe, 'robust' the recommended one "
        "(default: demo without --data, paper with it)",
    )
    if variant:
        p.add_argument("--variant", choices=VARIANTS, help="Table 2 method (default: rf+dd, ours)")
    p.add_argument("--image-size", type=int, help="S of the S x S images (64 in the paper)")
    p.add_argument("--base-filters", type=int, help="width of the first conv (128 in the paper)")
    p.add_argument("--batch-size", type=int, help="global batch size (128 in the paper)")
    p.add_argument("--epochs", type=int, help="epochs at the base learning rate (25)")
    p.add_argument("--decay-epochs", type=int, help="further epochs at the decayed rate (5)")
    p.add_argument("--learning-rate", type=float, help="base Adam learning rate (2e-4)")
    p.add_argument("--seed", type=int, help="seed of weights, split and data order (0)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="any other PLDTConfig field, e.g. --set spectral_norm=true (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m keras_pldt.train",
        description="Train a pixel-level domain transfer converter (Yoo et al., ECCV 2016). "
        "With no --data/--manifest it trains on the embedded synthetic LookBook with the demo "
        "preset. Re-run the same command to resume an interrupted run.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_data_arguments(p)
    p.add_argument("--run-dir", help="run folder (default: runs/<preset>-<variant>[-reverse])")
    add_config_arguments(p)
    p.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="auto",
        help="tf.distribute strategy; auto = mirrored on several GPUs, else default",
    )
    p.add_argument(
        "--mixed-precision",
        action="store_true",
        help="mixed_float16 with loss scaling (GPU only; refused on CPU, where it is slower)",
    )
    p.add_argument(
        "--precision",
        choices=("float32", "bfloat16"),
        help="compute precision; bfloat16 uses Keras' mixed_bfloat16 policy (CPUs with "
        "AVX-512 BF16, TPUs, recent GPUs)",
    )
    p.add_argument(
        "--jit-compile",
        action="store_true",
        help="XLA-compile the train step (worth it on GPU; slower on CPU)",
    )
    p.add_argument("--reverse", action="store_true", help="product -> human (paper Fig. 6)")
    p.add_argument("--no-cache", action="store_true", help="do not cache decoded images in RAM")
    p.add_argument(
        "--overwrite", action="store_true", help="replace a run folder made with another config"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar, epoch lines only")
    return p


def _parse_value(field: dataclasses.Field, text: str):
    kind = field.type if isinstance(field.type, str) else field.type.__name__
    if kind == "bool":
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise RunError(f"--set {field.name}: expected true/false, got {text!r}")
    try:
        return {"int": int, "float": float}.get(kind, str)(text)
    except ValueError:
        raise RunError(f"--set {field.name}: expected {kind}, got {text!r}") from None


def set_overrides(items: list[str]) -> dict[str, Any]:
    """The PLDTConfig fields of `--set FIELD=VALUE` items, parsed to the field's type."""
    fields = {f.name: f for f in dataclasses.fields(PLDTConfig)}
    overrides = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in fields:
            raise RunError(
                f"--set {item!r}: expected FIELD=VALUE with FIELD one of {sorted(fields)}"
            )
        overrides[name] = _parse_value(fields[name], value.strip())
    return overrides


def resolve_config(args: argparse.Namespace) -> PLDTConfig:
    """Preset, then explicit flags, then --set FIELD=VALUE."""
    preset = args.preset or ("paper" if (args.data or args.manifest) else "demo")
    try:
        return get_preset(preset, **explicit_overrides(args))
    except ValueError as e:
        raise RunError(str(e)) from None


def explicit_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields the command line sets explicitly: flags given, then --set."""
    flag = lambda name: getattr(args, name, None)  # noqa: E731  (reproduce has fewer flags)
    overrides = {
        "variant": flag("variant"),
        "image_size": args.image_size,
        "base_filters": args.base_filters,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "decay_epochs": args.decay_epochs,
        "learning_rate": args.learning_rate,
        "seed": args.seed,
        "jit_compile": True if flag("jit_compile") else None,
        "reverse": True if flag("reverse") else None,
        "cache": False if flag("no_cache") else None,
    }
    if flag("mixed_precision"):
        overrides["precision"] = "mixed_float16"
    elif flag("precision"):
        overrides["precision"] = args.precision
    overrides.update(set_overrides(args.set))
    return {k: v for k, v in overrides.items() if v is not None}


def default_run_dir(args: argparse.Namespace, config: PLDTConfig) -> Path:
    preset = args.preset or ("paper" if (args.data or args.manifest) else "demo")
    suffix = "-reverse" if config.reverse else ""
    return Path("runs") / f"{preset}-{config.variant}{suffix}"


def select_strategy(name: str):
    """The tf.distribute strategy for `name` (see --strategy)."""
    import tensorflow as tf

    # Multi-worker collectives must be configured before anything initialises the TF context.
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise RunError("--strategy multiworker needs the TF_CONFIG environment variable")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    raise RunError(f"unknown strategy {name!r}")


def _is_chief(strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type in (None, "chief") or (task_type == "worker" and task_id == 0)


def showcase_rows(products, count: int) -> list[int]:
    """Indices of up to `count` examples, one per product first, for the sample grid."""
    first: dict[int, int] = {}
    for i, p in enumerate(products):
        first.setdefault(int(p), i)
    rows = list(first.values())[:count]
    rest = [i for i in range(len(products)) if i not in set(rows)]
    return rows + rest[: count - len(rows)]


def _versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    from keras_pldt import __version__

    return {"keras_pldt_version": __version__, "tensorflow_version": tf.__version__,
            "keras_version": keras.__version__}  # fmt: skip


def prepare_run_dir(run_dir: Path, config: PLDTConfig, data_id: dict, overwrite: bool) -> None:
    """Create the folder and config.json, or check that an existing one has the same config."""
    path = run_dir / "config.json"
    if path.exists():
        saved = json.loads(path.read_text())
        same_data = {k: saved.get(k) for k in data_id} == data_id
        differing = [
            k for k, v in config.to_dict().items() if saved.get(k, v) != v and k != "cache"
        ]
        if not same_data:
            differing.append("data")
        if differing and not overwrite:
            raise RunError(
                f"{run_dir} holds a run with a different config ({', '.join(differing)}); "
                "use another --run-dir, or --overwrite to replace it"
            )
        if differing:
            for name in (*ARTEFACTS, FINAL_MODEL):
                target = run_dir / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        config.to_json(path, **data_id, **_versions())


def _set_precision(config: PLDTConfig) -> None:
    import keras
    import tensorflow as tf

    if config.precision == "mixed_float16" and not tf.config.list_physical_devices("GPU"):
        raise RunError(
            "--mixed-precision (mixed_float16) needs a GPU; on this CPU-only machine it is "
            "slower than float32. Use --precision bfloat16 on CPUs with AVX-512 BF16."
        )
    policy = {"float32": "float32", "bfloat16": "mixed_bfloat16"}.get(
        config.precision, config.precision
    )
    keras.mixed_precision.set_global_policy(policy)


def train(
    config: PLDTConfig,
    run_dir: str | Path,
    data: str | Path | None = None,
    manifest: str | Path | None = None,
    strategy="default",
    overwrite: bool = False,
    verbose: int = 1,
    print_fn=print,
):
    """Train (or resume) a run; returns the `PLDT` model. The CLI's engine, callable from Python.

    Raises `RunError` (and `keras_pldt.data.DataError`) for problems the user can fix.
    """
    import keras
    import tensorflow as tf

    from keras_pldt import callbacks as cb
    from keras_pldt.data import build_pipelines
    from keras_pldt.model import PLDT

    if isinstance(strategy, str):
        strategy = select_strategy(strategy)
    run_dir = Path(run_dir)
    chief = _is_chief(strategy)
    work_dir = run_dir if chief else Path(tempfile.mkdtemp(prefix="pldt-worker-"))
    data_id = {
        "data": str(Path(data).resolve()) if data else None,
        "manifest": str(Path(manifest).resolve()) if manifest else None,
    }
    prepare_run_dir(work_dir, config, data_id, overwrite)
    _set_precision(config)
    pipelines = build_pipelines(
        data, manifest=manifest, image_size=config.image_size, batch_size=config.batch_size,
        seed=config.seed, run_dir=work_dir, cache=config.cache, reverse=config.reverse,
        val_fraction=config.val_fraction, test_fraction=config.test_fraction,
        verbose=verbose > 0,
    )  # fmt: skip
    if pipelines.batch_size != config.batch_size:
        config = config.replace(batch_size=pipelines.batch_size)
    total = config.total_epochs
    state = cb.read_state(run_dir)  # workers other than the chief resume from the chief's
    initial_epoch = state["epoch"] if state else 0
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = PLDT(config)
        model.compile()
    if state:
        model.load_weights(run_dir / "checkpoints" / state["weights"])
        print_fn(f"resuming {run_dir} after epoch {initial_epoch}/{total}")
    if initial_epoch < total:
        shown = pipelines.splits["val"] if pipelines.splits["val"].num_sources else None
        arrays = pipelines.load_split_arrays("val" if shown else "train", limit=512)
        rows = showcase_rows(arrays["product"], 8)
        nan_guard = cb.NaNGuard()
        checkpoint = cb.RunCheckpoint(
            work_dir, monitor="val_rmse" if shown else "rmse", nan_guard=nan_guard
        )
        callbacks = [
            cb.PaperLearningRateSchedule(config),
            nan_guard,
            cb.SampleGrid(
                arrays["source"][rows], arrays["target"][rows], work_dir, work_dir / "logs"
            ),
            keras.callbacks.TensorBoard(
                log_dir=str(work_dir / "logs"),
                update_freq=max(1, pipelines.steps_per_epoch // 20),
                write_graph=False,
            ),
            checkpoint,
            cb.EpochSummary(total, pipelines.steps_per_epoch * config.batch_size, print_fn),
        ]
        train_ds = pipelines.train_for_epochs(initial_epoch, total)
        val_ds = pipelines.val
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = (
                tf.data.experimental.AutoShardPolicy.DATA
            )
            train_ds = train_ds.with_options(options)
            val_ds = val_ds.with_options(options) if val_ds is not None else None
        model.fit(
            train_ds,
            epochs=total,
            initial_epoch=initial_epoch,
            steps_per_epoch=pipelines.steps_per_epoch,
            shuffle=False,  # the pipeline shuffles, per (seed, epoch); Keras would only warn
            validation_data=val_ds,
            callbacks=callbacks,
            verbose=verbose,
        )
        if nan_guard.failure:
            last = cb.read_state(work_dir)
            kept = f"epoch {last['epoch']}" if last else "none (no epoch completed)"
            raise TrainingDiverged(
                f"training stopped: {nan_guard.failure}; last good checkpoint kept: {kept} "
                f"in {work_dir / 'checkpoints'}"
            )
    else:
        print_fn(f"{run_dir} is already complete ({total} epochs)")
    if chief:
        tmp = work_dir / f".tmp-{os.getpid()}-{FINAL_MODEL}"
        keras.saving.save_model(model.ema_converter(), tmp)
        os.replace(tmp, work_dir / FINAL_MODEL)
    else:
        shutil.rmtree(work_dir, ignore_errors=True)
    return model


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from keras_pldt.data import DataError

    try:
        config = resolve_config(args)
        run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(args, config)
        train(
            config,
            run_dir,
            data=args.data,
            manifest=args.manifest,
            strategy=args.strategy,
            overwrite=args.overwrite,
            verbose=0 if args.quiet else 1,
        )
    except (RunError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 3 if isinstance(e, TrainingDiverged) else 2
    print(
        f"done: {run_dir}/{FINAL_MODEL}; samples in {run_dir}/samples; "
        f"TensorBoard: tensorboard --logdir {run_dir}/logs"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
