"""Where a run's spectral gap lies: the log10 ratio of its test outputs' power to the product
photos' (`keras_pldt.metrics.spectral_log_ratio`, rows and columns averaged), per band of
periods, beside its grid contrast (`keras_pldt.metrics.grid_contrast`) and the lattice period
where that lies (docs/results.md, "128 px on grocery_val").

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


def table_row(label: str, generated, reference, shares) -> str:
    """One markdown row: the spectral gap (`keras_pldt.metrics.spectral_gap`), the grid contrast
    with its period and the bands; ``shares = metrics.lattice_shares(target)``."""
    from keras_pldt import metrics as M

    gap = M.spectral_gap(generated, reference=reference)
    grid = M.grid_contrast_details(generated, reference=shares)
    cells = [f"{grid['grid_contrast']:.2f} ({grid['grid_contrast_period']:g} px)"]
    cells += [f"{v:+.2f}" for v in band_ratios(generated, reference)]
    return f"| {label} | {gap:.2f} | " + " | ".join(cells) + " |"


def run_outputs(argv: list[str], description: str, real_help: str):
    """Parse ``[--stage KIND] [--real] RUN_DIR ...``; return an iterator over the run folders
    of (run, its test set, the converter's outputs, NN pixel retrieval's real photos or None
    without --real)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders")
    parser.add_argument("--stage", help="decoder_stage.py kind the runs were made with")
    parser.add_argument("--real", action="store_true", help=real_help)
    args = parser.parse_args(argv)
    if args.stage:
        sys.path.insert(0, str(Path(__file__).parent))
        import decoder_stage

        decoder_stage.swap(args.stage)
    return _outputs(args.runs, args.real)


def _outputs(runs: list[Path], with_real: bool):
    from keras_pldt import evaluate as E
    from keras_pldt.run import RunFolder

    for run in runs:
        pipelines = E.build_eval_pipelines(run, RunFolder(run).config(), *E.data_of_run(run))
        evalset = E.load_eval_set(pipelines, "test")
        generated = E.generate(E.load_converter(run, "last"), evalset.source)
        real = E.nn_pixel_baseline(evalset, E.load_training_set(pipelines)) if with_real else None
        yield run, evalset, generated, real


def main(argv: list[str]) -> int:
    description, real_help = __doc__.split("\n\n")[0], "add a row for NN pixel retrieval"
    outputs = run_outputs(argv, description, real_help)
    from keras_pldt import metrics as M

    names = [f"{a:g}-{b:g} px" for a, b in BANDS]
    print("| run | spectral gap | grid contrast | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 3) + "|")
    for run, evalset, generated, real in outputs:
        # the product photos' spectrum and lattice shares once per run, for every row
        reference = M.power_spectra(evalset.first_target)
        shares = M.lattice_shares(evalset.first_target)
        print(table_row(str(run), generated, reference, shares))
        if real is not None:
            print(table_row("NN pixel retrieval", real, reference, shares))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
