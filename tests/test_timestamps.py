"""Users and times in the posts format: parsing, time zones, bad timestamps, the store."""

import json

import numpy as np
import pytest

from semloc.config import load_config
from semloc.data.records import read_posts
from semloc.errors import ConfigError, DataError
from semloc.features.store import FeatureStore, FeatureStoreWriter, ShardData
from semloc.features.synthetic import TINY_DIMS


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_iso_offsets_are_kept_and_naive_times_use_data_timezone(tmp_path):
    path = write_jsonl(
        tmp_path / "p.jsonl",
        [
            {"id": "a", "text": "x", "user": "u1", "created_at": "2026-03-02T08:15:00+01:00"},
            {"id": "b", "text": "x", "user": 7, "created_at": "2026-03-02T07:15:00Z"},
            {"id": "c", "text": "x", "created_at": "2026-07-02 08:15"},  # naive, summer
            {"id": "d", "text": "x", "created_at": 1772435700},  # epoch seconds
            {"id": "e", "text": "x", "created_at": "1772435700.5"},
            {"id": "f", "text": "x", "created_at": ""},  # no time: allowed
        ],
    )
    cfg = load_config(None, ["data.timezone=Europe/Berlin"]).data
    posts = {p.id: p for p in read_posts(path, data_cfg=cfg).records}
    assert posts["a"].created_at == "2026-03-02T08:15:00+01:00"
    assert posts["b"].created_at == "2026-03-02T07:15:00+00:00"
    assert posts["c"].created_at == "2026-07-02T08:15:00+02:00"  # DST from the zone
    assert posts["d"].created_at == "2026-03-02T08:15:00+01:00"  # the instant, in Berlin
    assert posts["e"].created_at == "2026-03-02T08:15:00+01:00"
    assert posts["f"].created_at is None
    assert posts["a"].user == "u1" and posts["b"].user == "7" and posts["c"].user is None
    utc = {p.id: p for p in read_posts(path).records}  # default data.timezone is UTC
    assert utc["c"].created_at == "2026-07-02T08:15:00+00:00"
    assert utc["d"].created_at == "2026-03-02T07:15:00+00:00"


def test_bad_timestamps_are_bad_rows_named(tmp_path):
    path = write_jsonl(
        tmp_path / "p.jsonl",
        [
            {"id": "ok", "text": "x", "created_at": "2026-03-02T08:15:00+01:00"},
            {"id": "word", "text": "x", "created_at": "yesterday"},
            {"id": "month", "text": "x", "created_at": "2026-13-01T00:00:00"},
            {"id": "ms", "text": "x", "created_at": 1772435700000},
            {"id": "bool", "text": "x", "created_at": True},
        ],
    )
    with pytest.raises(DataError) as e:
        read_posts(path)
    text = str(e.value) + "\n".join(e.value.problems)
    assert "4 bad row(s)" in text
    for pid, row in (("word", 2), ("month", 3), ("ms", 4), ("bool", 5)):
        assert f"row {row} (id {pid!r}): created_at" in text
    assert "milliseconds" in text


def test_unknown_timezone_names_the_key(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"id": "a", "text": "x"}])
    cfg = load_config(None, ["data.timezone=Mars/Olympus"]).data
    with pytest.raises(ConfigError, match=r"data\.timezone"):
        read_posts(path, data_cfg=cfg)


def test_csv_columns_flow_into_the_store(tmp_path):
    (tmp_path / "p.csv").write_text(
        "id,text,user,created_at\n1,hi,alice,2026-03-02T08:15:00+01:00\n2,yo,,\n"
    )
    posts = read_posts(tmp_path / "p.csv").records
    header = {
        "backbone": {"name": "t"},
        "preprocessing": {},
        "dtype": "float32",
        "dims": TINY_DIMS,
    }
    writer = FeatureStoreWriter(tmp_path / "store", header)
    n, d = len(posts), TINY_DIMS
    writer.write_shard(
        0,
        ShardData(
            ids=[p.id for p in posts],
            labels=[None] * n,
            splits=["test"] * n,
            text_tokens=[np.zeros((1, d["text_width"]), np.float32)] * n,
            image_tokens=np.zeros((n, d["num_image_tokens"], d["vision_width"]), np.float32),
            text_embed=np.zeros((n, d["embed_dim"]), np.float32),
            image_embed=np.zeros((n, d["embed_dim"]), np.float32),
            image_present=np.zeros(n, bool),
            users=[p.user for p in posts],
            created_at=[p.created_at for p in posts],
        ),
    )
    writer.finalize()
    store = FeatureStore(tmp_path / "store")
    assert store.users == ["alice", None]
    assert store.created_at == ["2026-03-02T08:15:00+01:00", None]
