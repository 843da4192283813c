"""``python -m keras_pldt.data {verify,synthetic} ...``

verify DIR       checks every file of a dataset (exit 0: no problem, 1: problems listed, 2: error)
synthetic OUT    writes the synthetic LookBook into OUT
"""

from __future__ import annotations

import argparse
import sys

from keras_pldt.cli import HelpFormatter

from .verify import MAX_SIDE, MIN_SIDE


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m keras_pldt.data",
        description="Dataset tools for keras_pldt (names PID<id>_CLEAN<0|1>_IID<id>.jpg).",
        formatter_class=HelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    v = sub.add_parser(
        "verify",
        help="check a dataset folder (or CSV manifest) and list problems with file names",
        description="Checks every image (decodes it), the names and the products; a link that "
        "leads to no file (a symbolic link loop, a dangling link) is named and counted as "
        "undecodable. Exit status: 0 no problem, 1 problems found (training skips them), "
        "2 unusable input.",
        formatter_class=HelpFormatter,
    )
    v.add_argument("data", help="dataset folder, or a CSV manifest with source,target columns")
    v.add_argument("--min-side", type=int, default=MIN_SIDE, help="smallest accepted side (px)")
    v.add_argument("--max-side", type=int, default=MAX_SIDE, help="largest accepted side (px)")
    v.add_argument("--quiet", action="store_true", help="print only the one-line summary")
    s = sub.add_parser(
        "synthetic",
        help="generate the synthetic LookBook",
        description="Renders a synthetic LookBook (tops on white + figures wearing them).",
        formatter_class=HelpFormatter,
    )
    s.add_argument("out_dir", help="output folder (created)")
    s.add_argument("--products", type=int, default=200, help="number of products")
    s.add_argument("--sources", type=int, default=8, help="person photos per product")
    s.add_argument("--seed", type=int, default=0, help="random seed")
    s.add_argument("--image-size", type=int, default=64, help="image side in px")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from .lookbook import DataError

    try:
        if args.command == "verify":
            from .verify import verify_dataset

            data = args.data
            manifest = data if str(data).lower().endswith(".csv") else None
            report = verify_dataset(
                None if manifest else data,
                manifest=manifest,
                min_side=args.min_side,
                max_side=args.max_side,
            )
            print(report.summary() if args.quiet else report)
            if report.num_products == 0:
                print(f"error: no usable product in {report.root}", file=sys.stderr)
                return 2
            return 0 if report.ok else 1
        if args.command == "synthetic":
            from keras_pldt.datasets.synthetic import generate

            out = generate(args.out_dir, args.products, args.sources, args.seed, args.image_size)
            print(f"wrote {args.products} products to {out}")
            return 0
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
