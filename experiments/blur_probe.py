"""How much of a relevance gap is the metrics' taste for blur: score run folders' test outputs
after a Gaussian blur of each standard deviation.

Top-k ranks the products by pixel L2 distance to the output, and the colour / category judges
of the synthetic set read pixels. A blurred output is nearer in L2 to every plausible product
(the conditional mean minimises expected squared error), so a sharp converter can lose top-k to
a blurry one without being less relevant. If blurring a sharp converter's outputs to the
blurry one's sharpness closes its top-k gap, the gap is the perception-distortion trade-off
(Blau and Michaeli, CVPR 2018), not the converter's knowledge of the product.

    python experiments/blur_probe.py RUN_DIR [RUN_DIR ...] [--sigmas 0 0.5 1 1.5 2] [--json OUT]

Not part of the package: it reads run folders with ``keras_pldt.evaluate``'s public helpers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

COLUMNS = ("rmse", "c_ssim", "top1_l2", "top5_l2", "sharpness", "colour_acc", "category_acc")


def gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of images [N, H, W, C] in [0, 1], edges replicated."""
    if sigma <= 0:
        return images
    radius = max(1, int(round(3 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float32)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k /= k.sum()
    pad = np.pad(images, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="edge")
    h, w = images.shape[1:3]
    rows = sum(k[i] * pad[:, i : i + h, :, :] for i in range(len(k)))
    return sum(k[i] * rows[:, :, i : i + w, :] for i in range(len(k))).astype(np.float32)


def probe(run_dir: Path, sigmas: list[float]) -> list[dict]:
    from keras_pldt import evaluate as E
    from keras_pldt.run import RunFolder

    config = RunFolder(run_dir).config()
    data, manifest = E.data_of_run(run_dir)
    pipelines = E.build_eval_pipelines(run_dir, config, data, manifest)
    evalset = E.load_eval_set(pipelines, "test")
    generated = E.generate(E.load_converter(run_dir), evalset.source)
    rows = []
    for s in sigmas:
        scores = E.score_images(gaussian_blur(generated, s), evalset)
        rows.append({"run": run_dir.name, "sigma": s, **{c: scores.get(c) for c in COLUMNS}})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="run folders (keras_pldt.reproduce --out)")
    p.add_argument("--sigmas", nargs="+", type=float, default=[0.0, 0.5, 1.0, 1.5, 2.0])
    p.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = p.parse_args(argv)
    rows = [r for run in args.runs for r in probe(run, args.sigmas)]
    print("| run | blur σ | " + " | ".join(COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for r in rows:
        cells = ["—" if r[c] is None else f"{r[c]:.3f}" for c in COLUMNS]
        print(f"| {r['run']} | {r['sigma']:g} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
