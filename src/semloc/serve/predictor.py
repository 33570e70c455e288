"""The model side of the server: validated posts in, one answer per post out.

`Predictor` is what the micro-batcher calls with each batch: it featurises the posts with
`featurize_inputs` (the feature code of `semloc extract`, rounded through the feature dtype the
run was trained on) and runs the model through `semloc.outputs.model_outputs`, the one
prediction path `semloc predict` also takes, so a served prediction equals `semloc predict` of
the same post. Probabilities carry the run's calibration temperature; the picture's outcome is
worded by `semloc.prediction.image_outcome`, as in the predictions table.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from semloc.clip.backbone import Backbone, ImagePreprocessing
from semloc.clip.extract import PostOutcome, featurize_inputs
from semloc.clip.images import to_rgb
from semloc.config import ExtractConfig, ServeConfig
from semloc.outputs import Predictions, accepts_token_similarity, model_outputs
from semloc.prediction import image_outcome
from semloc.runs import LoadedRun
from semloc.serve.errors import ApiError


@dataclass
class ServePost:
    """One validated post, its image already decoded (and resized), waiting for the model."""

    text: str
    image: Image.Image | None = None
    # why an uploaded image was dropped (image_policy=text-only): an IMAGE_REASONS word + detail
    dropped_reason: str | None = None
    dropped_detail: str | None = None
    explain: bool = False
    post_id: str | None = None
    crop: dict[str, float] | None = None  # where the patch grid lies in the uploaded image
    text_replaced: int = 0  # lone surrogates in the text replaced by U+FFFD
    image_policy: str = "text-only"  # fail: an image featurisation cannot use is the post's 4xx


def presize(img: Image.Image, prep: ImagePreprocessing) -> Image.Image:
    """The resize step of CLIP's preprocessing, done early on the request's worker thread.

    `ImagePreprocessing` then finds the image already at its target size, and Pillow's resize
    to the same size is a plain copy, so the pixels are bit-identical to preprocessing the
    original, while the single inference thread spends its time on CLIP instead of resampling
    photos one by one (and a large decoded photo is freed before it queues)."""
    if not prep.do_resize:
        return img
    rgb = to_rgb(img)
    height, width = prep.resized_size(rgb.height, rgb.width)  # the very rule it applies later
    return rgb.resize((width, height), resample=prep.resample)


def crop_box(prep: ImagePreprocessing, width: int, height: int) -> dict[str, float]:
    """The region of a (width x height) image that CLIP's square input shows, in its pixels."""
    new_h, new_w = prep.resized_size(height, width) if prep.do_resize else (height, width)
    sx, sy = new_w / width, new_h / height
    left = top = 0
    crop_w, crop_h = new_w, new_h
    if prep.do_center_crop:  # the same offsets as the crop itself (negative: padding)
        crop_w, crop_h = prep.crop_size["width"], prep.crop_size["height"]
        left, top = (new_w - crop_w) // 2, (new_h - crop_h) // 2
    return {"x": left / sx, "y": top / sy, "width": crop_w / sx, "height": crop_h / sy}


def patch_heatmap(token_map: np.ndarray) -> tuple[int, np.ndarray] | None:
    """(grid size, grid x grid map) from one post's (real text tokens, image tokens) similarity
    map: the mean over the text tokens, per patch (CLIP's CLS token, the first, left out); None
    when the patches do not form a square grid."""
    patches = token_map[:, 1:].mean(0)  # (Nv - 1,)
    grid = math.isqrt(patches.shape[0])
    if grid * grid != patches.shape[0]:
        return None
    return grid, patches.reshape(grid, grid)


class Predictor:
    """Featurise posts with the run's CLIP and classify them; one call = one micro-batch."""

    def __init__(self, run: LoadedRun, backbone: Backbone, cfg: ServeConfig, device: str) -> None:
        self.run = run
        self.backbone = backbone
        self.labels = run.labels
        self.device = device
        self.dtype = run.feature_header["dtype"]
        self.explains = accepts_token_similarity(run.model)
        # the extraction settings of `semloc extract`; only the batch size (one CLIP call per
        # micro-batch) and the pixel limit (already checked on upload) are the server's own
        self.extract_cfg = ExtractConfig(
            backbone=backbone.path,
            batch_size=max(1, cfg.max_batch_size, cfg.max_batch_posts),
            dtype=self.dtype,
            num_workers=0,
            image_policy="text-only",
            max_image_pixels=cfg.max_image_pixels,
            progress=False,
            bf16=backbone.bf16,
        )

    def warm_up(self) -> None:
        """One call before the first request, so it does not pay for lazy initialisation."""
        image = presize(Image.new("RGB", (64, 48), (120, 130, 140)), self.backbone.preprocessing)
        box = crop_box(self.backbone.preprocessing, 64, 48)
        self([ServePost("warm up", image, explain=self.explains, crop=box), ServePost("")])

    def __call__(self, posts: list[ServePost]) -> list[dict[str, Any] | BaseException]:
        batch, outcomes = featurize_inputs(
            [(p.text, p.image) for p in posts], self.backbone, self.extract_cfg, dtype=self.dtype
        )
        preds = model_outputs(
            self.run.model,
            [batch],
            self.device,
            temperature=self.run.temperature,
            token_similarity=self.explains and any(p.explain for p in posts),
        )
        probs = preds.probabilities  # (N, C), calibrated; computed once for the batch
        results: list[dict[str, Any] | BaseException] = [
            RuntimeError("the post was dropped by featurisation") for _ in posts
        ]
        for r, i in enumerate(preds.index.tolist()):
            post, outcome = posts[i], self._outcome(posts[i], outcomes[i])
            if post.image is not None and outcome.reason and post.image_policy == "fail":
                results[i] = ApiError(
                    422, "invalid_image", f"unusable image: {outcome.detail}", field="image",
                    reason=outcome.reason,
                )  # fmt: skip
            else:
                results[i] = self._answer(post, outcome, preds, probs[r], r)
        return results

    @staticmethod
    def _outcome(post: ServePost, outcome: PostOutcome) -> PostOutcome:
        """The featurisation outcome, with an image the server dropped on upload put back in."""
        if post.dropped_reason is None:
            return outcome
        return dataclasses.replace(
            outcome,
            status="text_only",
            image="<upload>",
            reason=post.dropped_reason,
            detail=post.dropped_detail,
        )

    def _answer(
        self, post: ServePost, outcome: PostOutcome, preds: Predictions, probs: np.ndarray, r: int
    ) -> dict[str, Any]:
        predicted = self.labels[int(probs.argmax())]

        def extra(name: str) -> np.ndarray | None:
            values = preds.extras.get(name)
            return None if values is None else values[r]

        sim, gate, weights = extra("similarity"), extra("gate"), extra("modality_weights")
        res: dict[str, Any] = {
            "id": post.post_id,
            "predicted_label": predicted,
            "label": predicted,  # deprecated alias of predicted_label (see the README)
            "probabilities": {lab: float(p) for lab, p in zip(self.labels, probs, strict=True)},
            "similarity": None if sim is None else float(sim),
            "gate": None if gate is None else float(gate),
            "modality_weights": None
            if weights is None
            else {"text": float(weights[0]), "image": float(weights[1])},
            "image": {"outcome": image_outcome(outcome), "detail": outcome.detail},
            "text_truncated": bool(outcome.truncated),
            "text_replaced_characters": post.text_replaced,
        }
        if post.explain:
            res["explanation"], res["explanation_note"] = self._explain(post, outcome, preds, r)
        return res

    def _explain(
        self, post: ServePost, outcome: PostOutcome, preds: Predictions, r: int
    ) -> tuple[dict[str, Any] | None, str | None]:
        if not self.explains:
            return None, f"model {self.run.meta.get('model_name')!r} has no token similarities"
        if image_outcome(outcome) != "present" or preds.token_similarity is None:
            return None, "no image, so no patch heat-map"
        heatmap = patch_heatmap(preds.token_similarity[r])
        if heatmap is None:
            return None, "the patch tokens do not form a square grid"
        grid, values = heatmap
        return {
            "grid_size": grid,
            "patch_similarity": values.astype(float).round(6).tolist(),
            "crop": post.crop,
        }, None
