"""Ray Data extraction and prediction: the store a local Ray instance writes is the store the
single-process path writes, byte for byte, also after a failure and a re-run; Ray predictions
equal the local path's.

Ray work runs in subprocesses (one Ray instance each, for a group of runs) under a hard timeout,
so a hang fails the tests instead of stalling CI; the tests compare what they wrote with the
local path computed here. Most of a Ray run's time on a small input is starting the actors
(a Python process importing torch and transformers, then loading the CLIP), so each subprocess
runs several extractions in one Ray session. The default run covers both engines' verbs end to
end through the command line (extraction after a driver crash, and prediction); the directory
input and the `fail` policy are slow-marked.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clip_fixtures import write_posts
from semloc.clip.extract import extract_to_store
from semloc.config import ExtractConfig, load_config
from semloc.errors import DataError
from semloc.scale.ray_extract import read_inputs

TIMEOUT_S = 300  # a hang guard; a busy 2-core machine needs ~60 s for the default group
NUM_POSTS = 24
EXPLANATIONS = ("similarity", "gate", "weight_text", "weight_image")
BAD_POST = 12  # in shard 1; its image is broken for the `fail` policy run

SCRIPT = textwrap.dedent(
    """
    import contextlib, io, json, shutil, sys
    from pathlib import Path
    from semloc.cli import main
    from semloc.config import ExtractConfig
    from semloc.errors import SemlocError
    from semloc.scale.ray_extract import plan_actors, ray_session, run_ray_extraction

    args = json.loads(sys.argv[1])
    out = Path(args["out"])
    cfg = ExtractConfig(**args["cfg"])
    facts = {}

    class Crash(Exception):
        pass

    def crash_after(n):
        done = []
        def hook(k):
            done.append(k)
            if len(done) == n:
                raise Crash
        return hook

    with ray_session(""):
        facts["decode_in_actor"] = {
            mode: plan_actors("cpu", None, mode).decode_in_actor
            for mode in ("auto", "tasks", "actors")
        }
        if "resume" in args["steps"]:
            # the driver dies after 2 of 3 shards are committed, decoding inside the actors; then
            # the same command again, decoding in Ray tasks (the default)
            actors_cfg = ExtractConfig(**{**args["cfg"], "ray_decode": "actors"})
            try:
                run_ray_extraction(
                    args["posts"], out / "resumed", actors_cfg, on_shard=crash_after(2)
                )
            except Crash:
                pass
            facts["after_crash"] = sorted(p.name for p in (out / "resumed" / "shards").iterdir())
            # the re-run through the command line, as a user repeats the command
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                rc = main(["extract", args["posts"], "--out", str(out / "resumed"),
                           "--engine", "ray", *args["overrides"]])
            facts["rerun"] = [rc, printed.getvalue()]

        if "directory" in args["steps"]:
            run_ray_extraction(args["posts_dir"], out / "directory", cfg)

        if "fail" in args["steps"]:
            # a worker meets an unusable image under the `fail` policy: a clear error; the
            # re-run after the image is fixed completes the store
            fail_cfg = ExtractConfig(**{**args["cfg"], "image_policy": "fail"})
            try:
                run_ray_extraction(args["bad_posts"], out / "failed", fail_cfg)
            except SemlocError as e:
                facts["fail_error"] = f"{type(e).__name__}: {e}"
            shutil.copy(args["good_image"], args["bad_image"])
            run_ray_extraction(args["bad_posts"], out / "failed", fail_cfg)

        if "predict" in args["steps"]:
            # model calls of 5 posts over CLIP batches of 3: each actor call takes two batches
            rc = main(["predict", args["run"], args["posts"], "-o", str(out / "pred.parquet"),
                       "--engine", "ray", "--batch-size", "5", "--device", "cpu",
                       *args["overrides"]])
            facts["predict_rc"] = rc
    (out / "facts.json").write_text(json.dumps(facts))
    """
)


def _cfg(clip: Path) -> dict[str, Any]:
    return dict(
        backbone=str(clip),
        shard_size=8,
        batch_size=3,
        num_workers=0,
        progress=False,
        dtype="float32",
    )


def _store_content(root: Path, *, records: bool = True) -> dict[str, Any]:
    """Every array and post list of a store (+ extraction records and manifest when asked)."""
    out: dict[str, Any] = {}
    for d in sorted((root / "shards").iterdir()):
        for f in sorted(d.iterdir()):
            out[f"{d.name}/{f.name}"] = (
                np.load(f) if f.suffix == ".npy" else json.loads(f.read_text())
            )
    if records:
        for f in sorted((root / "extraction").iterdir()):
            out[f"extraction/{f.name}"] = json.loads(f.read_text())
        out["image_report"] = json.loads((root / "image_report.json").read_text())
        manifest = json.loads((root / "manifest.json").read_text())
        manifest.pop("created")
        out["manifest"] = manifest
    return out


def _assert_same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], np.ndarray):
            assert a[key].dtype == b[key].dtype, key
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        else:
            assert a[key] == b[key], key


def _run_script(args: dict[str, Any], cwd: Path) -> None:
    # a session of its own, so a timeout can end Ray's helper processes with the driver
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, json.dumps(args)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, "RAY_DATA_DISABLE_PROGRESS_BARS": "1"},
    )
    try:
        output, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"the Ray run did not finish in {TIMEOUT_S} s:\n{output[-5000:]}")
    assert proc.returncode == 0, output[-8000:]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path) -> dict[str, Any]:
    """Posts as one file and as a directory of two files, and the local path's store."""
    root = tmp_path_factory.mktemp("ray")
    data = root / "data"
    posts = write_posts(data, NUM_POSTS, image_every=2)
    parts = root / "parts"  # the same posts as two files, read in sorted name order
    parts.mkdir()
    (parts / "img").symlink_to(data / "img")
    lines = posts.read_text().splitlines()
    (parts / "a.jsonl").write_text("\n".join(lines[:10]) + "\n")
    (parts / "b.jsonl").write_text("\n".join(lines[10:]) + "\n")
    cfg = ExtractConfig(**_cfg(tiny_clip_dir))
    extract_to_store(posts, root / "local", cfg)
    return {
        "root": root,
        "posts": posts,
        "parts": parts,
        "cfg": cfg,
        "args": {
            "cfg": _cfg(tiny_clip_dir),
            "overrides": [f"extract.{k}={v}" for k, v in _cfg(tiny_clip_dir).items()],
            "posts": str(posts),
            "posts_dir": str(parts),
        },
    }


def _ray(inputs: dict[str, Any], name: str, steps: list[str], **args: str) -> dict[str, Any]:
    out = inputs["root"] / name
    out.mkdir()
    _run_script({**inputs["args"], **args, "out": str(out), "steps": steps}, inputs["root"])
    return {"out": out, **json.loads((out / "facts.json").read_text())}


@pytest.fixture(scope="module")
def default_runs(inputs: dict[str, Any]) -> dict[str, Any]:
    """Extraction after a driver crash, then its re-run and batch prediction from the CLI."""
    run = _train_tiny_run(inputs["root"] / "local", inputs["root"] / "run")
    return {**_ray(inputs, "out-default", ["resume", "predict"], run=str(run)), "run": run}


@pytest.fixture(scope="module")
def slow_runs(inputs: dict[str, Any]) -> dict[str, Any]:
    """A directory input, and the `fail` policy meeting a broken image."""
    # posts whose image BAD_POST is broken until the Ray run replaces it with a good one
    bad_dir = inputs["root"] / "bad"
    bad_posts = write_posts(bad_dir, NUM_POSTS, image_every=2)
    bad_image = bad_dir / "img" / f"{BAD_POST}.jpg"
    good_image = inputs["root"] / "good.jpg"
    bad_image.rename(good_image)
    bad_image.write_bytes(b"not an image")
    facts = _ray(
        inputs,
        "out-slow",
        ["directory", "fail"],
        bad_posts=str(bad_posts),
        bad_image=str(bad_image),
        good_image=str(good_image),
    )
    return {**facts, "bad_posts": bad_posts}


def _train_tiny_run(store: Path, out: Path) -> Path:
    from semloc.runs import train_run

    cfg = load_config(
        None,
        [
            "model.dim=16",
            "model.num_heads=2",
            "model.sim_layers=1",
            "train.epochs=1",
            "train.batch_size=8",
            "train.progress=false",
            "train.device=cpu",
        ],
    )
    train_run(store, cfg, out)
    return out


@pytest.mark.ray
def test_ray_store_after_a_driver_crash_and_rerun_equals_the_single_process_store(
    inputs: dict[str, Any], default_runs: dict[str, Any]
) -> None:
    resumed = default_runs
    # Ray tasks decode by default; the crashed run decoded in the actors, the re-run in tasks
    assert resumed["decode_in_actor"] == {"auto": False, "tasks": False, "actors": True}
    # every shard computed by Ray workers, committed in whatever order they finished, none twice
    num_shards = -(-NUM_POSTS // 8)
    assert len(resumed["after_crash"]) == 2
    rc, printed = resumed["rerun"]
    assert rc == 0 and f"({num_shards - 2} shard(s) this run)" in printed, printed
    _assert_same(
        _store_content(inputs["root"] / "local"), _store_content(resumed["out"] / "resumed")
    )


@pytest.mark.ray
@pytest.mark.slow
def test_ray_store_of_a_directory_equals_the_store_of_the_concatenated_file(
    inputs: dict[str, Any], slow_runs: dict[str, Any]
) -> None:
    # the same features and posts; the records differ only in per-file row numbers and the
    # inputs' hash
    _assert_same(
        _store_content(inputs["root"] / "local", records=False),
        _store_content(slow_runs["out"] / "directory", records=False),
    )


def test_a_directory_or_glob_reads_as_the_concatenated_file(inputs: dict[str, Any]) -> None:
    one = read_inputs(inputs["posts"])
    for spec in (inputs["parts"], inputs["parts"] / "*.jsonl"):
        many = read_inputs(spec)
        assert [p.id for p in many.posts] == [p.id for p in one.posts]
        assert [p.split for p in many.posts] == [p.split for p in one.posts]
        # images resolve relative to their own file (here through a symlink to the same files)
        resolved = [i.resolve() if i else None for i in many.images]
        assert resolved == [i.resolve() if i else None for i in one.images]


def test_duplicate_ids_across_files_are_refused(inputs: dict[str, Any], tmp_path: Path) -> None:
    lines = inputs["posts"].read_text().splitlines()
    (tmp_path / "a.jsonl").write_text("\n".join(lines[:5]) + "\n")
    (tmp_path / "b.jsonl").write_text("\n".join(lines[3:8]) + "\n")
    with pytest.raises(DataError, match="duplicate id") as e:
        read_inputs(tmp_path)
    assert any("b.jsonl row 1" in p for p in e.value.problems)


@pytest.mark.ray
@pytest.mark.slow
def test_fail_policy_in_a_worker_stops_with_the_post_then_the_rerun_completes(
    inputs: dict[str, Any], slow_runs: dict[str, Any], tiny_clip_dir: Path
) -> None:
    error = slow_runs["fail_error"]
    assert error.startswith("ImageError") and f"p{BAD_POST:03d}" in error, error
    # after the image was fixed: the store of the fixed posts, as the local path writes it
    local = inputs["root"] / "local-fixed"
    fail_cfg = ExtractConfig(**{**_cfg(tiny_clip_dir), "image_policy": "fail"})
    extract_to_store(slow_runs["bad_posts"], local, fail_cfg)
    _assert_same(_store_content(local), _store_content(slow_runs["out"] / "failed"))


@pytest.mark.ray
def test_ray_prediction_from_the_cli_equals_the_local_predictions(
    inputs: dict[str, Any], default_runs: dict[str, Any]
) -> None:
    import pandas as pd

    from semloc.prediction import predict_posts
    from semloc.runs import load_run

    assert default_runs["predict_rc"] == 0
    want = predict_posts(
        load_run(default_runs["run"]), inputs["posts"], extract_cfg=inputs["cfg"]
    ).to_frame()
    got = pd.read_parquet(default_runs["out"] / "pred.parquet")
    assert list(got.columns) == list(want.columns) and len(got) == len(want) == NUM_POSTS
    numeric = [c for c in want.columns if c.startswith("p_") or c in EXPLANATIONS]
    assert len(numeric) == 3 + len(EXPLANATIONS)
    others = [c for c in want.columns if c not in numeric]  # id, label, status, image outcome
    assert got[others].equals(want[others])
    # the same features; the model's batched arithmetic may differ in the last bits
    np.testing.assert_allclose(got[numeric].to_numpy(), want[numeric].to_numpy(), atol=1e-5)
