"""The demo world generator: determinism, the noise knobs, the post format, safe rewriting, CLI."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semloc.cli import main
from semloc.demo import _scenes, _texts, world
from semloc.demo.world import WorldConfig, make_world
from semloc.errors import SemlocError

TINY = WorldConfig(num_posts=120, seed=0, image_size=96)


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world") / "w"
    make_world(out, TINY, progress=False)
    return out


def test_same_seed_gives_identical_files_and_another_seed_does_not(tiny_world, tmp_path):
    again = tmp_path / "again"
    make_world(again, TINY, progress=False, workers=2)  # worker processes must not change bytes
    assert _digests(again) == _digests(tiny_world)

    other = tmp_path / "other"
    make_world(other, WorldConfig(num_posts=120, seed=1), progress=False)
    a, b = _digests(tiny_world), _digests(other)
    assert a["posts.jsonl"] != b["posts.jsonl"]
    common = [k for k in a.keys() & b.keys() if k.startswith("images/")]
    assert sum(a[k] != b[k] for k in common) == len(common) > 0


def test_output_follows_the_post_format(tiny_world):
    posts = _jsonl(tiny_world / "posts.jsonl")
    info = json.loads((tiny_world / "world.json").read_text())
    assert len(posts) == TINY.num_posts == info["counts"]["posts"]
    assert len({p["id"] for p in posts}) == len(posts)
    for p in posts:
        assert (
            {"id", "text", "label", "split", "user", "created_at"}
            <= p.keys()
            <= {"id", "text", "image", "label", "split", "user", "created_at"}
        )
        assert isinstance(p["text"], str)
        assert p["label"] in info["classes"]
        assert p["split"] in ("train", "dev", "test")
    assert {p["label"] for p in posts if p["split"] == "train"} == set(info["classes"])
    assert len(info["classes"]) >= 8

    with_image = [p for p in posts if "image" in p]
    for p in with_image:
        with Image.open(tiny_world / p["image"]) as im:
            im.load()
            assert im.size == (TINY.image_size, TINY.image_size) and im.mode == "RGB"

    # one caption per picture, in the post's split, and no stray pictures
    captions = _jsonl(tiny_world / "captions.jsonl")
    assert [c["image"] for c in captions] == [p["image"] for p in with_image]
    assert [c["split"] for c in captions] == [p["split"] for p in with_image]
    assert all(len(c["caption"].split()) >= 4 for c in captions)
    assert len(list((tiny_world / "images").iterdir())) == len(with_image)
    assert not (tiny_world / world._PARTIAL_MARKER).exists()


def test_noise_knobs_are_realised(tmp_path):
    cfg = WorldConfig(
        num_posts=300, no_image_rate=0.15, unrelated_image_rate=0.3, uninformative_text_rate=0.2
    )
    info = make_world(tmp_path / "w", cfg, progress=False)
    real = info["counts"]["realised"]
    assert real["no_image_rate"] == pytest.approx(0.15, abs=0.01)
    assert real["unrelated_image_rate"] == pytest.approx(0.3, abs=0.01)
    assert real["uninformative_text_rate"] == pytest.approx(0.2, abs=0.01)
    # what the files show agrees with what world.json reports
    posts = _jsonl(tmp_path / "w" / "posts.jsonl")
    assert sum("image" not in p for p in posts) / len(posts) == real["no_image_rate"]
    assert sum(p["text"] == "" for p in posts) / len(posts) == real["empty_text_rate"]


def test_zero_noise_gives_none(tmp_path):
    cfg = WorldConfig(
        num_posts=120,
        no_image_rate=0.0,
        unrelated_image_rate=0.0,
        uninformative_text_rate=0.0,
        empty_text_rate=0.0,
    )
    info = make_world(tmp_path / "w", cfg, progress=False)
    counts = info["counts"]
    assert counts["realised"] == {
        "no_image_rate": 0.0,
        "unrelated_image_rate": 0.0,
        "uninformative_text_rate": 0.0,
        "empty_text_rate": 0.0,
    }
    assert not {"selfie", "pet", "meme", "other_class", "none"} & counts["image_kinds"].keys()
    posts = _jsonl(tmp_path / "w" / "posts.jsonl")
    assert all("image" in p and p["text"] for p in posts)
    captions = [c["caption"] for c in _jsonl(tmp_path / "w" / "captions.jsonl")]
    assert not [c for c in captions if c.startswith(("a selfie", "a meme"))]


def test_uninformative_and_shared_content_carry_no_class():
    """By construction: the same seed gives the same text/picture whatever the class."""
    pairs = [frozenset({"office", "school"})]
    for mode in ("chatter", "vague"):
        texts = {_texts.make_text(random.Random(7), c, mode, 0.03, pairs) for c in ("home", "gym")}
        assert len(texts) == 1
    confused = {_texts.make_text(random.Random(7), c, "confused", 0.0, pairs) for c in pairs[0]}
    assert len(confused) == 1

    def pixels(kind: str, cls: str, partner: str | None) -> bytes:
        img, caption = _scenes.render(kind, cls, partner, "seed", 96)
        return np.asarray(img).tobytes() + caption.encode()

    assert pixels("generic", "home", None) == pixels("generic", "station", None)
    assert pixels("confused", "home", "restaurant") == pixels("confused", "restaurant", "home")
    assert pixels("selfie", "park", None) == pixels("selfie", "office", None)


def test_rerun_is_a_noop_and_a_different_config_needs_force(tiny_world, tmp_path):
    before = {p: p.stat().st_mtime_ns for p in tiny_world.rglob("*")}
    info = make_world(tiny_world, TINY, progress=False)
    assert info["fingerprint"] == world.fingerprint(TINY)
    assert {p: p.stat().st_mtime_ns for p in tiny_world.rglob("*")} == before

    out = tmp_path / "w"
    make_world(out, WorldConfig(num_posts=60), progress=False)
    with pytest.raises(SemlocError, match="different config"):
        make_world(out, WorldConfig(num_posts=60, seed=3), progress=False)
    info = make_world(out, WorldConfig(num_posts=60, seed=3), progress=False, force=True)
    assert info["config"]["seed"] == 3
    assert len(_jsonl(out / "posts.jsonl")) == 60


def test_foreign_directory_is_not_clobbered(tmp_path):
    (tmp_path / "posts.jsonl").write_text("mine\n")
    with pytest.raises(SemlocError, match="does not look like a demo world"):
        make_world(tmp_path, WorldConfig(num_posts=60), progress=False)
    assert (tmp_path / "posts.jsonl").read_text() == "mine\n"


def test_interrupted_run_is_not_complete_and_is_redone(tmp_path, monkeypatch):
    out = tmp_path / "w"
    real_render = _scenes.render
    calls = {"n": 0}

    def dying_render(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 10:
            raise KeyboardInterrupt
        return real_render(*args, **kwargs)

    monkeypatch.setattr(_scenes, "render", dying_render)
    with pytest.raises(KeyboardInterrupt):
        make_world(out, WorldConfig(num_posts=60), progress=False, workers=1)
    assert not (out / "world.json").exists() and not (out / "posts.jsonl").exists()
    assert world.read_world_info(out) is None

    monkeypatch.setattr(_scenes, "render", real_render)
    make_world(out, WorldConfig(num_posts=60), progress=False, workers=1)
    assert len(_jsonl(out / "posts.jsonl")) == 60
    assert not (out / world._IMAGES_TMP).exists()


def test_invalid_config_is_a_clear_error(tmp_path):
    with pytest.raises(SemlocError, match="image_size") as e:
        make_world(tmp_path, WorldConfig(image_size=32, no_image_rate=1.5), progress=False)
    assert "no_image_rate" in str(e.value)
    with pytest.raises(SemlocError, match="unknown class"):
        make_world(tmp_path, WorldConfig(text_dominant_classes=("moon",)), progress=False)


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["make-demo-world", "--out", str(out), "--posts", "60", "--no-progress"]) == 0
    assert len(_jsonl(out / "posts.jsonl")) == 60
    assert "60 posts" in capsys.readouterr().out
    # a different config on the same directory: a one-line error, exit code 2, files kept
    assert main(["make-demo-world", "--out", str(out), "--posts", "70"]) == 2
    assert "--force" in capsys.readouterr().err
    assert (
        main(["make-demo-world", "--out", str(out), "--posts", "70", "dominance=0.5", "--force"])
        == 0
    )
    assert json.loads((out / "world.json").read_text())["config"]["dominance"] == 0.5
