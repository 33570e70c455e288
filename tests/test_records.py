import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from semloc.config import DataConfig
from semloc.data.records import read_posts
from semloc.errors import DataError, SemlocError

ROWS = [
    {"id": f"p{i}", "text": f"post {i}", "image": f"img/{i}.png", "label": "ab"[i % 2]}
    for i in range(40)
]


def write(path, rows):
    if path.suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    elif path.suffix == ".csv":
        cols = list(rows[0])
        lines = [",".join(cols)] + [",".join(str(r.get(c, "")) for c in cols) for r in rows]
        path.write_text("\n".join(lines) + "\n")
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_formats_read_the_same_posts(tmp_path, suffix):
    table = read_posts(write(tmp_path / f"posts{suffix}", ROWS))
    assert [p.id for p in table.records] == [r["id"] for r in ROWS]
    assert table.records[3].image_path(table.base_dir) == tmp_path.resolve() / "img/3.png"
    assert table.labels() == ["a", "b"]
    assert table.split_assigned


def test_seeded_stratified_split_is_reproducible_and_stratified(tmp_path):
    rows = [{"id": str(i), "text": "", "label": "abcd"[i % 4]} for i in range(400)]
    path = write(tmp_path / "p.jsonl", rows)
    a = [p.split for p in read_posts(path).records]
    b = [p.split for p in read_posts(path).records]
    c = [p.split for p in read_posts(path, data_cfg=DataConfig(split_seed=1)).records]
    assert a == b and a != c
    for label in "abcd":
        splits = [s for s, r in zip(a, rows, strict=True) if r["label"] == label]
        assert splits.count("test") == 10 and splits.count("dev") == 10


def test_existing_split_column_is_kept(tmp_path):
    rows = [dict(r, split="test" if i < 5 else "train") for i, r in enumerate(ROWS)]
    table = read_posts(write(tmp_path / "p.jsonl", rows))
    assert not table.split_assigned
    assert [p.split for p in table.records][:6] == ["test"] * 5 + ["train"]


def test_every_bad_row_is_reported_with_its_number(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"id": "1", "text": "ok", "label": "a"}),
                json.dumps({"id": "1", "text": "dup", "label": "a"}),
                json.dumps({"id": "", "text": "no id", "label": "a"}),
                "{not json",
                json.dumps([1, 2]),
                json.dumps({"id": "5", "text": 7, "label": "a"}),
                json.dumps({"id": "6", "text": "x"}),
                json.dumps({"id": "7", "text": "x", "label": "zzz"}),
                json.dumps({"id": "8", "text": "x", "label": "a", "split": "valid"}),
            ]
        )
    )
    with pytest.raises(DataError) as err:
        read_posts(path, require_labels=True, labels=["a", "b"])
    msg = str(err.value)
    assert "8 bad row(s)" in msg  # row 1 is fine
    expected = [
        "row 2: duplicate id '1' (first seen at row 1)",
        "row 3: missing or empty id",
        "row 4: not valid JSON",
        "row 5: not a JSON object",
        "row 6 (id '5'): text must be a string",
        "row 7 (id '6'): missing label",
        "row 8 (id '7'): label 'zzz' is not in the label list",
        "row 9 (id '8'): split 'valid' is not one of",
    ]
    for needle in expected:
        assert needle in msg
    assert len(err.value.problems) == len(expected)


def test_missing_id_column_and_unreadable_files(tmp_path):
    p = tmp_path / "noid.csv"
    p.write_text("text,label\nhello,a\n")
    with pytest.raises(DataError, match="missing required column 'id'"):
        read_posts(p)
    with pytest.raises(SemlocError, match="does not exist"):
        read_posts(tmp_path / "nope.jsonl")
    with pytest.raises(SemlocError, match="unknown posts format"):
        read_posts(tmp_path / "posts.txt")
    bad = tmp_path / "latin.csv"
    bad.write_bytes(b"id,text\n1,caf\xe9\n")
    with pytest.raises(SemlocError, match="not UTF-8"):
        read_posts(bad)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(SemlocError, match="cannot read"):
        read_posts(broken)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match="no posts"):
        read_posts(empty)


def test_partial_split_column_is_an_error(tmp_path):
    rows = [dict(r, split="train") for r in ROWS[:3]] + ROWS[3:5]
    with pytest.raises(DataError, match="missing split"):
        read_posts(write(tmp_path / "p.jsonl", rows))


def test_dataframe_and_list_of_dicts_read_like_a_file(tmp_path):
    import pandas as pd

    from_file = read_posts(write(tmp_path / "p.jsonl", ROWS))
    df = pd.DataFrame(ROWS)
    for source in (df, ROWS):
        table = read_posts(source, base_dir=tmp_path)
        assert table.path is None
        assert [(p.id, p.text, p.image, p.label, p.split) for p in table.records] == [
            (p.id, p.text, p.image, p.label, p.split) for p in from_file.records
        ]
        assert table.records[3].image_path(table.base_dir) == tmp_path.resolve() / "img/3.png"
    # without base_dir, relative images are relative to the current directory
    assert read_posts(ROWS).base_dir == Path.cwd().resolve()
    # validated exactly like a file, row numbers = 1-based positions
    bad = [*ROWS[:2], {"id": "p0", "text": "dup"}, {"id": ["x"], "text": "t"}, "not a dict"]
    with pytest.raises(DataError) as err:
        read_posts(bad)
    assert err.value.problems == [
        "row 3: duplicate id 'p0' (first seen at row 1)",
        "row 4: id must be a string or an integer, got ['x'] (list)",
        "row 5: not a mapping of fields (got str)",
    ]
    # pandas' missing values (NaN in an object column, None) mean "absent"
    df = pd.DataFrame(
        [{"id": 1, "text": "a", "label": None}, {"id": 2, "text": None, "label": "b"}]
    )
    table = read_posts(df)
    assert [(p.id, p.text, p.label) for p in table.records] == [("1", "a", None), ("2", "", "b")]
    with pytest.raises(SemlocError, match="takes a path, a pandas DataFrame or a list"):
        read_posts({"id": "1"})
