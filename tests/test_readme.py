"""The README's Python examples run as written, in a directory holding what they name: a posts
file with pictures and a CLIP directory (a tiny random one, in the real Hugging Face format)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from clip_fixtures import TINY_CLIP_KWARGS, TOKENIZER_TEXTS, write_posts

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    from semloc.clip.tiny import build_clip_from_scratch

    build_clip_from_scratch(tmp_path / "clip-vit-base-patch32", TOKENIZER_TEXTS, **TINY_CLIP_KWARGS)
    jsonl = write_posts(tmp_path, 40, special={5: "img/missing.jpg"})
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    for i, row in enumerate(rows):
        row["split"] = "train" if i < 28 else "dev" if i < 34 else "test"
    pd.DataFrame(rows).to_csv(tmp_path / "posts.csv", index=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def prepare(block: str, workdir: Path) -> None:
    """What a block assumes besides the posts and the CLIP: an ONNX export of runs/sgmft."""
    if "runs/sgmft/onnx" in block:
        from semloc.cli import main

        fast = ["model.dim=16", "model.num_heads=2", "train.epochs=1", "train.progress=false"]
        fast_extract = ["extract.progress=false", "extract.num_workers=0"]
        backbone = str(workdir / "clip-vit-base-patch32")
        assert main(["extract", "posts.csv", "--backbone", backbone, "--out", "feats",
                     *fast_extract]) == 0  # fmt: skip
        assert main(["train", "feats", "--out", "runs/sgmft", *fast]) == 0
        assert main(["export", "runs/sgmft", "--format", "onnx", "--with-backbone"]) == 0


def test_the_readme_has_python_examples():
    assert len(python_blocks()) >= 2


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_python_example_runs(workdir, index, capsys):
    prepare(python_blocks()[index], workdir)
    capsys.readouterr()
    exec(compile(python_blocks()[index], f"README.md python block {index}", "exec"), {})
    assert capsys.readouterr().out.strip()  # each example prints its result
