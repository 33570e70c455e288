"""`create_app(run_dir, cfg)`: the FastAPI app around one trained run.

The server's files, one job each:

    app.py        this: load the run and its CLIP, wire the parts below into one app
    routes.py     the endpoints (POST /predict, POST /predict/batch, GET /labels, GET /health)
    parsing.py    request parsing and validation: bodies in, validated posts (or a 4xx) out
    forms.py      form bodies (multipart, url-encoded) split into parts, strictly
    predictor.py  the model side: featurise + `semloc.outputs.model_outputs`, one answer a post
    batcher.py    micro-batching: concurrent requests share one model call
    errors.py     the JSON error body and the exception handlers
    limits.py     body size limits, before and while a body is read
    server.py     uvicorn with timeouts for slow clients and a cap on connections
    pages.py      the web page and the offline /docs
    schema.py     the answer shapes, for /openapi.json

Every 4xx body is {"error": {"code": ..., "message": ..., ...}} and names what was wrong.
Nothing a client sends is ever used as a path on the server.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI

from semloc.clip.backbone import Backbone
from semloc.config import Config, ServeConfig, resolve_device, validate_config
from semloc.errors import SemlocError
from semloc.prediction import header_differences, load_run_backbone
from semloc.runs import load_run
from semloc.serve.batcher import MicroBatcher
from semloc.serve.errors import add_error_handlers
from semloc.serve.limits import SMALL_BODY_BYTES, BodyLimitMiddleware
from semloc.serve.pages import add_page_routes
from semloc.serve.predictor import Predictor, ServePost
from semloc.serve.routes import Service, add_routes


def check_serve_settings(serve: ServeConfig) -> None:
    """The `serve.*` rules of `semloc.config.validate_config` (ConfigError naming the key), for
    a ServeConfig built in Python rather than loaded."""
    validate_config(Config(serve=serve))


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
    check_serve_settings(serve)
    device = resolve_device(serve.device)
    if serve.num_threads > 0:
        torch.set_num_threads(serve.num_threads)  # process-wide: the server owns the process
    run = load_run(run_dir, device, runtime=serve.runtime)
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
    add_error_handlers(app)
    add_routes(app, Service(run, predictor, batcher, serve, str(device)))
    add_page_routes(app)
    app.add_middleware(
        BodyLimitMiddleware,
        limits={
            "/predict": serve.max_upload_bytes,
            "/predict/batch": serve.max_batch_request_bytes,
        },
        default=SMALL_BODY_BYTES,
    )
    return app
