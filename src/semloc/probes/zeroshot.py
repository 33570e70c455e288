"""Zero-shot CLIP classification of posts from class prompts: the training-free baseline.

Each class's embedding is built from prompt templates filled with the class's phrases (an editable
YAML file, `prompts.yaml` beside this module by default), the way open_clip builds zero-shot
classifiers: normalise each prompt embedding, average, renormalise. A post is assigned the class
whose embedding has the highest cosine with its CLIP image embedding, text embedding, or both
(mean of the two cosines). The logits are the backbone family's own pair logits
(`semloc.clip.families.pair_logits`, from the store header): cosine x logit scale for CLIP and
Chinese-CLIP, plus SigLIP's learned bias for SigLIP (whose per-class probability is the sigmoid
of that logit); the argmax is the cosine's either way.

The class embeddings must come from the text tower of the very CLIP that extracted the store's
features (`store.manifest["backbone"]`); embeddings of another CLIP live in another space. The text
encoder is an injected callable `encode_texts(list[str]) -> (n, p) array`, so tests and callers
holding a loaded backbone can pass their own; otherwise the store's backbone is loaded, offline.

    python -m semloc.probes.zeroshot STORE --modality image [--prompts FILE] [--out DIR]
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from semloc.errors import SemlocError
from semloc.features.store import FeatureStore
from semloc.io import atomic_write_json
from semloc.metrics import classification_metrics
from semloc.probes.pooled import PooledEmbeddings, labelled, normalize_rows, read_pooled

log = logging.getLogger(__name__)

EncodeTexts = Callable[[list[str]], np.ndarray]
Modality = Literal["image", "text", "both"]
MODALITIES: tuple[str, ...] = ("image", "text", "both")
DEFAULT_PROMPTS = Path(__file__).with_name("prompts.yaml")
LOGIT_SCALE = 100.0  # CLIP's learned temperature; argmax ignores it, probabilities do not
COSINE = {"kind": "cosine", "logit_scale": LOGIT_SCALE}


@dataclass
class Prompts:
    templates: list[str]  # each holds one "{}" where a class phrase goes
    classes: dict[str, list[str]]  # label -> phrases naming it

    def phrases(self, label: str) -> list[str]:
        """The phrases of `label`; its own name, read as words, when the file has no entry."""
        return self.classes.get(label) or [label.replace("_", " ").replace("-", " ")]

    def texts(self, label: str) -> list[str]:
        return [t.format(phrase) for phrase in self.phrases(label) for t in self.templates]


def load_prompts(path: str | Path | None = None) -> Prompts:
    """Read and validate a prompts file (`templates:` list, `classes:` label -> phrase(s))."""
    path = Path(path) if path else DEFAULT_PROMPTS
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as e:
        raise SemlocError(f"cannot read prompts file {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise SemlocError(f"prompts file {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict) or set(data) - {"templates", "classes"}:
        raise SemlocError(f"prompts file {path} must be a mapping with 'templates' and 'classes'")
    templates = data.get("templates")
    if (
        not isinstance(templates, list)
        or not templates
        or not all(isinstance(t, str) and t.count("{}") == 1 for t in templates)
    ):
        raise SemlocError(
            f"prompts file {path}: 'templates' must be a non-empty list of strings, each with "
            "exactly one '{}' for the class phrase"
        )
    classes: dict[str, list[str]] = {}
    for label, phrases in (data.get("classes") or {}).items():
        phrases = [phrases] if isinstance(phrases, str) else phrases
        if (
            not isinstance(phrases, list)
            or not phrases
            or not all(isinstance(p, str) and p.strip() for p in phrases)
        ):
            raise SemlocError(
                f"prompts file {path}: class {label!r} needs a phrase or a non-empty list of them"
            )
        classes[str(label)] = phrases
    return Prompts(templates=templates, classes=classes)


def build_zero_shot_classifier(
    encode_texts: EncodeTexts, labels: Sequence[str], prompts: Prompts
) -> np.ndarray:
    """Class embeddings (C, p), unit norm: mean of the normalised prompt embeddings, renormalised."""
    texts = [prompts.texts(label) for label in labels]
    flat = [t for group in texts for t in group]
    embeds = np.asarray(encode_texts(flat), dtype=np.float64)  # one call: batching is the encoder's
    if embeds.ndim != 2 or embeds.shape[0] != len(flat):
        raise SemlocError(
            f"the text encoder returned an array of shape {embeds.shape} for {len(flat)} prompts"
        )
    embeds = normalize_rows(embeds)
    bounds = np.cumsum([0] + [len(g) for g in texts])
    means = np.stack([embeds[a:b].mean(0) for a, b in itertools.pairwise(bounds)])
    return normalize_rows(means).astype(np.float32)


def zero_shot_logits(
    classifier: np.ndarray,
    pooled: PooledEmbeddings,
    modality: Modality = "image",
    similarity: dict[str, Any] | None = None,
) -> np.ndarray:
    """(N, C) pair logits between posts and class embeddings: the family's `similarity`
    (`semloc.clip.families.similarity_of_header`; default CLIP's cosine x 100) of the cosines.

    A post without an image has nothing to score on the image side, so with `image` or `both` it
    is scored from its text (rather than getting an arbitrary class from a zero vector)."""
    from semloc.clip.families import pair_logits

    if modality not in MODALITIES:
        raise SemlocError(f"zero-shot modality {modality!r} is not one of {', '.join(MODALITIES)}")
    text = normalize_rows(pooled.text_embed) @ classifier.T  # (N, C)
    if modality == "text":
        cosine = text
    else:
        image = normalize_rows(pooled.image_embed) @ classifier.T  # (N, C)
        with_image = image if modality == "image" else (text + image) / 2
        cosine = np.where(pooled.image_present[:, None], with_image, text)
    return pair_logits(cosine, similarity or COSINE)


def text_encoder_for_store(
    store: FeatureStore, device: str = "cpu", batch_size: int = 256
) -> EncodeTexts:
    """The text tower of the backbone that extracted `store`, loaded from local files only.

    It is looked up where extraction loaded it from (`backbone_path`, else its name) and must
    have the same weights and tokenizer, and the same compute dtype, as the stored features."""
    from semloc.clip.backbone import load_backbone

    backbone = store.manifest.get("backbone") or {}
    source = store.manifest.get("backbone_path") or backbone.get("name")
    if not source:
        raise SemlocError(f"feature store {store.root} records no backbone; zero-shot needs it")
    try:
        model = load_backbone(
            source,
            allow_network=False,
            device=device,
            bf16=backbone.get("compute_dtype") == "bfloat16",
        )
    except (SemlocError, OSError, ValueError) as e:
        raise SemlocError(
            f"zero-shot needs the text tower of the CLIP that extracted {store.root} "
            f"(backbone {source!r}), and it cannot be loaded: {e}"
        ) from None
    want = {
        "weights": backbone.get("weights_sha256"),
        "tokenizer": (store.manifest.get("preprocessing") or {}).get("tokenizer_sha256"),
    }
    have = {"weights": model.weights_sha256, "tokenizer": model.tokenizer_sha256}
    for what in want:
        if want[what] and have[what] != want[what]:
            raise SemlocError(
                f"backbone {source!r} has other {what} ({have[what][:12]}…) than the CLIP that "
                f"extracted {store.root} ({want[what][:12]}…); its class embeddings would not "
                "match the stored features"
            )

    def encode_texts(texts: list[str]) -> np.ndarray:
        embeds = []
        for start in range(0, len(texts), batch_size):
            _, chunk, truncated = model.encode_texts(texts[start : start + batch_size])
            if any(truncated):
                log.warning("some zero-shot prompts were truncated to the text tower's length")
            embeds.append(np.asarray(chunk, dtype=np.float32))
        return np.concatenate(embeds) if embeds else np.zeros((0, store.dims.embed_dim))

    return encode_texts


def evaluate_zero_shot(
    store: FeatureStore | str | Path,
    split: str = "test",
    *,
    modality: Modality = "image",
    prompts: Prompts | str | Path | None = None,
    encode_texts: EncodeTexts | None = None,
    out_dir: str | Path | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Zero-shot metrics on the labelled posts of `split`; written to OUT/eval-SPLIT/ if given."""
    store = store if isinstance(store, FeatureStore) else FeatureStore(store)
    if not isinstance(prompts, Prompts):
        prompts = load_prompts(prompts)
    idx = labelled(store, split)
    if idx.size == 0:
        raise SemlocError(f"feature store {store.root} has no labelled '{split}' posts")
    missing = [lab for lab in store.labels if lab not in prompts.classes]
    if missing:
        log.info("zero-shot: no prompt phrases for %s; using the label names", ", ".join(missing))
    encoder = encode_texts or text_encoder_for_store(store)
    classifier = build_zero_shot_classifier(encoder, store.labels, prompts)
    pooled = read_pooled(store, idx)
    from semloc.clip.families import similarity_of_header

    logits = zero_shot_logits(classifier, pooled, modality, similarity_of_header(store.manifest))
    metrics = classification_metrics(pooled.labels, logits.argmax(1), store.labels)
    metrics.update(
        split=split,
        run=str(out_dir) if out_dir else None,
        model=name or f"zeroshot-{modality}",
        seed=None,
        num_params=0,  # nothing is trained
        modality=modality,
        num_prompts=sum(len(prompts.texts(lab)) for lab in store.labels),
    )
    if out_dir is not None:
        atomic_write_json(Path(out_dir) / f"eval-{split}" / "metrics.json", metrics)
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m semloc.probes.zeroshot",
        description="Zero-shot CLIP classification of a feature store's posts from class prompts.",
    )
    parser.add_argument("store", help="feature store directory")
    parser.add_argument("--modality", choices=MODALITIES, default="image")
    parser.add_argument("--prompts", help=f"prompts YAML (default: {DEFAULT_PROMPTS.name})")
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", help="directory for eval-SPLIT/metrics.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        m = evaluate_zero_shot(
            args.store, args.split, modality=args.modality, prompts=args.prompts, out_dir=args.out
        )
    except SemlocError as e:
        print(f"zeroshot: error: {e}", file=sys.stderr)
        return 2
    print(f"{args.split}: macro-F1 {m['macro_f1']:.4f}, accuracy {m['accuracy']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
