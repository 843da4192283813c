"""Where a run's finest-octave detail lies: the mean magnitude of the 2x2 Haar details (as
`experiments/decoder_stage.py`'s ``detail-magnitude`` compares them) over 8x8 pixel windows,
in the windows where the product photo is flat (at or below the median window energy, not
blank background), where it is most detailed (the top tenth) and overall (docs/results.md, "What the
finest octave answers to").

    python experiments/detail_energy.py [--stage KIND] [--real] RUN_DIR [RUN_DIR ...]

``--stage`` applies `experiments/decoder_stage.py`'s swap first, for runs made with it. Not
part of the package: it reads run folders with ``keras_pldt.evaluate``'s public helpers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import decoder_stage  # noqa: E402

WINDOW = 4  # Haar blocks, 8x8 pixels


def window_energy(images) -> np.ndarray:
    """[N, H / 8, W / 8]: the summed |Haar detail| magnitudes, averaged over channels and
    8x8 pixel windows (images in [0, 1])."""
    detail = np.abs(decoder_stage._haar_details(images).numpy()).sum(-1).mean(-1)
    n, h, w = detail.shape
    return detail.reshape(n, h // WINDOW, WINDOW, w // WINDOW, WINDOW).mean((2, 4))


def table_row(label: str, energy: np.ndarray, target: np.ndarray) -> str:
    flat = (target > 1e-3) & (target <= np.quantile(target, 0.5))  # not the white background
    detailed = target >= np.quantile(target, 0.9)
    cells = [energy[flat].mean(), energy[detailed].mean(), energy.mean()]
    return f"| {label} | " + " | ".join(f"{v:.4f}" for v in cells) + " |"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders")
    parser.add_argument("--stage", help="decoder_stage.py kind the runs were made with")
    parser.add_argument(
        "--real", action="store_true", help="add rows for NN pixel retrieval and the product photos"
    )
    args = parser.parse_args(argv)
    if args.stage:
        decoder_stage.swap(args.stage)
    from keras_pldt import evaluate as E
    from keras_pldt.run import RunFolder

    print("| run | where the product photo is flat | where it is most detailed | overall |")
    print("|---|---|---|---|")
    for run in args.runs:
        pipelines = E.build_eval_pipelines(run, RunFolder(run).config(), *E.data_of_run(run))
        evalset = E.load_eval_set(pipelines, "test")
        target = window_energy(evalset.first_target)
        generated = E.generate(E.load_converter(run, "last"), evalset.source)
        print(table_row(str(run), window_energy(generated), target))
        if args.real:
            real = E.nn_pixel_baseline(evalset, E.load_training_set(pipelines))
            print(table_row("NN pixel retrieval", window_energy(real), target))
            print(table_row("product photos", target, target))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
