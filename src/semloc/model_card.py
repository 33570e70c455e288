"""The model card: README.md in a run directory, written when training ends (and refreshed when
the run is evaluated), so a run that is copied or shared says what it is and what it is not for.

It holds what the run's own files record — the data it was trained on (feature store, backbone,
post counts), its labels, the model and its size, the dev metrics of the selected epoch with the
seed, every evaluation written so far (eval-*/metrics.json), the calibration temperature when the
checkpoint has one — and the intended use and limits, including that inferring where people are
is sensitive. Written atomically; nothing in it is invented.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from semloc.io import atomic_write_text
from semloc.metrics import SUMMARY_KEYS

CARD_NAME = "README.md"

INTENDED_USE = """\
## Intended use

Research on, and aggregate analysis of, the *kind of place* (home, school, work, restaurant,
park, ...) that public social-media posts are about, from their text and image: for example
studying how people talk about places, or routing posts by topic. Predictions are a post-level
classification among the labels above, nothing finer (no coordinates, no addresses).

## Limits and risks

- **Location inference about people is sensitive.** Knowing that a person is at home, at a
  school or at a clinic can expose them to stalking, burglary, discrimination or surveillance.
  Do not use this model to locate, track or profile identifiable individuals, and do not
  combine its outputs with other data to do so. Aggregate, minimise and protect what you keep,
  and follow the data-protection law that applies to the posts (e.g. GDPR) and the platforms'
  terms.
- The model only knows the labels it was trained on; a post about any other place still gets
  one of them. Low-probability predictions should be treated as "unknown".
- Metrics hold for data like the evaluation split they were measured on. Posts from another
  platform, language, period, region or population, or images of another kind, can be far less
  accurate; evaluate on a labelled sample of your own data before relying on it.
- The frozen CLIP backbone carries the biases of the image-text data it was trained on, and the
  labels carry those of their annotators.
- Probabilities are calibrated only if a calibration temperature is listed above; otherwise
  treat them as scores, not frequencies.
"""


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _metrics_table(rows: list[tuple[str, Mapping[str, Any]]]) -> list[str]:
    keys = [k for k in SUMMARY_KEYS if any(k in m for _, m in rows)]
    lines = [
        "| split | seed | posts | " + " | ".join(keys) + " |",
        "|---|---|---|" + "---|" * len(keys),
    ]
    for name, m in rows:
        values = " | ".join(f"{float(m[k]):.4f}" if k in m else "" for k in keys)
        lines.append(f"| {name} | {m.get('seed', '')} | {m.get('num_examples', '')} | {values} |")
    return lines


def model_card(run_dir: str | Path, meta: Mapping[str, Any]) -> str:
    """The card's markdown for the run in `run_dir`; `meta` is its checkpoint metadata."""
    run_dir = Path(run_dir)
    run_info = _read_json(run_dir / "run.json") or {}
    config = meta.get("config", {})
    model_cfg, train_cfg = config.get("model", {}), config.get("train", {})
    labels = list(meta.get("labels", []))
    header = meta.get("feature_header", {})
    backbone = header.get("backbone", {})
    seed = train_cfg.get("seed")
    num_params = meta.get("num_params")
    lines = [
        f"# Model card: {meta.get('model_name', 'model')} ({run_dir.name})",
        "",
        "A semantic-location classifier trained with semloc "
        f"{meta.get('semloc_version', '')} on frozen CLIP features of posts (text and image).",
        "",
        "## Model",
        "",
        f"- architecture: `{meta.get('model_name')}`, width {model_cfg.get('dim')}, "
        + (f"{num_params:,} trainable parameters" if isinstance(num_params, int) else ""),
        f"- seed: {seed}; precision: {train_cfg.get('precision', 'fp32')}; "
        f"epochs: {train_cfg.get('epochs')} (early-stopping patience {train_cfg.get('patience')})",
        "- the full resolved config is in config.yaml; `semloc train --resume` continues it",
        "",
        "## Data",
        "",
        f"- feature store: `{meta.get('store_path', run_info.get('store_path', ''))}` "
        f"(fingerprint `{str(meta.get('feature_fingerprint', ''))[:16]}`)",
        f"- backbone: `{backbone.get('name', '')}` ({backbone.get('architecture', '')}, weights "
        f"sha256 `{str(backbone.get('weights_sha256', ''))[:16]}`, computed in "
        f"{backbone.get('compute_dtype', '')})",
    ]
    if "train_posts" in run_info:
        lines.append(
            f"- {run_info['train_posts']} labelled train posts, {run_info.get('dev_posts')} dev "
            "posts (model selection on dev macro-F1 only; the test split is never seen in "
            "training)"
        )
    lines += ["", f"## Labels ({len(labels)})", "", ", ".join(f"`{x}`" for x in labels), ""]

    rows: list[tuple[str, Mapping[str, Any]]] = []
    dev = _read_json(run_dir / "metrics.json")
    if isinstance(dev, dict):
        rows.append((f"dev (best epoch {dev.get('best_epoch', '')})", {"seed": seed, **dev}))
    for path in sorted(run_dir.glob("eval-*/metrics.json")):
        m = _read_json(path)
        if isinstance(m, dict):
            rows.append((str(m.get("split", path.parent.name[5:])), m))
    lines += ["## Metrics", ""]
    lines += _metrics_table(rows) if rows else ["No metrics recorded yet."]
    lines += [
        "",
        "Metrics of one seed; differences between models smaller than the spread over seeds "
        "(`semloc experiment` reports mean ± std) are not meaningful.",
        "",
        "## Calibration",
        "",
    ]
    temperature = meta.get("temperature")
    if temperature is not None:
        lines.append(
            f"Probabilities are softmax(logits / T) with temperature T = {float(temperature):.4f}, "
            "fitted on the dev split."
        )
    else:
        lines.append("None: probabilities are the plain softmax of the logits (uncalibrated).")
    lines += ["", INTENDED_USE]
    return "\n".join(lines)


def write_model_card(run_dir: str | Path, meta: Mapping[str, Any]) -> Path:
    """Write (atomically) RUN/README.md from the run's files and checkpoint metadata."""
    path = Path(run_dir) / CARD_NAME
    atomic_write_text(path, model_card(run_dir, meta))
    return path
