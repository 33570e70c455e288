"""The HTTP service: `create_app(run_dir, cfg)` builds a FastAPI app around one trained run.

Endpoints (all answers are JSON except the pages):

    GET  /                the web page (static/index.html; no external CDN)
    POST /predict         multipart/form-data: `text` (form field, required, may be empty) and
                          `image` (file part, optional). Query: explain=true adds the patch
                          heat-map; image_policy=fail (default: an unusable image is a 4xx) or
                          text-only (predict from the text, report the image outcome)
    POST /predict/batch   application/json: {"posts": [{"id"?, "text", "image"?: base64}, ...]}
                          (at most serve.max_batch_posts posts); same query parameters
    GET  /labels          {"labels": [...]}
    GET  /health          model, backbone and micro-batching statistics
    GET  /openapi.json    the OpenAPI schema; GET /docs renders it as a plain page, offline

Every 4xx/5xx body is {"error": {"code": ..., "message": ..., ...}} and names what was wrong.

Safety: a body is refused from its Content-Length before it is read, and counted while it is
streamed when there is none; images are checked on their header (size, format) before a pixel
is decoded; nothing a client sends is ever used as a path on the server.

Predictions go through `featurize_inputs`, the feature code of `semloc extract`, rounded through
the feature dtype the run was trained on, so a served prediction equals `semloc predict` of the
same post. Decoding happens on the request's thread-pool worker; CLIP + model run in one
inference thread that micro-batches concurrent requests (`semloc.serve.batcher`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import html
import inspect
import json
import logging
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from semloc.clip.backbone import Backbone, ImagePreprocessing
from semloc.clip.extract import featurize_inputs, resolve_device
from semloc.clip.images import ImageProblem, load_image_bytes, to_rgb
from semloc.config import Config, ExtractConfig, ServeConfig
from semloc.errors import SemlocError
from semloc.outputs import Predictions
from semloc.prediction import header_differences, load_run_backbone
from semloc.runs import LoadedRun, load_run
from semloc.serve.batcher import MicroBatcher

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
# the only files the page needs; served from memory, so no request path ever reaches the disk
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
# the page may talk to this server only (and show the user's own image from a blob: URL)
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
SMALL_BODY_BYTES = 64 * 1024  # any POST other than the two prediction endpoints
IMAGE_CONTENT_TYPES = ("image/", "application/octet-stream")
IMAGE_PROBLEM_STATUS = {
    "too_large": (413, "image_too_large"),
    "unsupported_format": (415, "unsupported_image_format"),
}
ImagePolicy = Literal["fail", "text-only"]


# ----------------------------------------------------------------------------------------------
# errors


class ApiError(Exception):
    """A client error with its HTTP status, a stable code and a message saying what to fix."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = {k: v for k, v in extra.items() if v is not None}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.extra}}


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds {limit} bytes")
        self.limit = limit


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(ApiError(status, code, message, **extra).body(), status_code=status)


def _too_large(limit: int, path: str) -> JSONResponse:
    return _error(
        413,
        "upload_too_large",
        f"the request body exceeds the limit of {limit} bytes for {path} "
        "(serve.max_upload_bytes / serve.max_batch_request_bytes)",
        limit=limit,
    )


class BodyLimitMiddleware:
    """Refuse an oversized body before reading it (Content-Length), or as soon as the streamed
    bytes pass the limit (chunked uploads), so a huge upload never sits in memory."""

    def __init__(self, app: ASGIApp, limits: dict[str, int], default: int) -> None:
        self.app = app
        self.limits = limits
        self.default = default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        limit = self.limits.get(path, self.default)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await _error(400, "bad_content_length", "Content-Length is not a number")(
                    scope, receive, send
                )
                return
            if int(declared) > limit:
                await _too_large(limit, path)(scope, receive, send)
                return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited, send)


# ----------------------------------------------------------------------------------------------
# response schema (for /openapi.json; the handlers build plain dicts of this shape)


class ImageInfo(BaseModel):
    outcome: str = Field(
        description="present | no_image | why an unusable image was dropped (image_policy="
        "text-only): too_large, not_an_image, unsupported_format, truncated, corrupt, empty_file"
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
    label: str
    probabilities: dict[str, float]
    similarity: float | None = Field(None, description="text-image cosine s of CLIP's embeddings")
    gate: float | None = Field(None, description="coarse interpolation gate a")
    modality_weights: ModalityWeights | None = None
    image: ImageInfo
    text_truncated: bool = Field(description="the text was longer than CLIP's context")
    explanation: Explanation | None = Field(
        None, description="only with explain=true, for a model with token similarities"
    )
    explanation_note: str | None = None


class BatchPredictions(BaseModel):
    predictions: list[Prediction]


class BatchPost(BaseModel):
    id: str | None = None
    text: str = ""
    image: str | None = Field(
        None, description="base64 image bytes (or a data: URL); never a path or a web URL"
    )


class BatchRequest(BaseModel):
    posts: list[BatchPost]


class ErrorBody(BaseModel):
    error: dict[str, Any]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": why}
    for code, why in {
        400: "malformed request body",
        413: "body, image bytes or image pixels over the limit",
        415: "wrong content type (of the request or of the image part)",
        422: "missing or invalid field, too-long text, undecodable image",
    }.items()
}


# ----------------------------------------------------------------------------------------------
# the model side: backbone, featurisation, inference


@dataclass
class ServePost:
    """One validated post, image already decoded, waiting for the model."""

    text: str
    image: Image.Image | None
    image_outcome: str = "no_image"  # present | no_image | a reason the image was dropped
    image_detail: str | None = None
    explain: bool = False
    post_id: str | None = None
    crop: dict[str, float] | None = None  # where the patch grid lies in the uploaded image


def crop_box(prep: ImagePreprocessing, width: int, height: int) -> dict[str, float]:
    """The region of a (width x height) image that CLIP's square input shows, in its pixels."""
    new_h, new_w = prep._resize_to(height, width) if prep.do_resize else (height, width)
    sx, sy = new_w / width, new_h / height
    left = top = 0
    crop_w, crop_h = new_w, new_h
    if prep.do_center_crop:  # the same offsets as the crop itself (negative: padding)
        crop_w, crop_h = prep.crop_size["width"], prep.crop_size["height"]
        left, top = (new_w - crop_w) // 2, (new_h - crop_h) // 2
    return {"x": left / sx, "y": top / sy, "width": crop_w / sx, "height": crop_h / sy}


def _accepts_token_similarity(model: torch.nn.Module) -> bool:
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
    return "return_token_similarity" in params


class Predictor:
    """Featurise posts with the run's CLIP and classify them; one call = one micro-batch."""

    def __init__(self, run: LoadedRun, backbone: Backbone, cfg: ServeConfig, device: str) -> None:
        self.run = run
        self.backbone = backbone
        self.labels = run.labels
        self.device = device
        self.dtype = run.feature_header["dtype"]
        self.explains = _accepts_token_similarity(run.model)
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
        warm = ServePost("warm up", image, "present", explain=self.explains, crop=box)
        self([warm, ServePost("", None)])

    @torch.inference_mode()
    def __call__(self, posts: list[ServePost]) -> list[dict[str, Any] | BaseException]:
        batch, outcomes = featurize_inputs(
            [(p.text, p.image) for p in posts], self.backbone, self.extract_cfg, dtype=self.dtype
        )
        explain = self.explains and any(p.explain for p in posts)
        batch = batch.to(self.device)
        model = self.run.model
        out = model(batch, return_token_similarity=True) if explain else model(batch)
        logits = out.logits.float().cpu().numpy()
        rows = batch.index.tolist()
        # the very arithmetic `semloc predict` uses, so the two agree to the last float
        probs = Predictions(
            logits=logits, labels=np.full(len(rows), -1), index=np.asarray(rows)
        ).probabilities

        def column(t: torch.Tensor | None) -> np.ndarray | None:
            return None if t is None else t.float().cpu().numpy()

        sim, gate, weights = column(out.similarity), column(out.gate), column(out.modality_weights)
        tok_sim = column(out.token_similarity) if explain else None
        mask = batch.text_mask.cpu().numpy()
        results: list[dict[str, Any] | BaseException] = [
            RuntimeError("the post was dropped by featurisation") for _ in posts
        ]
        for r, i in enumerate(rows):
            post, outcome = posts[i], outcomes[i]
            image_outcome, detail = post.image_outcome, post.image_detail
            if post.image is not None:
                image_outcome = outcome.reason or "present"
                detail = outcome.detail
            res: dict[str, Any] = {
                "id": post.post_id,
                "label": self.labels[int(probs[r].argmax())],
                "probabilities": {
                    lab: float(p) for lab, p in zip(self.labels, probs[r], strict=True)
                },
                "similarity": None if sim is None else float(sim[r]),
                "gate": None if gate is None else float(gate[r]),
                "modality_weights": None
                if weights is None
                else {"text": float(weights[r, 0]), "image": float(weights[r, 1])},
                "image": {"outcome": image_outcome, "detail": detail},
                "text_truncated": bool(outcome.truncated),
            }
            if post.explain:
                res["explanation"], res["explanation_note"] = self._explain(
                    post, image_outcome, tok_sim, mask, r
                )
            results[i] = res
        return results

    def _explain(
        self,
        post: ServePost,
        image_outcome: str,
        tok_sim: np.ndarray | None,
        mask: np.ndarray,
        r: int,
    ) -> tuple[dict[str, Any] | None, str | None]:
        if not self.explains:
            return None, f"model {self.run.meta.get('model_name')!r} has no token similarities"
        if image_outcome != "present" or post.image is None or tok_sim is None:
            return None, "no image, so no patch heat-map"
        e = tok_sim[r]  # (Nt, Nv), zero on padding
        tokens = np.flatnonzero(mask[r])  # the real text tokens, BOS and EOS included
        patches = e[tokens, 1:].mean(0)  # (Nv - 1,) patch tokens only, CLS excluded
        grid = math.isqrt(patches.shape[0])
        if grid * grid != patches.shape[0]:
            return None, f"{patches.shape[0]} patch tokens do not form a square grid"
        return {
            "grid_size": grid,
            "patch_similarity": patches.reshape(grid, grid).astype(float).round(6).tolist(),
            "crop": post.crop,
        }, None


# ----------------------------------------------------------------------------------------------
# request parsing and validation


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _check_text(value: Any, cfg: ServeConfig, post: int | None = None) -> str:
    if value is None:
        raise ApiError(
            422, "missing_field", "the post has no 'text' field (it may be empty, not absent)",
            field="text", post=post,
        )  # fmt: skip
    if not isinstance(value, str):
        raise ApiError(
            422, "invalid_field", "'text' must be a plain string form field, not a file",
            field="text", post=post,
        )  # fmt: skip
    if len(value) > cfg.max_text_chars:
        raise ApiError(
            422,
            "text_too_long",
            f"the text has {len(value)} characters; the limit is {cfg.max_text_chars} "
            "(serve.max_text_chars)",
            field="text",
            post=post,
            limit=cfg.max_text_chars,
        )
    return value


def presize(img: Image.Image, prep: ImagePreprocessing) -> Image.Image:
    """The resize step of CLIP's preprocessing, done early on the request's worker thread.

    `ImagePreprocessing` then finds the image already at its target size, and Pillow's resize
    to the same size is a plain copy, so the pixels are bit-identical to preprocessing the
    original, while the single inference thread spends its time on CLIP instead of resampling
    photos one by one (and a large decoded photo is freed before it queues)."""
    if not prep.do_resize:
        return img
    rgb = to_rgb(img)
    height, width = prep._resize_to(rgb.height, rgb.width)  # the very rule it applies later
    return rgb.resize((width, height), resample=prep.resample)


def _decode_image(
    data: bytes, cfg: ServeConfig, prep: ImagePreprocessing, policy: ImagePolicy, post: int | None
) -> tuple[Image.Image | None, str, str | None, dict[str, float] | None]:
    """(image ready for CLIP or None, outcome, detail, crop box); under policy `fail` a bad
    image is an ApiError."""
    if len(data) > cfg.max_upload_bytes:
        problem = ImageProblem(
            "too_large", f"{len(data)} bytes exceeds the limit of {cfg.max_upload_bytes}"
        )
    else:
        try:
            img = load_image_bytes(data, max_pixels=cfg.max_image_pixels)
            box = crop_box(prep, img.width, img.height)
            return presize(img, prep), "present", None, box
        except ImageProblem as e:
            problem = e
        except Exception as e:  # a decoder bug on one odd upload must not take the server down
            problem = ImageProblem("corrupt", f"{type(e).__name__}: {e}")
    if policy == "text-only":
        return None, problem.reason, problem.detail, None
    status, code = IMAGE_PROBLEM_STATUS.get(problem.reason, (422, "invalid_image"))
    if problem.reason == "too_large" and "pixels" in problem.detail:
        problem.detail += " (serve.max_image_pixels)"
    raise ApiError(
        status, code, f"unusable image: {problem.detail}", field="image", reason=problem.reason,
        post=post,
    )  # fmt: skip


async def _parse_multipart(
    request: Request,
    cfg: ServeConfig,
    prep: ImagePreprocessing,
    explain: bool,
    policy: ImagePolicy,
) -> ServePost:
    ctype = _content_type(request)
    # url-encoded forms are accepted too, for text-only posts (`curl -d text=...`)
    if ctype not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"POST /predict takes multipart/form-data (a 'text' field and an optional 'image' "
            f"file), not {ctype or 'a body without Content-Type'}; for JSON use "
            "POST /predict/batch",
        )
    try:
        form = await request.form(
            max_files=2, max_fields=8, max_part_size=4 * cfg.max_text_chars + 1024
        )
    except StarletteHTTPException as e:
        raise ApiError(400, "malformed_multipart", f"cannot parse the form: {e.detail}") from None
    try:
        unknown = sorted(set(form.keys()) - {"text", "image"})
        if unknown:
            raise ApiError(
                422,
                "unknown_field",
                f"unknown form field(s) {', '.join(map(repr, unknown))}; send 'text' and an "
                "optional 'image' file (the server never reads paths or URLs)",
                field=unknown[0],
            )
        for name in ("text", "image"):
            if len(form.getlist(name)) > 1:
                raise ApiError(
                    422, "repeated_field", f"'{name}' given more than once: one post per "
                    "request (use POST /predict/batch for many)", field=name,
                )  # fmt: skip
        text = _check_text(form.get("text"), cfg)
        part = form.get("image")
        if part is None:
            return ServePost(text, None, "no_image", explain=explain)
        if not isinstance(part, UploadFile):
            raise ApiError(
                422,
                "image_not_a_file",
                "'image' must be an uploaded file part (multipart with a filename), not a "
                "string; the server never opens paths or URLs",
                field="image",
            )
        part_type = (part.content_type or "").split(";")[0].strip().lower()
        if part_type and not part_type.startswith(IMAGE_CONTENT_TYPES):
            raise ApiError(
                415,
                "wrong_content_type",
                f"the 'image' part has content type {part_type!r}; send an image (image/jpeg, "
                "image/png, image/webp, ...)",
                field="image",
            )
        data = await part.read()
    finally:
        await form.close()
    if not data and not part.filename:  # a browser's empty file input
        return ServePost(text, None, "no_image", explain=explain)
    image, outcome, detail, box = await run_in_threadpool(
        _decode_image, data, cfg, prep, policy, None
    )
    return ServePost(text, image, outcome, detail, explain=explain, crop=box)


def _b64_image(value: Any, index: int) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(
            422, "invalid_field", "'image' must be a base64 string or null", field="image",
            post=index,
        )  # fmt: skip
    if value.startswith("data:"):  # a data: URL, as a browser's FileReader makes
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(
            422,
            "invalid_base64",
            "'image' is not valid base64 image bytes (the server never opens paths or URLs; "
            "send the image's bytes)",
            field="image",
            post=index,
        ) from None


def _parse_batch_json(body: bytes, cfg: ServeConfig) -> list[tuple[str | None, str, bytes | None]]:
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("posts"), list):
        raise ApiError(
            422, "missing_field", 'the body must be {"posts": [{"text": ..., "image": ...}, ...]}',
            field="posts",
        )  # fmt: skip
    unknown = sorted(set(data) - {"posts"})
    if unknown:
        raise ApiError(422, "unknown_field", f"unknown key(s) {unknown}", field=unknown[0])
    posts = data["posts"]
    if not posts:
        raise ApiError(422, "empty_batch", "'posts' is empty", field="posts")
    if len(posts) > cfg.max_batch_posts:
        raise ApiError(
            413,
            "too_many_posts",
            f"{len(posts)} posts in one request; the limit is {cfg.max_batch_posts} "
            "(serve.max_batch_posts)",
            field="posts",
            limit=cfg.max_batch_posts,
        )
    parsed = []
    for i, post in enumerate(posts):
        if not isinstance(post, dict):
            raise ApiError(422, "invalid_field", "each post must be an object", post=i)
        extra = sorted(set(post) - {"id", "text", "image"})
        if extra:
            raise ApiError(
                422, "unknown_field", f"unknown key(s) {extra} in a post; give id, text and "
                "image (base64 bytes; the server never reads paths or URLs)", field=extra[0],
                post=i,
            )  # fmt: skip
        pid = post.get("id")
        if pid is not None and not isinstance(pid, str | int):
            raise ApiError(422, "invalid_field", "'id' must be a string", field="id", post=i)
        text = _check_text(post.get("text"), cfg, post=i)
        parsed.append((None if pid is None else str(pid), text, _b64_image(post.get("image"), i)))
    return parsed


# ----------------------------------------------------------------------------------------------
# the app


def _docs_page(schema: dict[str, Any]) -> str:
    """/docs without a CDN: every operation with its parameters, body and responses."""
    esc = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{esc(schema['info']['title'])} API</title>",
        "<link rel='stylesheet' href='/static/style.css'></head><body class='docs'>",
        f"<h1>{esc(schema['info']['title'])} <small>{esc(schema['info']['version'])}</small></h1>",
        "<p>The machine-readable schema is <a href='/openapi.json'>/openapi.json</a> "
        "(load it into any OpenAPI viewer). The web page is at <a href='/'>/</a>.</p>",
    ]
    for path, ops in schema.get("paths", {}).items():
        for method, op in ops.items():
            parts.append(f"<section><h2><code>{method.upper()} {esc(path)}</code></h2>")
            if op.get("summary"):
                parts.append(f"<p><b>{esc(op['summary'])}</b></p>")
            if op.get("description"):
                parts.append(f"<pre>{esc(op['description'])}</pre>")
            params = op.get("parameters", [])
            if params:
                parts.append("<h3>Query parameters</h3><ul>")
                for p in params:
                    typ = p.get("schema", {}).get("type") or p.get("schema", {}).get("enum", "")
                    parts.append(
                        f"<li><code>{esc(p['name'])}</code> ({esc(str(typ))}): "
                        f"{esc(p.get('description', ''))}</li>"
                    )
                parts.append("</ul>")
            for ctype in op.get("requestBody", {}).get("content", {}):
                parts.append(f"<p>Request body: <code>{esc(ctype)}</code></p>")
            codes = ", ".join(esc(c) for c in op.get("responses", {}))
            parts.append(f"<p>Responses: {codes}</p></section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def create_app(
    run_dir: str | Path,
    cfg: Config | ServeConfig | None = None,
    *,
    backbone: Backbone | None = None,
    warm_up: bool = True,
) -> FastAPI:
    """Load the run and its CLIP (the one its features were extracted with) and build the app.

    `backbone` skips locating the CLIP (it is still checked against the checkpoint).
    """
    serve = cfg.serve if isinstance(cfg, Config) else (cfg or ServeConfig())
    device = resolve_device(serve.device)
    if serve.num_threads > 0:
        torch.set_num_threads(serve.num_threads)  # process-wide: the server owns the process
    run = load_run(run_dir, device)
    if backbone is None:
        backbone = load_run_backbone(run, serve.backbone, device)
    else:
        diffs = header_differences(backbone.header(run.feature_header["dtype"]), run.feature_header)
        if diffs:
            raise SemlocError(
                "the given CLIP is not the one the run was trained on:\n" + "\n".join(diffs)
            )
    predictor = Predictor(run, backbone, serve, device)
    if warm_up:
        predictor.warm_up()
    batcher: MicroBatcher[ServePost, dict[str, Any]] = MicroBatcher(
        predictor, max_batch_size=serve.max_batch_size, max_wait_ms=serve.max_wait_ms
    )
    pages = {route: (STATIC_DIR / name).read_bytes() for route, (name, _) in STATIC_FILES.items()}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        batcher.close()

    app = FastAPI(
        title="semloc",
        version=str(run.meta.get("semloc_version", "")),
        description="Semantic location of social-media posts (text + image) with "
        f"{run.meta.get('model_name')} over frozen CLIP features.",
        docs_url=None,  # FastAPI's default pages load their scripts from a CDN
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.run, app.state.predictor, app.state.batcher = run, predictor, batcher
    app.state.serve_config = serve

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, e: ApiError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(BodyTooLarge)
    async def _body_too_large(request: Request, e: BodyTooLarge) -> JSONResponse:
        return _too_large(e.limit, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(x) for x in err.get('loc', ()))}: {err.get('msg')}"
            for err in e.errors()
        ]
        return _error(422, "invalid_parameter", "; ".join(problems))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        return _error(e.status_code, codes.get(e.status_code, "http_error"), str(e.detail))

    @app.exception_handler(Exception)
    async def _crash(_: Request, e: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _error(
            500, "internal_error", f"the server failed on this request ({type(e).__name__})"
        )

    explain_q = Query(False, description="add the patch heat-map (explanation) of each post")
    policy_q = Query(
        "fail",
        description="fail: an unusable image is a 4xx; text-only: predict from the text and "
        "report the image's outcome",
    )

    @app.post(
        "/predict",
        response_model=Prediction,
        responses=ERROR_RESPONSES,
        summary="Predict the semantic location of one post",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["text"],
                            "properties": {
                                "text": {"type": "string", "description": "may be empty"},
                                "image": {"type": "string", "format": "binary"},
                            },
                        }
                    }
                },
            }
        },
    )
    async def predict(
        request: Request, explain: bool = explain_q, image_policy: ImagePolicy = policy_q
    ) -> dict[str, Any]:
        post = await _parse_multipart(request, serve, backbone.preprocessing, explain, image_policy)
        return await batcher.submit(post)

    @app.post(
        "/predict/batch",
        response_model=BatchPredictions,
        responses=ERROR_RESPONSES,
        summary="Predict many posts in one request (JSON, base64 images)",
        description=f"At most {serve.max_batch_posts} posts. Results come back in input order.",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": BatchRequest.model_json_schema()}},
            }
        },
    )
    async def predict_batch(
        request: Request, explain: bool = explain_q, image_policy: ImagePolicy = policy_q
    ) -> dict[str, Any]:
        ctype = _content_type(request)
        if ctype != "application/json":
            raise ApiError(
                415,
                "unsupported_media_type",
                f"POST /predict/batch takes application/json, not {ctype or 'no Content-Type'}",
            )
        entries = _parse_batch_json(await request.body(), serve)

        def decode_all() -> list[ServePost]:
            posts, problems = [], []
            for i, (pid, text, data) in enumerate(entries):
                if data is None:
                    posts.append(ServePost(text, None, explain=explain, post_id=pid))
                    continue
                try:
                    image, outcome, detail, box = _decode_image(
                        data, serve, backbone.preprocessing, image_policy, i
                    )
                except ApiError as e:
                    problems.append(e)
                    continue
                posts.append(ServePost(text, image, outcome, detail, explain, pid, box))
            if len(problems) == 1:
                raise problems[0]
            if problems:  # every bad post at once, not only the first
                statuses = {p.status for p in problems}
                raise ApiError(
                    statuses.pop() if len(statuses) == 1 else 422,
                    "invalid_images",
                    f"{len(problems)} post(s) have an unusable image (or pass "
                    "image_policy=text-only)",
                    problems=[p.body()["error"] for p in problems],
                )
            return posts

        posts = await run_in_threadpool(decode_all)
        return {"predictions": await batcher.submit_many(posts)}

    @app.get("/labels", summary="The classes the model predicts")
    async def labels() -> dict[str, list[str]]:
        return {"labels": run.labels}

    @app.get("/health", summary="Liveness, the loaded model and micro-batching statistics")
    async def health() -> dict[str, Any]:
        header = run.feature_header
        return {
            "status": "ok",
            "model": run.meta.get("model_name"),
            "num_classes": len(run.labels),
            "explanations": predictor.explains,
            "backbone": {
                "name": header["backbone"].get("name"),
                "weights_sha256": header["backbone"].get("weights_sha256"),
                "feature_dtype": header.get("dtype"),
            },
            "device": str(device),
            "batching": batcher.stats(),
            "limits": {
                "max_upload_bytes": serve.max_upload_bytes,
                "max_image_pixels": serve.max_image_pixels,
                "max_text_chars": serve.max_text_chars,
                "max_batch_posts": serve.max_batch_posts,
            },
        }

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(_docs_page(app.openapi()), headers=_page_headers())

    def _page_headers() -> dict[str, str]:
        return {
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
        }

    def page_route(route: str, media_type: str) -> None:
        async def page() -> Response:
            return Response(pages[route], media_type=media_type, headers=_page_headers())

        app.add_api_route(route, page, methods=["GET"], include_in_schema=False)

    for route, (_, media_type) in STATIC_FILES.items():
        page_route(route, media_type)

    app.add_middleware(
        BodyLimitMiddleware,
        limits={
            "/predict": serve.max_upload_bytes,
            "/predict/batch": serve.max_batch_request_bytes,
        },
        default=SMALL_BODY_BYTES,
    )
    return app
