"""Constants and functions shared by the tests (fixtures live in conftest.py).

Float tolerances are counted in float32 roundings (`EPS32`) of the magnitude the compared values
were computed at, so they hold at any scale and on any host's kernels.
"""

import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

#: Real photos in LookBook naming (train/ and test/ subfolders), outside the repo.
GROCERY_VAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "grocery_val"

SOURCE_G, TARGET_G = 40, 200  # green channel of tiny test images: which domain

#: One float32 rounding, relative (2**-23).
EPS32 = float(np.finfo(np.float32).eps)


def product_colour(pid: int, clean: int, k: int = 0) -> tuple[int, int, int]:
    """Colour of tiny test image k of product pid: R encodes the product (< 50), G the domain."""
    return (5 * (pid + 1), TARGET_G if clean else SOURCE_G, 30 * k)


def decode_colour(pixel) -> tuple[int, int]:
    """(pid, clean) of a pixel of a tiny test image after [-1, 1] scaling."""
    rgb = np.round((np.asarray(pixel) + 1.0) * 127.5)
    return int(round(rgb[0] / 5)) - 1, int(rgb[1] == TARGET_G)


def sum_ulps(terms: int, margin: float = 8.0) -> float:
    """Float32 roundings by which two evaluation orders of a sum of `terms` products may differ,
    relative to the largest result: rounding errors of a sum grow like sqrt(terms) (Higham and
    Mary's probabilistic bound), times `margin`."""
    return margin * float(np.sqrt(terms))


def tolerance(scale, ulps: float) -> float:
    """`ulps` float32 roundings of the largest |scale| (what the values were computed at)."""
    return ulps * EPS32 * float(np.max(np.abs(np.asarray(scale, np.float64))))


def assert_close(actual, desired, ulps: float, scale=None, err_msg: str = "") -> None:
    """Assert |actual - desired| <= `ulps` float32 roundings of `scale` at every element.

    `scale` defaults to the largest |desired|: an element near 0 carries the rounding of the
    large terms it was computed from, so it is judged at their magnitude, not its own.
    """
    desired = np.asarray(desired, np.float64)
    atol = tolerance(desired if scale is None else scale, ulps)
    np.testing.assert_allclose(
        np.asarray(actual, np.float64), desired, rtol=0, atol=atol, err_msg=err_msg
    )


def adam_step(config) -> float:
    """About the most one Adam update moves a weight, whatever its gradient (Adam divides the
    step by the gradient's own scale): the learning rate, which every network's Adam uses."""
    return config.learning_rate


#: Debian's Chromium, driven by Playwright (which downloads no browser), and its headless flags:
#: without the background-networking ones it tries to reach Google's hosts.
CHROMIUM = Path("/usr/bin/chromium")
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


def _default_interrupt() -> None:
    """In the child before exec: Ctrl-C (SIGINT) as in a terminal. A shell without job control
    starts background commands with SIGINT ignored, and children inherit that; Python then
    installs no KeyboardInterrupt handler, and the demo could not be stopped."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def demo_process(model, *args: str):
    """`python -m keras_pldt.demo --model MODEL --port 0 ARGS` as a user runs it: yields (url,
    process, its stderr file) once it serves, and stops it with SIGINT (Ctrl-C) at the end,
    leaving its stderr in `process.log`; the test fails with it when the demo does not start."""
    import pytest

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "keras_pldt.demo", "--model", str(model), "--port", "0"]
    with tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(
            [*command, *args], stdout=subprocess.PIPE, stderr=err, text=True, cwd=root, env=env,
            preexec_fn=_default_interrupt,
        )  # fmt: skip
        try:
            ready, _, _ = select.select([process.stdout], [], [], 180)
            line = process.stdout.readline() if ready else ""
            match = re.search(r"ready in [\d.]+ s; open (http://127\.0\.0\.1:\d+/) ", line)
            if not match:
                process.kill()
                err.seek(0)
                pytest.fail(f"the demo did not start: {line!r}\n{err.read()[-3000:]}")
            yield match.group(1), process, err
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=120)  # a loaded host may still be finishing a conversion
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                pytest.fail("the demo did not stop on Ctrl-C (SIGINT) within 120 s")
            err.seek(0)
            process.log = err.read()  # its stderr, for checks after it stopped


def post_photo(url: str, body: bytes, name: str, timeout: float = 120) -> tuple[int, dict]:
    """(HTTP status, JSON answer) of the demo's `POST /convert` of `body` named `name`."""
    request = urllib.request.Request(
        url + "convert", data=body, method="POST", headers={"X-Filename": name}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
