# ruff: noqa: F811  (pytest fixtures imported from clip_fixtures are redefined as arguments)
"""A hostile-input battery: many malformed posts files and records, in every input form
(JSONL, CSV, Parquet, DataFrame, list of dicts), through `semloc extract` and `semloc predict`.

Every case must end as exit 2 with a message naming the row (or file) and the problem, with no
exception escaping `main` and nothing written; the accepted cases state exactly what was read,
so nothing is coerced or dropped without a rule the README states.
"""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clip_fixtures import tiny_clip_dir, write_posts  # noqa: F401
from semloc.cli import main
from semloc.data.records import read_posts
from semloc.errors import SemlocError


def J(*rows):
    """JSONL bytes, one line per row; a str row is written as it is."""
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows).encode() + b"\n"


OK = {"id": "ok", "text": "fine"}
# name -> (file name, bytes, substring of the error)
BAD_FILES = {
    "duplicate id": ("p.jsonl", J(OK, OK), "row 2: duplicate id 'ok' (first seen at row 1)"),
    "float id": ("p.jsonl", J(OK, {"id": 1.5}), "row 2: id must be a string or an integer"),
    "infinite id": ("p.jsonl", J(OK, '{"id": 1e400}'), "got inf (float)"),
    "bool id": ("p.jsonl", J(OK, {"id": True}), "got True (bool)"),
    "null id": ("p.jsonl", J(OK, {"id": None, "text": "x"}), "row 2: missing or empty id"),
    "blank id": ("p.jsonl", J(OK, {"id": "   "}), "row 2: missing or empty id"),
    "dict id": ("p.jsonl", J(OK, {"id": {"a": 1}}), "got {'a': 1} (dict)"),
    "huge id": ("p.jsonl", J(OK, {"id": "9" * 5000}), "id has 5000 characters"),
    "5000-digit id": ("p.jsonl", J(OK, '{"id": ' + "9" * 5000 + "}"), "row 2: not usable JSON"),
    "deep nesting": ("p.jsonl", J(OK, "[" * 100_000 + "]" * 100_000), "row 2: not usable JSON"),
    "duplicate key": ("p.jsonl", J(OK, '{"id": "a", "id": "b"}'), "duplicate key 'id'"),
    "not json": ("p.jsonl", J(OK, "{not json"), "row 2: not valid JSON"),
    "json string": ("p.jsonl", J(OK, '"a post"'), "row 2: not a JSON object"),
    "json array": ("p.jsonl", J([1, 2]), "row 1: not a JSON object"),
    "text list": ("p.jsonl", J({"id": "a", "text": ["x"]}), "text must be a string"),
    "text number": ("p.jsonl", J({"id": "a", "text": 7}), "text must be a string, got 7 (int)"),
    "text bool": ("p.jsonl", J({"id": "a", "text": False}), "got False (bool)"),
    "label number": ("p.jsonl", J({"id": "a", "label": 3}), "label must be a string, got 3"),
    "label float": ("p.jsonl", J({"id": "a", "label": 1.0}), "got 1.0 (float)"),
    "label list": ("p.jsonl", J({"id": "a", "label": ["x"]}), "label must be a string"),
    "label surrogate": ("p.jsonl", J(OK, '{"id": "a", "label": "\\ud800"}'), "lone surrogate"),
    "id surrogate": ("p.jsonl", J(OK, '{"id": "\\udfff"}'), "row 2: id contains a lone surrogate"),
    "image number": ("p.jsonl", J({"id": "a", "image": 5}), "image must be a string, got 5"),
    "image dict": ("p.jsonl", J({"id": "a", "image": {"p": 1}}), "image must be a string"),
    "image NUL": ("p.jsonl", J({"id": "a", "image": "x\u0000.png"}), "NUL character"),
    "split bool": ("p.jsonl", J({"id": "a", "split": True}), "split must be a string"),
    "split unknown": ("p.jsonl", J({"id": "a", "split": "valid"}), "split 'valid' is not one of"),
    "split partial": ("p.jsonl", J({"id": "a", "split": "dev"}, OK), "row 2 (id 'ok'): missing"),
    "bad utf-8": ("p.jsonl", J(OK) + b'{"id": "caf\xe9"}\n', "not UTF-8 text"),
    "empty file": ("p.jsonl", b"", "contains no posts"),
    "blank lines": ("p.jsonl", b"\n \n\t\n", "contains no posts"),
    "unknown suffix": ("p.txt", J(OK), "unknown posts format"),
    "csv no id": ("p.csv", b"text,label\nhello,a\n", "missing required column 'id'"),
    "csv dup column": ("p.csv", b"id,text,text\n1,a,b\n", "repeats column(s) ['text']"),
    "csv long row": ("p.csv", b"id,text\n1,a\n2,b,c\n", "row 2: has 3 cells, header has 2"),
    "csv short row": ("p.csv", b"id,text,label\n1,a,x\n2,b\n", "row 2: has 2 cells, header has 3"),
    "csv open quote": ("p.csv", b'id,text\n1,a\n2,"never closed\n3,c\n', "row 2: cannot be read"),
    "csv stray quote": ("p.csv", b'id,text\n1,"a"b\n', "row 1: cannot be read as CSV"),
    "csv latin-1": ("p.csv", b"id,text\n1,caf\xe9\n", "not UTF-8 text"),
    "csv header only": ("p.csv", b"id,text\n", "contains no posts"),
    "csv huge cell": ("p.csv", b'id,text\n1,"' + b"x" * (65 * 2**20) + b'"\n', "field larger"),
    "parquet garbage": ("p.parquet", b"PAR1 not really", "cannot read"),
}


def _parquet(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


BAD_FILES |= {
    "parquet int label": (
        "p.parquet",
        _parquet(pa.table({"id": ["a"], "label": [3]})),
        "label must be a string, got 3 (int)",
    ),
    "parquet list text": (
        "p.parquet",
        _parquet(pa.table({"id": ["a"], "text": [["x", "y"]]})),
        "text must be a string",
    ),
    "parquet binary id": (
        "p.parquet",
        _parquet(pa.table({"id": pa.array([b"a"], pa.binary())})),
        "got b'a' (bytes)",
    ),
    "parquet struct image": (
        "p.parquet",
        _parquet(pa.table({"id": ["a"], "image": [{"path": "x"}]})),
        "image must be a string",
    ),
    "parquet timestamp split": (
        "p.parquet",
        _parquet(pa.table({"id": ["a"], "split": pa.array([0], pa.timestamp("s"))})),
        "split must be a string",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_extract_refuses_bad_posts_with_a_message(case, tmp_path, capsys):
    name, data, needle = BAD_FILES[case]
    posts = tmp_path / name
    posts.write_bytes(data)
    out = tmp_path / "store"
    # bad posts are found before the backbone is even loaded
    rc = main(["extract", str(posts), "--backbone", str(tmp_path / "no-clip"), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert needle in err
    assert "Traceback" not in err
    assert not out.exists()  # nothing partial: no header.json, no extraction/run.json


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_clip_dir):
    d = tmp_path_factory.mktemp("battery")
    posts = write_posts(d, 30, image_every=3)
    opts = ["extract.progress=false", "extract.num_workers=0"]
    store = d / "store"
    assert (
        main(["extract", str(posts), "--backbone", str(tiny_clip_dir), "--out", str(store), *opts])
        == 0
    )
    fast = ["model.dim=16", "model.num_heads=2", "train.progress=false", "train.epochs=1"]
    assert main(["train", str(store), "--out", str(d / "run"), *fast]) == 0
    return d / "run"


PREDICT_CASES = [
    "duplicate id",
    "5000-digit id",
    "deep nesting",
    "id surrogate",
    "text list",
    "image NUL",
    "csv open quote",
    "csv dup column",
    "parquet list text",
    "empty file",
]


@pytest.mark.parametrize("case", PREDICT_CASES)
def test_predict_refuses_bad_posts_with_a_message(case, run_dir, tmp_path, capsys):
    name, data, needle = BAD_FILES[case]
    posts = tmp_path / name
    posts.write_bytes(data)
    out = tmp_path / "pred.csv"
    rc = main(["predict", str(run_dir), str(posts), "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert needle in err and "Traceback" not in err
    assert not out.exists()


# accepted inputs, and exactly what they become ------------------------------------------------

ACCEPTED = {
    # integer ids are written in decimal; NaN/null mean "absent"; whitespace around id/label/split
    # is stripped; text is kept as written (lone surrogates become U+FFFD, counted)
    "int id": (J({"id": 5, "text": "x"}), [("5", "x", None, None)]),
    "null text": (J({"id": "a", "text": None}), [("a", "", None, None)]),
    "NaN label": (J('{"id": "a", "text": "t", "label": NaN}'), [("a", "t", None, None)]),
    "padded cells": (J({"id": " a ", "label": " x "}), [("a", "", None, "x")]),
    "surrogate text": (J('{"id": "a", "text": "x\\ud800y"}'), [("a", "x\ufffdy", None, None)]),
    "escaped pair": (J('{"id": "a", "text": "\\ud83d\\ude00"}'), [("a", "\U0001f600", None, None)]),
    "NUL in text": (J({"id": "a", "text": "a\u0000b"}), [("a", "a\u0000b", None, None)]),
    "empty image": (J({"id": "a", "image": ""}), [("a", "", None, None)]),
    "utf-16 file": (
        b"\xff\xfe" + '{"id": "é", "text": "ü"}\n'.encode("utf-16-le"),
        [("é", "ü", None, None)],
    ),
}


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_accepted_records_read_exactly_as_documented(case, tmp_path):
    data, expected = ACCEPTED[case]
    path = tmp_path / "p.jsonl"
    path.write_bytes(data)
    table = read_posts(path)
    assert [(p.id, p.text, p.image, p.label) for p in table.records] == expected
    replaced = sum(t.count("\ufffd") for _, t, _, _ in expected)
    assert table.counts["text_chars_replaced"] == replaced


def test_csv_bom_quotes_and_long_cells(tmp_path):
    path = tmp_path / "p.csv"
    long = "y" * 2_000_000
    path.write_bytes(
        b'\xef\xbb\xbfid,text,label\n1,"a, ""quoted""\nline",x\n2,' + long.encode() + b",\n"
    )
    table = read_posts(path)
    assert [(p.id, p.text, p.label) for p in table.records] == [
        ("1", 'a, "quoted"\nline', "x"),
        ("2", long, None),
    ]


IN_MEMORY_BAD = {
    "numpy bool id": ([{"id": np.bool_(True)}], "got np.True_ (bool)"),
    "bytes text": ([{"id": "a", "text": b"x"}], "text must be a string, got b'x' (bytes)"),
    "int column name": ([{"id": "a", 0: "x"}], "field names must be strings"),
    "not a mapping": ([("id", "a")], "row 1: not a mapping of fields (got tuple)"),
    "numpy float label": ([{"id": "a", "label": np.float32(2)}], "label must be a string"),
    "set image": ([{"id": "a", "image": {"x"}}], "image must be a string"),
}


@pytest.mark.parametrize("case", sorted(IN_MEMORY_BAD))
def test_in_memory_records_are_validated_like_files(case):
    rows, needle = IN_MEMORY_BAD[case]
    with pytest.raises(SemlocError) as err:
        read_posts(rows)
    assert needle in str(err.value)
    with pytest.raises(SemlocError) as err:
        read_posts(pd.DataFrame(rows))
    assert "row 1" in str(err.value) or "columns" in str(err.value) or needle in str(err.value)


def test_dataframe_missing_values_and_numpy_scalars():
    df = pd.DataFrame(
        {
            "id": pd.array([1, 2, 3], dtype="Int64"),
            "text": ["a", None, np.nan],
            "label": pd.array(["x", pd.NA, "y"], dtype="string"),
        }
    )
    table = read_posts(df)
    assert [(p.id, p.text, p.label) for p in table.records] == [
        ("1", "a", "x"),
        ("2", "", None),
        ("3", "", "y"),
    ]
    assert table.counts == {
        "posts": 3,
        "empty_text": 2,
        "with_image": 0,
        "labelled": 2,
        "text_chars_replaced": 0,
        "posts_text_replaced": 0,
    }


# images: every kind of file a post may point at, in one extraction -----------------------------


def _image_files(d):
    import io

    from PIL import Image

    from clip_fixtures import random_image

    def save(name, img, **kw):
        img.save(d / name, **kw)
        return name

    def raw(name, data):
        (d / name).write_bytes(data)
        return name

    png = io.BytesIO()
    random_image(3, (50, 40)).save(png, "PNG")
    rotated = random_image(4, (50, 30))
    exif = rotated.getexif()
    exif[0x0112] = 8
    frames = [random_image(i, (20, 20)).convert("P") for i in range(3)]
    (d / "a_directory.jpg").mkdir()
    ramp = np.linspace(0, 65535, 40 * 30).reshape(30, 40).astype(np.uint16)
    return {
        # name -> the reason recorded, or "present" when it must be used
        raw("zero.png", b""): "empty_file",
        raw("text.jpg", b"hello, not a picture"): "not_an_image",
        raw("half.png", png.getvalue()[: len(png.getvalue()) // 2]): "truncated",
        raw("photo.heic", b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64): "unsupported_format",
        save("strip.png", Image.new("L", (100_000, 1))): "too_large",
        save("thin.png", Image.new("L", (5000, 1))): "bad_shape",
        save("tall.png", Image.new("RGB", (2, 400))): "bad_shape",
        "a_directory.jpg": "unreadable",
        "missing.jpg": "missing",
        save("grey16.png", Image.fromarray(ramp)): "present",
        save("grey16.tif", Image.fromarray(ramp)): "present",
        save("float.tif", Image.fromarray(ramp.astype(np.float32) / 65535)): "present",
        save("cmyk.jpg", random_image(5).convert("CMYK")): "present",
        save("rotated.jpg", rotated, exif=exif): "present",
        save("bilevel.png", random_image(6).convert("1")): "present",
        save("la.png", random_image(7).convert("LA")): "present",
        save("rgba.webp", random_image(8).convert("RGBA")): "present",
        save("anim.gif", frames[0], save_all=True, append_images=frames[1:]): "present",
    }


def test_every_kind_of_image_file_is_used_or_named(tmp_path, tiny_clip_dir, capsys):
    expected = _image_files(tmp_path)
    rows = [{"id": f"p{i}", "text": "t", "image": name} for i, name in enumerate(expected)]
    posts = tmp_path / "p.jsonl"
    posts.write_bytes(J(*rows))
    out = tmp_path / "store"
    opts = ["extract.progress=false", "extract.num_workers=0"]
    assert (
        main(["extract", str(posts), "--backbone", str(tiny_clip_dir), "--out", str(out), *opts])
        == 0
    )
    report = json.loads((out / "image_report.json").read_text())
    problems = report["problems"] if isinstance(report, dict) else report
    got = {p["image"]: p["reason"] for p in problems}
    for name, reason in expected.items():
        assert got.get(name, "present") == reason, (name, got.get(name), problems)
    # under --image-policy fail the first bad one stops extraction, by name, leaving no store
    rc = main(
        [
            "extract",
            str(posts),
            "--backbone",
            str(tiny_clip_dir),
            "--out",
            str(tmp_path / "f"),
            *opts,
            "--image-policy",
            "fail",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "p0" in err and "Traceback" not in err
    assert not (tmp_path / "f" / "manifest.json").exists()


CONFIG_FILES = {
    "5000-digit int": ("c.json", '{"train": {"epochs": ' + "9" * 5000 + "}}", "cannot be read"),
    "deep yaml": ("c.yaml", "[" * 20_000 + "]" * 20_000, "cannot be read"),
    "not a mapping": ("c.yaml", "- 1\n- 2\n", "must contain a mapping"),
    "unknown key": ("c.yaml", "train:\n  epoch: 3\n", "unknown config key 'train.epoch'"),
    "wrong type": ("c.yaml", "train:\n  epochs: three\n", "expected an integer"),
    "out of range": ("c.yaml", "train:\n  batch_size: -4\n", "out of range"),
    "bad yaml": ("c.yaml", "train: [unclosed\n", "is not valid yaml"),
    "empty column": ("c.yaml", "data:\n  text_column: ''\n", "must not be empty"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_FILES))
def test_bad_config_files_are_named(case, tmp_path, capsys):
    from semloc.features.synthetic import make_random_store

    name, text, needle = CONFIG_FILES[case]
    (tmp_path / name).write_text(text)
    store = make_random_store(tmp_path / "store", 20).root
    rc = main(
        ["train", str(store), "--out", str(tmp_path / "run"), "--config", str(tmp_path / name)]
    )
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
