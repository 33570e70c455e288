"""The HTTP server around the app: uvicorn with limits on connections, heads and slow clients.

uvicorn bounds an idle keep-alive connection (`serve.keep_alive_timeout_s`) but waits forever for
a request that has started to arrive: a client that opens a connection, or sends part of its
headers or body, and stalls holds a socket and a task indefinitely (sixty such clients hold
sixty). `ReadTimeoutH11Protocol` gives every request `serve.read_timeout_s` from its first byte
(or from the connection opening) to arrive complete, then answers 408 and closes. On top:
`serve.max_connections` open connections at once (uvicorn answers 503 beyond, a retry-later
signal), and `serve.max_header_bytes` for the request line and headers (431 beyond).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from semloc.config import ServeConfig

log = logging.getLogger("semloc.serve")


def _closing_response(status: int, reason: str, code: str, message: str) -> bytes:
    """A complete JSON error answer that ends the connection, written below h11 (which has not
    parsed a request it could answer)."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class ReadTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, with a deadline for each request to arrive (headers and body)."""

    read_timeout: float = 10.0  # both set per server by `server_config`
    max_head: int = 16_384

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._head = b""  # the head of the request arriving, up to max_head (+ its end)
        self._arm()

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.read_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _receiving(self) -> bool:
        """Whether a request is still arriving (its head, or the rest of its body)."""
        cycle = self.cycle
        if cycle is None or cycle.response_complete:  # between requests: a new one starts
            return True
        return cycle.more_body

    def data_received(self, data: bytes) -> None:
        if self._receiving():
            self._arm()  # the first byte of a request starts its clock; later bytes do not
        if self.conn.their_state is h11.IDLE and self._head_too_large(data):
            return
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._head = b""  # the head is parsed; the next request starts afresh
        if not self._receiving():
            self._disarm()  # the request is in: the app takes it from here

    def _head_too_large(self, data: bytes) -> bool:
        """Refuse (431) a request line + headers over max_head bytes. h11's own bound holds
        only for a head still incomplete, not for a large one that arrives at once."""
        self._head = (self._head + data)[: self.max_head + 4]
        end = self._head.find(b"\r\n\r\n")
        if (end < 0 and len(self._head) <= self.max_head) or 0 <= end <= self.max_head:
            return False
        log.info("refused a request head over %d bytes (serve.max_header_bytes)", self.max_head)
        self._disarm()
        self.transport.write(
            _closing_response(
                431, "Request Header Fields Too Large", "headers_too_large",
                f"the request line and headers exceed {self.max_head} bytes "
                "(serve.max_header_bytes)",
            )
        )  # fmt: skip
        self.transport.close()
        return True

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request h11 cannot parse (e.g. a bad chunk in the body of a
        request the app is already handling): the app's own answer must then go nowhere, not
        into a connection h11 has closed (which raised inside the app: a traceback)."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
            if cycle.response_started:  # half an answer is out: nothing more can be said
                self.transport.close()
                return
        super().send_400_response(msg)

    def on_response_complete(self) -> None:
        self._disarm()  # uvicorn's keep-alive timeout covers the wait for the next request
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or not self._receiving():
            return
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        cycle = self.cycle
        started = cycle is not None and not cycle.response_complete
        if started and cycle.response_started:
            return  # the app is answering already; it owns the connection
        log.info(
            "closed the connection of %s: its request did not arrive within %g s "
            "(serve.read_timeout_s)", client, self.read_timeout,
        )  # fmt: skip
        self.transport.write(
            _closing_response(
                408, "Request Timeout", "request_timeout",
                f"the request did not arrive within {self.read_timeout:g} s "
                "(serve.read_timeout_s)",
            )
        )  # fmt: skip
        if started:  # the app waits for the body: it gets a disconnect, and its answer is dropped
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()


def server_config(app: Any, cfg: ServeConfig, **overrides: Any) -> uvicorn.Config:
    """uvicorn settings for `app` from `serve.*` (host, port, timeouts, connection cap)."""
    limits = {"read_timeout": cfg.read_timeout_s, "max_head": cfg.max_header_bytes}
    protocol = type("ReadTimeoutH11Protocol", (ReadTimeoutH11Protocol,), limits)
    settings: dict[str, Any] = dict(
        host=cfg.host,
        port=cfg.port,
        http=protocol,
        timeout_keep_alive=cfg.keep_alive_timeout_s,
        limit_concurrency=cfg.max_connections,
        h11_max_incomplete_event_size=cfg.max_header_bytes + 4,
        log_level="info",
        server_header=False,
        timeout_graceful_shutdown=5,
        lifespan="on",
    )
    return uvicorn.Config(app, **(settings | overrides))


def run_server(app: Any, cfg: ServeConfig) -> None:
    """Serve `app` until interrupted."""
    uvicorn.Server(server_config(app, cfg)).run()
