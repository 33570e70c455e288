"""The API's routes: what each endpoint takes and answers, and nothing else.

    POST /predict         one post (multipart/form-data: `text`, optional `image` file)
    POST /predict/batch   many posts (JSON, base64 images; at most serve.max_batch_posts)
    GET  /labels          {"labels": [...]}
    GET  /health          model, backbone, limits and micro-batching statistics

Both prediction endpoints take ?explain=true (the patch heat-map) and ?image_policy=text-only
(the default, `serve.image_policy`: an unusable image is dropped and its outcome reported, as
every CLI verb does) or fail (an unusable image is a 4xx). Bodies are parsed and decoded on a
thread-pool worker (`semloc.serve.parsing`); the model runs in the micro-batcher's thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Query, Request
from starlette.concurrency import run_in_threadpool

from semloc.config import ServeConfig
from semloc.runs import LoadedRun
from semloc.serve.batcher import MicroBatcher
from semloc.serve.errors import ERROR_RESPONSES, ApiError
from semloc.serve.parsing import (
    ImagePolicy,
    check_form_type,
    content_type,
    decode_batch,
    parse_batch_json,
    parse_single_post,
)
from semloc.serve.predictor import Predictor, ServePost
from semloc.serve.schema import BatchPredictions, BatchRequest, Prediction

MULTIPART_BODY = {
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
}


@dataclass
class Service:
    """What the routes need: the run, its predictor, the batcher and the settings."""

    run: LoadedRun
    predictor: Predictor
    batcher: MicroBatcher[ServePost, dict[str, Any]]
    cfg: ServeConfig
    device: str


def add_routes(app: FastAPI, service: Service) -> None:
    cfg, batcher = service.cfg, service.batcher
    prep = service.predictor.backbone.preprocessing
    explain_q = Query(False, description="add the patch heat-map (explanation) of each post")
    policy_q = Query(
        cfg.image_policy,
        description="text-only: predict from the text and report the image's outcome; fail: "
        "an unusable image is a 4xx (default: serve.image_policy)",
    )

    @app.post(
        "/predict",
        response_model=Prediction,
        responses=ERROR_RESPONSES,
        summary="Predict the semantic location of one post",
        openapi_extra=MULTIPART_BODY,
    )
    async def predict(
        request: Request, explain: bool = explain_q, image_policy: ImagePolicy = policy_q
    ) -> dict[str, Any]:
        header = request.headers.get("content-type", "")
        check_form_type(header)
        body = await request.body()
        post = await run_in_threadpool(
            parse_single_post, body, header, cfg, prep, explain, image_policy
        )
        return await batcher.submit(post)

    @app.post(
        "/predict/batch",
        response_model=BatchPredictions,
        responses=ERROR_RESPONSES,
        summary="Predict many posts in one request (JSON, base64 images)",
        description=f"At most {cfg.max_batch_posts} posts. Results come back in input order.",
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
        ctype = content_type(request.headers.get("content-type"))
        if ctype != "application/json":
            raise ApiError(
                415,
                "unsupported_media_type",
                f"POST /predict/batch takes application/json, not {ctype or 'no Content-Type'}",
            )
        body = await request.body()
        entries = await run_in_threadpool(parse_batch_json, body, cfg)
        posts = await run_in_threadpool(decode_batch, entries, cfg, prep, explain, image_policy)
        return {"predictions": await batcher.submit_many(posts)}

    @app.get("/labels", summary="The classes the model predicts")
    async def labels() -> dict[str, list[str]]:
        return {"labels": service.run.labels}

    @app.get("/health", summary="Liveness, the loaded model and micro-batching statistics")
    async def health() -> dict[str, Any]:
        header = service.run.feature_header
        return {
            "status": "ok",
            "model": service.run.meta.get("model_name"),
            "num_classes": len(service.run.labels),
            "explanations": service.predictor.explains,
            "backbone": {
                "name": header["backbone"].get("name"),
                "weights_sha256": header["backbone"].get("weights_sha256"),
                "feature_dtype": header.get("dtype"),
            },
            "device": str(service.device),
            "batching": batcher.stats(),
            "image_policy": cfg.image_policy,
            "limits": {
                "max_upload_bytes": cfg.max_upload_bytes,
                "max_image_pixels": cfg.max_image_pixels,
                "max_text_chars": cfg.max_text_chars,
                "max_batch_posts": cfg.max_batch_posts,
                "max_batch_request_bytes": cfg.max_batch_request_bytes,
                "read_timeout_s": cfg.read_timeout_s,
                "keep_alive_timeout_s": cfg.keep_alive_timeout_s,
                "max_connections": cfg.max_connections,
                "max_header_bytes": cfg.max_header_bytes,
            },
        }
