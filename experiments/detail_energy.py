"""Where a run's finest-octave detail lies: the magnitudes of the 2x2 Haar details (as
`experiments/decoder_stage.py`'s ``detail-magnitude`` compares them) over 8x8 pixel windows,
in the windows where the product photo is flat (at or below the median window energy, not
blank background), where it is most detailed (the top tenth) and overall (docs/results.md,
"What the finest octave answers to").

    python experiments/detail_energy.py [--stage KIND] [--real] RUN_DIR [RUN_DIR ...]

``--stage`` applies `experiments/decoder_stage.py`'s swap first, for runs made with it. Not
part of the package: it reads run folders with ``keras_pldt.evaluate``'s public helpers.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from spectrum_bands import run_outputs  # noqa: E402

WINDOW = 4  # Haar blocks, 8x8 pixels
BLANK = 1e-3  # window energy of the white background


def window_energy(images) -> np.ndarray:
    """[N, H / 8, W / 8]: the |Haar detail| magnitudes summed over the three details and
    averaged over channels and 8x8 pixel windows (images in [0, 1])."""
    from decoder_stage import HAAR_DETAILS, detail_magnitudes  # imports TensorFlow

    return HAAR_DETAILS * detail_magnitudes(images, WINDOW).numpy().mean(-1)


def regions(target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(flat, most detailed): masks of the product photos' windows, from their energies."""
    flat = (target > BLANK) & (target <= np.quantile(target, 0.5))
    return flat, target >= np.quantile(target, 0.9)


def table_row(label: str, energy: np.ndarray, masks) -> str:
    flat, detailed = masks
    cells = [energy[flat].mean(), energy[detailed].mean(), energy.mean()]
    return f"| {label} | " + " | ".join(f"{v:.4f}" for v in cells) + " |"


def main(argv: list[str]) -> int:
    description = __doc__.split("\n\n")[0]
    real_help = "add rows for NN pixel retrieval and the product photos"
    outputs = run_outputs(argv, description, real_help)
    print("| run | where the product photo is flat | where it is most detailed | overall |")
    print("|---|---|---|---|")
    for run, evalset, generated, real in outputs:
        target = window_energy(evalset.first_target)
        masks = regions(target)  # once per run, for every row
        print(table_row(str(run), window_energy(generated), masks))
        if real is not None:
            print(table_row("NN pixel retrieval", window_energy(real), masks))
            print(table_row("product photos", target, masks))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
