"""Size limits on request bodies, enforced before and while a body is read.

A body is refused from its Content-Length before a byte of it is read, and counted while it
streams in when there is none (chunked uploads), so a huge upload never sits in memory. The
limits per path come from `serve.max_upload_bytes` (POST /predict) and
`serve.max_batch_request_bytes` (POST /predict/batch); every other POST gets SMALL_BODY_BYTES.
Limits on connections, headers and slow clients are the HTTP server's (`semloc.serve.server`).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from semloc.serve.errors import BodyTooLarge, error_response, too_large_response

SMALL_BODY_BYTES = 64 * 1024  # any POST other than the two prediction endpoints
# more digits than any real body has; also keeps int() far below Python's digit limit
_MAX_LENGTH_DIGITS = 18


class BodyLimitMiddleware:
    """Refuse an oversized body before reading it (Content-Length), or as soon as the streamed
    bytes pass the limit, by raising `BodyTooLarge` from `receive`."""

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
        headers = scope.get("headers") or []
        encoding = [v for k, v in headers if k.lower() == b"content-encoding"]
        if any(v.strip().lower() not in (b"", b"identity") for v in encoding):
            # not decompressed here: an inflating body would escape every size limit above
            await error_response(
                415, "unsupported_content_encoding",
                "compressed request bodies (Content-Encoding) are not accepted; send the body "
                "as is (images are compressed already)",
            )(scope, receive, send)  # fmt: skip
            return
        declared = [v for k, v in headers if k.lower() == b"content-length"]
        if declared:
            value = declared[-1].strip()
            if len(set(declared)) > 1 or not value.isdigit():
                await error_response(
                    400, "bad_content_length", "Content-Length is not one decimal number"
                )(scope, receive, send)
                return
            if len(value.lstrip(b"0")) > _MAX_LENGTH_DIGITS or int(value) > limit:
                await too_large_response(limit, path)(scope, receive, send)
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
