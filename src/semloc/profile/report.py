"""The profile's human outputs: activity heat-maps, the Markdown report and its HTML."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from semloc.profile.accumulate import DAYS

if TYPE_CHECKING:
    from semloc.profile.build import ProfileResult

PRIVACY_NOTE = (
    "Inferring where people are from what they post is sensitive: it can reveal homes, "
    "workplaces and daily routines. Use these outputs only for aggregate research you are "
    "allowed to do, keep per-user tables private, pseudonymise user ids, and do not try to "
    "re-identify anyone. semloc computes everything on this machine and uploads nothing."
)


def format_hours(hours: Sequence[int]) -> str:
    """[6, 7, 8, 18, 19] -> '06-09h, 18-20h' (runs of consecutive hours, end exclusive)."""
    if not hours:
        return "-"
    runs, start, prev = [], hours[0], hours[0]
    for h in [*list(hours[1:]), None]:
        if h is not None and h == prev + 1:
            prev = h
            continue
        runs.append(f"{start:02d}-{prev + 1:02d}h")
        if h is not None:
            start = prev = h
    return ", ".join(runs)


def plot_activity(
    grid: np.ndarray,
    grid_posts: np.ndarray,
    labels: Sequence[str],
    path: str | Path,
    title: str = "population",
) -> Path:
    """One heat-map per location: share of the slot's posts at that location (day x hour);
    slots with no posts are blank."""
    from semloc.plots import plt, save_figure

    c = len(labels)
    cols = min(4, c)
    rows = (c + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 1.9 * rows + 0.6), squeeze=False)
    posts = grid_posts.reshape(7, 24).astype(np.float64)
    for j, lab in enumerate(labels):
        ax = axes[j // cols][j % cols]
        share = np.divide(
            grid[:, j].reshape(7, 24),
            posts,
            out=np.full((7, 24), np.nan),
            where=posts > 0,
        )
        im = ax.imshow(
            share,
            aspect="auto",
            cmap="viridis",
            vmin=0,
            vmax=max(0.05, np.nanmax(share) if np.isfinite(share).any() else 1.0),
        )
        ax.set_title(lab, fontsize=9)
        ax.set_yticks(range(7), DAYS, fontsize=6)
        ax.set_xticks(range(0, 24, 6), [f"{h:02d}h" for h in range(0, 24, 6)], fontsize=6)
        fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
    for j in range(c, rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.suptitle(f"share of posts at each location by day and hour — {title}", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(x) for x in r) + " |" for r in rows]
    return "\n".join(lines)


def profile_markdown(result: ProfileResult, max_users: int = 20) -> str:
    """A short human report: privacy note, counts, shares by estimator, hours, top users."""
    s = result.summary
    labels = result.labels
    est = list(s["estimators"])
    pct = round(s["confidence"] * 100)
    by = {(r["estimator"], r["location"]): r for r in result.population_shares.to_pylist()}
    group_shares = result.group_shares.to_pylist()
    order = np.argsort(-result.routines.column("posts").to_numpy(), kind="stable")[:max_users]
    top = result.routines.take(order).to_pylist() if result.routines.num_rows else []
    lines = [
        "# Profile: where and when posts are written",
        "",
        f"> **Privacy.** {PRIVACY_NOTE}",
        "",
        f"Source: `{s['source']}`. {s['predicted_posts']:,} predicted posts "
        f"({s['unpredicted_rows']:,} rows without a prediction, {s['posts_without_time']:,} "
        f"without a time, {s['posts_without_user']:,} without a user). Times: {s['timezone']}.",
        f"Users: {s['users']:,}; profiled (>= {s['min_posts']} posts): {s['users_profiled']:,}; "
        f"left out below the threshold: {s['users_below_min_posts']:,} "
        f"({s['posts_of_users_below_min_posts']:,} posts, still counted in the population)."
        + (
            " User ids are pseudonymised (salted SHA-256, salt not stored)."
            if s["pseudonymised"]
            else ""
        ),
        "",
        f"## Population shares ({pct}% bootstrap intervals)",
        "",
        _md_table(
            ["location", *est],
            [
                [
                    lab,
                    *[
                        f"{by[(e, lab)]['share']:.3f} [{by[(e, lab)]['low']:.3f}, "
                        f"{by[(e, lab)]['high']:.3f}]"
                        for e in est
                    ],
                ]
                for lab in labels
            ],
        ),
        "",
        "Estimators: "
        + "; ".join(f"`{k}` {v}" for k, v in s["estimators"].items())
        + ". "
        + (
            "Prefer `pacc` (or `acc`) when the posts' location mix may differ from the dev "
            "split's; `pcc` when they come from the same population as dev; `cc` is shown for "
            "comparison only."
            if s["adjusted_estimators"]
            else "No dev confusion was given (`--run`), so the adjusted estimators are missing: "
            "`pcc` is the better of the two when the probabilities are calibrated."
        ),
        "",
        "## Daily rhythm",
        "",
        f"Home-like hours ({', '.join(s['home_labels']) or 'no home location'}): "
        f"{format_hours(s['home_like_hours'])}. "
        f"Work-like hours ({', '.join(s['work_labels']) or 'no work location'}): "
        f"{format_hours(s['work_like_hours'])}.",
        "",
        "![activity](activity_population.png)",
        "",
    ]
    if group_shares:
        groups = sorted({r["group"] for r in group_shares})
        best = "pacc" if "pacc" in est else "pcc"
        gby = {(r["group"], r["location"]): r for r in group_shares if r["estimator"] == best}
        lines += [
            f"## Groups by `{s['group_column']}` (`{best}`)",
            "",
            _md_table(
                ["group", "posts", *labels],
                [
                    [
                        g,
                        gby[(g, labels[0])]["posts"],
                        *[f"{gby[(g, lab)]['share']:.3f}" for lab in labels],
                    ]
                    for g in groups
                ],
            ),
            "",
        ]
    if top:
        lines += [
            f"## Users (the {len(top)} with most posts; all in routines.csv)",
            "",
            _md_table(
                ["user", "posts", "top location", "home-like hours", "work-like hours"],
                [
                    [
                        r["user"],
                        r["posts"],
                        r["top_location"],
                        r.get("home_like_hours") or "-",
                        r.get("work_like_hours") or "-",
                    ]
                    for r in top
                ],
            ),
            "",
        ]
    return "\n".join(lines) + "\n"


def markdown_to_html(markdown: str, title: str) -> str:
    """A dependency-free rendering of the report's small Markdown subset (headings, tables,
    images, quotes, paragraphs)."""
    import html
    import re

    def inline(text: str) -> str:
        text = html.escape(text)
        text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
        text = re.sub(r"`(.+?)`", r"<code>\1</code>", text)
        return re.sub(r"!\[(.*?)\]\((.+?)\)", r'<img alt="\1" src="\2">', text)

    out, table = [], []
    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            if not line.startswith("|---"):
                table.append([c.strip() for c in line.strip("|").split("|")])
            continue
        if table:
            head, *body = table
            out.append("<table><tr>" + "".join(f"<th>{inline(c)}</th>" for c in head) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in body]
            out.append("</table>")
            table = []
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{inline(line[level:].strip())}</h{level}>")
        elif line.startswith("> "):
            out.append(f"<blockquote>{inline(line[2:])}</blockquote>")
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
        "blockquote{background:#fff4e0;padding:.5em 1em}img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>\n" + "\n".join(out) + "\n</body></html>\n"
    )
