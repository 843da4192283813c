#!/usr/bin/env python3
"""Strip outputs, execution counts and volatile metadata from notebooks before committing.

    python tools/strip_notebooks.py                  # every notebooks/*.ipynb, in place
    python tools/strip_notebooks.py --check          # exit 1 if any notebook has outputs
    python tools/strip_notebooks.py path/to/nb.ipynb

`tests/test_notebooks.py` fails if a committed notebook has outputs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
KEEP_METADATA = ("kernelspec", "language_info")


def is_stripped(nb) -> bool:
    """True when no code cell has outputs or an execution count."""
    return all(
        not cell.get("outputs") and cell.get("execution_count") is None
        for cell in nb.cells
        if cell.cell_type == "code"
    )


def strip(nb):
    """`nb` without outputs, execution counts, cell metadata or non-essential notebook metadata."""
    for cell in nb.cells:
        cell.metadata = {}
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    nb.metadata = {k: v for k, v in nb.metadata.items() if k in KEEP_METADATA}
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: notebooks/*)")
    parser.add_argument("--check", action="store_true", help="report only; exit 1 if unstripped")
    args = parser.parse_args(argv)
    paths = args.paths or sorted((ROOT / "notebooks").glob("*.ipynb"))
    dirty = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        if is_stripped(nb):
            continue
        dirty.append(path)
        if not args.check:
            nbformat.write(strip(nb), path)
            print(f"stripped {path}")
    if args.check and dirty:
        print("notebooks with outputs: " + ", ".join(map(str, dirty)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
