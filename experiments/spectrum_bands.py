"""Where a run's spectral gap lies: the log10 ratio of its test outputs' power to the product
photos' (`keras_pldt.metrics.spectral_log_ratio`, rows and columns averaged), per band of
periods (docs/results.md, "128 px on grocery_val").

    python experiments/spectrum_bands.py [--stage KIND] [--real] RUN_DIR [RUN_DIR ...]

``--stage`` applies `experiments/decoder_stage.py`'s swap first, for runs made with it. Not
part of the package: it reads run folders with ``keras_pldt.evaluate``'s public helpers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

BANDS = ((2.0, 2.7), (2.7, 4.0), (4.0, 8.0), (8.0, 16.0), (16.0, float("inf")))


def band_ratios(generated, reference) -> list[float]:
    """Mean log10 power ratio (rows and columns averaged) in each band of `BANDS` (px), against
    the real photos' ``reference = metrics.power_spectra(target)``."""
    from keras_pldt import metrics as M

    rows, cols = M.spectral_log_ratio(generated, reference=reference)
    ratio = (rows + cols) / 2  # square images
    periods = 2 * len(rows) / np.arange(1, len(rows) + 1)
    return [float(np.mean(ratio[(periods >= a) & (periods < b)])) for a, b in BANDS]


def table_row(label: str, generated, reference) -> str:
    """One markdown row: the spectral gap (`keras_pldt.metrics.spectral_gap`) and the bands."""
    from keras_pldt import metrics as M

    gap = M.spectral_gap(generated, reference=reference)
    cells = [f"{v:+.2f}" for v in band_ratios(generated, reference)]
    return f"| {label} | {gap:.2f} | " + " | ".join(cells) + " |"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders")
    parser.add_argument("--stage", help="decoder_stage.py kind the runs were made with")
    parser.add_argument(
        "--real", action="store_true", help="add a row for NN pixel retrieval (real photos)"
    )
    args = parser.parse_args(argv)
    if args.stage:
        sys.path.insert(0, str(Path(__file__).parent))
        import decoder_stage

        decoder_stage.swap(args.stage)
    from keras_pldt import evaluate as E
    from keras_pldt import metrics as M
    from keras_pldt.run import RunFolder

    names = [f"{a:g}-{b:g} px" for a, b in BANDS]
    print("| run | spectral gap | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 2) + "|")
    for run in args.runs:
        config = RunFolder(run).config()
        pipelines = E.build_eval_pipelines(run, config, *E.data_of_run(run))
        evalset = E.load_eval_set(pipelines, "test")
        generated = E.generate(E.load_converter(run, "last"), evalset.source)
        reference = M.power_spectra(evalset.first_target)  # once per run, for every row
        print(table_row(str(run), generated, reference))
        if args.real:
            real = E.nn_pixel_baseline(evalset, E.load_training_set(pipelines))
            print(table_row("NN pixel retrieval", real, reference))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
