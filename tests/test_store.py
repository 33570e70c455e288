import json
import os

import numpy as np
import pytest
import torch

from semloc.errors import SemlocError, StoreMismatchError
from semloc.features.loader import make_loader
from semloc.features.store import FeatureStore, FeatureStoreWriter, ShardData, label_map_for
from semloc.features.synthetic import TINY_DIMS, make_random_store


def header(**over):
    h = {
        "backbone": {"name": "tiny", "weights_sha256": "abc"},
        "preprocessing": {"size": 32},
        "dtype": "float32",
        "dims": dict(TINY_DIMS),
    }
    h.update(over)
    return h


def shard(ids, lengths, present, rng):
    d = TINY_DIMS
    n = len(ids)
    return ShardData(
        ids=list(ids),
        labels=["x" if i % 2 else "y" for i in range(n)],
        splits=["train"] * n,
        text_tokens=[rng.standard_normal((k, d["text_width"])).astype(np.float32) for k in lengths],
        image_tokens=rng.standard_normal((n, d["num_image_tokens"], d["vision_width"])),
        text_embed=rng.standard_normal((n, d["embed_dim"])),
        image_embed=rng.standard_normal((n, d["embed_dim"])),
        image_present=np.asarray(present),
    )


def test_round_trip_ragged_text_and_padding(tmp_path):
    rng = np.random.default_rng(0)
    w = FeatureStoreWriter(tmp_path / "s", header())
    a = shard(["a", "b", "c"], [3, 1, 5], [True, False, True], rng)
    b = shard(["d", "e"], [2, 4], [True, True], rng)
    w.write_shard(0, a)
    w.write_shard(1, b)
    manifest = w.finalize({"extraction": {"note": 1}})
    assert manifest["num_posts"] == 5 and manifest["num_images"] == 4
    assert manifest["labels"] == ["x", "y"] and manifest["extraction"] == {"note": 1}
    store = FeatureStore(tmp_path / "s")
    assert len(store) == 5 and store.ids == list("abcde")
    batch = store.batch([4, 0, 2])  # crosses shards, out of order
    assert batch.text_tokens.shape == (3, 5, TINY_DIMS["text_width"])
    assert batch.text_mask.sum(1).tolist() == [4, 3, 5]
    np.testing.assert_allclose(batch.text_tokens[0, :4].numpy(), b.text_tokens[1], rtol=1e-6)
    assert not batch.text_tokens[0, 4:].any()
    np.testing.assert_allclose(batch.image_embed[1].numpy(), a.image_embed[0], rtol=1e-6)
    assert batch.index.tolist() == [4, 0, 2]
    assert batch.labels.tolist() == [store.labels.index("x"), 1, 1]


def test_float16_storage_and_label_map(tmp_path):
    store = make_random_store(tmp_path / "s", 50, num_classes=3, dtype="float16")
    assert np.load(tmp_path / "s/shards/000000/image_tokens.npy", mmap_mode="r").dtype == np.float16
    batch = store.batch(np.arange(10))
    assert batch.image_tokens.dtype == torch.float32
    reordered = ["class_2", "class_0", "class_1"]
    mapped = store.batch(np.arange(10), label_map_for(store, reordered))
    names = [store.labels[c] for c in batch.labels.tolist()]
    assert [reordered[c] for c in mapped.labels.tolist()] == names


def test_header_mismatch_is_refused_and_same_header_resumes(tmp_path):
    rng = np.random.default_rng(0)
    w = FeatureStoreWriter(tmp_path / "s", header())
    w.write_shard(0, shard(["a"], [1], [True], rng))
    again = FeatureStoreWriter(tmp_path / "s", header())
    assert again.has_shard(0) and not again.has_shard(1)
    with pytest.raises(StoreMismatchError, match=r"backbone\.weights_sha256"):
        FeatureStoreWriter(tmp_path / "s", header(backbone={"name": "tiny", "weights_sha256": "z"}))


def test_incomplete_store_and_crashed_shard(tmp_path):
    rng = np.random.default_rng(0)
    w = FeatureStoreWriter(tmp_path / "s", header())
    w.write_shard(0, shard(["a"], [1], [True], rng))
    with pytest.raises(SemlocError, match="incomplete"):
        FeatureStore(tmp_path / "s")
    # a crash mid-shard leaves only a temporary directory, which is not part of the store
    (tmp_path / "s/shards/.tmp-000001-999").mkdir()
    w2 = FeatureStoreWriter(tmp_path / "s", header())
    assert not (tmp_path / "s/shards/.tmp-000001-999").exists()
    assert w2.committed_shards() == [0]
    with pytest.raises(SemlocError, match="not a feature store"):
        FeatureStore(tmp_path)


def test_compatibility_check_names_the_difference(tmp_path):
    store = make_random_store(tmp_path / "s", 20)
    expected = {k: store.manifest[k] for k in ("backbone", "preprocessing", "dtype", "dims")}
    store.check_compatible(expected)
    expected["dtype"] = "float32"
    with pytest.raises(StoreMismatchError, match="dtype: store has 'float16', expected 'float32'"):
        store.check_compatible(expected)


def test_loader_shuffles_reproducibly_per_epoch(tmp_path):
    store = make_random_store(tmp_path / "s", 100, shard_size=16)
    idx = store.indices("train")

    def order(epoch, seed=0):
        loader = make_loader(store, idx, 16, shuffle=True, seed=seed)
        loader.sampler.set_epoch(epoch)
        return torch.cat([b.index for b in loader]).tolist()

    assert order(0) == order(0)
    assert order(0) != order(1)
    assert order(0) != order(0, seed=1)
    assert sorted(order(0)) == sorted(idx.tolist())


def test_loader_with_worker_processes(tmp_path):
    store = make_random_store(tmp_path / "s", 64, shard_size=16)
    loader = make_loader(store, store.indices(), 8, num_workers=2)
    assert torch.cat([b.index for b in loader]).tolist() == list(range(64))


def test_manifest_is_written_atomically(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    w = FeatureStoreWriter(tmp_path / "s", header())
    w.write_shard(0, shard(["a"], [1], [True], rng))

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        w.finalize()
    assert not (tmp_path / "s/manifest.json").exists()
    assert not [p for p in (tmp_path / "s").iterdir() if p.name.startswith(".manifest")]
    monkeypatch.undo()
    w.finalize()
    assert json.loads((tmp_path / "s/manifest.json").read_text())["num_posts"] == 1
