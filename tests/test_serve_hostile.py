"""`semloc serve` against a battery of hostile requests (tests/hostile_requests.py): each gets
its clear answer, never a 5xx or a traceback, and a good request after it is answered. Then the
HTTP server's own limits against a real uvicorn on 127.0.0.1, with a short configured read
timeout: stalled clients are cut off, huge heads refused, a vanishing client is one log line."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from fastapi.testclient import TestClient

from hostile_requests import BOUNDARY, LIMITS, cases, field_part, image_bytes, multipart, raw_cases
from semloc.config import ServeConfig
from test_serve import shared_served_run

CASES = cases()


def good_request(client: Any) -> None:
    files = {"image": ("p.png", image_bytes("PNG", (50, 40)), "image/png")}
    r = client.post("/predict", data={"text": "lunch at the noodle bar"}, files=files)
    assert r.status_code == 200, r.text
    assert r.json()["image"]["outcome"] == "present"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, tiny_backbone) -> Any:
    from semloc.serve.app import create_app

    _, _, run = shared_served_run(tmp_path_factory, tiny_backbone)
    cfg = ServeConfig(device="cpu", max_batch_size=8, max_wait_ms=2, image_policy="fail", **LIMITS)
    return create_app(run, cfg, backbone=tiny_backbone)


@pytest.fixture(scope="module")
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as c:  # raises any unhandled server exception into the test
        yield c


def test_the_battery_is_wide() -> None:
    assert len(CASES) >= 150
    assert len({c.name for c in CASES}) == len(CASES)


def test_every_hostile_request_gets_its_answer(client: TestClient, caplog) -> None:
    caplog.set_level(logging.INFO, logger="semloc")
    wrong = []
    for case in CASES:
        r = client.request(case.method, case.url, **case.kwargs)
        got = (
            r.json()["error"]["code"]
            if r.status_code >= 400 and r.content.startswith(b"{")
            else None
        )
        allowed = case.status if isinstance(case.status, tuple) else (case.status,)
        if r.status_code not in allowed or (case.code and got != case.code):
            wrong.append(f"{case.name}: {r.status_code} {r.text[:200]}")
        elif r.status_code >= 400:
            assert r.json()["error"]["message"], case.name
        good_request(client)
    assert not wrong, "\n".join(wrong)
    assert not [rec for rec in caplog.records if rec.exc_info or rec.levelno >= logging.ERROR]


def test_a_lone_surrogate_in_text_is_replaced_and_counted(client: TestClient) -> None:
    body = b'{"posts": [{"id": "s", "text": "bad \\ud800 text"}, {"text": "bad \\ufffd text"}]}'
    r = client.post("/predict/batch", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    first, second = r.json()["predictions"]
    assert first["text_replaced_characters"] == 1 and second["text_replaced_characters"] == 0
    # replaced by U+FFFD: the same prediction as the text written with U+FFFD
    assert first["probabilities"] == pytest.approx(second["probabilities"], abs=1e-6)
    r = client.post("/predict/batch", content=body.replace(b'"s"', b'"\\udfff"'),
                    headers={"content-type": "application/json"})  # fmt: skip
    assert r.status_code == 422 and r.json()["error"] == {
        "code": "invalid_field", "field": "id", "post": 0,
        "message": r.json()["error"]["message"],
    }  # fmt: skip


def test_the_default_image_policy_is_text_only(tmp_path_factory, tiny_backbone) -> None:
    from semloc.serve.app import create_app

    _, _, run = shared_served_run(tmp_path_factory, tiny_backbone)
    app = create_app(run, ServeConfig(device="cpu"), backbone=tiny_backbone, warm_up=False)
    assert ServeConfig().image_policy == "text-only"
    with TestClient(app) as c:
        r = c.post("/predict", data={"text": "x"}, files={"image": ("a.png", b"junk", "image/png")})
        assert r.status_code == 200 and r.json()["image"]["outcome"] == "not_an_image"
        r = c.post("/predict?image_policy=fail", data={"text": "x"},
                   files={"image": ("a.png", b"junk", "image/png")})  # fmt: skip
        assert r.status_code == 422
        schema = c.get("/openapi.json").json()["paths"]["/predict"]["post"]["parameters"]
        assert {p["name"]: p["schema"].get("default") for p in schema}[
            "image_policy"
        ] == "text-only"


# ----------------------------------------------------------------------------------------------
# a real uvicorn: timeouts, connection cap, heads, disconnects


READ_TIMEOUT = 0.5


@pytest.fixture(scope="module")
def live(app: Any) -> Iterator[tuple[str, int]]:
    import uvicorn

    from semloc.serve.server import server_config

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = ServeConfig(host="127.0.0.1", port=port, read_timeout_s=READ_TIMEOUT,
                      keep_alive_timeout_s=0.5, max_connections=100, max_header_bytes=16_384)  # fmt: skip
    # log_config=None: records reach pytest's caplog instead of uvicorn's own handlers
    server = uvicorn.Server(server_config(app, cfg, log_config=None, log_level="info"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield "127.0.0.1", port
    finally:
        server.should_exit = True
        thread.join(10)


def _connect(addr: tuple[str, int], data: bytes = b"") -> socket.socket:
    s = socket.create_connection(addr, timeout=5)
    if data:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(data)  # may be refused before it is all sent
    return s


def _read_until_closed(s: socket.socket, limit_s: float = 5.0) -> bytes:
    """Everything the server sends until it closes the connection (bounded by limit_s)."""
    s.settimeout(0.1)
    out, deadline = b"", time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return out
        if not chunk:
            return out
        out += chunk
    raise AssertionError(f"the server kept the connection open for {limit_s} s; got {out[:200]!r}")


def _live_good_request(addr: tuple[str, int]) -> None:
    import httpx

    with httpx.Client(base_url=f"http://{addr[0]}:{addr[1]}", timeout=10) as c:
        good_request(c)


def test_stalled_clients_are_cut_off_after_the_read_timeout(live) -> None:
    head = (b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n"
            b"Content-Type: multipart/form-data; boundary=x\r\n\r\n")  # fmt: skip
    stalls = {
        "nothing sent": b"",
        "half a request line": b"POST /pre",
        "headers without their end": b"GET /labels HTTP/1.1\r\nHost: t\r\n",
        "headers, then a stalled body": head + b"--x\r\n",
    }
    for name, data in stalls.items():
        socks = [_connect(live, data) for _ in range(15)]  # 60 stalled connections in all
        started = time.monotonic()
        for s in socks:
            answer = _read_until_closed(s, limit_s=READ_TIMEOUT + 4)
            assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), (name, answer[:100])
            s.close()
        assert time.monotonic() - started < READ_TIMEOUT + 4, name
        if data:
            assert answer.startswith(b"HTTP/1.1 408") and b"serve.read_timeout_s" in answer, name
    _live_good_request(live)


def test_a_slow_but_steady_client_is_still_cut_off(live) -> None:
    """The deadline is for the whole request, not for each byte (a trickle is a stall too)."""
    s = _connect(live, b"GET /labels HTTP/1.1\r\n")
    started = time.monotonic()
    try:
        while time.monotonic() - started < READ_TIMEOUT + 3:
            s.sendall(b"X-Slow: 1\r\n")
            time.sleep(0.05)
        raise AssertionError("a trickling client was never cut off")
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        s.close()
    _live_good_request(live)


def test_an_idle_keep_alive_connection_is_closed(live) -> None:
    s = _connect(live, b"GET /labels HTTP/1.1\r\nHost: t\r\n\r\n")
    answer = _read_until_closed(s, limit_s=4)
    assert answer.startswith(b"HTTP/1.1 200") and b'"labels"' in answer
    s.close()


def test_raw_protocol_abuse_is_a_4xx_or_a_closed_connection(live, caplog) -> None:
    caplog.set_level(logging.INFO)
    for name, data, status in raw_cases():
        s = _connect(live, data)
        answer = _read_until_closed(s, limit_s=READ_TIMEOUT + 4)
        s.close()
        assert not answer.startswith(b"HTTP/1.1 5"), (name, answer[:200])
        if status is not None:
            assert answer.startswith(b"HTTP/1.1 %d" % status), (name, answer[:200])
        _live_good_request(live)
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def test_a_client_that_vanishes_mid_body_is_one_log_line(live, caplog) -> None:
    caplog.set_level(logging.INFO)
    body = multipart([field_part("text", b"x" * 100)])
    s = _connect(live, b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n"
                 b"Content-Type: multipart/form-data; boundary=" + BOUNDARY.encode() + b"\r\n\r\n"
                 + body[:50])  # fmt: skip
    time.sleep(0.05)
    s.close()
    deadline = time.monotonic() + 5
    while not any("disconnected" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, [r.getMessage() for r in caplog.records]
        time.sleep(0.02)
    _live_good_request(live)
    gone = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert len(gone) == 1 and gone[0].levelno == logging.INFO
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def test_the_connection_cap_answers_503_beyond_it(app) -> None:
    import httpx
    import uvicorn

    from semloc.serve.server import server_config

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = ServeConfig(host="127.0.0.1", port=port, max_connections=3, read_timeout_s=2)
    server = uvicorn.Server(server_config(app, cfg, log_config=None, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline
        time.sleep(0.02)
    try:
        idle = [_connect(("127.0.0.1", port), b"GET /lab") for _ in range(3)]
        r = httpx.get(f"http://127.0.0.1:{port}/labels", timeout=5)
        assert r.status_code == 503
        for s in idle:
            s.close()
        deadline = time.monotonic() + 5
        while httpx.get(f"http://127.0.0.1:{port}/labels", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "the cap did not free up"
            time.sleep(0.05)
    finally:
        server.should_exit = True
        thread.join(10)


# ----------------------------------------------------------------------------------------------
# memory: the battery against `semloc serve` in its own process


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
def test_the_server_memory_is_back_after_the_battery(
    tmp_path_factory: pytest.TempPathFactory, tiny_backbone, tiny_clip_dir, tmp_path: Path
) -> None:
    """The whole battery (three rounds) against a real `semloc serve`: no 5xx, no traceback in
    its log, and its RSS after the battery within 10% of its RSS before (after warm-up)."""
    import httpx

    import semloc

    _, _, run = shared_served_run(tmp_path_factory, tiny_backbone)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = {**LIMITS, "device": "cpu", "image_policy": "fail", "read_timeout_s": 1}
    cmd = [sys.executable, "-m", "semloc", "serve", str(run), "--host", "127.0.0.1",
           "--port", str(port), "--backbone", str(tiny_clip_dir),
           *(f"serve.{k}={v}" for k, v in settings.items())]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(semloc.__file__).parents[1])}
    log = tmp_path / "serve.log"
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    url, addr = f"http://127.0.0.1:{port}", ("127.0.0.1", port)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "semloc serve did not start"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        with httpx.Client(base_url=url, timeout=30) as client:
            for _ in range(20):
                good_request(client)
            start = _rss_bytes(proc.pid)
            statuses: list[int] = []
            for _ in range(3):
                for case in (c for c in CASES if not c.asgi_only):
                    statuses.append(
                        client.request(case.method, case.url, **case.kwargs).status_code
                    )
                    good_request(client)
                for _, data, _ in raw_cases():
                    _read_until_closed(_connect(addr, data), limit_s=6)
                stalled = [_connect(addr, b"POST /predict HTTP/1.1\r\n") for _ in range(60)]
                for s in stalled:
                    _read_until_closed(s, limit_s=6)
                    s.close()
                good_request(client)
            end = _rss_bytes(proc.pid)
    finally:
        proc.terminate()
        proc.wait(20)
    text = log.read_text()
    assert not [s for s in statuses if s >= 500]
    assert "Traceback" not in text, text[-3000:]
    print(f"\nserver RSS: {start / 2**20:.1f} MiB after warm-up, {end / 2**20:.1f} MiB after "
          f"{len(statuses)} hostile requests + {3 * len(raw_cases())} raw + 180 stalled "
          f"connections ({(end / start - 1) * 100:+.1f}%)")  # fmt: skip
    assert end <= 1.10 * start
