"""What a model is and how it was trained, as the demo page and the web page show it: rows of
(label, value) from the `model_card.json` that `keras_pldt.export` writes beside a model, or
the run's config.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from keras_pldt.run import RunFolder

FORMATS = {
    "keras": "Keras (.keras)",
    "savedmodel": "TensorFlow SavedModel",
    "tflite": "TFLite (LiteRT) flatbuffer",
    "onnx": "ONNX",
}
#: Training settings shown on their own line, in this order (other non-paper values follow).
KEY_SETTINGS = ("variant", "base_filters", "upsampling", "batch_size", "learning_rate")
#: Fields that do not change what a run learns; left out of the preset comparison.
EXECUTION_ONLY = ("cache", "jit_compile")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def find_model_card(model: Path) -> dict[str, Any] | None:
    """The `model_card.json` written by `keras_pldt.export` next to (or inside) the model."""
    candidates = [model / "model_card.json", model / "savedmodel" / "model_card.json"]
    if model.is_file():
        candidates = [model.parent / "model_card.json"]
    for path in candidates:
        card = _read_json(path) if path.is_file() else None
        if card is not None:
            return card
    return None


def find_config(model: Path, card: dict[str, Any] | None) -> dict[str, Any] | None:
    """The training config: the model card's, else a config.json of the run or export folder."""
    if card is not None and isinstance(card.get("config"), dict):
        return card["config"]
    folder = model if model.is_dir() else model.parent
    for path in (RunFolder(folder).config_path, RunFolder(folder.parent).config_path):
        config = _read_json(path) if path.is_file() else None
        if config is not None:
            return config
    return None


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value) if value not in ("", None) else "none"


def preset_summary(config: dict[str, Any]) -> str:
    """The closest named preset and the fields where the config departs from it."""
    from keras_pldt.config import PRESETS, get_preset

    def departures(name: str) -> dict[str, Any]:
        full = get_preset(name).to_dict()
        return {
            k: config[k]
            for k in full
            if k in config and k not in EXECUTION_ONLY and config[k] != full[k]
        }

    name, changed = min(((n, departures(n)) for n in PRESETS), key=lambda item: len(item[1]))
    if not changed:
        return name
    return f"{name} with " + ", ".join(f"{k}={_value(v)}" for k, v in changed.items())


def training_rows(config: dict[str, Any] | None) -> list[tuple[str, str]]:
    if config is None:
        return [("training", "not recorded (no model_card.json or config.json with the model)")]
    from keras_pldt.config import PLDTConfig

    paper = PLDTConfig().to_dict()
    key = [f"{k} {_value(config[k])}" for k in KEY_SETTINGS if k in config]
    if "epochs" in config:
        key.append(f"epochs {config['epochs']} + {config.get('decay_epochs', 0)} decay")
    shown = {*KEY_SETTINGS, "epochs", "decay_epochs", "image_size", *EXECUTION_ONLY}
    beyond = [
        f"{k} {_value(v)}"
        for k, v in config.items()
        if k in paper and k not in shown and v != paper[k]
    ]
    rows = [("preset", preset_summary(config)), ("training", ", ".join(key) or "not recorded")]
    rows.append(("beyond the paper", ", ".join(beyond) or "nothing: the published recipe"))
    data = config.get("data") or config.get("manifest")
    rows.append(("training data", str(data) if data else "not recorded"))
    return rows


def describe_model(model: Path, kind: str, image_size: int) -> list[tuple[str, str]]:
    """(label, value) rows for the page: file, format, image size, training settings, data."""
    card = find_model_card(model)
    fmt = FORMATS.get(kind, kind)
    if card is not None and card.get("format"):
        fmt = str(card["format"])
        if card.get("quantization"):
            fmt += f", {card['quantization']}"
    rows = [("model", str(model)), ("format", fmt), ("image size", f"{image_size} × {image_size}")]
    return rows + training_rows(find_config(model, card))
