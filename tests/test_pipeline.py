import json

import numpy as np
from helpers import SOURCE_G, TARGET_G, decode_colour

from keras_pldt.data import build_pipelines, load_pairs, make_splits, resolve_split

S = 16  # tiny images keep the tests fast


def batches(ds):
    return list(ds.as_numpy_iterator())


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


def test_make_splits_by_product():
    pids = [f"{i:05d}" for i in range(100)]
    s = make_splits(pids, seed=3)
    assert (len(s["train"]), len(s["val"]), len(s["test"])) == (90, 5, 5)
    sets = [set(s[k]) for k in ("train", "val", "test")]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert set().union(*sets) == set(pids)
    assert make_splits(list(reversed(pids)), seed=3) == s
    assert make_splits(pids, seed=4) != s
    small = make_splits(["a", "b", "c"], seed=0)
    assert [len(small[k]) for k in ("train", "val", "test")] == [1, 1, 1]
    assert make_splits(["a", "b"], seed=0)["train"]


def test_split_json_written_and_reused(make_lookbook, tmp_path):
    root = make_lookbook(products=40, sources=1)
    run = tmp_path / "run"
    p = build_pipelines(root, image_size=S, batch_size=4, run_dir=run, seed=1, verbose=False)
    saved = json.loads((run / "split.json").read_text())
    assert {k: saved[k] for k in ("train", "val", "test")} == p.split
    assert len(p.split["val"]) == 2 and len(p.split["test"]) == 2
    # another seed with the same run folder reuses the saved split
    assert resolve_split(load_pairs(root), seed=99, run_dir=run) == p.split
    assert resolve_split(load_pairs(root), seed=99) != p.split
    for name, sd in p.splits.items():
        assert sd.pids == p.split[name]


def test_batch_format_and_negatives(make_lookbook):
    root = make_lookbook(products=8, sources=3, targets=2)
    p = build_pipelines(root, image_size=S, batch_size=4, seed=0, verbose=False)
    pids = p.splits["train"].pids
    n = 0
    for epoch in range(3):
        for b in batches(p.train_dataset(epoch)):
            assert set(b) >= {"source", "target", "unassociated", "product"}
            for k in ("source", "target", "unassociated"):
                assert b[k].shape == (4, S, S, 3) and b[k].dtype == np.float32
                assert b[k].min() >= -1.0 and b[k].max() <= 1.0
            assert b["product"].dtype == np.int32
            for i in range(4):
                src, src_clean = decode_colour(b["source"][i, S // 2, S // 2])
                tgt, tgt_clean = decode_colour(b["target"][i, S // 2, S // 2])
                neg, neg_clean = decode_colour(b["unassociated"][i, S // 2, S // 2])
                assert (src_clean, tgt_clean, neg_clean) == (0, 1, 1)
                assert tgt == src and int(pids[b["product"][i]]) == src
                assert neg != src
                n += 1
    assert n == 3 * p.steps_per_epoch * 4


def test_deterministic_resume_and_epochs_differ(make_lookbook):
    root = make_lookbook(products=10, sources=3, targets=2)
    kw = dict(image_size=S, batch_size=5, seed=7, verbose=False)
    p = build_pipelines(root, **kw)
    spe = p.steps_per_epoch
    full = batches(p.train_for_epochs(0, 3))
    assert len(full) == 3 * spe
    assert_same(batches(p.train_for_epochs(2, 3)), full[2 * spe :])
    assert_same(batches(p.train_dataset(1)), full[spe : 2 * spe])
    assert_same(batches(p.train.take(3 * spe)), full)
    assert_same(batches(build_pipelines(root, **kw).train_for_epochs(1, 2)), full[spe : 2 * spe])
    e0 = np.concatenate([b["product"] for b in full[:spe]])
    e1 = np.concatenate([b["product"] for b in full[spe : 2 * spe]])
    assert not np.array_equal(e0, e1)
    other = build_pipelines(root, **{**kw, "seed": 8}).train_dataset(0)
    assert not np.array_equal(np.concatenate([b["product"] for b in batches(other)]), e0)


def test_uncached_equals_cached(make_lookbook):
    root = make_lookbook(products=6, sources=2)
    kw = dict(image_size=S, batch_size=3, seed=2, verbose=False)
    a = build_pipelines(root, cache=True, **kw)
    b = build_pipelines(root, cache=False, **kw)
    assert a.cached and not b.cached
    assert_same(batches(a.train_dataset(1)), batches(b.train_dataset(1)))
    assert_same(batches(a.test), batches(b.test))


def test_every_pipeline_runs_without_the_autotuner(make_lookbook):
    """Autotuning makes ending an iterator wait for its thread's timer (`without_autotune`):
    the pipelines a run ends (training, uncached training, val/test) all have it off."""
    root = make_lookbook(products=40, sources=2)
    kw = dict(image_size=S, batch_size=4, verbose=False)
    for p in (build_pipelines(root, **kw), build_pipelines(root, cache=False, **kw)):
        for ds in (p.train, p.train_for_epochs(1, 3), p.val, p.test):
            assert ds.options().autotune.enabled is False
    default = build_pipelines(root, **kw).train.unbatch()  # options carry to what is built on
    assert default.options().autotune.enabled is False


def test_drop_remainder_false_keeps_every_source(make_lookbook):
    root = make_lookbook(products=7, sources=3)
    p = build_pipelines(root, image_size=S, batch_size=4, drop_remainder=False, verbose=False)
    n = p.splits["train"].num_sources
    bs = batches(p.train_for_epochs(0, 2))
    assert len(bs) == 2 * p.steps_per_epoch == 2 * (-(-n // 4))
    assert sum(len(b["product"]) for b in bs) == 2 * n


def test_reverse_swaps_domains(make_lookbook):
    root = make_lookbook(products=6, sources=3, targets=1)
    p = build_pipelines(root, image_size=S, batch_size=2, reverse=True, verbose=False)
    assert p.splits["train"].num_sources == len(p.split["train"])  # one product photo each
    for b in batches(p.train_dataset(0)):
        for i in range(len(b["product"])):
            src, src_clean = decode_colour(b["source"][i, S // 2, S // 2])
            tgt, tgt_clean = decode_colour(b["target"][i, S // 2, S // 2])
            neg, neg_clean = decode_colour(b["unassociated"][i, S // 2, S // 2])
            assert (src_clean, tgt_clean, neg_clean) == (1, 0, 0)
            assert tgt == src != neg
    assert SOURCE_G != TARGET_G


def test_eval_datasets_and_arrays(make_lookbook):
    root = make_lookbook(products=40, sources=3)
    p = build_pipelines(root, image_size=S, batch_size=4, seed=5, verbose=False)
    for split in ("val", "test"):
        sd = p.splits[split]
        bs = batches(p.eval_dataset(split))
        assert sum(len(b["product"]) for b in bs) == sd.num_sources == 6  # 2 products x 3
        assert_same(bs, batches(p.eval_dataset(split)))
        arr = p.load_split_arrays(split)
        assert arr["source"].shape == (6, S, S, 3)
        assert arr["product"].tolist() == sd.source_product.tolist()
        assert list(arr["pids"]) == sd.pids
        few = p.load_split_arrays(split, limit=4)
        np.testing.assert_array_equal(few["source"], arr["source"][:4])
        for i in range(6):
            src, _ = decode_colour(arr["source"][i, S // 2, S // 2])
            neg, _ = decode_colour(arr["unassociated"][i, S // 2, S // 2])
            assert src == int(sd.pids[arr["product"][i]]) != neg
    assert not set(p.split["test"]) & set(p.split["train"])


def test_train_and_test_folders_split_the_data(make_lookbook, tmp_path):
    """A data folder with train/ and test/ subfolders (grocery_val's layout) is split by them:
    no validation split, every train/ source trains, the test/ products are the test split."""
    root = tmp_path / "data"
    make_lookbook(root=root / "train", products=4, sources=3)
    make_lookbook(root=root / "test", products=2, sources=2, start=10)
    data = load_pairs(root)
    assert set(data.folder_splits) == {"train", "test"}
    p = build_pipelines(root, image_size=32, batch_size=4, run_dir=tmp_path / "run", verbose=False)
    assert p.report.ok
    assert p.splits["train"].num_sources == 4 * 3
    assert p.split["test"] == sorted(data.folder_splits["test"]) == ["0010", "0011"]
    assert p.val is None
    b = next(iter(p.train_dataset(0)))
    assert b["source"].shape == (4, 32, 32, 3)
    assert np.all(b["target"].numpy()[:, 0, 0] > 0.9)  # product photos padded with white
    arr = p.load_split_arrays("test")
    assert len(arr["source"]) == 2 * 2
