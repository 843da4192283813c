"""End-to-end tests of `python -m keras_pldt.train` at a tiny setting."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_pldt import train
from keras_pldt.config import get_preset
from keras_pldt.datasets.synthetic import generate

# float32 whatever the host (the default, --precision auto, is bfloat16 on CPUs with AMX or
# AVX512_BF16): the comparisons below do not depend on the machine.
TINY = ["--image-size", "32", "--base-filters", "4", "--batch-size", "8", "--quiet",
        "--precision", "float32"]  # fmt: skip
ENV = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3",
       "TF_DETERMINISTIC_OPS": "1", "CUDA_VISIBLE_DEVICES": ""}  # fmt: skip


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synthetic"), num_products=12, sources_per_product=4,
                    seed=1, image_size=32)  # fmt: skip


def run_cli(args, **kw):
    return subprocess.run([sys.executable, "-m", "keras_pldt.train", *args], env=ENV,
                          capture_output=True, text=True, **kw)  # fmt: skip


def event_scalars(path) -> dict[str, list[int]]:
    """tag -> steps of the scalar summaries in one TensorBoard event file."""
    tags: dict[str, list[int]] = {}
    for event in tf.compat.v1.train.summary_iterator(str(path)):
        for value in event.summary.value:
            tags.setdefault(value.tag, []).append(int(event.step))
    return tags


def batch_steps(path) -> list[int]:
    return [
        s for tag, steps in event_scalars(path).items() if tag.startswith("batch_") for s in steps
    ]


def converter_weights(run_dir):
    model = keras.saving.load_model(Path(run_dir) / "converter.keras")
    return [w.numpy() for w in model.weights]


def test_no_data_argument_trains_the_synthetic_default_and_writes_every_artefact(tmp_path):
    run_dir = tmp_path / "run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = train.main(
            ["--run-dir", str(run_dir), "--image-size", "32", "--base-filters", "4",
             "--batch-size", "96", "--epochs", "1", "--decay-epochs", "1", "--quiet"]
        )  # fmt: skip
    assert code == 0
    # Nothing for the user to act on: Keras warns about `shuffle` unless fit is told the
    # pipeline shuffles itself.
    assert not [w for w in caught if "shuffle" in str(w.message)]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["base_filters"] == 4 and config["epochs"] == 1
    assert config["tensorflow_version"] == tf.__version__ and config["data"] is None
    split = json.loads((run_dir / "split.json").read_text())
    assert split["train"] and split["val"] and split["test"]
    with open(run_dir / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    demo = get_preset("demo")  # the preset's own rates: the schedule switches at epoch 2
    assert float(rows[0]["learning_rate"]) == pytest.approx(demo.learning_rate)
    assert float(rows[1]["learning_rate"]) == pytest.approx(demo.decay_learning_rate)
    assert demo.decay_learning_rate < demo.learning_rate
    assert {"converter_loss", "domain_loss", "real_fake_accuracy", "val_rmse"} <= set(rows[0])
    for epoch in (1, 2):
        png = tf.io.decode_png(tf.io.read_file(str(run_dir / f"samples/epoch_{epoch:03d}.png")))
        assert png.shape[1] == 3 * 32 and png.shape[0] % 32 == 0
    state = json.loads((run_dir / "checkpoints/state.json").read_text())
    assert state["epoch"] == 2 and (run_dir / "checkpoints" / state["weights"]).exists()
    assert (run_dir / "checkpoints/best.weights.h5").exists()
    converter = keras.saving.load_model(run_dir / "converter.keras")
    assert converter.output_shape == (None, 32, 32, 3)
    events = {p.parent.name for p in (run_dir / "logs").rglob("events.out.tfevents*")}
    assert {"train", "validation", "samples"} <= events


def test_a_different_config_is_refused_then_overwritten(tmp_path, tiny_data, capsys):
    run_dir = tmp_path / "run"
    base = ["--data", str(tiny_data), "--run-dir", str(run_dir), *TINY, "--decay-epochs", "0"]
    assert train.main([*base, "--epochs", "1"]) == 0
    assert train.main([*base, "--epochs", "2", "--variant", "mse"]) == 2
    err = capsys.readouterr().err
    assert "different config" in err and "epochs" in err and "variant" in err
    assert json.loads((run_dir / "config.json").read_text())["epochs"] == 1
    assert train.main([*base, "--epochs", "2", "--variant", "mse", "--overwrite"]) == 0
    assert json.loads((run_dir / "config.json").read_text())["variant"] == "mse"


def test_missing_data_folder_is_one_line_error(tmp_path, capsys):
    code = train.main(["--data", str(tmp_path / "nope"), "--run-dir", str(tmp_path / "r"), *TINY])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "nope" in err and "Traceback" not in err


def test_kill_and_resume_matches_an_uninterrupted_run(tmp_path, tiny_data):
    common = ["--data", str(tiny_data), *TINY, "--epochs", "3", "--decay-epochs", "1"]
    straight = tmp_path / "straight"
    done = run_cli([*common, "--run-dir", str(straight)], timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]

    resumed = tmp_path / "resumed"
    proc = subprocess.Popen([sys.executable, "-m", "keras_pldt.train", *common, "--run-dir",
                             str(resumed)], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    state = resumed / "checkpoints" / "state.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if state.exists() and json.loads(state.read_text())["epoch"] >= 1:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(state.read_text())["epoch"]
    assert 1 <= killed_at < 4 and not (resumed / "converter.keras").exists()
    again = run_cli([*common, "--run-dir", str(resumed)], timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming {resumed} after epoch {killed_at}" in again.stdout
    # TensorBoard's batch steps go on from the global step: the resumed run's start after
    # the killed run's checkpoint instead of at 1 again.
    first, *rest = sorted((resumed / "logs" / "train").glob("events.out.tfevents*"))
    steps_per_epoch = 48 // 8  # 12 products x 4 sources, minus val/test products, batch 8
    resumed_steps = [s for f in rest for s in batch_steps(f)]
    assert resumed_steps and min(resumed_steps) > killed_at * (steps_per_epoch // 2)
    assert min(resumed_steps) > min(batch_steps(first))
    with open(resumed / "history.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2, 3, 4]
    for a, b in zip(converter_weights(straight), converter_weights(resumed), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_nan_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path, tiny_data, capsys):
    run_dir = tmp_path / "run"
    args = ["--data", str(tiny_data), "--run-dir", str(run_dir), *TINY, "--decay-epochs", "0"]
    assert train.main([*args, "--epochs", "1"]) == 0
    good = json.loads((run_dir / "checkpoints/state.json").read_text())
    # Same run folder extended by a second epoch whose learning rate blows the weights up.
    config = json.loads((run_dir / "config.json").read_text())
    config.update(epochs=2, learning_rate=1e30, decay_learning_rate=1e30 / 10)
    (run_dir / "config.json").write_text(json.dumps(config))
    code = train.main([*args, "--epochs", "2", "--learning-rate", "1e30"])
    assert code == 3
    err = capsys.readouterr().err
    assert "epoch 2, step" in err and "last good checkpoint kept: epoch 1" in err
    state = json.loads((run_dir / "checkpoints/state.json").read_text())
    assert state == good


def test_reverse_swaps_the_domains(tmp_path, tiny_data):
    def white_fraction_of_sources(run_dir):
        grid = tf.io.decode_png(tf.io.read_file(str(run_dir / "samples/epoch_001.png"))).numpy()
        return float(np.mean(grid[:, :32].min(axis=-1) > 240))

    fractions = {}
    for flag in ([], ["--reverse"]):
        run_dir = tmp_path / ("reverse" if flag else "forward")
        args = ["--data", str(tiny_data), "--run-dir", str(run_dir), *TINY, *flag]
        assert train.main([*args, "--epochs", "1", "--decay-epochs", "0"]) == 0
        assert json.loads((run_dir / "config.json").read_text())["reverse"] == bool(flag)
        fractions[bool(flag)] = white_fraction_of_sources(run_dir)
    # Product photos (CLEAN1) are mostly white background; person photos are cluttered.
    assert fractions[True] > 0.4 > 0.15 > fractions[False]


MIRRORED = """
import sys, json, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from keras_pldt import train
sys.exit(train.main(sys.argv[1:]))
"""


def test_mirrored_on_two_logical_cpus_matches_single_device(tmp_path, tiny_data):
    histories = {}
    for strategy in ("default", "mirrored"):
        run_dir = tmp_path / strategy
        args = ["--data", str(tiny_data), "--run-dir", str(run_dir), *TINY, "--epochs", "2",
                "--decay-epochs", "0", "--strategy", strategy]  # fmt: skip
        done = subprocess.run([sys.executable, "-c", MIRRORED, *args], env=ENV,
                              capture_output=True, text=True, timeout=600)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        with open(run_dir / "history.csv") as f:
            histories[strategy] = list(csv.DictReader(f))
    for single, mirrored in zip(histories["default"], histories["mirrored"], strict=True):
        for key in ("converter_loss", "real_fake_loss", "domain_loss", "val_rmse"):
            assert float(mirrored[key]) == pytest.approx(float(single[key]), rel=2e-2, abs=2e-3)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_worker_multiworker_run_on_loopback(tmp_path, tiny_data):
    ports = [free_port(), free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    run_dir = tmp_path / "run"
    for index in range(2):
        env = {
            **ENV,
            "TF_CONFIG": json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": index}}
            ),
        }
        args = ["--data", str(tiny_data), "--run-dir", str(run_dir), *TINY, "--epochs", "1",
                "--decay-epochs", "0", "--strategy", "multiworker"]  # fmt: skip
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "keras_pldt.train", *args],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        outs = [p.communicate(timeout=400) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    state = json.loads((run_dir / "checkpoints/state.json").read_text())
    assert state["epoch"] == 1 and (run_dir / "converter.keras").exists()


def test_tensorboard_holds_every_epochs_scalars_and_sample_grid(tmp_path, tiny_data):
    # 3 epochs of 4 steps with update_freq 1..: every epoch's scalars and image are written,
    # whatever the batch-level update frequency (Keras alone kept only some epochs).
    run_dir = tmp_path / "run"
    args = ["--data", str(tiny_data), "--run-dir", str(run_dir), *TINY]
    assert train.main([*args, "--epochs", "2", "--decay-epochs", "1", "--batch-size", "10"]) == 0
    (train_events,) = (run_dir / "logs" / "train").glob("events.out.tfevents*")
    scalars = event_scalars(train_events)
    assert sorted(scalars["epoch_converter_loss"]) == [0, 1, 2]
    assert sorted(scalars["epoch_domain_loss"]) == [0, 1, 2]
    (val_events,) = (run_dir / "logs" / "validation").glob("events.out.tfevents*")
    assert sorted(event_scalars(val_events)["epoch_rmse"]) == [0, 1, 2]
    (sample_events,) = (run_dir / "logs" / "samples").glob("events.out.tfevents*")
    steps = [
        e.step for e in tf.compat.v1.train.summary_iterator(str(sample_events)) if e.summary.value
    ]
    assert sorted(steps) == [1, 2, 3]


def test_a_failed_first_command_does_not_block_the_corrected_one(tmp_path, tiny_data, capsys):
    run_dir = tmp_path / "run"
    common = ["--run-dir", str(run_dir), *TINY, "--epochs", "1", "--decay-epochs", "0"]
    assert train.main(["--data", str(tmp_path / "TYPO"), *common]) == 2
    assert not run_dir.exists()  # nothing written before the inputs are validated
    assert train.main(["--data", str(tiny_data), *common]) == 0
    final = run_dir / "converter.keras"
    mtime = final.stat().st_mtime_ns
    assert train.main(["--data", str(tiny_data), *common]) == 0  # finished: nothing rewritten
    assert final.stat().st_mtime_ns == mtime
    assert "already complete" in capsys.readouterr().out


@pytest.mark.parametrize("rate", ["-1", "0"])
def test_non_positive_learning_rates_are_refused_in_one_line(tmp_path, rate, capsys):
    code = train.main(["--run-dir", str(tmp_path / "r"), *TINY, "--learning-rate", rate])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error:") and "learning_rate" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "r").exists()


def test_decay_rate_follows_an_explicit_learning_rate():
    args = train.build_parser().parse_args(["--learning-rate", "1e-3"])
    config = train.resolve_config(args)
    assert config.decay_learning_rate == pytest.approx(1e-4)
    args = train.build_parser().parse_args(
        ["--learning-rate", "1e-3", "--decay-learning-rate", "5e-4"]
    )
    assert train.resolve_config(args).decay_learning_rate == pytest.approx(5e-4)


def test_divergence_without_nan_is_flagged_at_the_end_of_the_epoch():
    from keras_pldt.callbacks import NaNGuard

    guard = NaNGuard()
    guard.set_model(keras.Sequential())
    guard.on_epoch_begin(0)
    guard.on_batch_end(0, {"converter_loss": 0.8, "converter_l1": 0.0})
    guard.on_epoch_end(0, {"converter_loss": 0.5})
    assert guard.failure is None
    guard.on_epoch_begin(1)
    guard.on_epoch_end(1, {"converter_loss": 7.8e14})
    assert "converter_loss" in guard.failure and "epoch 2" in guard.failure


def test_resume_with_other_runtime_settings_works_and_says_so(tmp_path, tiny_data, capsys):
    run_dir = tmp_path / "run"
    args = ["--data", str(tiny_data), "--run-dir", str(run_dir), *TINY, "--decay-epochs", "0"]
    assert train.main([*args, "--epochs", "1"]) == 0
    config = json.loads((run_dir / "config.json").read_text())
    config.update(epochs=2)  # the same run, one epoch longer
    (run_dir / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert train.main([*args, "--epochs", "2", "--set", "subpixel_convs=false"]) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and "subpixel_convs=False" in out
    assert json.loads((run_dir / "config.json").read_text())["subpixel_convs"] is False


def test_quiet_still_reports_skipped_files_at_the_end(tmp_path, tiny_data, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    (data / "PID0000_CLEAN0_IID9999.png").write_bytes(b"not an image")
    run_dir = tmp_path / "run"
    code = train.main(["--data", str(data), "--run-dir", str(run_dir), *TINY, "--epochs", "1",
                       "--decay-epochs", "0"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert "undecodable" in out[-2] or "undecodable" in out[-1]


def test_only_runs_well_short_of_the_measured_length_get_a_note():
    config = get_preset("robust", epochs=25, decay_epochs=5)
    note = train.length_note(config, steps_per_epoch=7)  # grocery_val at batch 32: 210 updates
    assert note.startswith("note: this run makes 210 updates;")
    epochs = int(note.split("--epochs ")[1].split()[0])
    updates = (epochs + config.decay_epochs) * 7
    assert train.MEASURED_UPDATES <= updates < train.MEASURED_UPDATES + 7, note
    assert train.length_note(config.replace(epochs=epochs), steps_per_epoch=7) is None
    # a run of 2460 updates (82 per epoch) is about the measured length: no note
    assert train.length_note(config, steps_per_epoch=82) is None
    assert train.length_note(get_preset("paper"), steps_per_epoch=7) is None  # no L1 anchor


def test_precision_auto_is_the_default_and_the_run_records_what_it_chose(
    tmp_path, tiny_data, capsys, monkeypatch
):
    from keras_pldt import precision as M

    assert train.resolve_config(train.build_parser().parse_args([])).precision == "auto"
    monkeypatch.setattr(M, "cpu_bf16_flags", lambda: ["amx_bf16"])
    chosen = M.auto_precision()  # bfloat16, float32 where a GPU is visible
    run_dir = tmp_path / "run"
    args = ["--data", str(tiny_data), "--run-dir", str(run_dir), "--image-size", "32",
            "--base-filters", "4", "--batch-size", "8", "--quiet", "--epochs", "1",
            "--decay-epochs", "0"]  # fmt: skip
    assert train.main(args) == 0
    out = capsys.readouterr().out
    assert json.loads((run_dir / "config.json").read_text())["precision"] == chosen
    assert ("precision: bfloat16 (auto: this CPU has amx_bf16" in out) == (chosen == "bfloat16")
    monkeypatch.setattr(M, "cpu_bf16_flags", lambda: [])
    assert train.main(args) == 0  # the same run on a host without bf16: resumes in float32
    assert json.loads((run_dir / "config.json").read_text())["precision"] == "float32"
