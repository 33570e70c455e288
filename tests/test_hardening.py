# ruff: noqa: F811  (pytest fixtures imported from clip_fixtures are redefined as arguments)
"""One test per class of bad input or damage, through `semloc.cli.main`: a clear message (exit 2),
never a traceback, and nothing partial left behind."""

import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from clip_fixtures import random_image, tiny_clip_dir, write_posts  # noqa: F401
from semloc.cli import main
from semloc.features.store import FeatureStore
from semloc.features.synthetic import make_random_store

EXTRACT = ["extract.progress=false", "extract.num_workers=0"]
FAST = ["model.dim=16", "model.num_heads=2", "train.progress=false", "train.lr=1e-3"]


def extract(posts, out, clip, *extra):
    return main(
        ["extract", str(posts), "--backbone", str(clip), "--out", str(out), *EXTRACT, *extra]
    )


def jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_clip_dir):
    d = tmp_path_factory.mktemp("hard")
    posts = write_posts(d, 36, image_every=2)
    assert extract(posts, d / "store", tiny_clip_dir) == 0
    assert main(["train", str(d / "store"), "--out", str(d / "run"), "train.epochs=1", *FAST]) == 0
    return d, posts


# 1. text Python accepts but the tokenizer does not ---------------------------------------------


def test_lone_surrogates_are_replaced_in_text_and_refused_in_ids(tmp_path, tiny_clip_dir, capsys):
    posts = tmp_path / "p.jsonl"
    posts.write_text(
        '{"id": "a", "text": "bad \\ud800 text", "label": "x"}\n'
        '{"id": "b", "text": "pair \\ud83d\\ude00 ok", "label": "y"}\n'
    )
    assert extract(posts, tmp_path / "store", tiny_clip_dir) == 0
    records = FeatureStore(tmp_path / "store").manifest["extraction"]["records"]
    assert records["text_chars_replaced"] == 1 and records["posts_text_replaced"] == 1
    assert "replaced by U+FFFD" in capsys.readouterr().out
    # an id is a key: changing it would break joins, so the row is refused, by number
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "ok", "text": "t"}\n{"id": "x\\udc00", "text": "t"}\n')
    assert extract(bad, tmp_path / "store2", tiny_clip_dir) == 2
    assert "row 2: id contains a lone surrogate" in capsys.readouterr().err
    assert not (tmp_path / "store2").exists()


# 2. records silently changed -------------------------------------------------------------------


def test_wrong_types_are_bad_rows_and_real_exports_are_read(tmp_path, tiny_clip_dir, capsys):
    rows = [
        {"id": ["a"], "text": "list id"},
        {"id": "b", "text": "numeric label", "label": 3},
        {"id": "c", "text": "numeric image", "image": 5},
        {"id": "d", "text": "bool split", "split": True},
        {"id": "e", "text": {"nested": 1}},
    ]
    assert extract(jsonl(tmp_path / "p.jsonl", rows), tmp_path / "s", tiny_clip_dir) == 2
    err = capsys.readouterr().err
    for needle in (
        "row 1: id must be a string or an integer, got ['a'] (list)",
        "row 2 (id 'b'): label must be a string, got 3 (int)",
        "row 3 (id 'c'): image must be a string, got 5 (int)",
        "row 4 (id 'd'): split must be a string, got True (bool)",
        "row 5 (id 'e'): text must be a string, got {'nested': 1} (dict)",
    ):
        assert needle in err
    assert not (tmp_path / "s").exists()
    # a spreadsheet's UTF-8 BOM and a 1 MB text cell are read as they are
    long_text = "word " * 200_000
    csv_path = tmp_path / "excel.csv"
    csv_path.write_bytes(
        b"\xef\xbb\xbfid,text,label\n" + f'1,"{long_text}",x\n2,short,y\n'.encode()
    )
    assert extract(csv_path, tmp_path / "csv_store", tiny_clip_dir) == 0
    store = FeatureStore(tmp_path / "csv_store")
    assert store.ids == ["1", "2"]
    assert store.manifest["extraction"]["truncated_texts"] == 1


# 3. column mistakes ----------------------------------------------------------------------------


def test_renamed_columns_are_loud_and_mappable(tmp_path, tiny_clip_dir, capsys, caplog):
    rows = [
        {"id": f"p{i}", "caption": f"a long caption number {i}", "place": "ab"[i % 2]}
        for i in range(20)
    ]
    posts = jsonl(tmp_path / "p.jsonl", rows)
    assert extract(posts, tmp_path / "s1", tiny_clip_dir) == 0
    out = capsys.readouterr().out
    assert "none of the 20 posts has text" in out and "data.text_column=caption" in out
    assert "data.label_column=place" in out
    records = FeatureStore(tmp_path / "s1").manifest["extraction"]["records"]
    assert records["empty_text"] == 20 and records["ignored_columns"] == ["caption", "place"]
    # training on it names the column instead of "has 0 label(s)"
    assert main(["train", str(tmp_path / "s1"), "--out", str(tmp_path / "r1"), *FAST]) == 2
    assert "column 'label'" in capsys.readouterr().err and not (tmp_path / "r1").exists()
    # mapped: texts and labels are read from the user's columns
    mapped = ["data.text_column=caption", "data.label_column=place"]
    assert extract(posts, tmp_path / "s2", tiny_clip_dir, *mapped) == 0
    store = FeatureStore(tmp_path / "s2")
    assert store.labels == ["a", "b"] and store.manifest["extraction"]["records"]["empty_text"] == 0


def test_unlabelled_training_posts_are_counted_not_dropped_silently(
    tmp_path, tiny_clip_dir, caplog
):
    rows = [
        {"id": f"p{i}", "text": f"post {i}", "split": "train" if i < 24 else "dev"}
        | ({"label": "ab"[i % 2]} if i % 6 else {})
        for i in range(32)
    ]
    assert extract(jsonl(tmp_path / "p.jsonl", rows), tmp_path / "s", tiny_clip_dir) == 0
    run = tmp_path / "run"
    assert main(["train", str(tmp_path / "s"), "--out", str(run), "train.epochs=1", *FAST]) == 0
    info = json.loads((run / "run.json").read_text())
    assert info["train_posts"] == 20 and info["train_posts_unlabelled"] == 4
    assert info["dev_posts_unlabelled"] == 2
    assert info["store_records"]["labelled"] == 26 and info["store_records"]["posts"] == 32
    assert "4 of 24 train posts have no label" in caplog.text


# 4. images that cost too much or come out wrong -----------------------------------------------


def _png(img):
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_strips_are_refused_on_the_header_and_photos_come_out_upright(tmp_path, tiny_clip_dir):
    from semloc.clip.backbone import load_backbone
    from semloc.clip.images import ImageProblem, load_image_bytes

    for size in ((100_000, 1), (5000, 1), (1, 5000)):
        with pytest.raises(ImageProblem) as err:
            load_image_bytes(_png(Image.new("L", size)), max_pixels=40_000_000)
        assert err.value.reason in ("bad_shape", "too_large")
    # EXIF orientation 6 = the camera was turned: the decoded image is upright (W, H swapped)
    img = random_image(1, (40, 20))
    exif = img.getexif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, "PNG", exif=exif)
    decoded = load_image_bytes(buf.getvalue(), max_pixels=10**8)
    assert decoded.size == (20, 40)
    assert np.array_equal(
        np.asarray(decoded), np.asarray(img.transpose(Image.Transpose.ROTATE_270))
    )
    # 16-bit greyscale: scaled by the type's range, not clipped to white
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    grey = load_image_bytes(_png(Image.fromarray(ramp)), max_pixels=10**8)
    assert grey.mode == "L" and abs(np.asarray(grey).mean() - 127.5) < 1
    # and the store says how images were decoded
    header = load_backbone(tiny_clip_dir).header("float16")
    assert header["preprocessing"]["image_decoding"]["exif_orientation"] is True
    # through extract: the strip is an unusable image, counted, and the post kept text-only
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "strip.png").write_bytes(_png(Image.new("L", (100_000, 1))))
    posts = jsonl(tmp_path / "p.jsonl", [{"id": "1", "text": "t", "image": "img/strip.png"}])
    assert extract(posts, tmp_path / "s", tiny_clip_dir) == 0
    images = FeatureStore(tmp_path / "s").manifest["extraction"]["images"]
    assert images["too_large"] == 1


# 5. damaged stores and runs --------------------------------------------------------------------


def _edit_manifest(root, edit):
    m = json.loads((root / "manifest.json").read_text())
    edit(m)
    (root / "manifest.json").write_text(json.dumps(m))


@pytest.mark.parametrize(
    "damage, needle",
    [
        (lambda r: _edit_manifest(r, lambda m: m["shards"].pop()), "not in the manifest"),
        (lambda r: _edit_manifest(r, lambda m: m["labels"].pop()), "not in the manifest's labels"),
        (
            lambda r: _edit_manifest(r, lambda m: m["shards"][0].update(name="../other")),
            "has name '../other'",
        ),
        (lambda r: _edit_manifest(r, lambda m: m.pop("dims")), "'dims' is missing"),
        (lambda r: _edit_manifest(r, lambda m: m.update(num_posts=7)), "manifest num_posts"),
        (
            lambda r: (r / "shards/000001/text_embed.npy").write_bytes(
                (r / "shards/000001/text_embed.npy").read_bytes()[:-100]
            ),
            "truncated",
        ),
        (lambda r: (r / "shards/000000/posts.json").unlink(), "has no posts.json"),
        (lambda r: (r / "shards/000000/posts.json").write_text("{"), "cannot be read"),
        (lambda r: (r / "manifest.json").write_text("[1]"), "does not hold a JSON object"),
    ],
)
def test_a_damaged_store_is_named(tmp_path, damage, needle, capsys):
    root = make_random_store(tmp_path / "store", 40, shard_size=16).root
    damage(root)
    assert main(["train", str(root), "--out", str(tmp_path / "run"), *FAST]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_verify_checks_content_hashes(tmp_path, capsys):
    root = make_random_store(tmp_path / "store", 40, shard_size=16).root
    assert main(["extract", "--verify", str(root)]) == 0
    assert "21 file(s) match their checksums" in capsys.readouterr().out  # 3 shards x 7 files
    path = root / "shards/000001/image_embed.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size, same header: only the hash can tell
    path.write_bytes(bytes(data))
    FeatureStore(root)  # the cheap checks pass
    assert main(["extract", "--verify", str(root)]) == 2
    assert "shard 000001/image_embed.npy: content differs" in capsys.readouterr().err


def test_damaged_or_interrupted_runs_are_named_or_restartable(tmp_path, capsys):
    store = make_random_store(tmp_path / "store", 120, num_classes=3, signal=0.6).root
    run = tmp_path / "run"
    train = ["train", str(store), "--out", str(run), "train.epochs=2", *FAST]
    assert main(train) == 0
    # a kill between the first best.pt and the first last.pt, plus a stale temporary
    (run / "last.pt").unlink()
    (run / ".last.pt.abc123.tmp").write_bytes(b"half")
    assert main([*train, "--resume"]) == 2
    assert "run the same command without --resume" in capsys.readouterr().err
    assert main(train) == 0  # a plain re-run starts over
    assert (run / "last.pt").exists() and not list(run.glob(".*.tmp"))
    # --resume with a setting that would change the run is refused, not ignored
    assert main([*train, "--resume", "--epochs", "3"]) == 2
    assert "train.epochs: run has 2, asked 3" in capsys.readouterr().err
    # a truncated last.pt
    last = run / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    assert main([*train, "--resume"]) == 2
    assert "damaged or truncated" in capsys.readouterr().err


@pytest.mark.parametrize(
    "override, needle",
    [
        ("train.epochs=0", "'train.epochs': 0 is out of range"),
        ("train.batch_size=0", "'train.batch_size': 0 is out of range"),
        ("train.lr=-1", "'train.lr': -1.0 is out of range"),
        ("train.lr=nan", "not a finite number"),
        ("train.device=gpu", "is not a device"),
        ("train.seed=-3", "'train.seed'"),
        ("train.warmup_fraction=2", "'train.warmup_fraction'"),
        ("data.dev_fraction=0.95", "below 1"),
    ],
)
def test_invalid_settings_are_errors_naming_the_key(tmp_path, override, needle, capsys):
    store = make_random_store(tmp_path / "store", 40).root
    assert main(["train", str(store), "--out", str(tmp_path / "run"), *FAST, override]) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_cuda_without_cuda_is_a_clear_error(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    store = make_random_store(tmp_path / "store", 40).root
    assert (
        main(["train", str(store), "--out", str(tmp_path / "run"), *FAST, "train.device=cuda"]) == 2
    )
    assert "no CUDA" in capsys.readouterr().err


def test_outputs_in_the_way_are_named(trained, tmp_path, tiny_clip_dir, capsys):
    d, posts = trained
    a_file = tmp_path / "file"
    a_file.write_text("keep me")
    assert main(["train", str(d / "store"), "--out", str(a_file), *FAST]) == 2
    assert "is an existing file, not a directory" in capsys.readouterr().err
    assert extract(posts, a_file, tiny_clip_dir) == 2
    assert "is an existing file, not a directory" in capsys.readouterr().err
    assert a_file.read_text() == "keep me"
    a_dir = tmp_path / "preds.csv"
    a_dir.mkdir()
    assert main(["predict", str(d / "run"), str(d / "store"), "-o", str(a_dir)]) == 2
    assert "preds.csv is a directory" in capsys.readouterr().err
    assert main(["predict", str(d / "run"), str(d / "store"), "-o", str(a_file / "x.csv")]) == 2
    assert "is an existing file, not a directory" in capsys.readouterr().err
    assert list(a_dir.iterdir()) == []


# 6. a moved CLIP -------------------------------------------------------------------------------


def test_a_moved_clip_is_the_same_clip(trained, tmp_path, tiny_clip_dir):
    d, posts = trained
    moved = shutil.copytree(tiny_clip_dir, tmp_path / "clip-moved-away")
    out = tmp_path / "pred.csv"
    assert (
        main(["predict", str(d / "run"), str(posts), "-o", str(out), "--backbone", str(moved)]) == 0
    )
    assert len(out.read_text().splitlines()) == 37
    # and a store extracted with the moved copy is compatible with the run
    assert extract(posts, tmp_path / "store", moved) == 0
    assert (
        main(["evaluate", str(d / "run"), "--features", str(tmp_path / "store"), "--no-plots"]) == 0
    )


# 8. evaluate never averages different models ---------------------------------------------------


def test_evaluate_groups_runs_by_model(trained, tmp_path, capsys):
    d, _ = trained
    other = tmp_path / "mlp"
    store = str(d / "store")
    assert (
        main(["train", store, "--out", str(other), "--model", "text_mlp", "train.epochs=1", *FAST])
        == 0
    )
    seed1 = tmp_path / "seed1"
    assert main(["train", store, "--out", str(seed1), "--seed", "1", "train.epochs=1", *FAST]) == 0
    summary = tmp_path / "summary.json"
    args = [
        "evaluate",
        str(d / "run"),
        str(seed1),
        str(other),
        "--no-plots",
        "--summary",
        str(summary),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "2 different models" in out and "mean ± std over 2 runs" in out
    report = json.loads(summary.read_text())
    assert report["aggregate"] is None
    assert sorted(g["aggregate"]["num_runs"] for g in report["groups"]) == [1, 2]
