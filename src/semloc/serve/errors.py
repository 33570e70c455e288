"""The server's error answers: one JSON shape for every 4xx, and the handlers that produce it.

Every error body is {"error": {"code": ..., "message": ..., ...}}: a stable `code` a client can
branch on, a `message` saying what to fix, and where known the `field`, the `post` (position in
a batch) and the `limit` that was crossed. A client that goes away mid-request is one log line,
not a traceback; only a bug in the server itself is a 500 (logged with its traceback).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

log = logging.getLogger("semloc.serve")


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
    """Raised by the body limit while a body streams in (see `semloc.serve.limits`)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds {limit} bytes")
        self.limit = limit


class ErrorResponse(JSONResponse):
    """JSON that can always be written: a message quoting a client's malformed text (a lone
    surrogate) keeps it as a JSON escape instead of failing to encode."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return text.encode("utf-8", "backslashreplace")


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return ErrorResponse(ApiError(status, code, message, **extra).body(), status_code=status)


def too_large_response(limit: int, path: str) -> JSONResponse:
    return error_response(
        413,
        "upload_too_large",
        f"the request body exceeds the limit of {limit} bytes for {path} "
        "(serve.max_upload_bytes / serve.max_batch_request_bytes)",
        limit=limit,
    )


class ErrorBody(BaseModel):
    error: dict[str, Any]


# the error statuses of the prediction endpoints, for /openapi.json
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": why}
    for code, why in {
        400: "malformed request body (JSON, multipart, encoding)",
        408: "the request did not arrive within serve.read_timeout_s",
        413: "body, image bytes or image pixels over the limit",
        415: "wrong content type (of the request or of the image part)",
        422: "missing or invalid field, too-long text, undecodable image",
    }.items()
}


def add_error_handlers(app: FastAPI) -> None:
    """Route every exception a request can raise to its JSON answer."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, e: ApiError) -> JSONResponse:
        return ErrorResponse(e.body(), status_code=e.status)

    @app.exception_handler(BodyTooLarge)
    async def _body_too_large(request: Request, e: BodyTooLarge) -> JSONResponse:
        return too_large_response(e.limit, request.url.path)

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, _: ClientDisconnect) -> Response:
        client = request.client
        where = f"{client.host}:{client.port}" if client else "a client"
        log.info("%s disconnected before its %s %s body arrived", where, request.method,
                 request.url.path)  # fmt: skip
        return Response(status_code=400)  # nobody reads it; the access log shows 400, not 500

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(x) for x in err.get('loc', ()))}: {err.get('msg')}"
            for err in e.errors()
        ]
        return error_response(422, "invalid_parameter", "; ".join(problems))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        return error_response(e.status_code, codes.get(e.status_code, "http_error"), str(e.detail))

    @app.exception_handler(Exception)
    async def _crash(_: Request, e: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(
            500, "internal_error", f"the server failed on this request ({type(e).__name__})"
        )
