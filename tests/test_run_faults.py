"""Folders a command cannot write and writes a kill interrupted (issue #38, items 1, 2, 3, 6).

`train` and `export` refuse a run folder or `--out` they cannot write in one line naming it,
before TensorFlow, the data or a model is loaded; `export` keeps a user's existing `--out`
folder and creates what it writes with the user's umask; the temp file of a checkpoint write
that a kill interrupted is removed when the run resumes.

Permissions mean nothing to root, so the permission tests run the command as an ordinary user
(`unshare --user --map-user=1000 --map-group=1000`, or directly when the tests already run as
one) and are skipped, saying so, on a host that cannot drop privileges.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3",
       "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}  # fmt: skip
TINY = ["--image-size", "32", "--base-filters", "4", "--batch-size", "8", "--quiet",
        "--precision", "float32", "--epochs", "1", "--decay-epochs", "0"]  # fmt: skip
HEAVY = ("tensorflow", "keras")
#: Runs `keras_pldt.<module>.main(argv)` (after `os.umask(mask)`) and prints the heavy modules
#: it imported as a last line, so a test sees whether any slow work began.
CHILD = """
import importlib, json, os, sys
module, mask, *argv = sys.argv[1:]
os.umask(int(mask, 8))
code = importlib.import_module("keras_pldt." + module).main(argv)
print(json.dumps([m for m in HEAVY if m in sys.modules]))
sys.exit(code)
""".replace("HEAVY", repr(HEAVY))


def _drop_privileges() -> list[str]:
    """The command prefix that runs a command as an ordinary user; skips when there is none."""
    if os.geteuid() != 0:
        return []
    prefix = ["unshare", "--user", "--map-user=1000", "--map-group=1000"]
    if shutil.which("unshare") is None:
        pytest.skip("this host cannot drop privileges: no unshare")
    probe = subprocess.run([*prefix, "id", "-u"], capture_output=True, text=True)
    if probe.returncode != 0 or probe.stdout.strip() != "1000":
        pytest.skip(
            f"this host cannot drop privileges: unshare --user fails ({probe.stderr.strip()})"
        )
    return prefix


def run(module: str, argv: list[str], as_user: bool = False, umask: int = 0o022):
    """(exit status, stdout less its last line, stderr, heavy modules imported) of
    `python -m keras_pldt.<module> ARGV`."""
    prefix = _drop_privileges() if as_user else []
    command = [*prefix, sys.executable, "-c", CHILD, module, f"{umask:o}", *map(str, argv)]
    done = subprocess.run(command, capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=600)
    lines = done.stdout.rstrip("\n").split("\n")
    try:
        heavy = json.loads(lines[-1])
    except ValueError:
        heavy = None  # the command died before the last line
    return done.returncode, "\n".join(lines[:-1]), done.stderr, heavy


def assert_refused(result, prefix: str, *named: object, code: int):
    """One line on stderr, `prefix` first, naming each of `named`; nothing slow happened."""
    rc, out, err, heavy = result
    assert "Traceback" not in err, err[-3000:]
    assert rc == code, (rc, err[-3000:])
    assert err.startswith(prefix) and err.count("\n") == 1, err
    for name in named:
        assert str(name) in err, (name, err)
    assert heavy == [], f"refused after loading {heavy}"
    assert out == "", out


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from keras_pldt.datasets.synthetic import generate

    return generate(tmp_path_factory.mktemp("synthetic"), num_products=12, sources_per_product=4,
                    seed=1, image_size=32)  # fmt: skip


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A tiny untrained converter as a `.keras` file (32 px, base width 4)."""
    import keras

    from keras_pldt.config import PLDTConfig
    from keras_pldt.networks import build_converter

    path = tmp_path_factory.mktemp("model") / "converter.keras"
    keras.saving.save_model(build_converter(PLDTConfig(image_size=32, base_filters=4)), path)
    return path


@pytest.fixture
def locked(tmp_path):
    """`locked(path)`: make the folder `path` read-only (mode 555); made writable again after
    the test so that pytest can remove it."""
    folders = []

    def lock(path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o555)
        folders.append(path)
        return path

    yield lock
    for path in folders:
        path.chmod(0o755)


# ----------------------------------------------------------------------------- train
def test_train_refuses_unwritable_run_dir(tmp_path, tiny_data, locked):
    run_dir = locked(tmp_path / "locked") / "run"
    result = run("train", ["--data", tiny_data, "--run-dir", run_dir, *TINY], as_user=True)
    assert_refused(result, "error: ", run_dir, "not writable", code=2)
    assert not run_dir.exists()


def test_train_refuses_run_dir_under_a_file(tmp_path, tiny_data):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    run_dir = afile / "run"
    result = run("train", ["--data", tiny_data, "--run-dir", run_dir, *TINY])
    assert_refused(result, "error: ", run_dir, "is a file", code=2)
    assert afile.read_text() == "not a folder"


def test_train_refuses_run_dir_that_is_a_file(tmp_path, tiny_data):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    result = run("train", ["--data", tiny_data, "--run-dir", afile, *TINY])
    assert_refused(result, "error: ", afile, "is a file", code=2)
    assert afile.read_text() == "not a folder"


def test_interrupted_checkpoint_temp_removed_on_resume(tmp_path, tiny_data):
    from keras_pldt import train

    run_dir = tmp_path / "run"
    argv = ["--data", str(tiny_data), "--run-dir", str(run_dir), *TINY]
    assert train.main(argv) == 0
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a writer that is gone, as after a kill
    leftovers = [
        run_dir / "checkpoints" / f".tmp-{dead.pid}-best.weights.h5",
        run_dir / f".tmp-{dead.pid}-converter.keras",
    ]
    for path in leftovers:
        path.write_bytes(b"half a file")
    assert train.main(argv) == 0  # the next start of the run
    assert [path for path in leftovers if path.exists()] == []
    assert (run_dir / "checkpoints" / "best.weights.h5").is_file()


# ----------------------------------------------------------------------------- export
def test_export_refuses_unwritable_out(tmp_path, tiny_model, locked):
    # A read-only --out in a read-only parent: nothing can be written there.
    out = locked(locked(tmp_path / "parent") / "out")
    argv = ["--model", tiny_model, "--out", out, "--formats", "savedmodel", "--quiet"]
    result = run("export", argv, as_user=True)
    assert_refused(result, "export failed: ", out, "not writable", code=1)
    # A read-only, empty --out in a writable parent is refused too, and kept as it is.
    out = locked(tmp_path / "readonly")
    inode = out.stat().st_ino
    argv = ["--model", tiny_model, "--out", out, "--formats", "savedmodel", "--quiet"]
    result = run("export", argv, as_user=True)
    assert_refused(result, "export failed: ", out, "not writable", code=1)
    assert out.stat().st_ino == inode and stat.S_IMODE(out.stat().st_mode) == 0o555
    assert list(out.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == [
        "parent",
        "readonly",
    ]


def test_export_refuses_out_under_a_file(tmp_path, tiny_model):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    out = afile / "exp"
    argv = ["--model", tiny_model, "--out", out, "--formats", "savedmodel", "--quiet"]
    assert_refused(run("export", argv), "export failed: ", out, "is a file", code=1)
    assert afile.read_text() == "not a folder"


def test_export_keeps_existing_out_folder_and_umask(tmp_path, tiny_model):
    out = tmp_path / "exported"
    out.mkdir()
    out.chmod(0o751)
    inode = out.stat().st_ino
    argv = ["--model", tiny_model, "--out", out, "--formats", "savedmodel", "--quiet"]
    rc, _, err, _ = run("export", argv, umask=0o027)
    assert rc == 0, err[-3000:]
    assert out.stat().st_ino == inode, "the existing --out folder was replaced"
    assert stat.S_IMODE(out.stat().st_mode) == 0o751
    assert sorted(p.name for p in out.iterdir()) == ["parity.json", "savedmodel"]
    modes = {
        str(p.relative_to(out)): stat.S_IMODE(p.stat().st_mode) for p in [out, *out.rglob("*")]
    }
    del modes["."]
    wrong = {p: oct(m) for p, m in modes.items() if m != (0o750 if (out / p).is_dir() else 0o640)}
    assert wrong == {}, f"not made with umask 027: {wrong}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]
