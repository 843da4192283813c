"""Compute precision: Keras' dtype policy of each `PLDTConfig.precision`, and "auto"."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import keras
import tensorflow as tf

#: Keras dtype policy of each `PLDTConfig.precision`.
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "mixed_float16": "mixed_float16"}


#: CPU flags (Linux /proc/cpuinfo) of native bfloat16 matrix instructions.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_bf16_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> list[str]:
    """The `BF16_CPU_FLAGS` this CPU has (none where `cpuinfo` cannot be read)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return []
    flags = set((re.findall(r"^flags\s*:\s*(.*)$", text, re.M) or [""])[0].split())
    return [flag for flag in BF16_CPU_FLAGS if flag in flags]


def auto_precision() -> str:
    """`precision="auto"`: "bfloat16" where the model trains on a CPU with native bfloat16
    instructions (AMX-BF16 or AVX512_BF16, no GPU visible), else "float32".

    Only there does bfloat16 run natively on a CPU; elsewhere it is emulated, and on a GPU the
    choice is left to the user. docs/performance.md has the measured steps."""
    if tf.config.list_physical_devices("GPU") or not cpu_bf16_flags():
        return "float32"
    return "bfloat16"


@contextlib.contextmanager
def precision_policy(precision: str):
    """Within the block, layers are built with the dtype policy of `precision`."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(POLICIES[precision])
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def float32_copy(model: keras.Model) -> keras.Model:
    """`model` computing in float32 with the same weights: a mixed-precision run's converter as
    it is saved and deployed (TFLite and ONNX convert float32 graphs). `model` itself when all
    its layers compute in float32 already."""
    layers = [model, *model._flatten_layers()]
    if all(layer.dtype_policy.name == "float32" for layer in layers):
        return model

    def plain(value):
        if isinstance(value, dict):
            if value.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
                return "float32"
            return {key: plain(item) for key, item in value.items()}
        if isinstance(value, list):
            return [plain(item) for item in value]
        return value

    copy = model.__class__.from_config(plain(model.get_config()))
    copy.set_weights(model.get_weights())
    return copy
