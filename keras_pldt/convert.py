"""Convert photos to product images with any exported PLDT converter.

    python -m keras_pldt.convert --model exported/tflite_int8/converter.tflite \\
        --input photos/ --output products/ --side-by-side

`--model` may be a `.keras` converter (or whole PLDT model), a training run folder (its final
converter), a SavedModel folder (or an export folder holding `savedmodel/`), a `.tflite` or an
`.onnx` file. Photos of any size and any PIL-readable format are preprocessed exactly like
training (`keras_pldt.runtime.letterbox`: bilinear resize of the longer side to S, pad 255
centred, then x / 127.5 - 1). Each photo gives `OUTPUT/<name>.png` (S x S product) and, with
`--side-by-side`, `OUTPUT/<name>_side_by_side.png` (preprocessed source | product).
Unreadable or unsupported files are reported and skipped; the exit code is 1 only if nothing
was converted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from keras_pldt.cli import fail, quiet_tensorflow
from keras_pldt.errors import PLDTError
from keras_pldt.runtime import IMAGE_EXTENSIONS, Converter, read_photo

__all__ = ["Converter", "collect_inputs", "convert", "main"]


def collect_inputs(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
    raise FileNotFoundError(f"--input {path} does not exist")


def convert(
    model: str | Path,
    input_path: str | Path,
    output: str | Path,
    side_by_side: bool = False,
    verbose: bool = True,
) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Convert every photo under `input_path`; returns (written products, [(skipped, reason)])."""
    import keras
    from PIL import Image

    converter = Converter(model)
    input_path, output = Path(input_path), Path(output)
    files = collect_inputs(input_path)
    output.mkdir(parents=True, exist_ok=True)
    base = input_path if input_path.is_dir() else input_path.parent
    written: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    bar = keras.utils.Progbar(len(files), unit_name="photo") if verbose and len(files) > 1 else None
    for i, file in enumerate(files):
        if file.suffix.lower() not in IMAGE_EXTENSIONS:
            skipped.append((file, f"unsupported file type {file.suffix or '(none)'}"))
        else:
            try:
                photo = read_photo(file)
            except Exception as error:  # corrupt, truncated, not an image
                skipped.append((file, f"cannot read image: {error}"))
            else:
                source, product = converter(photo)
                stem = file.relative_to(base).with_suffix("")
                target = output / f"{stem}.png"
                target.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(product).save(target)
                if side_by_side:
                    pair = np.concatenate([source, product], axis=1)
                    Image.fromarray(pair).save(output / f"{stem}_side_by_side.png")
                written.append(target)
        if bar is not None:
            bar.update(i + 1)
    if verbose:
        for file, reason in skipped:
            print(f"skipped {file}: {reason}", file=sys.stderr)
        print(
            f"converted {len(written)} photo(s) with {converter.kind} model "
            f"({converter.image_size}x{converter.image_size}) into {output}; "
            f"skipped {len(skipped)}"
        )
    return written, skipped


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m keras_pldt.convert",
        description="Turn photos into product images with an exported PLDT converter.",
        epilog=__doc__.split("\n\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        required=True,
        type=Path,
        help=".keras file, run directory, SavedModel directory, export directory, .tflite or .onnx",
    )
    parser.add_argument("--input", required=True, type=Path, help="a photo or a folder of photos")
    parser.add_argument("--output", required=True, type=Path, help="folder for the products")
    parser.add_argument(
        "--side-by-side",
        action="store_true",
        help="also write <name>_side_by_side.png: preprocessed source | product",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bar, summary or skipped-file lines"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_tensorflow()
    try:
        written, _ = convert(
            args.model, args.input, args.output, args.side_by_side, verbose=not args.quiet
        )
    except (PLDTError, FileNotFoundError, ValueError) as error:
        return fail("convert failed", error, 1)
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
