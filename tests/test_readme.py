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


def test_the_readme_has_python_examples():
    assert len(python_blocks()) >= 2


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_python_example_runs(workdir, index, capsys):
    exec(compile(python_blocks()[index], f"README.md python block {index}", "exec"), {})
    assert capsys.readouterr().out.strip()  # each example prints its result
