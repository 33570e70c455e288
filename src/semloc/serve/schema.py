"""The shapes of the API's answers and of the batch request, for /openapi.json.

The handlers build plain dicts of these shapes (validated by FastAPI on the way out); requests
are parsed and checked in `semloc.serve.parsing`, which these models only document.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class ImageInfo(BaseModel):
    outcome: str = Field(
        description="present | no_image | why an unusable image was dropped (image_policy="
        "text-only): too_large, bad_shape, not_an_image, unsupported_format, truncated, "
        "corrupt, empty (the words of `semloc predict`'s image_outcome column)"
    )
    detail: str | None = None


class ModalityWeights(BaseModel):
    text: float
    image: float


class Explanation(BaseModel):
    grid_size: int = Field(description="patches per side; the heat-map is grid_size x grid_size")
    patch_similarity: list[list[float]] = Field(
        description="rows top to bottom: mean over the post's text tokens of the token-level "
        "text-patch cosine of the model's last similarity layer"
    )
    crop: dict[str, float] = Field(
        description="x, y, width, height: the region of the uploaded image the patch grid "
        "covers (CLIP resizes and center-crops), in the image's pixels"
    )


class Prediction(BaseModel):
    id: str | None = None
    predicted_label: str = Field(description="the predicted class (argmax of probabilities)")
    label: str = Field(
        description="deprecated alias of predicted_label, kept for existing clients",
        json_schema_extra={"deprecated": True},
    )
    probabilities: dict[str, float] = Field(
        description="per class, with the run's calibration temperature (as `semloc predict`)"
    )
    similarity: float | None = Field(None, description="text-image cosine s of CLIP's embeddings")
    gate: float | None = Field(None, description="coarse interpolation gate a")
    modality_weights: ModalityWeights | None = None
    image: ImageInfo
    text_truncated: bool = Field(description="the text was longer than CLIP's context")
    text_replaced_characters: int = Field(
        0, description="lone surrogates in the text that were replaced by U+FFFD"
    )
    explanation: Explanation | None = Field(
        None, description="only with explain=true, for a model with token similarities"
    )
    explanation_note: str | None = None


class BatchPredictions(BaseModel):
    predictions: list[Prediction]


class BatchPost(BaseModel):
    id: str | int | None = Field(None, description="echoed back; an integer comes back as text")
    text: str = Field(description="may be empty, not absent")
    image: str | None = Field(
        None, description="base64 image bytes (or a data: URL); never a path or a web URL"
    )


class BatchRequest(BaseModel):
    posts: list[BatchPost]
