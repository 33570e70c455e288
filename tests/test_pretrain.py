"""Contrastive CLIP pretraining: the saved directory is a CLIP that extraction loads, training
lowers the loss, the temperature is clamped, runs repeat exactly, and bad input is reported."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from semloc.cli import main
from semloc.clip.backbone import load_backbone
from semloc.clip.pretrain import (
    CURVE_FILE,
    MAX_LOGIT_SCALE,
    METRICS_FILE,
    PretrainConfig,
    ScratchClipConfig,
    alignment_metrics,
    contrastive_loss,
    pretrain_clip,
    related_auroc,
)
from semloc.errors import DataError, SemlocError

COLORS = {
    "red": (220, 30, 30),
    "green": (30, 200, 40),
    "blue": (30, 40, 220),
    "yellow": (240, 220, 30),
    "black": (10, 10, 10),
    "white": (245, 245, 245),
    "purple": (140, 30, 160),
    "orange": (250, 140, 20),
}
SHAPES = ("square", "stripe")
# settings of a CLIP small enough to train a few steps in well under a second
TINY = ScratchClipConfig(
    vocab_size=300,
    text_width=32,
    vision_width=32,
    embed_dim=16,
    layers=1,
    heads=2,
    image_size=32,
    patch_size=8,
    max_text_tokens=24,
)
TINY_OVERRIDES = [f"scratch.{k}={v}" for k, v in vars(TINY).items()]


def _picture(color: tuple[int, int, int], shape: str, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    px = np.full((40, 40, 3), 128, np.uint8) + rng.integers(0, 20, (40, 40, 3), dtype=np.uint8)
    if shape == "square":
        px[8:32, 8:32] = color
    else:
        px[16:24, :] = color
    return Image.fromarray(px)


def write_pairs(directory: Path, *, copies: int = 2, fmt: str = "jsonl") -> Path:
    """Colour x shape pictures with matching captions; the last copy is held out (split)."""
    (directory / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(copies):
        for name, rgb in COLORS.items():
            for shape in SHAPES:
                rel = f"img/{name}-{shape}-{k}.png"
                _picture(rgb, shape, hash((name, shape, k)) % 1000).save(directory / rel)
                split = "dev" if k == copies - 1 else "train"
                rows.append({"image": rel, "caption": f"a {name} {shape}", "split": split})
    if fmt == "csv":
        path = directory / "pairs.csv"
        lines = ["image,caption,split"] + [
            f"{r['image']},{r['caption']},{r['split']}" for r in rows
        ]
        path.write_text("\n".join(lines) + "\n")
    else:
        path = directory / "pairs.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _cfg(**kw) -> PretrainConfig:
    base = dict(epochs=2, batch_size=8, progress=False, num_workers=0)
    return PretrainConfig(**{**base, **kw})


def test_cli_from_scratch_saves_a_clip_that_extraction_loads(tmp_path, capsys):
    from semloc.clip.extract import extract_to_store
    from semloc.config import ExtractConfig

    pairs = write_pairs(tmp_path / "data", fmt="csv")
    out = tmp_path / "clip"
    rc = main(
        [
            "pretrain-clip",
            str(pairs),
            "--out",
            str(out),
            "--epochs",
            "2",
            "pretrain.batch_size=8",
            "pretrain.progress=false",
            "pretrain.num_workers=0",
            *TINY_OVERRIDES,
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "R@1" in printed and "R@5" in printed and "matched pairs" in printed
    for name in ("config.json", "model.safetensors", "tokenizer.json", "processor_config.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / METRICS_FILE).read_text())
    held = metrics["heldout"]
    assert held["pairs"] == 16 and held["distinct_captions"] == 16
    for key in ("r_at_1", "r_at_5", "cos_matched", "cos_mismatched"):
        assert np.isfinite(held[key])
    assert metrics["pairs"]["train"] == 16
    assert not list(tmp_path.glob(".clip.tmp-*"))  # the temporary directory was renamed

    # the directory is a CLIP like any other: `semloc extract` loads it and writes features
    posts = tmp_path / "data" / "posts.jsonl"
    rows = [
        {
            "id": f"p{i}",
            "text": f"at the {c}",
            "image": f"img/{c}-square-0.png",
            "label": "ab"[i % 2],
        }
        for i, c in enumerate(COLORS)
    ]
    posts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = extract_to_store(
        posts, tmp_path / "feats", ExtractConfig(backbone=str(out), num_workers=0, progress=False)
    )
    assert result.manifest["num_posts"] == len(COLORS)
    assert result.manifest["dims"]["embed_dim"] == TINY.embed_dim
    backbone = load_backbone(out)
    assert backbone.image_size == TINY.image_size


def test_loss_decreases_and_the_model_aligns_on_a_toy_set(tmp_path):
    pairs = write_pairs(tmp_path / "data", copies=2)
    result = pretrain_clip(
        pairs, tmp_path / "clip", _cfg(epochs=12, batch_size=16, lr=3e-3), scratch=TINY
    )
    losses = [h["train_loss"] for h in result.history]
    assert len(losses) == 12
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses
    m = result.metrics
    assert m["heldout"]["cos_matched"] - m["heldout"]["cos_mismatched"] > (
        m["heldout_before"]["cos_matched"] - m["heldout_before"]["cos_mismatched"]
    )


def test_continue_from_an_existing_clip_keeps_its_tokenizer_and_clamps_the_temperature(
    tmp_path, tiny_clip_dir
):
    from safetensors.torch import load_file, save_file

    # a CLIP whose temperature sits far above CLIP's cap: one step must bring it back to 100
    init = tmp_path / "init"
    init.mkdir()
    for f in tiny_clip_dir.iterdir():
        (init / f.name).write_bytes(f.read_bytes())
    weights = load_file(init / "model.safetensors")
    weights["logit_scale"] = torch.tensor(8.0)
    save_file(weights, init / "model.safetensors", metadata={"format": "pt"})

    pairs = write_pairs(tmp_path / "data", copies=2)
    out = tmp_path / "adapted"
    rc = main(
        [
            "pretrain-clip",
            str(pairs),
            "--out",
            str(out),
            "--init",
            str(init),
            "--epochs",
            "1",
            "pretrain.batch_size=8",
            "pretrain.progress=false",
            "pretrain.num_workers=0",
        ]
    )
    assert rc == 0
    saved = load_file(out / "model.safetensors")
    assert float(saved["logit_scale"]) <= MAX_LOGIT_SCALE + 1e-6
    changed = [k for k in saved if k != "logit_scale" and not torch.equal(saved[k], weights[k])]
    assert changed  # it trained
    assert (out / "tokenizer.json").read_text() == (init / "tokenizer.json").read_text()
    metrics = json.loads((out / METRICS_FILE).read_text())
    assert metrics["init"] == str(init) and metrics["lr"] == pytest.approx(1e-5)
    assert load_backbone(out).max_text_tokens == 16  # the init's context, not a default


def _with_probes(pairs: Path) -> Path:
    """The pairs plus held-out probe pairs: each held-out picture with its own caption
    (related) and with the caption of another colour (unrelated)."""
    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    held = [r for r in rows if r["split"] != "train"]
    for i, r in enumerate(held):
        other = held[(i + 2) % len(held)]["caption"]
        rows.append({**r, "related": True})
        rows.append({**r, "caption": other, "related": False})
    out = pairs.with_name("probes.jsonl")
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def test_eval_every_writes_the_curve_of_retrieval_and_auroc_against_training_time(tmp_path):
    pairs = _with_probes(write_pairs(tmp_path / "data", copies=2))
    result = pretrain_clip(
        pairs,
        tmp_path / "clip",
        _cfg(epochs=6, batch_size=16, lr=3e-3, eval_every=2),
        scratch=TINY,
    )
    curve = json.loads((result.out_dir / CURVE_FILE).read_text())
    points = curve["points"]
    assert [p["epoch"] for p in points] == [0, 2, 4, 6]
    assert [p["steps"] for p in points] == [0, 2, 4, 6]  # 16 training pairs: one step an epoch
    times = [p["train_seconds"] for p in points]
    assert times[0] == 0 and all(b > a for a, b in itertools.pairwise(times))
    assert all(p["train_cpu_seconds"] >= 0 for p in points)
    # probe pairs are scored, never trained on nor retrieval candidates
    m = result.metrics
    assert m["pairs"]["probe"] == 32 and m["pairs"]["train"] == 16
    assert m["heldout"]["distinct_captions"] == 16
    assert points[-1]["related_vs_unrelated_auroc"] == m["heldout"]["related_vs_unrelated_auroc"]
    assert points[-1]["r_at_1"] == m["heldout"]["r_at_1"]
    # the toy set is easy: training separates a picture's own caption from another's
    assert m["heldout"]["related_vs_unrelated_auroc"] > 0.7
    assert m["heldout"]["related_vs_unrelated_auroc"] > points[0]["related_vs_unrelated_auroc"]
    # without eval_every no curve is written
    plain = pretrain_clip(pairs, tmp_path / "plain", _cfg(epochs=1), scratch=TINY)
    assert not (plain.out_dir / CURVE_FILE).exists()


def test_probe_pairs_must_be_held_out_and_related_must_be_boolean(tmp_path):
    pairs = write_pairs(tmp_path / "data")
    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    rows[0] = {**rows[0], "related": True}  # a training row
    rows[-1] = {**rows[-1], "related": "maybe"}
    bad = pairs.with_name("bad.jsonl")
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError) as err:
        pretrain_clip(bad, tmp_path / "clip", _cfg(), scratch=TINY)
    text = str(err.value) + " ".join(err.value.problems)
    assert "row 1" in text and "must be held out" in text
    assert f"row {len(rows)}" in text and "true or false" in text


def test_related_auroc():
    v = np.eye(4)
    t = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], float)
    m = related_auroc(v, t, np.array([True, True, False, False]))
    assert m["related_vs_unrelated_auroc"] == 1.0 and m["probe_unrelated"] == 2
    m = related_auroc(v, t, np.array([False, False, True, True]))
    assert m["related_vs_unrelated_auroc"] == 0.0


def test_same_seed_same_weights(tmp_path):
    pairs = write_pairs(tmp_path / "data")
    a = pretrain_clip(pairs, tmp_path / "a", _cfg(augment=True), scratch=TINY)
    b = pretrain_clip(pairs, tmp_path / "b", _cfg(augment=True), scratch=TINY)
    c = pretrain_clip(pairs, tmp_path / "c", _cfg(augment=True, seed=1), scratch=TINY)
    wa, wb, wc = (load_backbone(r.out_dir).weights_sha256 for r in (a, b, c))
    assert wa == wb
    assert wa != wc


def test_same_settings_same_weights_whatever_the_threads_and_workers(tmp_path):
    # float sums depend on the intra-op thread count (measured: a tiny build at 1 and at 2
    # threads gave different weights): the build pins its own, so the machine's does not matter
    pairs = write_pairs(tmp_path / "data")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = pretrain_clip(pairs, tmp_path / "a", _cfg(threads=2), scratch=TINY)
        torch.set_num_threads(2)
        b = pretrain_clip(pairs, tmp_path / "b", _cfg(threads=2, num_workers=2), scratch=TINY)
        assert torch.get_num_threads() == 2  # left as it was found
    finally:
        torch.set_num_threads(threads)
    assert load_backbone(a.out_dir).weights_sha256 == load_backbone(b.out_dir).weights_sha256


TOKENIZER_RUN = """
import hashlib, random
from semloc.clip.tiny import train_clip_tokenizer
rng = random.Random(0)
words = ["".join(rng.choice("abcdefghijklmnop") for _ in range(rng.randint(2, 6))) for _ in range(400)]
texts = [" ".join(rng.choice(words) for _ in range(8)) + " 🙂" * (i % 3) for i in range(300)]
tok = train_clip_tokenizer(texts, vocab_size=600, max_text_tokens=32)
print(hashlib.sha256(tok.backend_tokenizer.to_str().encode()).hexdigest())
"""


def test_tokenizer_training_is_the_same_in_every_process():
    # the BPE trainer's hash maps iterate in an order that changes from process to process
    # (measured: two demo builds in two processes learned merges in another order on ties,
    # and so gave two CLIPs), which one process alone never shows: train in three
    import subprocess
    import sys

    digests = {
        subprocess.run(
            [sys.executable, "-c", TOKENIZER_RUN], capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(3)
    }
    assert len(digests) == 1, digests


def test_holdout_without_split_column_and_existing_out_is_refused(tmp_path):
    data = tmp_path / "data"
    pairs = write_pairs(data)
    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    no_split = data / "nosplit.jsonl"
    no_split.write_text(
        "".join(json.dumps({k: r[k] for k in ("image", "caption")}) + "\n" for r in rows)
    )
    out = tmp_path / "clip"
    result = pretrain_clip(no_split, out, _cfg(epochs=1, holdout_fraction=0.25), scratch=TINY)
    assert result.metrics["pairs"]["heldout_total"] == 8
    assert result.metrics["pairs"]["train"] == 24
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(SemlocError, match="already exists"):
        pretrain_clip(no_split, out, _cfg(epochs=1), scratch=TINY)
    assert sorted(p.name for p in out.iterdir()) == before


def test_bad_rows_are_all_reported(tmp_path, capsys):
    data = tmp_path / "data"
    pairs = write_pairs(data)
    (data / "broken.png").write_bytes(b"not a png")
    lines = pairs.read_text().splitlines()
    lines[1] = json.dumps({"image": "img/nowhere.png", "caption": "lost"})
    lines[2] = json.dumps({"image": "img/red-square-0.png", "caption": "  "})
    bad = data / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as e:
        pretrain_clip(bad, tmp_path / "clip", _cfg(), scratch=TINY)
    assert "row 2" in str(e.value) and "row 3" in str(e.value)
    assert not (tmp_path / "clip").exists()

    lines = pairs.read_text().splitlines()
    lines[4] = json.dumps({"image": "broken.png", "caption": "a broken file", "split": "train"})
    undecodable = data / "undecodable.jsonl"
    undecodable.write_text("\n".join(lines) + "\n")
    rc = main(
        ["pretrain-clip", str(undecodable), "--out", str(tmp_path / "clip"), *TINY_OVERRIDES,
         "pretrain.progress=false", "pretrain.num_workers=0"]
    )  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err
    assert "row 5" in err and "not_an_image" in err and "bad_images=skip" in err
    assert not (tmp_path / "clip").exists()
    assert not list(tmp_path.glob(".clip.tmp-*"))

    skipped = pretrain_clip(
        undecodable, tmp_path / "clip", _cfg(epochs=1, bad_images="skip"), scratch=TINY
    )
    assert skipped.metrics["pairs"]["bad_images_skipped"] == 1


def test_contrastive_loss_and_alignment_metrics():
    torch.manual_seed(0)
    v = torch.randn(6, 8)
    # perfectly aligned pairs, a large temperature: loss near zero, perfect retrieval
    loss = contrastive_loss(v, v, torch.tensor(MAX_LOGIT_SCALE))
    assert float(loss) < 1e-3
    swapped = contrastive_loss(v, v.roll(1, 0), torch.tensor(MAX_LOGIT_SCALE))
    assert float(swapped) > 5
    # the loss is symmetric in its two directions
    t = torch.randn(6, 8)
    assert torch.allclose(
        contrastive_loss(v, t, torch.tensor(2.0)), contrastive_loss(t, v, torch.tensor(2.0))
    )

    e = np.eye(4, dtype=np.float32)
    m = alignment_metrics(e, e, ["a", "b", "c", "d"])
    assert m["r_at_1"] == 1.0 and m["cos_matched"] == pytest.approx(1.0)
    assert m["cos_mismatched"] == pytest.approx(0.0)
    assert alignment_metrics(e, e[[1, 0, 2, 3]], ["a", "b", "c", "d"])["r_at_1"] == 0.5
    # identical captions are one candidate (chance is counted over distinct captions)
    v, t = e.copy(), e.copy()
    v[1], t[1] = e[0] + e[1], e[0]  # two pictures, both "a"
    m = alignment_metrics(v, t, ["a", "a", "c", "d"])
    assert m["distinct_captions"] == 3 and m["chance_r_at_1"] == pytest.approx(1 / 3)
    assert m["r_at_1"] == 1.0


def _with_noisy_posts(pairs: Path) -> Path:
    """The pairs with every training caption marked filterable=false, plus eight filterable
    training "posts": four of a picture with its own caption, four with another's."""
    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    train = [r for r in rows if r["split"] == "train"]
    posts = [
        {**r, "caption": train[(i + 5) % len(train)]["caption"] if i % 2 else r["caption"]}
        for i, r in enumerate(train[:8])
    ]
    rows = [{**r, "filterable": False} for r in rows] + posts
    out = pairs.with_name("noisy.jsonl")
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def test_noisy_pair_filtering_leaves_out_the_lowest_scored_filterable_pairs(tmp_path, monkeypatch):
    import semloc.clip.pretrain as pretrain

    pairs = _with_noisy_posts(write_pairs(tmp_path / "data"))
    calls = []
    original = pretrain.least_related

    def spy(cosines: np.ndarray, count: int) -> np.ndarray:
        picked = original(cosines, count)
        calls.append((cosines.copy(), count, picked))
        return picked

    monkeypatch.setattr(pretrain, "least_related", spy)
    cfg = _cfg(epochs=3, filter_fraction=0.25, filter_after=1)
    a = pretrain_clip(pairs, tmp_path / "a", cfg, scratch=TINY)
    # scored after epochs 1 and 2 (not after the last): only the 8 filterable pairs, 2 left out
    assert [(len(c), k) for c, k, _ in calls] == [(8, 2), (8, 2)]
    for cos, _, picked in calls:
        assert set(np.argsort(cos, kind="stable")[:2]) == set(picked)
    h = a.history
    assert [e["pairs_trained"] for e in h] == [24, 22, 22]  # the 16 captions always trained on
    assert [e.get("left_out_next") for e in h] == [2, 2, None]
    assert a.metrics["steps"] == 3 + 2 + 2  # batches of 8: each epoch's steps from its pairs
    assert a.metrics["pairs"]["filterable_train"] == 8
    # deterministic from the seed, and filtering changes the build
    b = pretrain_clip(pairs, tmp_path / "b", cfg, scratch=TINY)
    plain = pretrain_clip(pairs, tmp_path / "plain", _cfg(epochs=3), scratch=TINY)
    wa, wb, wp = (load_backbone(r.out_dir).weights_sha256 for r in (a, b, plain))
    assert wa == wb != wp
    assert "pairs_trained" not in plain.history[0] and plain.metrics["steps"] == 9


def test_least_related_and_bad_filter_settings(tmp_path):
    from semloc.clip.pretrain import least_related

    assert least_related(np.array([0.3, -0.1, 0.2, -0.1]), 2).tolist() == [1, 3]
    assert least_related(np.zeros(3), 1).tolist() == [0]  # equal scores: the earlier pair
    assert least_related(np.zeros(3), 0).tolist() == []
    with pytest.raises(ValueError):
        least_related(np.zeros(3), 4)

    pairs = write_pairs(tmp_path / "data")
    for kw, message in (
        ({"filter_fraction": 1.0}, "filter_fraction"),
        ({"filter_fraction": 0.2, "filter_after": 2}, "filter_after"),  # epochs=2: never scored
    ):
        with pytest.raises(SemlocError, match=message):
            pretrain_clip(pairs, tmp_path / "clip", _cfg(**kw), scratch=TINY)
    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    curated = pairs.with_name("curated.jsonl")
    curated.write_text("".join(json.dumps({**r, "filterable": False}) + "\n" for r in rows))
    with pytest.raises(SemlocError, match="no training pair is filterable"):
        pretrain_clip(
            curated, tmp_path / "clip", _cfg(epochs=3, filter_fraction=0.2, filter_after=1),
            scratch=TINY,
        )  # fmt: skip
    rows[3] = {**rows[3], "filterable": "sometimes"}
    bad = pairs.with_name("bad.jsonl")
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError) as err:
        pretrain_clip(bad, tmp_path / "clip", _cfg(), scratch=TINY)
    assert "row 4" in " ".join(err.value.problems) and "filterable" in " ".join(err.value.problems)
    assert not (tmp_path / "clip").exists()


def test_bad_scratch_sizes_are_refused_before_anything_is_written(tmp_path):
    import dataclasses

    pairs = write_pairs(tmp_path / "data")
    for change, message in (
        ({"layers": 0}, r"integer >= 1, got layers=0"),
        ({"layers": -2, "heads": 1.5}, r"layers=-2, heads=1\.5"),
        ({"layers": True}, r"layers=True"),
        ({"text_width": 33}, "divisible by heads"),
        ({"image_size": 30}, "multiple of patch_size"),
    ):
        with pytest.raises(SemlocError, match=message):
            pretrain_clip(
                pairs, tmp_path / "clip", _cfg(), scratch=dataclasses.replace(TINY, **change)
            )
        assert not (tmp_path / "clip").exists()
        assert not list(tmp_path.glob(".clip.tmp-*"))
