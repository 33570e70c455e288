"""The demo world's people: authors with routines and times, without changing the posts."""

import hashlib
import json
from datetime import datetime

import numpy as np

from semloc.demo._vocab import CLASSES
from semloc.demo.people import add_people
from semloc.demo.world import WorldConfig, make_world


def _read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_people_never_change_posts_texts_or_pictures(tmp_path):
    a = make_world(tmp_path / "a", WorldConfig(num_posts=96, seed=2), progress=False)
    b = make_world(
        tmp_path / "b",
        WorldConfig(num_posts=96, seed=2, posts_per_user=5, weeks=3, routine_noise=0.3),
        progress=False,
    )
    pa, pb = _read(tmp_path / "a" / "posts.jsonl"), _read(tmp_path / "b" / "posts.jsonl")
    strip = [{k: v for k, v in p.items() if k not in ("user", "created_at")} for p in pa]
    assert strip == [{k: v for k, v in p.items() if k not in ("user", "created_at")} for p in pb]
    assert [p["user"] for p in pa] != [p["user"] for p in pb]
    for name in ("captions.jsonl", *(p["image"] for p in pa if "image" in p)):
        fa, fb = tmp_path / "a" / name, tmp_path / "b" / name
        assert hashlib.sha256(fa.read_bytes()).digest() == hashlib.sha256(fb.read_bytes()).digest()
    assert a["people"]["test_users"] >= 2 and b["people"]["users"] > a["people"]["users"]

    people = json.loads((tmp_path / "a" / "people.json").read_text())["people"]
    by_user = {p["user"]: p for p in people}
    for post in pa:
        author = by_user[post["user"]]
        assert (author["split"] == "test") == (post["split"] == "test")  # held-out people
        when = datetime.fromisoformat(post["created_at"])
        assert when.utcoffset().total_seconds() == 3600  # Europe/Berlin in January/February
    for p in people:
        mine = [q["label"] for q in pa if q["user"] == p["user"]]
        assert p["posts"] == len(mine)
        assert p["true_shares"]["home"] == mine.count("home") / max(1, len(mine))


def test_posts_follow_their_authors_routines():
    rng = np.random.default_rng(0)
    labels = [CLASSES[i] for i in rng.integers(0, len(CLASSES), 6000)]
    splits = ["test" if i % 5 == 0 else "train" for i in range(len(labels))]
    users, times, truth = add_people(
        labels,
        splits,
        CLASSES,
        seed=0,
        posts_per_user=60,
        weeks=4,
        timezone="Europe/Berlin",
        noise=0.1,
    )
    by_user = {p["user"]: p for p in truth}
    at_work = {"office": [], "home": []}
    for label, user, when in zip(labels, users, times, strict=True):
        if label not in at_work:
            continue
        p, t = by_user[user], datetime.fromisoformat(when)
        working = t.weekday() < 5 and p["work_start"] <= t.hour < p["work_end"]
        at_work[label].append(working)
    assert np.mean(at_work["office"]) > 0.75  # office posts in office hours
    assert np.mean(at_work["home"]) < 0.25  # home posts mostly outside them
    offices = [p for p in truth if p["role"] == "office worker" and p["posts"]]
    students = [p for p in truth if p["role"] == "student" and p["posts"]]
    assert np.mean([p["true_shares"]["office"] for p in offices]) > 0.1
    assert max(p["true_shares"]["office"] for p in students) < 0.1
    again = add_people(
        labels,
        splits,
        CLASSES,
        seed=0,
        posts_per_user=60,
        weeks=4,
        timezone="Europe/Berlin",
        noise=0.1,
    )
    assert again[0] == users and again[1] == times  # seeded
