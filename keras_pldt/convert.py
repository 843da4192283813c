"""Convert photos to product images with any exported PLDT converter.

    python -m keras_pldt.convert --model exported/tflite_int8/converter.tflite \\
        --input photos/ --output products/ --side-by-side

`--model` may be a `.keras` converter (or whole PLDT model), a training run folder (its final
converter), a SavedModel folder (or an export folder holding `savedmodel/`), a `.tflite` or an
`.onnx` file. Photos of any size and any PIL-readable format are preprocessed exactly like
training (`keras_pldt.runtime.letterbox`: bilinear resize of the longer side to S, pad 255
centred, then x / 127.5 - 1). Each photo gives `OUTPUT/<name>.png` (S x S product) and, with
`--side-by-side`, `OUTPUT/<name>_side_by_side.png` (preprocessed source | product), where
<name> is its path under --input less its extension. Photos that share that name (same.jpg
and same.png) keep their extension in it instead: same.jpg.png and same.png.png, so no photo's
product replaces another's; if two names still clash (a.jpg beside a.jpg.jpg) nothing is
converted and the clash is named. Unreadable or unsupported files (a symbolic link loop or a
link to nothing included) are reported and skipped; the exit code is 1 only if nothing was
converted.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from keras_pldt.cli import fail, quiet_tensorflow
from keras_pldt.errors import DataError, PLDTError
from keras_pldt.runtime import IMAGE_EXTENSIONS, Converter, read_photo

__all__ = ["Converter", "collect_inputs", "convert", "main", "output_names"]
SIDE_BY_SIDE = "_side_by_side"


def collect_inputs(path: Path) -> list[Path]:
    """`path` itself, or the files under it as `keras_pldt.runtime.list_files` lists them
    (links that lead to no file included, so that they are reported)."""
    if path.is_file():
        return [path]
    if path.is_dir():
        from keras_pldt.runtime import list_files

        return list_files(path)
    raise FileNotFoundError(f"--input {path} does not exist")


def output_names(files: Sequence[Path], base: Path, side_by_side: bool = False) -> dict[Path, Path]:
    """Each photo's output name under OUTPUT, less ".png": its path under `base` less its
    extension, or with it where photos share that name (same.jpg, same.png: case-insensitive,
    as some file systems compare names). DataError naming both photos when two outputs would
    still be one file."""
    relative = {f: f.relative_to(base) for f in files}
    plain = {f: r.with_suffix("") for f, r in relative.items()}
    shared = Counter(str(p).casefold() for p in plain.values())
    names = {f: relative[f] if shared[str(p).casefold()] > 1 else p for f, p in plain.items()}
    owners: dict[str, Path] = {}
    for file, name in names.items():
        for suffix in ("", SIDE_BY_SIDE) if side_by_side else ("",):
            out = f"{name}{suffix}.png"
            other = owners.setdefault(out.casefold(), file)
            if other != file:
                raise DataError(
                    f"{other} and {file} would both be written as OUTPUT/{out}; rename one"
                )
    return names


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

    input_path, output = Path(input_path), Path(output)
    files = collect_inputs(input_path)
    base = input_path if input_path.is_dir() else input_path.parent
    photos = [f for f in files if f.suffix.lower() in IMAGE_EXTENSIONS]
    names = output_names(photos, base, side_by_side)
    converter = Converter(model)
    output.mkdir(parents=True, exist_ok=True)
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
                name = names[file]
                target = output / f"{name}.png"
                target.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(product).save(target)
                if side_by_side:
                    pair = np.concatenate([source, product], axis=1)
                    Image.fromarray(pair).save(output / f"{name}{SIDE_BY_SIDE}.png")
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
