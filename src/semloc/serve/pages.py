"""The web page and the offline API docs: static files served from memory, no external host.

GET / is static/index.html (with app.js and style.css); GET /docs renders /openapi.json as a
plain page, because FastAPI's default docs load their scripts from a CDN. Only the files named
in STATIC_FILES exist, so no request path ever reaches the disk.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response

STATIC_DIR = Path(__file__).parent / "static"
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
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
}


def docs_page(schema: dict[str, Any]) -> str:
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


def add_page_routes(app: FastAPI) -> None:
    """GET /, the page's script and style sheet, and /docs."""
    pages = {route: (STATIC_DIR / name).read_bytes() for route, (name, _) in STATIC_FILES.items()}

    def page_route(route: str, media_type: str) -> None:
        async def page() -> Response:
            return Response(pages[route], media_type=media_type, headers=PAGE_HEADERS)

        app.add_api_route(route, page, methods=["GET"], include_in_schema=False)

    for route, (_, media_type) in STATIC_FILES.items():
        page_route(route, media_type)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(docs_page(app.openapi()), headers=PAGE_HEADERS)
