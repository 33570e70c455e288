"""The demo's report: one document, written as Markdown (report.md) and HTML (report.html).

`write_report(summary, out_dir)` reads nothing but the summary `semloc.demo.pipeline` assembles
and the per-run files it points to (eval metrics, training histories), draws the figures into
``figures/`` and writes both renderings of the same blocks, so the two never disagree.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semloc.experiment_report import format_params
from semloc.io import atomic_write_text

# which modality each registered model reads (for grouping and the fusion-gain line)
MODEL_GROUPS: dict[str, str] = {
    "sgmft": "fusion",
    "cross_transformer": "fusion",
    "hateclipper": "fusion",
    "attention_fusion": "fusion",
    "gmu": "fusion",
    "concat_mlp": "fusion",
    "text_linear": "text only",
    "text_mlp": "text only",
    "text_transformer": "text only",
    "image_linear": "image only",
    "image_mlp": "image only",
    "image_transformer": "image only",
    "linear-probe": "training-free",
    "zeroshot-image": "training-free",
    "zeroshot-text": "training-free",
    "zeroshot-both": "training-free",
}
GROUP_COLORS = {
    "fusion": "tab:blue",
    "text only": "tab:green",
    "image only": "tab:red",
    "training-free": "tab:gray",
    "other": "tab:purple",
}
FIGURES = "figures"


def group_of(model: str) -> str:
    return MODEL_GROUPS.get(model, "other")


# ----------------------------------------------------------------------------------------------
# a tiny document model, rendered twice


@dataclass
class Block:
    kind: str  # h1 | h2 | p | table | image | code | list
    content: Any


def _pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{100 * x:.{digits}f}"


def _mean_std(entry: dict[str, Any] | None, runs: int) -> str:
    if not entry:
        return "–"
    if runs <= 1:
        return f"{100 * entry['mean']:.1f}"
    return f"{100 * entry['mean']:.1f} ± {100 * entry['std']:.1f}"


def _params(n: int | None) -> str:
    return format_params(n, missing="–", k_digits=0)


def _seconds(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "–"
    return f"{s:.0f}s" if s < 90 else f"{s / 60:.1f} min"


def to_markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if b.kind == "h1":
            out.append(f"# {b.content}")
        elif b.kind == "h2":
            out.append(f"## {b.content}")
        elif b.kind == "p":
            out.append(b.content)
        elif b.kind == "list":
            out.append("\n".join(f"- {item}" for item in b.content))
        elif b.kind == "code":
            out.append(f"```\n{b.content}\n```")
        elif b.kind == "image":
            alt, path = b.content
            out.append(f"![{alt}]({path})")
        elif b.kind == "table":
            head, rows = b.content
            lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            lines += ["| " + " | ".join(r) + " |" for r in rows]
            out.append("\n".join(lines))
        out.append("")
    return "\n".join(out)


def _html_inline(text: str) -> str:
    """Escape, then the two Markdown marks the report uses inline: **bold** and `code`."""
    parts = html.escape(text).split("`")
    for i in range(1, len(parts), 2):
        parts[i] = f"<code>{parts[i]}</code>"
    text = "".join(parts)
    pieces = text.split("**")
    for i in range(1, len(pieces), 2):
        pieces[i] = f"<b>{pieces[i]}</b>"
    return "".join(pieces)


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
img { max-width: 100%; border: 1px solid #eee; }
pre { background: #f6f6f6; padding: 0.6rem; overflow-x: auto; }
code { background: #f6f6f6; padding: 0 0.2rem; }
"""


def to_html(blocks: list[Block], title: str) -> str:
    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
    ]
    for b in blocks:
        if b.kind in ("h1", "h2"):
            out.append(f"<{b.kind}>{_html_inline(b.content)}</{b.kind}>")
        elif b.kind == "p":
            out.append(f"<p>{_html_inline(b.content)}</p>")
        elif b.kind == "list":
            out.append("<ul>" + "".join(f"<li>{_html_inline(i)}</li>" for i in b.content) + "</ul>")
        elif b.kind == "code":
            out.append(f"<pre>{html.escape(b.content)}</pre>")
        elif b.kind == "image":
            alt, path = b.content
            out.append(f'<p><img src="{html.escape(path)}" alt="{html.escape(alt)}"></p>')
        elif b.kind == "table":
            head, rows = b.content
            out.append("<table><tr>" + "".join(f"<th>{_html_inline(h)}</th>" for h in head))
            for r in rows:
                out.append("<tr>" + "".join(f"<td>{_html_inline(c)}</td>" for c in r) + "</tr>")
            out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------------------------
# reading the runs


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _cell_metrics(summary: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """model -> the full eval metrics (per class, confusion) of each of its runs."""
    out: dict[str, list[dict[str, Any]]] = {}
    for cell in summary["cells"]:
        m = _read_json(Path(cell["dir"]) / "eval-test" / "metrics.json")
        if m is not None:
            out.setdefault(cell["model"], []).append(m)
    return out


def _histories(summary: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """model -> training history of its first seed."""
    out: dict[str, list[dict[str, Any]]] = {}
    for cell in summary["cells"]:
        if cell.get("kind") != "train" or cell["model"] in out:
            continue
        h = _read_json(Path(cell["dir"]) / "history.json")
        if h:
            out[cell["model"]] = h
    return out


def fusion_gain(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Best fusion model against the best text-only and the best image-only trained model."""

    def best(group: str) -> dict[str, Any] | None:
        cands = [r for r in rows if group_of(r["model"]) == group]
        return max(cands, key=lambda r: r["macro_f1"]["mean"], default=None)

    fusion, text, image = best("fusion"), best("text only"), best("image only")
    if fusion is None or (text is None and image is None):
        return None
    out: dict[str, Any] = {"fusion": fusion["model"], "fusion_f1": fusion["macro_f1"]["mean"]}
    for name, r in (("text", text), ("image", image)):
        if r is not None:
            out[name] = r["model"]
            out[f"{name}_f1"] = r["macro_f1"]["mean"]
            out[f"{name}_gap"] = fusion["macro_f1"]["mean"] - r["macro_f1"]["mean"]
    return out


# ----------------------------------------------------------------------------------------------
# figures


def _save(fig: Any, path: Path) -> Path:
    from semloc.plots import save_figure

    return save_figure(fig, path, dpi=110)


def plot_models(rows: list[dict[str, Any]], path: Path) -> Path:
    """Horizontal bars of test macro-F1 (mean ± std over seeds), best at the top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(rows, key=lambda r: r["macro_f1"]["mean"])
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    y = np.arange(len(rows))
    means = [100 * r["macro_f1"]["mean"] for r in rows]
    stds = [100 * r["macro_f1"]["std"] if r["runs"] > 1 else 0.0 for r in rows]
    colors = [GROUP_COLORS[group_of(r["model"])] for r in rows]
    ax.barh(y, means, xerr=stds, color=colors, capsize=3)
    for i, m in enumerate(means):
        ax.text(m + max(stds[i], 0) + 0.8, i, f"{m:.1f}", va="center", fontsize=8)
    ax.set_yticks(y, [r["model"] for r in rows])
    ax.set_xlim(0, 105)
    ax.set_xlabel("test macro-F1 (%)")
    ax.grid(axis="x", alpha=0.3)
    handles = [
        plt.Rectangle((0, 0), 1, 1, color=c)
        for g, c in GROUP_COLORS.items()
        if any(group_of(r["model"]) == g for r in rows)
    ]
    names = [g for g in GROUP_COLORS if any(group_of(r["model"]) == g for r in rows)]
    ax.legend(handles, names, fontsize=8, loc="lower right")
    ax.set_title("SG-MFT and baselines on the demo world")
    return _save(fig, path)


def plot_curves(histories: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    """Dev macro-F1 and training loss per epoch, one line per model (first seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, h in histories.items():
        epochs = [e["epoch"] for e in h]
        style = "-" if group_of(name) == "fusion" else "--"
        ax1.plot(epochs, [100 * e["dev_macro_f1"] for e in h], style, marker=".", label=name)
        ax2.plot(epochs, [e["train_loss"] for e in h], style, label=name)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("dev macro-F1 (%)")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=7, ncol=2)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("training loss")
    ax2.grid(alpha=0.3)
    fig.suptitle("training curves (checkpoint = best dev macro-F1)")
    return _save(fig, path)


def plot_clip_history(history: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.3))
    ax.plot([h["epoch"] for h in history], [h["train_loss"] for h in history], marker=".")
    ax.set_xlabel("epoch")
    ax.set_ylabel("contrastive loss (train)")
    ax.grid(alpha=0.3)
    ax.set_title("demo CLIP pretraining")
    return _save(fig, path)


def _figures(summary: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    from semloc.plots import plot_confusion, plot_per_class_f1

    fig_dir = out_dir / FIGURES
    fig_dir.mkdir(parents=True, exist_ok=True)
    rows = summary["rows"]
    figures: dict[str, Path] = {}
    if not rows:
        return figures
    figures["models"] = plot_models(rows, fig_dir / "models.png")
    metrics = _cell_metrics(summary)
    trained = [r for r in rows if r["kind"] == "train" and r["model"] in metrics]
    if trained:
        # per-class F1 averaged over seeds, for the best model of each group (a readable plot)
        chosen: dict[str, dict[str, Any]] = {}
        for r in sorted(trained, key=lambda r: -r["macro_f1"]["mean"]):
            g = group_of(r["model"])
            if g not in chosen or r["model"] == "sgmft":
                chosen.setdefault(g, r)
        if "sgmft" in metrics and all(r["model"] != "sgmft" for r in chosen.values()):
            chosen["sgmft"] = next(r for r in trained if r["model"] == "sgmft")
        series = {}
        for r in sorted(chosen.values(), key=lambda r: -r["macro_f1"]["mean"]):
            runs = metrics[r["model"]]
            labels = list(runs[0]["per_class"])
            series[r["model"]] = {
                lab: {"f1": float(np.mean([m["per_class"][lab]["f1"] for m in runs]))}
                for lab in labels
            }
        figures["per_class_f1"] = plot_per_class_f1(
            series, fig_dir / "per_class_f1.png", "test per-class F1 (best model of each kind)"
        )
        focus = "sgmft" if "sgmft" in metrics else trained[0]["model"]
        runs = metrics[focus]
        matrix = np.sum([np.asarray(m["confusion_matrix"]) for m in runs], axis=0).tolist()
        seeds = f"{len(runs)} seeds summed" if len(runs) > 1 else "seed 0"
        figures["confusion"] = plot_confusion(
            matrix, runs[0]["labels"], fig_dir / "confusion.png", f"{focus}, test ({seeds})"
        )
        figures["focus"] = Path(focus)
    histories = _histories(summary)
    if histories:
        figures["curves"] = plot_curves(histories, fig_dir / "training_curves.png")
    clip_history = (summary["clip"]["metrics"] or {}).get("history") or []
    if clip_history:
        figures["clip"] = plot_clip_history(clip_history, fig_dir / "clip_pretraining.png")
    return figures


# ----------------------------------------------------------------------------------------------
# the document


def results_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    best = max((r["macro_f1"]["mean"] for r in rows), default=None)
    head = ["model", "kind", "runs", "macro-F1", "accuracy", "weighted-F1", "params", "train time"]
    body = []
    for r in sorted(rows, key=lambda r: -r["macro_f1"]["mean"]):
        f1 = _mean_std(r["macro_f1"], r["runs"])
        if r["macro_f1"]["mean"] == best:
            f1 = f"**{f1}**"
        body.append(
            [
                r["model"],
                group_of(r["model"]),
                str(r["runs"]),
                f1,
                _mean_std(r.get("accuracy"), r["runs"]),
                _mean_std(r.get("weighted_f1"), r["runs"]),
                _params(r.get("num_params")),
                _seconds(r.get("train_seconds")),
            ]
        )
    return head, body


def build_blocks(summary: dict[str, Any], figures: dict[str, Path], out_dir: Path) -> list[Block]:
    def rel(p: Path) -> str:
        return Path(p).relative_to(out_dir).as_posix()

    rows = summary["rows"]
    seeds = summary["seeds"]
    blocks = [
        Block("h1", "semloc demo report"),
        Block(
            "p",
            "SG-MFT and baselines on a generated world of social-media posts (text + picture, 8 "
            "semantic locations), over frozen features of a small CLIP that semloc pretrained on "
            "the world's captions. Everything ran offline"
            + (
                " at the tiny `--quick` sizes (numbers are meaningless)."
                if summary["quick"]
                else "."
            ),
        ),
        Block("code", summary["command"]),
        Block("h2", "Results (test split)"),
        Block(
            "p",
            "Macro-F1, accuracy and weighted-F1 in percent; "
            + (
                f"mean ± sample std over seeds {seeds}"
                if len(seeds) > 1
                else f"one seed ({seeds[0]}); pass `--seeds 5` for mean ± std"
            )
            + ". Checkpoints are selected on dev macro-F1; test is read once. Training-free "
            "baselines are deterministic (one run).",
        ),
        Block("table", results_table(rows)) if rows else Block("p", "No finished runs."),
    ]
    gain = fusion_gain(rows)
    if gain:
        parts = []
        for side in ("text", "image"):
            if side in gain:
                parts.append(
                    f"{gain[side + '_gap'] * 100:+.1f} points over the best {side}-only model "
                    f"({gain[side]}, {_pct(gain[side + '_f1'])})"
                )
        blocks.append(
            Block(
                "p",
                f"Fusion: the best fusion model ({gain['fusion']}, {_pct(gain['fusion_f1'])} "
                f"macro-F1) scores {' and '.join(parts)}.",
            )
        )
    if "models" in figures:
        blocks.append(Block("image", ("macro-F1 per model", rel(figures["models"]))))
    if "per_class_f1" in figures:
        blocks += [
            Block("h2", "Per-class F1"),
            Block("image", ("per-class F1", rel(figures["per_class_f1"]))),
        ]
    if "confusion" in figures:
        blocks += [
            Block("h2", f"Confusion matrix ({figures['focus']})"),
            Block(
                "p",
                "The world makes some classes confusable in one modality only: office/school "
                "and gym/park share wording, home/restaurant and shop/station share scenery.",
            ),
            Block("image", ("confusion matrix", rel(figures["confusion"]))),
        ]
    if "curves" in figures:
        blocks += [
            Block("h2", "Training curves"),
            Block("image", ("training curves", rel(figures["curves"]))),
        ]
    blocks += _clip_blocks(summary, figures, rel)
    blocks += _world_blocks(summary)
    blocks += people_blocks(summary.get("people"), out_dir)
    t, c = summary["timings"], summary.get("cpu_seconds", {})
    stage_rows = [
        [name, _seconds(t.get(key)), _seconds(c.get(key)), note]
        for name, key, note in (
            ("world", "world", ""),
            ("demo CLIP", "clip", _clip_state(summary["clip"])),
            ("features", "extract", "cached" if summary["features"]["cached"] else "extracted"),
            ("models", "models", f"{len(summary['cells'])} runs"),
        )
    ]
    blocks += [
        Block("h2", "Time"),
        Block(
            "p",
            "CPU time counts every thread and worker process; on a shared machine it is the "
            "steadier measure of what a stage costs.",
        ),
        Block("table", (["stage", "wall time", "CPU time", ""], stage_rows)),
        Block("h2", "Files"),
        Block(
            "list",
            [
                f"world: `{summary['world']['dir']}`",
                f"demo CLIP (Hugging Face format, loads with `semloc extract --backbone`): "
                f"`{summary['clip']['dir']}`",
                f"feature store: `{summary['features']['dir']}`",
                f"runs (checkpoints, per-run plots, results.md/csv): `{summary['runs']['dir']}`",
            ],
        ),
        Block(
            "p",
            "Every stage is cached: running the same command again only rewrites this report.",
        ),
    ]
    return blocks


def _clip_state(clip: dict[str, Any]) -> str:
    if clip.get("given"):
        return "given (--backbone)"
    return "cached" if clip["cached"] else "built"


def _clip_blocks(summary: dict[str, Any], figures: dict[str, Path], rel: Any) -> list[Block]:
    clip = summary["clip"]
    m = clip["metrics"] or {}
    held, before = m.get("heldout"), m.get("heldout_before")
    blocks = [Block("h2", "The demo CLIP")]
    if clip.get("given"):
        blocks.append(Block("p", f"Given with `--backbone`: `{clip['dir']}`."))
    size = m.get("scratch") or {}
    pairs = m.get("pairs") or {}
    if size:
        blocks.append(
            Block(
                "p",
                f"Trained from scratch on {pairs.get('train', '?')} training captions: "
                f"{size.get('layers')} layers of width {size.get('vision_width')} (vision) and "
                f"{size.get('text_width')} (text) per tower, {size.get('image_size')} px pictures "
                f"in {size.get('patch_size')} px patches, joint space of "
                f"{size.get('embed_dim')}; {m.get('steps')} steps in "
                f"{_seconds(m.get('train_seconds'))} ({m.get('pairs_per_second', 0):.0f} pairs/s), "
                f"final temperature 1/{m.get('logit_scale', float('nan')):.1f}.",
            )
        )
    if held:
        items = [
            f"held-out image → caption retrieval among {held['distinct_captions']} captions: "
            f"R@1 {_pct(held['r_at_1'])}%, R@5 {_pct(held['r_at_5'])}% (chance "
            f"{_pct(held['chance_r_at_1'], 2)}%, {_pct(held['chance_r_at_5'], 2)}%)"
            + (
                f"; before training R@1 {_pct(before['r_at_1'])}%, R@5 {_pct(before['r_at_5'])}%"
                if before
                else ""
            ),
            f"mean cosine of matched pairs {held['cos_matched']:.3f} against "
            f"{held['cos_mismatched']:.3f} for mismatched ones",
        ]
        if held.get("related_vs_unrelated_auroc") is not None:
            items.append(
                f"dev posts: the text–picture cosine ranks a related picture above an unrelated "
                f"one with ROC AUC {held['related_vs_unrelated_auroc']:.3f} "
                f"({held['probe_pairs']} posts, {held['probe_unrelated']} with an unrelated "
                "picture; 0.5 = blind)"
            )
        zs = clip.get("zero_shot_images") or {}
        if zs.get("posts"):
            items.append(
                f"zero-shot location of the {zs['posts']} test pictures from prompts "
                f"(`prompts.yaml`): accuracy {_pct(zs['accuracy'])}%, macro-F1 "
                f"{_pct(zs['macro_f1'])}% (chance {_pct(zs['chance'])}%; unrelated pictures — "
                "selfies, pets, memes — count as errors)"
            )
        blocks.append(Block("list", items))
    if "clip" in figures:
        blocks.append(Block("image", ("CLIP pretraining loss", rel(figures["clip"]))))
    return blocks


def people_blocks(people: dict[str, Any] | None, out_dir: Path) -> list[Block]:
    """From posts to people: the test users' profile against the world's ground truth."""
    if not people:
        return []
    from semloc.prevalence import ESTIMATOR_NAMES
    from semloc.profile import PRIVACY_NOTE

    labels = people["labels"]
    est_rows = [
        [
            f"`{name}` ({ESTIMATOR_NAMES[name]})",
            f"{100 * e['abs_error']:.2f}",
            f"{e['covered']}/{len(labels)}",
            f"{100 * people['per_user_mae'][name]:.2f}" if name in people["per_user_mae"] else "–",
        ]
        for name, e in people["population"].items()
    ]
    user_rows = [
        [
            u["user"],
            u["role"],
            str(u["posts"]),
            f"{u['true_top']} / {u['recovered_top']}",
            f"{_pct(u['true_home_share'])} / {_pct(u['pcc_home_share'])} / "
            f"{_pct(u['pacc_home_share'])}",
            u["planned_work_hours"],
            f"{u['true_work_like_hours'] or '–'} / {u['recovered_work_like_hours'] or '–'}",
            f"{u['true_home_like_hours'] or '–'} / {u['recovered_home_like_hours'] or '–'}",
        ]
        for u in people["users"][:12]
    ]
    heatmap = Path(people["heatmap"])
    truth_map = Path(people["truth_heatmap_dir"]) / "activity_population.png"
    blocks = [
        Block("h2", "From posts to people (test users)"),
        Block("p", f"**Privacy.** {PRIVACY_NOTE}"),
        Block(
            "p",
            f"The {people['test_posts']} test posts were written by {people['test_users']} "
            f"people whose posts the models never saw; {people['profiled_users']} have at least "
            f"{people['min_posts']} posts and are profiled. Predictions: {people['model']} (the "
            f"run best on dev), probabilities at its dev-fitted temperature "
            f"{people['temperature']:.2f} (dev ECE {people['dev_ece']['before']:.3f} → "
            f"{people['dev_ece']['after']:.3f}). The adjusted estimators use its dev confusion.",
        ),
        Block(
            "table",
            (
                [
                    "estimator",
                    "test population: mean abs. share error (points)",
                    "95% intervals covering the truth",
                    "per user: mean abs. share error (points)",
                ],
                est_rows,
            ),
        ),
        Block(
            "p",
            f"Home-like hours (true labels / recovered): {people['home_like_hours']['true']} / "
            f"{people['home_like_hours']['recovered']}; work-like hours: "
            f"{people['work_like_hours']['true']} / {people['work_like_hours']['recovered']}.",
        ),
        Block(
            "table",
            (
                [
                    "user",
                    "role",
                    "posts",
                    "top location true / recovered",
                    "home share true / pcc / pacc",
                    "planned work hours",
                    "work-like hours true / recovered",
                    "home-like hours true / recovered",
                ],
                user_rows,
            ),
        ),
    ]
    for title, path in (("recovered activity", heatmap), ("true activity", truth_map)):
        if path.is_file():
            try:
                blocks.append(Block("image", (title, path.relative_to(out_dir).as_posix())))
            except ValueError:
                blocks.append(Block("image", (title, path.as_posix())))
    return blocks


def _world_blocks(summary: dict[str, Any]) -> list[Block]:
    w = summary["world"]
    cfg, counts = w["config"], w["counts"]
    real = counts.get("realised", {})
    split = counts.get("by_split", {})
    return [
        Block("h2", "The world"),
        Block(
            "list",
            [
                f"{counts['posts']} posts ({', '.join(f'{k} {v}' for k, v in split.items())}), "
                f"{counts['images']} pictures, {w['distinct_words']} distinct words, seed "
                f"{cfg.get('seed')}",
                f"posts without a picture: {_pct(real.get('no_image_rate'))}%; pictures "
                f"unrelated to their post: {_pct(real.get('unrelated_image_rate'))}%; "
                f"uninformative texts: {_pct(real.get('uninformative_text_rate'))}%",
                f"text-dominant classes {', '.join(cfg.get('text_dominant_classes', [])) or '–'}; "
                f"image-dominant {', '.join(cfg.get('image_dominant_classes', [])) or '–'}; "
                "text-confusable pairs "
                + ", ".join("/".join(p) for p in cfg.get("text_confusable_pairs", []))
                + "; image-confusable pairs "
                + ", ".join("/".join(p) for p in cfg.get("image_confusable_pairs", [])),
            ],
        ),
        Block(
            "p",
            "Change the noise with `--unrelated-images`, `--uninformative-texts`, `--no-images` "
            "or any world setting with `--world KEY=VALUE`.",
        ),
    ]


def write_report(summary: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Draw the figures and write report.md, report.html and results.md into `out_dir`."""
    out_dir = Path(out_dir)
    figures = _figures(summary, out_dir)
    blocks = build_blocks(summary, figures, out_dir)
    files = {
        "report": out_dir / "report.md",
        "html": out_dir / "report.html",
        "results": out_dir / "results.md",
    }
    atomic_write_text(files["report"], to_markdown(blocks))
    atomic_write_text(files["html"], to_html(blocks, "semloc demo report"))
    if summary["rows"]:
        head, body = results_table(summary["rows"])
        atomic_write_text(files["results"], to_markdown([Block("table", (head, body))]))
    files.update({f"figure_{k}": v for k, v in figures.items() if k != "focus"})
    return files
