"""Fixtures shared by the tests (constants and functions shared by them are in helpers.py).

Every test starts from the same random state and gets Keras' global settings back as it found
them, so no test depends on which tests ran before it.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import random  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from helpers import product_colour  # noqa: E402
from PIL import Image  # noqa: E402

# PLDT_TEST_ORDER=reverse or =shuffle:SEED runs the test files reversed or shuffled (seeded).
ORDER_VARIABLE = "PLDT_TEST_ORDER"


def _file_order() -> str:
    order = os.environ.get(ORDER_VARIABLE, "")
    seed = order.removeprefix("shuffle:")
    if order not in ("", "reverse") and not (order.startswith("shuffle:") and seed.isdigit()):
        raise pytest.UsageError(f"{ORDER_VARIABLE}={order!r}: use 'reverse' or 'shuffle:SEED'")
    return order


def pytest_configure(config):
    _file_order()  # a bad value fails before collection


def pytest_xdist_auto_num_workers(config):
    """`-n auto` (pyproject.toml): one worker per core, at most 4 (each holds TensorFlow)."""
    return max(1, min(4, len(os.sched_getaffinity(0))))


def pytest_report_header(config):
    order = _file_order()
    return f"test file order: {order} ({ORDER_VARIABLE})" if order else None


def pytest_collection_modifyitems(config, items):
    """Reorder whole test files as PLDT_TEST_ORDER says; each file's tests keep their order."""
    order = _file_order()
    if not order:
        return
    files: dict[Path, list] = {}
    for item in items:
        files.setdefault(item.path, []).append(item)
    groups = list(files.values())
    if order == "reverse":
        groups.reverse()
    else:
        random.Random(int(order.removeprefix("shuffle:"))).shuffle(groups)
    items[:] = [item for group in groups for item in group]


@pytest.fixture(autouse=True)
def _same_process_state():
    """Seed Python, NumPy, TensorFlow and Keras' seed generator alike before each test, and
    restore Keras' dtype policy, float type and image data format after it."""
    import keras

    keras.utils.set_random_seed(0)
    policy = keras.mixed_precision.global_policy()
    floatx, data_format = keras.config.floatx(), keras.config.image_data_format()
    yield
    keras.mixed_precision.set_global_policy(policy)
    keras.config.set_floatx(floatx)
    keras.config.set_image_data_format(data_format)


@pytest.fixture
def make_lookbook(tmp_path):
    """Factory writing a tiny LookBook folder of flat-coloured PNGs (colour = product/domain)."""

    def make(root=None, products=6, sources=3, targets=1, size=(20, 16), start=0):
        root = Path(root) if root is not None else tmp_path / "lookbook"
        root.mkdir(parents=True, exist_ok=True)
        iid = 0
        for p in range(start, start + products):
            for clean, n in ((0, sources), (1, targets)):
                for k in range(n):
                    im = Image.new("RGB", size, product_colour(p, clean, k))
                    im.save(root / f"PID{p:04d}_CLEAN{clean}_IID{p:04d}{iid:04d}.png")
                    iid += 1
        return root

    return make


# ---------------------------------------------------------------- export, convert and the kit
#: The tiny exported converter's image size (32 px, base width 8).
EXPORT_SIZE = 32
#: Photos that calibrate the tiny converter's int8 export.
CALIBRATION_SAMPLES = 32


@pytest.fixture(scope="session")
def real_photos():
    """`real_photos(split)`: the shared grocery photos of `split` ("train" or "test") as a
    folder, or None when ../shared is absent."""
    from helpers import GROCERY_VAL

    def find(split: str = "test") -> Path | None:
        folder = GROCERY_VAL / split
        return folder if folder.is_dir() and any(folder.glob("*.jpg")) else None

    return find


@pytest.fixture(scope="session")
def exported(tmp_path_factory, real_photos):
    """A tiny converter (32 px, base width 8) fitted 30 steps (MSE, source -> its product photo)
    on the real photos (the synthetic set without ../shared) in a run folder, and exported once
    to every format. `.model_file(name)` is the model of one format folder;
    `.calibration_images` the number of photos int8 calibration must use."""
    from types import SimpleNamespace

    import keras
    import tensorflow as tf

    from keras_pldt.config import PLDTConfig
    from keras_pldt.data.pipeline import without_autotune
    from keras_pldt.export import export
    from keras_pldt.networks import build_converter
    from keras_pldt.run import RunFolder
    from keras_pldt.runtime import list_images, load_photos

    root = tmp_path_factory.mktemp("export")
    photos = real_photos("train") or real_photos("test")
    if photos is None:
        from keras_pldt.datasets.synthetic import generate

        photos = generate(root / "synthetic", 12, 2, seed=0, image_size=64)
    by_pid: dict[str, list[Path]] = {}
    for path in list_images(photos):
        by_pid.setdefault(path.name.split("_")[0], []).append(path)
    sources, targets = [], []
    for group in list(by_pid.values())[:40]:
        clean = [p for p in group if "_CLEAN1_" in p.name] or group
        pairs = [(p, clean[0]) for p in group if "_CLEAN1_" not in p.name]
        sources += [s for s, _ in pairs]
        targets += [t for _, t in pairs]
    (x, _), (y, _) = load_photos(sources, EXPORT_SIZE), load_photos(targets, EXPORT_SIZE)
    keras.utils.set_random_seed(0)
    config = PLDTConfig(base_filters=8, image_size=EXPORT_SIZE, subpixel_convs=False)
    model = build_converter(config)
    model.compile(optimizer=keras.optimizers.Adam(2e-3, beta_1=0.5), loss="mse")
    data = without_autotune(tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(16))
    model.fit(data, steps_per_epoch=30, epochs=1, verbose=0)
    run = RunFolder(root / "run")
    run.prepare(config, {"data": str(photos)})
    run.save_final(model)
    out = root / "out"
    # int8 calibrates on at most CALIBRATION_SAMPLES of the folder's source photos: 32 of the
    # real ones, all 24 of the synthetic set's.
    calibration_sources = [p for p in list_images(photos) if "_CLEAN0_" in p.name]
    report = export(
        out,
        run_dir=run.path,
        calibration_data=photos,
        parity_data=real_photos("test"),
        calibration_samples=CALIBRATION_SAMPLES,
        parity_samples=8,
        verbose=False,
    )

    def model_file(name: str) -> Path:
        if name == "savedmodel":
            return out / "savedmodel"
        return out / name / ("converter.onnx" if name == "onnx" else "converter.tflite")

    return SimpleNamespace(
        size=EXPORT_SIZE,
        root=root,
        run=run.path,
        final=run.final_model,
        out=out,
        model=model,
        report=report,
        photos=real_photos,
        calibration_images=min(CALIBRATION_SAMPLES, len(calibration_sources)),
        model_file=model_file,
    )
