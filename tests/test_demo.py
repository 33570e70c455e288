"""`semloc demo --quick` end to end through the real CLI entry point: world -> demo CLIP ->
extraction -> models -> report; a second run reuses every cached stage; bad knobs get clear
errors; the report's two renderings carry the same content."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest

from semloc.cli import main
from semloc.demo.report import Block, fusion_gain, to_html, to_markdown
from semloc.errors import SemlocError

QUICK = ["demo", "--quick", "--world", "typo_rate=0.0"]


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    workdir = tmp_path_factory.mktemp("demo") / "demo-out"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main([*QUICK, "--workdir", str(workdir)])
    return workdir, rc, out.getvalue()


def test_quick_demo_runs_end_to_end_and_writes_the_report(quick_demo):
    workdir, rc, printed = quick_demo
    assert rc == 0
    # the results table and a summary reach the terminal
    assert "| model |" in printed and "sgmft" in printed and "report:" in printed
    for name in ("report.md", "report.html", "results.md", "summary.json", "prompts.yaml"):
        assert (workdir / name).is_file(), name
    for fig in ("models", "per_class_f1", "confusion", "training_curves", "clip_pretraining"):
        assert (workdir / "figures" / f"{fig}.png").stat().st_size > 1000, fig
    report = (workdir / "report.md").read_text()
    assert "## Results (test split)" in report and "## The demo CLIP" in report
    assert "R@1" in report and "zero-shot" in report
    summary = json.loads((workdir / "summary.json").read_text())
    models = {r["model"] for r in summary["rows"]}
    assert {"sgmft", "text_mlp", "concat_mlp", "linear-probe", "zeroshot-image"} <= models
    for r in summary["rows"]:
        assert 0.0 <= r["macro_f1"]["mean"] <= 1.0
    assert summary["world"]["config"]["typo_rate"] == 0.0  # --world reached the generator
    assert set(summary["timings"]) >= {"world", "clip", "extract", "models"}


def test_features_come_from_the_demo_clip_through_the_extraction_path(quick_demo):
    from semloc.clip.backbone import load_backbone
    from semloc.features.store import FeatureStore

    workdir, _, _ = quick_demo
    summary = json.loads((workdir / "summary.json").read_text())
    clip_dir = Path(summary["clip"]["dir"])
    store = FeatureStore(summary["features"]["dir"])
    backbone = load_backbone(clip_dir)
    assert store.manifest["backbone"]["weights_sha256"] == backbone.weights_sha256
    assert store.manifest["extraction"]["num_input_posts"] == summary["world"]["counts"]["posts"]
    metrics = json.loads((clip_dir / "pretrain_metrics.json").read_text())
    assert metrics["heldout"]["pairs"] > 0


def test_second_run_reuses_every_stage(quick_demo, capsys):
    workdir, _, _ = quick_demo
    before = json.loads((workdir / "summary.json").read_text())
    rc = main([*QUICK, "--workdir", str(workdir)])
    assert rc == 0
    after = json.loads((workdir / "summary.json").read_text())
    assert after["clip"]["cached"] and after["features"]["cached"]
    assert after["clip"]["dir"] == before["clip"]["dir"]
    assert [r["macro_f1"] for r in after["rows"]] == [r["macro_f1"] for r in before["rows"]]


def test_bad_knobs_are_clear_errors(tmp_path, capsys):
    workdir = tmp_path / "w"
    for args, message in (
        (["--world", "bogus=1"], "bogus"),
        (["--unrelated-images", "1.5"], "unrelated_image_rate"),
        (["--world", "seed"], "KEY=VALUE"),
        (["model.bogus=1"], "model.bogus"),
        (["--clip-epochs", "0"], "clip epochs"),
        (["--clip-filter", "1.5"], "filter_fraction"),
    ):
        assert main(["demo", "--quick", "--workdir", str(workdir), *args]) == 2
        assert message in capsys.readouterr().err
    assert not workdir.exists()  # refused before anything was written


def test_report_renderings_and_fusion_gain():
    blocks = [
        Block("h1", "title"),
        Block("p", "a **bold** `code` <tag>"),
        Block("table", (["model", "macro-F1"], [["sgmft", "**80.0**"], ["text_mlp", "60.0"]])),
        Block("image", ("alt", "figures/x.png")),
    ]
    md = to_markdown(blocks)
    assert "| sgmft | **80.0** |" in md and "![alt](figures/x.png)" in md
    page = to_html(blocks, "t")
    assert "<b>bold</b>" in page and "<code>code</code>" in page and "&lt;tag&gt;" in page
    assert '<img src="figures/x.png"' in page

    def row(model: str, f1: float) -> dict:
        return {"model": model, "macro_f1": {"mean": f1, "std": 0.0}, "runs": 1, "kind": "train"}

    gain = fusion_gain(
        [row("sgmft", 0.8), row("gmu", 0.7), row("text_mlp", 0.6), row("image_mlp", 0.5)]
    )
    assert gain["fusion"] == "sgmft"
    assert gain["text_gap"] == pytest.approx(0.2) and gain["image_gap"] == pytest.approx(0.3)


def test_noise_truth_recomputed_from_the_config_matches_the_world(quick_demo):
    from semloc.demo.diagnose import UNINFORMATIVE_MODES, UNRELATED_KINDS, noise_truth

    workdir, _, _ = quick_demo
    summary = json.loads((workdir / "summary.json").read_text())
    world = Path(summary["world"]["dir"])
    truth = noise_truth(world)
    posts = [json.loads(line) for line in (world / "posts.jsonl").read_text().splitlines()]
    assert [p["id"] for p in posts] == list(truth)
    for p in posts:  # the plan says "no picture" exactly where the world wrote none
        assert (truth[p["id"]].image_kind == "none") == (not p.get("image")), p["id"]
    with_image = [truth[p["id"]] for p in posts if p.get("image")]
    realised = summary["world"]["counts"]["realised"]
    unrelated = sum(t.image_kind in UNRELATED_KINDS for t in with_image) / len(with_image)
    uninformative = sum(t.text_mode in UNINFORMATIVE_MODES for t in truth.values()) / len(posts)
    assert unrelated == pytest.approx(realised["unrelated_image_rate"], abs=1e-6)
    assert uninformative == pytest.approx(realised["uninformative_text_rate"], abs=1e-6)


def test_diagnose_scores_slices_consistently_with_the_run(quick_demo, capsys):
    from semloc.demo.diagnose import main as diagnose

    workdir, _, _ = quick_demo
    summary = json.loads((workdir / "summary.json").read_text())
    cell = next(c for c in summary["cells"] if c["model"] == "sgmft")
    rc = diagnose(
        ["--world", summary["world"]["dir"], "--store", summary["features"]["dir"], cell["dir"]]
    )
    printed = capsys.readouterr().out
    assert rc == 0
    assert "ROC AUC of the cosine" in printed and "| sgmft `sgmft/seed-0` |" in printed
    # the 'all' slice is the whole test split: the same accuracy the experiment recorded
    row = next(line for line in printed.splitlines() if line.startswith("| sgmft"))
    assert float(row.split("|")[2]) == pytest.approx(100 * cell["accuracy"], abs=0.051)
    assert "π_image" in printed  # SG-MFT exposes its fusion weights and gate


def test_diagnose_refuses_a_store_of_another_world(quick_demo, tmp_path, capsys):
    from semloc.demo.diagnose import main as diagnose

    workdir, _, _ = quick_demo
    summary = json.loads((workdir / "summary.json").read_text())
    other = tmp_path / "world"
    other.mkdir()
    (other / "world.json").write_text(
        json.dumps({**summary["world"], "config": {**summary["world"]["config"], "num_posts": 7}})
    )
    rc = diagnose(["--world", str(other), "--store", summary["features"]["dir"]])
    assert rc == 2
    assert "not in this demo world" in capsys.readouterr().err


def test_clip_epochs_flag_reaches_the_pretraining_and_the_command():
    from semloc.demo.pipeline import DemoOptions, clip_configs, demo_command

    opts = DemoOptions(pretrain={"epochs": 20})
    assert clip_configs(opts)[0].epochs == 20
    assert "--clip-epochs 20" in demo_command(opts)
    assert clip_configs(DemoOptions())[0].epochs == 2  # the default since 2026-12-06


def test_clip_filter_flag_reaches_the_pretraining_the_key_and_the_command():
    from semloc.demo.pipeline import DemoOptions, clip_configs, clip_identity, demo_command

    opts = DemoOptions(pretrain={"filter_fraction": 0.25})
    assert clip_configs(opts)[0].filter_fraction == 0.25
    assert "--clip-filter 0.25" in demo_command(opts)
    assert clip_identity(opts, "w")["pretrain"]["filter_fraction"] == 0.25
    # unfiltered, the key is the one of the builds made before filtering existed
    default = clip_identity(DemoOptions(), "w")["pretrain"]
    assert "filter_fraction" not in default and "filter_after" not in default
    assert "--clip-filter" not in demo_command(DemoOptions())


def test_quick_demo_filters_posts_never_captions(quick_demo):
    workdir, _, _ = quick_demo
    (pairs,) = (workdir / "clip").glob("*.pairs.jsonl")
    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    probes = [r for r in rows if "related" in r]
    posts = [r for r in rows if "related" not in r and "filterable" not in r]
    captions = [r for r in rows if r.get("filterable") is False]
    assert probes and posts and captions and len(probes) + len(posts) + len(captions) == len(rows)
    assert all(r["split"] == "train" for r in posts)
    (world,) = (workdir / "world").iterdir()
    assert len(captions) == len((world / "captions.jsonl").read_text().splitlines())


def test_quick_demo_profiles_its_test_users(quick_demo):
    workdir, rc, _ = quick_demo
    assert rc == 0
    summary = json.loads((workdir / "summary.json").read_text())
    people = summary["people"]
    world_dir = Path(summary["world"]["dir"])
    world = [json.loads(line) for line in (world_dir / "posts.jsonl").open()]
    test_users = {p["user"] for p in world if p["split"] == "test"}
    assert people["test_users"] == len(test_users) >= 2
    assert people["profiled_users"] >= 1
    assert people["test_posts"] == sum(p["split"] == "test" for p in world)
    assert set(people["population"]) == {"cc", "pcc", "acc", "pacc"}
    for e in people["population"].values():
        assert 0.0 <= e["abs_error"] <= 1.0
    # the truth is recomputed from the world, not from the predictions
    labels = people["labels"]
    tests = [p["label"] for p in world if p["split"] == "test"]
    assert people["true_shares"] == pytest.approx([tests.count(c) / len(tests) for c in labels])
    assert {u["user"] for u in people["users"]} <= test_users
    report = (workdir / "report.md").read_text()
    assert "## From posts to people (test users)" in report and "sensitive" in report
    profile = workdir / "people" / "profile"
    for name in ("report.md", "user_shares.csv", "activity_population.png", "routines.csv"):
        assert (profile / name).is_file(), name


def test_captions_web_pairs_come_from_another_world_never_the_demo_posts(tmp_path):
    """`--clip-data captions+web` (the default): the CLIP's post pairs are as many posts of a
    second world of the same settings (another seed) as the demo world has training posts; none
    is a demo post, and the demo's dev posts stay held-out probes."""
    import dataclasses

    from semloc.demo.pipeline import (
        DemoOptions,
        demo_command,
        web_world_config,
        world_config,
        write_clip_pairs,
    )
    from semloc.demo.world import make_world

    opts = DemoOptions(quick=True, clip_data="captions+web")
    cfg, web = world_config(opts), web_world_config(opts)
    assert web != cfg and dataclasses.replace(web, seed=cfg.seed) == cfg
    world, web_dir = tmp_path / "world", tmp_path / "web"
    make_world(world, cfg, progress=False)
    make_world(web_dir, web, progress=False)
    out = tmp_path / "clip" / "pairs.jsonl"
    out.parent.mkdir()
    write_clip_pairs(world, out, "captions+web", web_dir)

    def inside(row: dict, directory: Path) -> bool:
        return (out.parent / row["image"]).resolve().is_relative_to(directory.resolve())

    rows = [json.loads(line) for line in out.read_text().splitlines()]
    posts = [r for r in rows if "related" not in r and "filterable" not in r]
    demo = [json.loads(line) for line in (world / "posts.jsonl").read_text().splitlines()]
    train = [p for p in demo if p["split"] == "train" and p.get("image") and p["text"].strip()]
    assert len(posts) == len(train) and all(r["split"] == "train" for r in posts)
    assert all(inside(r, web_dir) for r in posts)  # not one demo post
    assert all(inside(r, world) for r in rows if r.get("filterable") is False or "related" in r)
    assert "--clip-data" not in demo_command(opts)  # the default
    assert "--clip-data captions+posts" in demo_command(DemoOptions(clip_data="captions+posts"))
    with pytest.raises(SemlocError, match="web world"):
        write_clip_pairs(world, out, "captions+web")


def test_web_posts_sizes_the_web_world_and_uses_every_pair(tmp_path):
    """`--clip-web-posts N`: the web world has N posts and every one with a picture and a text
    is a training pair; 0 keeps the earlier rule (and the earlier builds' cache key)."""
    import dataclasses

    from semloc.demo.pipeline import (
        DEMO_WEB_POSTS,
        DemoOptions,
        check_options,
        clip_identity,
        demo_command,
        web_world_config,
        world_config,
        write_clip_pairs,
    )
    from semloc.demo.world import make_world

    opts = DemoOptions(quick=True, web_posts=300)
    cfg, web = world_config(opts), web_world_config(opts)
    assert web.num_posts == 300 and dataclasses.replace(web, seed=cfg.seed, num_posts=120) == cfg
    world, web_dir = tmp_path / "world", tmp_path / "web"
    make_world(world, cfg, progress=False)
    make_world(web_dir, web, progress=False)
    web_posts = [json.loads(line) for line in (web_dir / "posts.jsonl").read_text().splitlines()]
    paired = [p for p in web_posts if p.get("image") and p["text"].strip()]
    assert len(web_posts) == 300 and len(paired) > 120

    def web_rows(every: bool) -> list[dict]:
        out = tmp_path / f"pairs-{every}.jsonl"
        write_clip_pairs(world, out, "captions+web", web_dir, every_web_post=every)
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        return [r for r in rows if "related" not in r and "filterable" not in r]

    every, earlier = web_rows(True), web_rows(False)
    assert len(every) == len(paired)
    assert sorted(r["caption"] for r in every) == sorted(p["text"] for p in paired)
    assert earlier == every[: len(earlier)] and len(earlier) < len(every)

    legacy = DemoOptions(quick=True)  # the quick demo keeps the earlier rule
    assert "web_posts" not in clip_identity(legacy, "w")
    assert clip_identity(DemoOptions(), "w")["web_posts"] == DEMO_WEB_POSTS == 16_000
    assert clip_identity(DemoOptions(), "w")["pretrain"]["epochs"] == 2
    assert clip_identity(DemoOptions(), "w")["scratch"]["layers"] == 2
    assert web_world_config(DemoOptions()).num_posts == DEMO_WEB_POSTS
    assert clip_identity(DemoOptions(quick=True, web_posts=0), "w") == clip_identity(legacy, "w")
    assert clip_identity(opts, "w")["web_posts"] == 300
    assert "web_posts" not in clip_identity(dataclasses.replace(opts, clip_data="captions"), "w")
    assert "--clip-web-posts 300" in demo_command(opts)
    assert "--clip-web-posts" not in demo_command(legacy)
    for bad in (-1, 1.5, True, "300", 1):  # 1: no world has a single post
        with pytest.raises(SemlocError, match=r"web posts|web world of 1 posts"):
            check_options(DemoOptions(quick=True, web_posts=bad))
    for data in ("captions", "captions+posts"):  # an explicit size there would go unused
        with pytest.raises(SemlocError, match=rf"only used with clip data.*{re.escape(data)}"):
            check_options(DemoOptions(quick=True, web_posts=300, clip_data=data))
    check_options(DemoOptions(quick=True, clip_data="captions"))  # no size given: fine


def test_web_captions_add_every_web_picture_with_its_caption(tmp_path):
    """`--clip-web-captions`: captions+web also learns the web world's pictures with their
    captions (never a demo post's, never filtered); off, the pairs and the cache key are the
    earlier builds'."""
    import dataclasses

    from semloc.demo.pipeline import (
        DemoOptions,
        check_options,
        clip_identity,
        demo_command,
        web_world_config,
        world_config,
        write_clip_pairs,
    )
    from semloc.demo.world import make_world

    opts = DemoOptions(quick=True, web_posts=200, web_captions=True)
    world, web_dir = tmp_path / "world", tmp_path / "web"
    make_world(world, world_config(opts), progress=False)
    make_world(web_dir, web_world_config(opts), progress=False)

    def rows(with_captions: bool) -> list[dict]:
        out = tmp_path / f"pairs-{with_captions}.jsonl"
        write_clip_pairs(
            world,
            out,
            "captions+web",
            web_dir,
            every_web_post=True,
            with_web_captions=with_captions,
        )
        return [json.loads(line) for line in out.read_text().splitlines()]

    plain, with_captions = rows(False), rows(True)
    added = [r for r in with_captions if r not in plain]
    captions = [json.loads(x) for x in (web_dir / "captions.jsonl").read_text().splitlines()]
    assert len(with_captions) == len(plain) + len(captions) and len(added) == len(captions) > 100
    assert sorted(r["caption"] for r in added) == sorted(c["caption"] for c in captions)
    assert all(r["split"] == "train" and r["filterable"] is False for r in added)
    web = (web_dir / "images").resolve()
    assert all((tmp_path / r["image"]).resolve().parent == web for r in added)

    off = dataclasses.replace(opts, web_captions=False)
    assert clip_identity(opts, "w") == {**clip_identity(off, "w"), "web_captions": True}
    assert "web_captions" not in clip_identity(dataclasses.replace(opts, web_captions=None), "w")
    assert "--clip-web-captions" in demo_command(opts).split()
    assert "--no-clip-web-captions" in demo_command(off).split()
    for bad in (1, "yes"):
        with pytest.raises(SemlocError, match="web captions must be true or false"):
            check_options(dataclasses.replace(opts, web_captions=bad))
    with pytest.raises(SemlocError, match=r"web captions are only used.*captions\+posts"):
        check_options(DemoOptions(quick=True, web_captions=True, clip_data="captions+posts"))
    check_options(DemoOptions(quick=True, web_captions=False, clip_data="captions"))


def test_runs_key_follows_what_the_runs_compute(tmp_path, monkeypatch):
    # an upgrade that adds a setting or changes a default, or an edited config file, must start
    # fresh cells: the grid refuses cells computed with other settings
    import semloc.config
    from semloc.demo.pipeline import DemoOptions, runs_key

    config = tmp_path / "c.yaml"
    config.write_text("train:\n  weight_decay: 0.01\n")
    opts = DemoOptions(config_file=config)
    key = runs_key(opts, "store", ["train.epochs=8"])
    assert runs_key(opts, "store", ["train.epochs=8"]) == key  # stable
    assert runs_key(opts, "store", ["train.epochs=9"]) != key
    config.write_text("train:\n  weight_decay: 0.02\n")  # the same file, other content
    assert runs_key(opts, "store", ["train.epochs=8"]) != key
    plain = runs_key(DemoOptions(), "store", [])
    load = semloc.config.load_config

    def newer_semloc(*args, **kwargs):  # the same ask resolves to another default
        cfg = load(*args, **kwargs)
        cfg.train.warmup_fraction = 0.1
        return cfg

    monkeypatch.setattr(semloc.config, "load_config", newer_semloc)
    assert runs_key(DemoOptions(), "store", []) != plain
