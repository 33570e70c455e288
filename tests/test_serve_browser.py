"""The web page in a real headless Chromium: type a text, attach a photo, read the predicted label.

Needs Playwright (the Python package) and Debian's chromium at /usr/bin/chromium
(`scripts/install-browser.sh` installs it); skipped with the reason when either is missing.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from clip_fixtures import random_image
from test_serve import shared_served_run

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def chromium() -> str:
    """The browser executable; checked before any server or run is built."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as e:  # missing, or installed without its driver
        pytest.skip(f"Playwright is not usable ({e}); pip install playwright")
    if Path(CHROMIUM).exists():
        return CHROMIUM
    found = shutil.which("chromium")
    if found is None:
        pytest.skip(f"no Chromium at {CHROMIUM}: run scripts/install-browser.sh (as root)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(chromium: str, tmp_path_factory: pytest.TempPathFactory, tiny_backbone) -> Iterator[str]:
    """uvicorn on 127.0.0.1 in a thread, serving the shared tiny run; yields the base URL."""

    import uvicorn

    from semloc.config import ServeConfig
    from semloc.serve.app import create_app
    from semloc.serve.server import server_config

    _, _, run = shared_served_run(tmp_path_factory, tiny_backbone)
    app = create_app(run, ServeConfig(device="cpu"), backbone=tiny_backbone)
    port = _free_port()
    # the settings `semloc serve` runs with (timeouts, connection cap, head limit)
    config = server_config(app, ServeConfig(host="127.0.0.1", port=port), log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(10)


def test_page_predicts_a_post_with_an_image(chromium: str, server: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    photo = tmp_path / "photo.png"
    random_image(3, (120, 80)).save(photo)
    requested: list[str] = []
    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        except Exception as e:  # a chromium that cannot start here is an environment problem
            pytest.skip(f"Chromium at {chromium} does not start: {e}")
        try:
            page = browser.new_page()
            page.on("request", lambda req: requested.append(req.url))
            page.goto(server + "/")
            page.fill("#text", "sunny afternoon in the park, dogs and a frisbee")
            page.set_input_files("#image", str(photo))
            page.click("#submit")
            page.wait_for_selector("#result:not([hidden])", timeout=20_000)
            label = page.inner_text("#label").strip()
            bars = page.locator("#bars li").count()
            heatmap_shown = page.is_visible("#heatmap")
            # the canvas holds the photo with the heat-map: not a blank surface
            painted = page.evaluate(
                """() => {
                    const c = document.getElementById('heatmap');
                    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                    let n = 0;
                    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
                    return n / (c.width * c.height);
                }"""
            )
            error_hidden = page.is_hidden("#error")
        finally:
            browser.close()
    import httpx

    labels = httpx.get(server + "/labels").json()["labels"]
    assert label in labels
    assert bars == len(labels)
    assert heatmap_shown and painted > 0.9
    assert error_hidden
    # everything the page loaded came from this server (or is the user's photo, as a blob: URL)
    local = (server + "/", f"blob:{server}/")
    assert requested and all(url.startswith(local) for url in requested), requested
