"""Model outputs over featurised batches: the one loop from features to predictions.

Every place that turns features into predictions calls `model_outputs` — the trainer's dev
evaluation, `semloc predict` (local and Ray), the server and the Python API — and probabilities
are computed in one place, `Predictions.probabilities`, with the run's calibration temperature.
Nothing here knows the architecture: a model is anything that maps a `FeatureBatch` to an output
with `.logits` and, optionally, the explanation fields below.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from semloc.features.batch import FeatureBatch

# per-post explanation outputs a model may return besides its logits (SG-MFT returns the first
# three, and picture_match with model.text_fallback)
EXPLANATION_FIELDS = ("similarity", "gate", "modality_weights", "picture_match")


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of `logits / temperature`, stable for any logit range."""
    z = logits / temperature if temperature != 1.0 else logits
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class Predictions:
    """Outputs of a model over a set of posts, in the order the batches came.

    `logits` stay uncalibrated; `probabilities` divides them by `temperature` (1.0 unless the run
    learned one on its dev split) before the softmax."""

    logits: np.ndarray  # (N, C) float32
    labels: np.ndarray  # (N,) int64, -1 where unlabelled
    index: np.ndarray  # (N,) the posts' positions (store rows, or positions in the input)
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # EXPLANATION_FIELDS present
    temperature: float = 1.0
    # per post, (real text tokens, image tokens) cosine map, when asked for (the patch heat-map)
    token_similarity: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.index)

    @property
    def probabilities(self) -> np.ndarray:
        return softmax(self.logits, self.temperature)

    @property
    def uncalibrated_probabilities(self) -> np.ndarray:
        return softmax(self.logits)

    @classmethod
    def empty(cls, num_classes: int = 0, temperature: float = 1.0) -> Predictions:
        return cls(
            logits=np.zeros((0, num_classes), np.float32),
            labels=np.zeros(0, np.int64),
            index=np.zeros(0, np.int64),
            temperature=temperature,
        )

    @classmethod
    def concat(cls, parts: Sequence[Predictions], temperature: float | None = None) -> Predictions:
        """One `Predictions` from several (e.g. chunks of a file, or DDP ranks)."""
        parts = [p for p in parts if len(p)]
        if temperature is None:
            temperature = parts[0].temperature if parts else 1.0
        if not parts:
            return cls.empty(temperature=temperature)
        keys = set().union(*(p.extras.keys() for p in parts))
        maps = [p.token_similarity for p in parts]
        return cls(
            logits=np.concatenate([p.logits for p in parts]),
            labels=np.concatenate([p.labels for p in parts]),
            index=np.concatenate([p.index for p in parts]),
            extras={k: np.concatenate([p.extras[k] for p in parts if k in p.extras]) for k in keys},
            temperature=temperature,
            token_similarity=[m for ms in maps for m in ms]
            if all(m is not None for m in maps)
            else None,
        )


def accepts_token_similarity(model: Any) -> bool:
    """Whether `model(batch, return_token_similarity=True)` is supported (SG-MFT and the
    token-level transformers; pooled-embedding heads have no token map)."""
    import inspect

    forward = getattr(model, "forward", model)
    try:
        return "return_token_similarity" in inspect.signature(forward).parameters
    except (TypeError, ValueError):
        return False


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


@torch.inference_mode()
def model_outputs(
    model: Any,
    batches: Iterable[FeatureBatch],
    device: torch.device | str = "cpu",
    *,
    temperature: float = 1.0,
    token_similarity: bool = False,
    progress: bool = False,
    total: int | None = None,
    desc: str = "predict",
) -> Predictions:
    """Run `model` over every batch; collect logits, labels, positions and explanation fields.

    `token_similarity=True` also asks the model for its token-level similarity map (models that
    have none return None and the field stays None)."""
    if token_similarity and not accepts_token_similarity(model):
        token_similarity = False  # a model without a token map: the field stays None
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    logits, labels, index = [], [], []
    extras: dict[str, list[np.ndarray]] = {}
    maps: list[np.ndarray] | None = [] if token_similarity else None
    if total is None and hasattr(batches, "dataset"):
        total = len(batches.dataset)  # a DataLoader over a store
    try:
        with tqdm(total=total, desc=desc, unit="post", disable=not progress, leave=False) as bar:
            for batch in batches:
                batch = batch.to(device)
                out = (
                    model(batch, return_token_similarity=True) if token_similarity else model(batch)
                )
                n = len(batch)
                logits.append(_numpy(out.logits))
                labels.append(
                    batch.labels.cpu().numpy() if batch.labels is not None else np.full(n, -1)
                )
                index.append(batch.index.cpu().numpy() if batch.index is not None else np.arange(n))
                for name in EXPLANATION_FIELDS:
                    value = getattr(out, name, None)
                    if value is not None:
                        extras.setdefault(name, []).append(_numpy(value))
                if maps is not None:
                    e = getattr(out, "token_similarity", None)
                    if e is None:
                        maps = None
                    else:
                        e, mask = _numpy(e), batch.text_mask.cpu().numpy()
                        maps.extend(e[r][mask[r]] for r in range(n))  # (real tokens, Nv)
                bar.update(n)
    finally:
        if hasattr(model, "train"):
            model.train(was_training)
    if not logits:
        return Predictions.empty(temperature=temperature)
    return Predictions(
        logits=np.concatenate(logits).astype(np.float32, copy=False),
        labels=np.concatenate(labels).astype(np.int64, copy=False),
        index=np.concatenate(index).astype(np.int64, copy=False),
        extras={k: np.concatenate(v) for k, v in extras.items()},
        temperature=temperature,
        token_similarity=maps,
    )


__all__ = [
    "EXPLANATION_FIELDS",
    "Predictions",
    "accepts_token_similarity",
    "model_outputs",
    "softmax",
]
