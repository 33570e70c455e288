"""`semloc profile` on hand-made predictions with known users and times."""

import csv
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from semloc.cli import main
from semloc.errors import DataError
from semloc.profile import SLOTS, ProfileOptions, format_hours, profile_predictions

LABELS = ("home", "office", "park")


def write_predictions(path, rows):
    cols = ["id", "user", "created_at", "city", "label", *[f"p_{lab}" for lab in LABELS]]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for i, (user, when, city, p) in enumerate(rows):
            label = LABELS[int(np.argmax(p))] if p else ""
            w.writerow([f"post{i}", user, when, city, label, *(p or ["", "", ""])])
    return path


def week(rows, user, city, n_weeks):
    """alice-style routine: Mon-Fri 09h office, every day 21h home, Sat 15h park."""
    for w in range(n_weeks):
        for d in range(5):
            rows.append(
                (user, f"2026-03-{2 + d + 7 * w:02d}T09:30:00+01:00", city, [0.1, 0.8, 0.1])
            )
        for d in range(7):
            rows.append(
                (user, f"2026-03-{2 + d + 7 * w:02d}T21:05:00+01:00", city, [0.9, 0.05, 0.05])
            )
        rows.append((user, f"2026-03-{7 + 7 * w:02d}T15:00:00+01:00", city, [0.2, 0.0, 0.8]))


@pytest.fixture
def predictions(tmp_path):
    rows = []
    week(rows, "alice", "berlin", 2)  # 26 posts
    rows += [("bob", "2026-03-02T12:00:00+01:00", "paris", [0.3, 0.3, 0.4])] * 3  # 3 posts
    rows.append(("bob", "2026-03-02T12:00:00+01:00", "paris", None))  # skipped by image policy
    rows.append(("", "", "paris", [1.0, 0.0, 0.0]))  # no user, no time
    return write_predictions(tmp_path / "preds.csv", rows)


def test_grid_shares_and_threshold(predictions, tmp_path):
    opts = ProfileOptions(min_posts=5, group="city", num_boot=200, formats=("csv", "parquet"))
    result = profile_predictions(predictions, tmp_path / "out", opts)
    s = result.summary
    assert (s["rows"], s["predicted_posts"], s["unpredicted_rows"]) == (31, 30, 1)
    assert (s["posts_without_time"], s["posts_without_user"]) == (1, 1)
    assert (s["users"], s["users_profiled"], s["users_below_min_posts"]) == (2, 1, 1)
    acc = result.accumulator
    # Monday 09h: 2 office-like posts of alice (2 weeks); Monday 21h: 2 home posts
    mon9, mon21, sat15, mon12 = 9, 21, 5 * 24 + 15, 12
    assert acc.grid_posts[mon9] == 2 and acc.grid_posts[mon21] == 2
    assert acc.grid[mon9].tolist() == pytest.approx([0.2, 1.6, 0.2])
    assert acc.grid[sat15].tolist() == pytest.approx([0.4, 0.0, 1.6])
    assert acc.grid_posts[mon12] == 3  # bob's three predicted posts
    assert acc.grid_posts.sum() == 29 and acc.grid_posts.shape == (SLOTS,)
    # alice's share: mean of her probabilities, interval around it
    shares = {r["location"]: r for r in result.user_shares.to_pylist()}
    assert set(r["user"] for r in result.user_shares.to_pylist()) == {"alice"}
    expected_home = (10 * 0.1 + 14 * 0.9 + 2 * 0.2) / 26
    assert shares["home"]["share"] == pytest.approx(expected_home)
    assert shares["home"]["low"] < expected_home < shares["home"]["high"]
    assert shares["home"]["posts"] == 26
    routine = result.routines.to_pylist()[0]
    assert routine["home_like_hours"] == "21-22h" and routine["work_like_hours"] == "09-10h"
    grid, posts = result.user_grid("alice")
    assert posts[sat15] == 2 and grid[sat15, 2] == pytest.approx(1.6)
    # every output is there, bob is in none of the per-user ones
    out = tmp_path / "out"
    for name in (
        "population_shares",
        "group_shares",
        "user_shares",
        "routines",
        "activity_population",
        "activity_groups",
        "activity_users",
    ):
        assert (out / f"{name}.csv").is_file() and (out / f"{name}.parquet").is_file()
    for name in ("user_shares.csv", "routines.csv", "activity_users.csv"):
        assert "bob" not in (out / name).read_text()
    assert pq.read_table(out / "activity_users.parquet").num_rows == 5 + 7 + 1  # non-empty slots
    groups = {r["group"] for r in pq.read_table(out / "group_shares.parquet").to_pylist()}
    assert groups == {"berlin", "paris"}
    report = (out / "report.md").read_text()
    assert "sensitive" in report and "alice" in report
    assert (out / "report.html").read_text().startswith("<!doctype html>")
    assert (out / "activity_population.png").stat().st_size > 0
    assert json.loads((out / "profile.json").read_text())["min_posts"] == 5


def test_pseudonymised_ids_appear_nowhere(predictions, tmp_path):
    opts = ProfileOptions(min_posts=1, pseudonymise=True, salt="s3cret", num_boot=50)
    result = profile_predictions(predictions, tmp_path / "out", opts)
    ids = {r["user"] for r in result.routines.to_pylist()}
    assert len(ids) == 2 and all(i.startswith("u_") for i in ids)
    for path in (tmp_path / "out").iterdir():
        if path.suffix in (".csv", ".md", ".html", ".json"):
            text = path.read_text()
            assert "alice" not in text and "bob" not in text and "s3cret" not in text
    again = profile_predictions(predictions, tmp_path / "again", opts)
    assert {r["user"] for r in again.routines.to_pylist()} == ids  # same salt, same pseudonyms


def test_timezone_conversion_and_other_time_forms(tmp_path):
    path = write_predictions(
        tmp_path / "p.csv",
        [
            ("u", "2026-03-02T23:30:00+00:00", "x", [1.0, 0.0, 0.0]),  # Mon 23h UTC
            ("u", "2026-03-02T23:30:00Z", "x", [1.0, 0.0, 0.0]),  # same, other spelling
            ("u", "1772494200", "x", [1.0, 0.0, 0.0]),  # the same instant in epoch seconds
        ],
    )
    as_written = profile_predictions(path, tmp_path / "a", ProfileOptions(num_boot=20))
    assert as_written.accumulator.grid_posts[23] == 3  # Monday 23h
    berlin = profile_predictions(
        path, tmp_path / "b", ProfileOptions(num_boot=20, timezone="Europe/Berlin")
    )
    assert berlin.accumulator.grid_posts[24 + 0] == 3  # Tuesday 00h in Berlin (UTC+1)


def test_bad_timestamps_are_named(tmp_path):
    path = write_predictions(
        tmp_path / "p.csv",
        [
            ("u", "2026-03-02T23:30:00+00:00", "x", [1.0, 0.0, 0.0]),
            ("u", "soon", "x", [1.0, 0.0, 0.0]),
        ],
    )
    with pytest.raises(DataError) as e:
        profile_predictions(path, tmp_path / "out", ProfileOptions(num_boot=20))
    assert "row 2: created_at 'soon'" in "\n".join(e.value.problems)
    assert not (tmp_path / "out" / "report.md").exists()


def test_cli_profile(predictions, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(
        [
            "profile",
            str(predictions),
            "--out",
            str(out),
            "--min-posts",
            "5",
            "--group",
            "city",
            "--bootstrap",
            "50",
            "--no-progress",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "sensitive" in printed and "2 users" in printed
    assert (out / "report.md").is_file()
    code = main(["profile", str(predictions), "--out", str(out), "--group", "nope"])
    assert code == 2
    assert "--group column 'nope'" in capsys.readouterr().err


def test_format_hours():
    assert format_hours([6, 7, 8, 18, 19]) == "06-09h, 18-20h"
    assert format_hours([]) == "-"


def test_partial_profiles_merge_to_the_whole(predictions, tmp_path):
    import pickle

    from semloc.profile import ProfileAccumulator, iter_prediction_batches, prediction_columns

    opts = ProfileOptions(min_posts=5, group="city", batch_size=7)
    labels, wanted = prediction_columns(predictions, opts)
    whole = ProfileAccumulator(labels, opts)
    merged = ProfileAccumulator(labels, opts)
    for batch in iter_prediction_batches(predictions, wanted, batch_size=7):
        whole.add_batch(batch)
        part = ProfileAccumulator(labels, opts)
        part.add_batch(batch)
        merged.merge(pickle.loads(pickle.dumps(part)))  # as Ray ships partials
    assert merged.users.names == whole.users.names
    k = whole.users.size()
    assert np.allclose(merged.users.grid[:k], whole.users.grid[:k])
    assert np.array_equal(merged.users.grid_posts[:k], whole.users.grid_posts[:k])
    assert np.allclose(merged.grid, whole.grid) and merged.rows == whole.rows == 31
    assert {merged.groups.names[c]: s.n for c, s in merged.group_stats.items()} == {
        whole.groups.names[c]: s.n for c, s in whole.group_stats.items()
    }


@pytest.mark.slow
def test_ray_profile_equals_local(predictions, tmp_path):
    pytest.importorskip("ray")
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from semloc.scale.ray_profile import profile_with_ray

    parquet = tmp_path / "p.parquet"
    pq.write_table(pacsv.read_csv(predictions), parquet)
    opts = ProfileOptions(min_posts=5, num_boot=50, plots=False)
    local = profile_predictions(parquet, tmp_path / "local", opts)
    ray_result = profile_with_ray([parquet], tmp_path / "ray", opts)
    assert np.allclose(ray_result.accumulator.grid, local.accumulator.grid)
    ours, theirs = ray_result.user_shares, local.user_shares
    assert ours.column("user").to_pylist() == theirs.column("user").to_pylist()
    assert np.allclose(ours.column("share").to_numpy(), theirs.column("share").to_numpy())
