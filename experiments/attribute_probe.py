"""Which attributes of a synthetic product a run reads: D_A's association score and the
converter's code.

D_A (Eq. 5) is there to keep C(I_S) relevant: it should score (I_S, the photo of its product)
above (I_S, another product's photo). On the synthetic set every product is a look, a category
x colour x pattern, so one can ask which attribute D_A's score tells apart: for each test source
and attribute, the share of the looks that differ from its own in that attribute alone that D_A
scores below its own look (ties count half; 0.5 = D_A ignores the attribute). The converter's
64-d code is probed the same way: a linear softmax classifier fit on the training sources'
codes, its accuracy on the test sources'.

    python experiments/attribute_probe.py RUN_DIR [RUN_DIR ...] [--json OUT]

Not part of the package: it reads run folders with ``keras_pldt.evaluate``'s public helpers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ATTRIBUTES = ("category", "colour", "pattern")


def looks():
    """Every (category, colour, pattern) of the synthetic set."""
    from keras_pldt.datasets.synthetic import CATEGORIES, PALETTE, PATTERNS

    return [(c, k, p) for c in CATEGORIES for k in PALETTE for p in PATTERNS]


def attribute_shares(scores: np.ndarray, own: list[tuple], all_looks: list[tuple]) -> dict:
    """From D_A's scores [N, L] of N sources against L looks, and each source's own look: the
    own look's rank (top-1 / top-5 share) and, per attribute, the share of one-attribute
    changes of the own look that score below it (ties count half)."""
    index = {look: i for i, look in enumerate(all_looks)}
    own_i = np.array([index[tuple(o)] for o in own])
    own_score = scores[np.arange(len(scores)), own_i]
    above = (scores > own_score[:, None]).sum(1)
    out = {"own_look_top1": float(np.mean(above == 0)), "own_look_top5": float(np.mean(above < 5))}
    for a, attribute in enumerate(ATTRIBUTES):
        values, wins = {x[a] for x in all_looks}, []
        for row, look in enumerate(own):
            for other in values - {look[a]}:
                changed = (*look[:a], other, *look[a + 1 :])
                s = scores[row, index[changed]]
                wins.append(1.0 if own_score[row] > s else 0.5 if own_score[row] == s else 0.0)
        out[f"domain_{attribute}"] = float(np.mean(wins))
    return out


def code_probe(codes: dict, labels: dict, seed: int = 0) -> float:
    """Test accuracy of a linear softmax classifier on standardised codes (train -> test)."""
    import keras

    mean, std = codes["train"].mean(0), codes["train"].std(0) + 1e-6
    names = sorted(set(labels["train"]) | set(labels["test"]))  # a class unseen in training: missed
    y = {k: np.array([names.index(v) for v in labels[k]]) for k in ("train", "test")}
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((codes["train"].shape[1],)), keras.layers.Dense(len(names), "softmax")]
    )
    model.compile(
        keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    model.fit((codes["train"] - mean) / std, y["train"], epochs=30, batch_size=256, verbose=0)
    return float(model.evaluate((codes["test"] - mean) / std, y["test"], verbose=0)[1])


def probe(run_dir: Path) -> dict:
    from keras_pldt import evaluate as E
    from keras_pldt.datasets.synthetic import read_attributes, render_product
    from keras_pldt.run import RunFolder

    config = RunFolder(run_dir).config()
    data, manifest = E.data_of_run(run_dir)
    if data is None:
        raise SystemExit(f"{run_dir}: the attribute probe needs a run on a synthetic folder")
    attributes = read_attributes(data)
    pipelines = E.build_eval_pipelines(run_dir, config, data, manifest)
    evalset, train = E.load_eval_set(pipelines, "test"), E.load_training_set(pipelines)
    train_pids = pipelines.splits["train"].pids
    truth = {
        "train": [attributes[train_pids[p]] for p in train.source_product],
        "test": [attributes[evalset.pids[p]] for p in evalset.product],
    }
    row = {"run": str(run_dir)}
    if config.uses_domain:
        all_looks = looks()
        size = config.image_size
        photos = np.stack([render_product(*look, size) for look in all_looks]) / 255.0
        scores = E.dd_scores(E.load_pldt(run_dir), evalset.source, photos)
        own = [tuple(t[a] for a in ATTRIBUTES) for t in truth["test"]]
        row.update(attribute_shares(scores, own, all_looks))
    encoder = E.load_converter(run_dir).get_layer("encoder")
    sources = {"train": train.source, "test": evalset.source}
    codes = {
        k: encoder.predict(v * 2.0 - 1.0, batch_size=256, verbose=0) for k, v in sources.items()
    }
    for attribute in ATTRIBUTES:
        labels = {k: [t[attribute] for t in v] for k, v in truth.items()}
        row[f"code_{attribute}"] = code_probe(codes, labels)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="run folders on a synthetic set")
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args(argv)
    rows = [probe(r) for r in args.runs]
    columns = list(dict.fromkeys(c for r in rows for c in r if c != "run"))
    print("| run | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for r in rows:
        cells = [f"{r[c]:.3f}" if c in r else "-" for c in columns]
        print(f"| {r['run']} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
