"""Feature extraction: parity with CLIPModel, exact resume after a crash, no-op re-runs, refused
mismatches, every class of bad image under every policy, on-the-fly featurisation, the CLI."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clip_fixtures import TINY_CLIP_KWARGS, TOKENIZER_TEXTS, random_image, write_posts
from semloc.cli import main
from semloc.clip.extract import (
    ImageError,
    extract_to_store,
    featurize_inputs,
    featurize_one,
    featurize_posts,
)
from semloc.config import ExtractConfig
from semloc.data.records import read_posts
from semloc.errors import StoreMismatchError
from semloc.features.store import FeatureStore


def _cfg(**kw) -> ExtractConfig:
    base = dict(shard_size=8, batch_size=3, num_workers=0, progress=False, dtype="float32")
    return ExtractConfig(**{**base, **kw})


def _store_content(root: Path) -> dict:
    """Everything a store holds except the manifest's creation time."""
    out = {}
    for d in sorted((root / "shards").iterdir()):
        for f in sorted(d.iterdir()):
            key = f"{d.name}/{f.name}"
            out[key] = np.load(f) if f.suffix == ".npy" else json.loads(f.read_text())
    manifest = json.loads((root / "manifest.json").read_text())
    manifest.pop("created")
    out["manifest"] = manifest
    out["report"] = json.loads((root / "image_report.json").read_text())
    return out


def _assert_same_store(a: Path, b: Path) -> None:
    ca, cb = _store_content(a), _store_content(b)
    assert ca.keys() == cb.keys()
    for key in ca:
        if isinstance(ca[key], np.ndarray):
            assert ca[key].dtype == cb[key].dtype, key
            np.testing.assert_array_equal(ca[key], cb[key], err_msg=key)
        else:
            assert ca[key] == cb[key], key


# ----------------------------------------------------------------------------------------------
# parity


def test_stored_features_equal_clip_model(tmp_path: Path, tiny_backbone, tiny_clip_dir) -> None:
    from transformers import CLIPModel, CLIPProcessor

    posts = write_posts(tmp_path, 11, image_every=2)
    extract_to_store(posts, tmp_path / "store", _cfg(), backbone=tiny_backbone)
    store = FeatureStore(tmp_path / "store")
    model = CLIPModel.from_pretrained(tiny_clip_dir, local_files_only=True).eval()
    processor = CLIPProcessor.from_pretrained(tiny_clip_dir, local_files_only=True)
    table = read_posts(posts)
    assert store.ids == [p.id for p in table.records]
    batch = store.batch(np.arange(len(store)))
    for i, post in enumerate(table.records):
        enc = processor.tokenizer([post.text], truncation=True, max_length=16, return_tensors="pt")
        n = enc["input_ids"].shape[1]
        with torch.no_grad():
            hidden = model.text_model(**enc).last_hidden_state[0].numpy()
            text_embed = model.get_text_features(**enc)
        text_embed = getattr(text_embed, "pooler_output", text_embed)[0].numpy()
        assert int(batch.text_mask[i].sum()) == n
        np.testing.assert_allclose(batch.text_tokens[i, :n], hidden, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(batch.text_embed[i], text_embed, rtol=1e-5, atol=1e-5)
        assert bool(batch.image_present[i]) == (post.image is not None)
        if post.image is None:
            assert not batch.image_tokens[i].any() and not batch.image_embed[i].any()
            continue
        pixels = processor(images=Image.open(table.base_dir / post.image), return_tensors="pt")
        with torch.no_grad():
            out = model.vision_model(pixel_values=pixels["pixel_values"])
            tokens = model.vision_model.post_layernorm(out.last_hidden_state)[0].numpy()
            image_embed = model.get_image_features(pixel_values=pixels["pixel_values"])
        image_embed = getattr(image_embed, "pooler_output", image_embed)[0].numpy()
        np.testing.assert_allclose(batch.image_tokens[i], tokens, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(batch.image_embed[i], image_embed, rtol=1e-5, atol=1e-5)
    ex = store.manifest["extraction"]
    assert ex["truncated_texts"] == sum(
        len(processor.tokenizer(p.text)["input_ids"]) > 16 for p in table.records
    )
    assert ex["truncated_texts"] > 0
    assert ex["images"]["present"] == 6 and ex["images"]["no_image"] == 5


def test_worker_processes_give_the_same_store(tmp_path: Path, tiny_backbone) -> None:
    posts = write_posts(tmp_path, 13, image_every=2)
    extract_to_store(posts, tmp_path / "a", _cfg(), backbone=tiny_backbone)
    extract_to_store(posts, tmp_path / "b", _cfg(num_workers=2), backbone=tiny_backbone)
    _assert_same_store(tmp_path / "a", tmp_path / "b")


def test_the_thread_budget_gives_the_towers_every_core_and_is_overridable(
    tmp_path: Path, tiny_backbone
) -> None:
    from semloc.clip.extract import thread_budget
    from semloc.config import load_config
    from semloc.errors import ConfigError

    assert thread_budget(-1, 0, cores=2) == (1, 2)
    assert thread_budget(-1, 0, cores=16) == (2, 16)
    assert thread_budget(0, 3, cores=16) == (0, 3)  # as given
    assert load_config(None, ["extract.num_threads=3"]).extract.num_threads == 3
    with pytest.raises(ConfigError, match=r"extract\.num_workers"):
        load_config(None, ["extract.num_workers=-2"])
    # torch's thread count is process-wide: extraction sets its own and gives the caller's back
    before = torch.get_num_threads()
    posts = write_posts(tmp_path, 5, image_every=2)
    extract_to_store(posts, tmp_path / "s", _cfg(num_threads=before + 1), backbone=tiny_backbone)
    assert torch.get_num_threads() == before


# ----------------------------------------------------------------------------------------------
# resume


class _Crash(Exception):
    pass


def test_resume_after_crash_gives_the_identical_store(tmp_path: Path, tiny_backbone) -> None:
    bad = tmp_path / "img" / "bad.jpg"
    (tmp_path / "img").mkdir()
    bad.write_text("not an image")
    posts = write_posts(tmp_path, 29, image_every=2, special={4: "img/bad.jpg", 17: "img/no.jpg"})
    cfg = _cfg(image_policy="skip")
    extract_to_store(posts, tmp_path / "whole", cfg, backbone=tiny_backbone)

    def crash_after_two(k: int) -> None:
        if k == 1:
            raise _Crash

    with pytest.raises(_Crash):
        extract_to_store(posts, tmp_path / "resumed", cfg, backbone=tiny_backbone,
                         on_shard=crash_after_two)  # fmt: skip
    store = tmp_path / "resumed"
    assert not (store / "manifest.json").exists()
    assert sorted(p.name for p in (store / "shards").iterdir()) == ["000000", "000001"]
    # what a kill -9 in the middle of writing shard 2 leaves behind
    stray = store / "shards" / ".tmp-000002-99999"
    stray.mkdir()
    (stray / "text_tokens.npy").write_bytes(b"half")
    with pytest.raises(Exception, match="incomplete"):
        FeatureStore(store)
    result = extract_to_store(posts, store, cfg, backbone=tiny_backbone)
    assert result.shards_written == 2 and not result.already_complete
    assert not stray.exists()
    _assert_same_store(tmp_path / "whole", store)
    assert FeatureStore(store).manifest["extraction"]["num_skipped"] == 2


def test_kill_9_then_resume_gives_the_identical_store(tmp_path: Path, tiny_clip_dir) -> None:
    posts = write_posts(tmp_path, 60, image_every=2)  # 15 shards: the kill lands mid-run
    args = [str(posts), "--backbone", str(tiny_clip_dir), "--out"]
    opts = ["extract.shard_size=4", "extract.batch_size=2", "extract.num_workers=0",
            "extract.progress=false"]  # fmt: skip
    assert main(["extract", *args, str(tmp_path / "whole"), *opts]) == 0
    store = tmp_path / "killed"
    code = "import sys; from semloc.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "extract", *args, str(store), *opts],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.monotonic() + 60
        while not (store / "shards" / "000002").exists():
            assert proc.poll() is None, "extraction ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert not (store / "manifest.json").exists()
    assert main(["extract", *args, str(store), *opts]) == 0
    _assert_same_store(tmp_path / "whole", store)


def test_finished_store_rerun_is_a_no_op(tmp_path: Path, tiny_clip_dir, capsys) -> None:
    posts = write_posts(tmp_path, 5)
    argv = ["extract", str(posts), "--backbone", str(tiny_clip_dir), "--out",
            str(tmp_path / "s"), "extract.progress=false"]  # fmt: skip
    assert main(argv) == 0
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "s").rglob("*")}
    capsys.readouterr()
    assert main(argv) == 0
    assert "already complete" in capsys.readouterr().out
    assert stamp == {p: p.stat().st_mtime_ns for p in (tmp_path / "s").rglob("*")}


def test_different_backbone_or_settings_into_a_store_are_refused(
    tmp_path: Path, tiny_backbone
) -> None:
    from semloc.clip.backbone import load_backbone
    from semloc.clip.tiny import build_clip_from_scratch

    posts = write_posts(tmp_path, 6)
    store = tmp_path / "s"
    extract_to_store(posts, store, _cfg(), backbone=tiny_backbone)
    other_dir = build_clip_from_scratch(
        tmp_path / "other", TOKENIZER_TEXTS, **{**TINY_CLIP_KWARGS, "seed": 1}
    )
    other = load_backbone(other_dir)
    with pytest.raises(StoreMismatchError, match="weights_sha256"):
        extract_to_store(posts, store, _cfg(), backbone=other)
    with pytest.raises(StoreMismatchError, match="dtype"):
        extract_to_store(posts, store, _cfg(dtype="float16"), backbone=tiny_backbone)
    with pytest.raises(Exception, match="shard_size"):
        extract_to_store(posts, store, _cfg(shard_size=2), backbone=tiny_backbone)
    write_posts(tmp_path, 7)  # the posts file changed under the store
    with pytest.raises(Exception, match="posts_sha256"):
        extract_to_store(posts, store, _cfg(), backbone=tiny_backbone)


# ----------------------------------------------------------------------------------------------
# bad images


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height: enough to test that nothing is decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))


BAD_IMAGES = {
    # post index: (file name, reason)
    1: ("missing.jpg", "missing"),
    2: ("empty.jpg", "empty_file"),
    3: ("truncated.jpg", "truncated"),
    4: ("text.jpg", "not_an_image"),
    5: ("image.ppm", "unsupported_format"),
    6: ("photo.heic", "unsupported_format"),
    7: ("large.png", "too_large"),  # over extract.max_image_pixels (header check)
    8: ("bomb.png", "too_large"),  # over Pillow's own decompression-bomb limit
}


def _bad_image_posts(directory: Path) -> Path:
    img = directory / "img"
    img.mkdir(parents=True)
    (img / "empty.jpg").write_bytes(b"")
    buf = io.BytesIO()
    random_image(0, (64, 64)).save(buf, "JPEG", quality=95)
    (img / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (img / "text.jpg").write_text("this is a caption, not a picture\n")
    random_image(1, (20, 20)).save(img / "image.ppm")
    (img / "photo.heic").write_bytes(
        b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\0" * 64
    )
    random_image(2, (120, 100)).save(img / "large.png")  # 12,000 pixels
    (img / "bomb.png").write_bytes(_png_header_only(50_000, 50_000))
    special = {i: f"img/{name}" for i, (name, _) in BAD_IMAGES.items()}
    return write_posts(directory, 12, special=special)


@pytest.mark.parametrize("policy", ["text-only", "skip"])
def test_every_bad_image_class_is_handled_counted_and_reported(
    tmp_path: Path, tiny_backbone, policy: str
) -> None:
    posts = _bad_image_posts(tmp_path)
    # 12,000 > 10,000 for large.png; the 2.5-gigapixel bomb.png trips Pillow's own guard
    cfg = _cfg(image_policy=policy, max_image_pixels=10_000)
    extract_to_store(posts, tmp_path / "s", cfg, backbone=tiny_backbone)
    store = FeatureStore(tmp_path / "s")
    ex = store.manifest["extraction"]
    expected = {}
    for _, reason in BAD_IMAGES.values():
        expected[reason] = expected.get(reason, 0) + 1
    assert {k: v for k, v in ex["images"].items() if k in expected} == expected
    assert ex["images"]["present"] == 12 - len(BAD_IMAGES)
    assert ex["image_problems"] == len(BAD_IMAGES)
    report = json.loads((tmp_path / "s" / "image_report.json").read_text())
    by_id = {p["id"]: p for p in report["problems"]}
    for i, (name, reason) in BAD_IMAGES.items():
        entry = by_id[f"p{i:03d}"]
        assert entry["reason"] == reason and entry["row"] == i + 1
        assert entry["image"] == f"img/{name}"
        assert entry["action"] == ("skipped" if policy == "skip" else "text_only")
    bad_ids = {f"p{i:03d}" for i in BAD_IMAGES}
    if policy == "skip":
        assert len(store) == 12 - len(BAD_IMAGES) and not bad_ids & set(store.ids)
        assert ex["num_skipped"] == len(BAD_IMAGES)
    else:
        assert len(store) == 12 and ex["num_text_only"] == len(BAD_IMAGES)
        present = store.batch(np.arange(12)).image_present.numpy()
        assert [store.ids[i] for i in np.flatnonzero(~present)] == sorted(bad_ids)


def test_fail_policy_stops_with_the_post_and_leaves_no_corrupt_store(
    tmp_path: Path, tiny_backbone
) -> None:
    posts = _bad_image_posts(tmp_path)
    store = tmp_path / "s"
    with pytest.raises(ImageError) as e:
        extract_to_store(posts, store, _cfg(image_policy="fail", shard_size=1),
                         backbone=tiny_backbone)  # fmt: skip
    msg = str(e.value)
    assert "p001" in msg and "row 2" in msg and "missing" in msg and "image_policy" in msg
    # the post before the bad one is committed, nothing of the bad one's shard is
    assert sorted(p.name for p in (store / "shards").iterdir()) == ["000000"]
    assert not (store / "manifest.json").exists()


def test_cli_reports_fail_and_invalid_posts_without_traceback(
    tmp_path: Path, tiny_clip_dir, capsys
) -> None:
    posts = _bad_image_posts(tmp_path)
    base = ["--backbone", str(tiny_clip_dir), "extract.progress=false"]
    assert main(["extract", str(posts), "--out", str(tmp_path / "a"), "--image-policy",
                 "fail", *base]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "p001" in err and "Traceback" not in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "x"}\n{"text": "no id"}\n{"id": "a", "text": "dup"}\n')
    assert main(["extract", str(bad), "--out", str(tmp_path / "b"), *base]) == 2
    err = capsys.readouterr().err
    assert "row 2" in err and "row 3" in err and "Traceback" not in err
    assert not (tmp_path / "b").exists()


# ----------------------------------------------------------------------------------------------
# on-the-fly featurisation


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    # a batch of other composition (other padding, other batch size) moves fp32 results by
    # ~1e-6, which can tip a value across a float16 rounding boundary: one float16 step at most
    torch.testing.assert_close(a, b, rtol=2e-3, atol=1e-4)


def test_featurize_equals_what_extraction_stores(tmp_path: Path, tiny_backbone) -> None:
    posts_path = write_posts(tmp_path, 9, image_every=2, special={3: "img/missing.jpg"})
    extract_to_store(posts_path, tmp_path / "s", _cfg(dtype="float16"), backbone=tiny_backbone)
    store = FeatureStore(tmp_path / "s")
    table = read_posts(posts_path)
    batch, outcomes = featurize_posts(table.records, table.base_dir, tiny_backbone,
                                      _cfg(dtype="float16"))  # fmt: skip
    stored = store.batch(np.arange(len(store)))
    assert torch.equal(batch.text_mask, stored.text_mask)
    assert torch.equal(batch.image_present, stored.image_present)
    for name in ("text_tokens", "image_tokens", "text_embed", "image_embed"):
        _close(getattr(batch, name), getattr(stored, name))
        # rounded through float16 like the store: exactly representable in float16
        x = getattr(batch, name)
        assert torch.equal(x, x.half().float())
    assert [o.status for o in outcomes].count("text_only") == 1
    assert outcomes[3].reason == "missing" and outcomes[3].row == 4

    # the in-memory path (server uploads) gives the same numbers as the file path
    post = table.records[2]
    raw = (table.base_dir / post.image).read_bytes()
    one, outcome = featurize_one(post.text, raw, tiny_backbone, _cfg(dtype="float16"))
    assert outcome.status == "ok"
    _close(one.image_embed[0], stored.image_embed[2])
    _close(one.text_tokens[0], stored.text_tokens[2][: one.text_tokens.shape[1]])
    pil = Image.open(table.base_dir / post.image)
    via_pil, _ = featurize_inputs([(post.text, pil)], tiny_backbone, _cfg(dtype="float16"))
    assert torch.equal(via_pil.image_tokens, one.image_tokens)


def test_featurize_applies_the_policy_to_uploads(tiny_backbone) -> None:
    big = io.BytesIO()
    random_image(0, (200, 200)).save(big, "PNG")
    items = [("fine", None), ("junk", b"not an image"), ("huge", big.getvalue())]
    batch, outcomes = featurize_inputs(items, tiny_backbone, _cfg(max_image_pixels=10_000))
    assert len(batch) == 3 and not batch.image_present.any()
    assert [o.reason for o in outcomes] == [None, "not_an_image", "too_large"]
    batch, outcomes = featurize_inputs(items, tiny_backbone, _cfg(image_policy="skip",
                                                                 max_image_pixels=10_000))  # fmt: skip
    assert batch.index.tolist() == [0] and [o.status for o in outcomes][1:] == ["skipped"] * 2
    with pytest.raises(ImageError, match="post '1'"):
        featurize_inputs(items, tiny_backbone, _cfg(image_policy="fail"))


# ----------------------------------------------------------------------------------------------
# CLI


def test_cli_extract_end_to_end(tmp_path: Path, tiny_clip_dir, capsys) -> None:
    posts = write_posts(tmp_path, 7, image_every=3)
    store = tmp_path / "feats"
    argv = ["extract", str(posts), "--backbone", str(tiny_clip_dir), "--out", str(store),
            "extract.progress=false", "extract.shard_size=3"]  # fmt: skip
    assert main(argv) == 0
    assert "wrote 7 posts in 3 shard(s)" in capsys.readouterr().out
    s = FeatureStore(store)
    assert len(s) == 7 and s.labels == ["cafe", "gym", "park"]
    assert s.manifest["dtype"] == "float16"
    assert s.manifest["backbone"]["name"] == tiny_clip_dir.name
    assert s.manifest["extraction"]["images"]["present"] == 3
    shutil.rmtree(store)
