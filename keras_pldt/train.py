"""`python -m keras_pldt.train`: the paper's training run (Algorithm 1), observable and resumable.

With no data argument it trains the `demo` preset on the embedded synthetic LookBook. The run
folder holds config.json, split.json, checkpoints/, logs/ (TensorBoard), samples/, history.csv
and, at the end, converter.keras. Re-running the same command resumes after the last
completed epoch; a run folder of a different config is refused unless --overwrite.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from keras_pldt.cli import HelpFormatter, fail, quiet_tensorflow
from keras_pldt.config import PRESETS, RETIRED_SWITCHES, VARIANTS, PLDTConfig, get_preset
from keras_pldt.errors import PLDTError, RunError, TrainingDiverged
from keras_pldt.run import RunFolder

__all__ = ["RunError", "TrainingDiverged", "build_parser", "main", "resolve_config", "train"]

STRATEGIES = ("auto", "default", "mirrored", "multiworker", "tpu")
#: The number of updates at which the recommended recipe was measured (docs/results.md).
MEASURED_UPDATES = 2500


def length_note(config: PLDTConfig, steps_per_epoch: int) -> str | None:
    """A note when a run of the robust recipe (its L1 anchor) makes well under half the updates
    it was measured at, with the --epochs that would give about that many; None otherwise."""
    updates = steps_per_epoch * config.total_epochs
    if updates >= MEASURED_UPDATES // 2 or not config.reconstruction_weight:
        return None
    epochs = -(-MEASURED_UPDATES // steps_per_epoch) - config.decay_epochs
    return (
        f"note: this run makes {updates} updates; the recipe was measured at about "
        f"{MEASURED_UPDATES} (docs/results.md): --epochs {epochs} gives that many"
    )


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
    for flag, kind, field, text in (
        ("--image-size", int, "image_size", "S of the S x S images"),
        ("--base-filters", int, "base_filters", "width of the first conv"),
        ("--batch-size", int, "batch_size", "global batch size"),
        ("--epochs", int, "epochs", "epochs at the base learning rate"),
        ("--decay-epochs", int, "decay_epochs", "further epochs at the decayed rate"),
        ("--learning-rate", float, "learning_rate", "base Adam learning rate, > 0"),
    ):
        p.add_argument(flag, type=kind, help=f"{text} {_preset_default(field)}")
    p.add_argument(
        "--decay-learning-rate",
        type=float,
        help="rate of the decay epochs (default: a tenth of --learning-rate when that is given, "
        "else the preset's; paper: 2e-05, demo: 5e-05)",
    )
    p.add_argument("--seed", type=int, help="seed of weights, split and data order (default: 0)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="any other PLDTConfig field, e.g. --set spectral_norm=true (repeatable)",
    )


def _preset_default(field: str) -> str:
    """'(default: the preset's; paper: X, demo: Y)' for a config field."""
    values = [get_preset(name).to_dict()[field] for name in ("paper", "demo")]
    paper, demo = (f"{v:g}" if isinstance(v, float) else v for v in values)
    return f"(default: the preset's; paper: {paper}, demo: {demo})"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m keras_pldt.train",
        description="Train a pixel-level domain transfer converter (Yoo et al., ECCV 2016). "
        "With no --data/--manifest it trains on the embedded synthetic LookBook with the demo "
        "preset. Re-run the same command to resume an interrupted run.",
        formatter_class=HelpFormatter,
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
        choices=("auto", "float32", "bfloat16"),
        help="compute precision; bfloat16 uses Keras' mixed_bfloat16 policy; auto (the default) "
        "is bfloat16 on a CPU with AMX-BF16 or AVX512_BF16 (natively fast there), else float32",
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
    p.add_argument(
        "--verbose", action="store_true", help="show TensorFlow's own C++ log lines as well"
    )
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
        if name in RETIRED_SWITCHES:
            raise RunError(
                f"--set {item!r}: {name} is an experiment switch that keras_pldt does not ship; "
                "docs/results.md has its evidence, measured at commit 17a4359"
            )
        if not sep or name not in fields:
            raise RunError(
                f"--set {item!r}: expected FIELD=VALUE with FIELD one of {sorted(fields)}"
            )
        overrides[name] = _parse_value(fields[name], value.strip())
    return overrides


def resolve_config(args: argparse.Namespace) -> PLDTConfig:
    """Preset, then explicit flags, then --set FIELD=VALUE (`PLDTConfig.override`: adapted to
    the chosen variant; settings the config would ignore are refused when given explicitly)."""
    preset = args.preset or ("paper" if (args.data or args.manifest) else "demo")
    overrides = explicit_overrides(args)
    try:
        return get_preset(preset, **overrides)
    except ValueError as e:
        raise RunError(str(e)) from None


def explicit_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields the command line sets explicitly: flags given, then --set."""
    flag = lambda name: getattr(args, name, None)  # reproduce has fewer flags
    overrides = {
        "variant": flag("variant"),
        "image_size": args.image_size,
        "base_filters": args.base_filters,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "decay_epochs": args.decay_epochs,
        "learning_rate": args.learning_rate,
        "decay_learning_rate": flag("decay_learning_rate"),
        "seed": args.seed,
        "jit_compile": True if flag("jit_compile") else None,
        "reverse": True if flag("reverse") else None,
        "cache": False if flag("no_cache") else None,
    }
    if flag("mixed_precision"):
        overrides["precision"] = "mixed_float16"
    elif hasattr(args, "precision"):
        overrides["precision"] = args.precision or "auto"
    if args.learning_rate is not None and overrides["decay_learning_rate"] is None:
        overrides["decay_learning_rate"] = args.learning_rate / 10  # the paper's ratio
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


def _check_precision(config: PLDTConfig, print_fn=print) -> PLDTConfig:
    """`config` with precision "auto" resolved (and said); refuses float16 on a CPU."""
    import tensorflow as tf

    from keras_pldt.precision import auto_precision, cpu_bf16_flags

    if config.precision == "auto":
        config = config.replace(precision=auto_precision())
        if config.precision == "bfloat16":
            flags = ", ".join(cpu_bf16_flags())
            print_fn(f"precision: bfloat16 (auto: this CPU has {flags}; --precision float32 to "
                     "turn it off)")  # fmt: skip
    if config.precision == "mixed_float16" and not tf.config.list_physical_devices("GPU"):
        raise RunError(
            "--mixed-precision (mixed_float16) needs a GPU; on this CPU-only machine it is "
            "slower than float32. Use --precision bfloat16 on CPUs with AVX-512 BF16."
        )
    return config


def _split_record(pipelines) -> dict[str, Any]:
    """split.json's content for the pipelines' split."""
    data = pipelines.data
    source = "folders" if data.folder_splits is not None else "products"
    return {"source": source, "seed": pipelines.seed, "root": str(data.root), **pipelines.split}


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

    Nothing is written into `run_dir` until the data and the folder are validated; a folder
    this user cannot write is refused first, before TensorFlow, the data or a model is loaded.
    Raises a `keras_pldt.errors.PLDTError` (`RunError`, `DataError`) for problems the user can
    fix.
    """
    RunFolder(run_dir).check_writable()
    import keras
    import tensorflow as tf

    from keras_pldt.data import build_pipelines
    from keras_pldt.model import PLDT

    if isinstance(strategy, str):
        strategy = select_strategy(strategy)
    chief = _is_chief(strategy)
    run = RunFolder(run_dir)
    work = run if chief else RunFolder(tempfile.mkdtemp(prefix="pldt-worker-"))
    data_id = {
        "data": str(Path(data).resolve()) if data else None,
        "manifest": str(Path(manifest).resolve()) if manifest else None,
    }
    config = _check_precision(config, print_fn)
    saved = work.saved() or {}
    if saved.get("batch_size") and saved["batch_size"] != config.batch_size:
        # A batch size the data clamped when the run began; the run keeps it.
        config = config.replace(batch_size=min(config.batch_size, saved["batch_size"]))
    work.check(config, data_id, overwrite)  # refuse another run before any work
    reuse_split = work.split_path.exists() and not work.differing_identity(config, data_id)
    pipelines = build_pipelines(
        data, manifest=manifest, image_size=config.image_size, batch_size=config.batch_size,
        seed=config.seed, run_dir=work.path if reuse_split else None, cache=config.cache,
        reverse=config.reverse, val_fraction=config.val_fraction,
        test_fraction=config.test_fraction, verbose=True,
    )  # fmt: skip
    if pipelines.batch_size != config.batch_size:  # the pipelines said so
        config = config.replace(batch_size=pipelines.batch_size)
    changed = work.check(config, data_id, overwrite)
    work.prepare(config, data_id, overwrite, **_versions())  # the first write into the folder
    work.write_split(_split_record(pipelines))
    total = config.total_epochs
    state = run.state()  # workers other than the chief resume from the chief's
    initial_epoch = state["epoch"] if state else 0
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = PLDT(config)
        model.compile()
    if state:
        run.restore(model, "last")
        note = f" with {', '.join(f'{k}={getattr(config, k)}' for k in changed)}" if changed else ""
        print_fn(f"resuming {run.path} after epoch {initial_epoch}/{total}{note}")
    note = length_note(config, pipelines.steps_per_epoch)
    if initial_epoch == 0 and note:
        print_fn(note)
    if initial_epoch < total:
        callbacks, nan_guard = _callbacks(config, pipelines, work, print_fn)
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
        _print_skips(pipelines, print_fn)
        if nan_guard.failure:
            last = work.completed_epochs()
            kept = f"epoch {last} in {work.checkpoints}" if last else "none (no epoch completed)"
            raise TrainingDiverged(
                f"training stopped: {nan_guard.failure}; last good checkpoint kept: {kept}"
            )
    else:
        print_fn(f"{run.path} is already complete ({total} epochs)")
        _print_skips(pipelines, print_fn)
    if chief:
        work.save_final(model.converter)
    else:
        shutil.rmtree(work.path, ignore_errors=True)
    return model


def _print_skips(pipelines, print_fn) -> None:
    """The count of files the data check skipped, again at the end (quiet or not)."""
    if pipelines.report.counts():
        print_fn(pipelines.report.summary())


def _callbacks(config, pipelines, run: RunFolder, print_fn):
    """The run's callbacks (and its NaN guard): schedule, NaN/divergence stop, sample grid,
    TensorBoard, checkpoint, epoch line."""
    from keras_pldt import callbacks as cb

    held_out = bool(pipelines.splits["val"].num_sources)
    arrays = pipelines.load_split_arrays("val" if held_out else "train", limit=512)
    rows = showcase_rows(arrays["product"], 8)
    if held_out:
        tag = "validation: source | generated | target"
    else:
        tag = "training photos (no val split): source | generated | target"
        print_fn("note: the data has no validation split; the sample grid shows training photos")
    nan_guard = cb.NaNGuard()
    steps = pipelines.steps_per_epoch
    callbacks = [
        cb.PaperLearningRateSchedule(config),
        nan_guard,
        cb.SampleGrid(arrays["source"][rows], arrays["target"][rows], run.path, run.logs, tag),
        cb.TensorBoard(log_dir=str(run.logs), update_freq=max(1, steps // 20), write_graph=False),
        cb.RunCheckpoint(run.path, monitor="val_rmse" if held_out else "rmse", nan_guard=nan_guard),
        cb.EpochSummary(config.total_epochs, steps * config.batch_size, print_fn),
        cb.Progress(),
    ]
    return callbacks, nan_guard


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_tensorflow(args.verbose)
    try:  # settings first: a bad one is refused before TensorFlow loads
        config = resolve_config(args)
    except PLDTError as e:
        return fail("error", e)
    try:
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
    except PLDTError as e:
        return fail("error", e)
    run = RunFolder(run_dir)
    print(
        f"done: {run.final_model}; samples in {run.samples}; "
        f"TensorBoard: tensorboard --logdir {run.logs}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
