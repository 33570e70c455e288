"""The demo world's people: every post gets an author with a weekly routine and a timestamp.

Each person has a role (office worker, student, or at home all day), a daily rhythm (wake and
sleep hours, work or school hours, commute, lunch out or not) and personal habits (gym days and
hour, shopping, parks at weekends, eating out on Friday and Saturday nights), each drawn with
individual variation. That gives a *routine*: for every hour of the week, where the person
usually is, as a distribution over the world's locations (the planned place with probability
``1 - routine_noise``, the rest spread over the others), times how much they post at that hour
(barely while asleep).

Posts already have their labels (the world plan balances classes; nothing here changes which
posts, texts, pictures or labels exist). A post of location L is given to an author with
probability proportional to how much that author posts from L, and a time drawn from that
author's hours at L; so every author's posts follow their routine. Authors are split like the
posts: test posts are written only by *test users* (and train/dev posts by the others), so the
demo profiles people the model has never seen a post of.

Every draw uses its own random stream (``"{seed}:people"``), separate from the plan, texts and
pictures: the same seed gives the same posts with or without people.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from semloc.data.timestamps import format_timestamp

SLOTS = 7 * 24  # slot = day * 24 + hour, Monday = 0
ROLES = {"office worker": "office", "student": "school", "at home": None}
ROLE_WEIGHTS = {"office worker": 0.55, "student": 0.35, "at home": 0.10}
FIRST_MONDAY = datetime(2026, 1, 5)  # weeks start here (no daylight-saving change in 8 weeks)


@dataclass
class Person:
    """One author's routine parameters (the ground truth the demo profile is checked against)."""

    user: str
    role: str
    split: str  # which posts this person writes: train/dev users, or test users
    wake: int
    sleep: int  # hour they go to bed (may be past midnight: 24, 25)
    work_start: int
    work_end: int
    lunch_out: float  # chance that a workday lunch hour is at a restaurant
    gym_days: list[int] = field(default_factory=list)
    gym_hour: int = 19
    shop_day: int = 5
    shop_hour: int = 11
    park_weekend: float = 0.5  # chance a weekend afternoon hour is in a park
    evening_out: float = 0.3  # chance a Friday/Saturday evening hour is at a restaurant
    activity: float = 1.0  # how much this person posts, relative to others


def make_person(rng: random.Random, user: str, split: str) -> Person:
    role = rng.choices(list(ROLE_WEIGHTS), weights=list(ROLE_WEIGHTS.values()))[0]
    start = round(rng.gauss(8.0 if role == "student" else 9.0, 0.7))
    length = 7 if role == "student" else 8
    return Person(
        user=user,
        role=role,
        split=split,
        wake=min(10, max(5, round(rng.gauss(7, 0.8)))),
        sleep=min(25, max(21, round(rng.gauss(23, 0.8)))),
        work_start=min(11, max(6, start)),
        work_end=min(19, max(6, start) + length + rng.choice((-1, 0, 0, 1))),
        lunch_out=rng.uniform(0.1, 0.7),
        gym_days=sorted(rng.sample(range(7), rng.choice((0, 0, 1, 2, 3)))),
        gym_hour=rng.choice((7, 18, 19, 20)),
        shop_day=rng.choice((1, 3, 5, 5, 5)),
        shop_hour=rng.choice((11, 12, 17, 18)),
        park_weekend=rng.uniform(0.1, 0.7),
        evening_out=rng.uniform(0.1, 0.6),
        activity=rng.lognormvariate(0, 0.4),
    )


def planned_place(p: Person, day: int, hour: int) -> dict[str, float]:
    """Where the person usually is at (day, hour): location -> probability (before noise)."""
    weekday = day < 5
    work = ROLES[p.role]
    if work and weekday and p.work_start <= hour < p.work_end:
        if hour == p.work_start + 3 or hour == p.work_start + 4:  # lunch
            return {"restaurant": p.lunch_out / 2, work: 1 - p.lunch_out / 2}
        return {work: 1.0}
    if work and weekday and hour in (p.work_start - 1, p.work_end):
        return {"station": 0.7, "home" if hour < p.work_start else "shop": 0.3}
    if day in p.gym_days and hour == p.gym_hour:
        return {"gym": 0.9, "home": 0.1}
    if day == p.shop_day and hour in (p.shop_hour, p.shop_hour + 1):
        return {"shop": 0.8, "home": 0.2}
    if not weekday and 13 <= hour < 18:
        return {
            "park": p.park_weekend,
            "home": 0.7 * (1 - p.park_weekend),
            "shop": 0.3 * (1 - p.park_weekend),
        }
    if day in (4, 5) and 19 <= hour < 23:
        return {"restaurant": p.evening_out, "home": 1 - p.evening_out}
    if p.role == "at home" and weekday and 10 <= hour < 17:
        return {"home": 0.6, "shop": 0.15, "park": 0.15, "restaurant": 0.1}
    return {"home": 1.0}


def awake(p: Person, hour: int) -> bool:
    return p.wake <= hour < p.sleep or hour < p.sleep - 24


def routine(p: Person, classes: tuple[str, ...], noise: float) -> np.ndarray:
    """(SLOTS, C): how much this person posts from each location at each hour of the week."""
    c = len(classes)
    out = np.zeros((SLOTS, c))
    for day in range(7):
        for hour in range(24):
            place = np.array([planned_place(p, day, hour).get(x, 0.0) for x in classes])
            place = (1 - noise) * place / place.sum() + noise / c
            rate = 1.0 if awake(p, hour) else 0.03  # a few posts at night, from where they are
            out[day * 24 + hour] = p.activity * rate * place
    return out


def add_people(
    labels: list[str],
    splits: list[str],
    classes: tuple[str, ...],
    *,
    seed: int,
    posts_per_user: int,
    weeks: int,
    timezone: str,
    noise: float,
) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """(user per post, created_at per post, ground truth per person) for posts with fixed
    `labels` and `splits`. The ground truth holds each person's parameters, routine and the
    realised share of their posts at each location."""
    rng = random.Random(f"{seed}:people")
    nrng = np.random.default_rng(rng.getrandbits(64))
    zone = ZoneInfo(timezone)
    c = len(classes)
    users = [""] * len(labels)
    times = [""] * len(labels)
    people: list[Person] = []
    routines: list[np.ndarray] = []
    for side in ("train+dev", "test"):
        mine = [i for i, s in enumerate(splits) if (s == "test") == (side == "test")]
        if not mine:
            continue
        count = max(2, round(len(mine) / posts_per_user))
        group = [
            make_person(rng, f"{'t' if side == 'test' else 'u'}{len(people) + k:04d}", side)
            for k in range(count)
        ]
        grids = [routine(p, classes, noise) for p in group]
        people += group
        routines += grids
        mass = np.stack([g.sum(axis=0) for g in grids])  # (users, C) how much each posts at c
        for i in mine:
            j = classes.index(labels[i])
            weights = mass[:, j] / mass[:, j].sum()
            u = int(nrng.choice(len(group), p=weights))
            slot_w = grids[u][:, j] / grids[u][:, j].sum()
            slot = int(nrng.choice(SLOTS, p=slot_w))
            week = int(nrng.integers(weeks))
            local = FIRST_MONDAY + timedelta(
                days=7 * week + slot // 24,
                hours=slot % 24,
                minutes=int(nrng.integers(60)),
                seconds=int(nrng.integers(60)),
            )
            users[i] = group[u].user
            times[i] = format_timestamp(local.replace(tzinfo=zone))
    truth = []
    for p, grid in zip(people, routines, strict=True):
        posts = [i for i, u in enumerate(users) if u == p.user]
        counts = np.bincount([classes.index(labels[i]) for i in posts], minlength=c)
        truth.append(
            {
                **asdict(p),
                "posts": len(posts),
                "true_shares": dict(
                    zip(classes, (counts / max(1, len(posts))).tolist(), strict=True)
                ),
                # where they are, hour by hour (the routine's location distribution)
                "routine": np.round(grid / grid.sum(axis=1, keepdims=True), 4).tolist(),
            }
        )
    return users, times, truth


# ------------------------------------------------------------------------------------------------
# the demo's last stage: profile the test users and compare with the truth


def best_run_on_dev(run_dirs: list[Path]) -> Path | None:
    """The trained run with the highest *dev* macro-F1 (its metrics.json): test is not used to
    pick the model whose predictions are profiled."""
    best, best_f1 = None, -1.0
    for d in run_dirs:
        try:
            f1 = float(json.loads((Path(d) / "metrics.json").read_text())["macro_f1"])
        except (OSError, ValueError, KeyError):
            continue
        if (Path(d) / "best.pt").is_file() and f1 > best_f1:
            best, best_f1 = Path(d), f1
    return best


def profile_test_users(
    world_dir: Path, run_dir: Path, store_path: Path, out_dir: Path, *, quick: bool
) -> dict[str, Any]:
    """Predict the test posts with `run_dir` (calibrated), profile them, profile the true labels
    the same way, and compare: each prevalence estimator's error for the whole test population
    and per test user, and recovered vs true routines. Returns the summary block."""
    from semloc.features.store import FeatureStore
    from semloc.prediction import predict_store, store_prediction_columns, write_predictions
    from semloc.prevalence import DevConfusion, PredictionStats, point_estimates
    from semloc.profile import ProfileOptions, format_hours, profile_predictions
    from semloc.runs import calibrate_run, load_run

    out_dir.mkdir(parents=True, exist_ok=True)
    store = FeatureStore(store_path)
    if not (run_dir / "calibration.json").is_file():  # a run trained before calibration
        calibrate_run(run_dir, store)
    run = load_run(run_dir)
    temperature = run.temperature
    preds = predict_store(run, store, store.indices("test"))
    probs = preds.probabilities  # at the run's dev-fitted temperature
    labels = list(run.labels)
    rows = [int(i) for i in preds.index]
    users = [store.users[i] for i in rows]
    columns = store_prediction_columns(run, store, preds)
    if "user" not in columns or "created_at" not in columns:
        raise ValueError(f"{store_path} has no users/times: re-extract the people world")
    true_codes = np.array([labels.index(store.raw_labels[i]) for i in rows])
    onehot = np.eye(len(labels))[true_codes]
    write_predictions(out_dir / "test_predictions.csv", columns)
    # the truth as a "predictions" table: one-hot probabilities, profiled by the same code
    truth_columns = dict(columns)
    for j, lab in enumerate(labels):
        truth_columns[f"p_{lab}"] = onehot[:, j].tolist()
    write_predictions(out_dir / "test_truth.csv", truth_columns)
    opts = ProfileOptions(min_posts=3 if quick else 20, num_boot=200 if quick else 1000)
    recovered = profile_predictions(
        out_dir / "test_predictions.csv", out_dir / "profile", opts, run=run_dir
    )
    truth_opts = ProfileOptions(min_posts=opts.min_posts, num_boot=20)
    truth = profile_predictions(out_dir / "test_truth.csv", out_dir / "truth", truth_opts)

    cal = json.loads((run_dir / "calibration.json").read_text())
    dev = DevConfusion.from_dict(cal["dev_confusion"])
    true_share = onehot.mean(axis=0)
    population = {}
    for r in recovered.population_shares.to_pylist():
        e = population.setdefault(r["estimator"], {"abs_error": 0.0, "covered": 0})
        err = abs(r["share"] - true_share[labels.index(r["location"])])
        e["abs_error"] += err / len(labels)  # mean absolute error over locations
        e["covered"] += int(r["low"] <= true_share[labels.index(r["location"])] <= r["high"])
    # per profiled user: every estimator against the user's true shares
    people = {p["user"]: p for p in json.loads((world_dir / "people.json").read_text())["people"]}
    user_arr = np.asarray(users, dtype=object)
    per_user: dict[str, list[float]] = {}
    table = []
    truth_routines = {r["user"]: r for r in truth.routines.to_pylist()}
    for r in sorted(recovered.routines.to_pylist(), key=lambda r: -r["posts"]):
        mask = user_arr == r["user"]
        est = point_estimates(PredictionStats.from_probabilities(probs[mask]), dev)
        t = onehot[mask].mean(axis=0)
        for name, share in est.items():
            per_user.setdefault(name, []).append(float(np.abs(share - t).mean()))
        person = people.get(r["user"], {})
        work = ROLES.get(person.get("role", ""))
        table.append(
            {
                "user": r["user"],
                "role": person.get("role", "?"),
                "posts": r["posts"],
                "true_top": labels[int(t.argmax())],
                "recovered_top": r["top_location"],
                "true_home_share": float(t[labels.index("home")]),
                "pcc_home_share": float(est["pcc"][labels.index("home")]),
                "pacc_home_share": float(est["pacc"][labels.index("home")]),
                "planned_work_hours": (
                    format_hours(list(range(person["work_start"], person["work_end"])))
                    if work
                    else "-"
                ),
                "true_work_like_hours": truth_routines.get(r["user"], {}).get(
                    "work_like_hours", "-"
                ),
                "recovered_work_like_hours": r.get("work_like_hours", "-"),
                "true_home_like_hours": truth_routines.get(r["user"], {}).get(
                    "home_like_hours", "-"
                ),
                "recovered_home_like_hours": r.get("home_like_hours", "-"),
            }
        )
    s = recovered.summary
    return {
        "run": str(run_dir),
        "model": run.meta.get("model_name"),
        "temperature": temperature,
        "dev_ece": {"before": cal["before"]["ece"], "after": cal["after"]["ece"]},
        "test_posts": len(rows),
        "test_users": s["users"],
        "profiled_users": s["users_profiled"],
        "min_posts": s["min_posts"],
        "labels": labels,
        "true_shares": true_share.tolist(),
        "population": population,
        "per_user_mae": {k: float(np.mean(v)) for k, v in per_user.items()},
        "home_like_hours": {
            "recovered": format_hours(s["home_like_hours"]),
            "true": format_hours(truth.summary["home_like_hours"]),
        },
        "work_like_hours": {
            "recovered": format_hours(s["work_like_hours"]),
            "true": format_hours(truth.summary["work_like_hours"]),
        },
        "users": table,
        "profile_dir": str(out_dir / "profile"),
        "heatmap": str(out_dir / "profile" / "activity_population.png"),
        "truth_heatmap_dir": str(out_dir / "truth"),
    }
