"""A battery of hostile requests for `semloc serve`, with the answer each must get.

Every field of both request formats at odd sizes, nestings, encodings and types; image bombs
and broken images; wrong, missing and malformed content types and lengths; compressed bodies;
odd methods and paths. Each case is an httpx request (so the same list runs against the ASGI
app in-process and against a real uvicorn over TCP) and the status it must get: never a 5xx,
and a 200 only where the request is in fact valid. `raw_cases` are what only a real socket can
send (huge heads, garbage request lines, lengths h11 itself parses).

The limits the statuses assume are LIMITS (small, so each one is easy to cross).
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

LIMITS = dict(
    max_upload_bytes=200_000,
    max_image_pixels=1_000_000,
    max_text_chars=300,
    max_batch_posts=8,
    max_batch_request_bytes=2_000_000,
)
BOUNDARY = "hostileboundary"


@dataclass
class Case:
    name: str
    status: int | tuple[int, ...]  # the status, or the statuses allowed
    method: str = "POST"
    url: str = "/predict"
    kwargs: dict[str, Any] = field(default_factory=dict)
    code: str | None = None  # the error code, when the answer is a JSON 4xx
    asgi_only: bool = False  # an HTTP client will not send it (raw_cases has its like)


def png_header_claiming(width: int, height: int) -> bytes:
    """A few dozen bytes whose header promises width x height pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))


def image_bytes(fmt: str, size: tuple[int, int] = (40, 30), mode: str = "RGB") -> bytes:
    img = Image.new(mode, size, 200 if mode in ("L", "I;16") else (200, 120, 40))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def multipart(
    parts: list[tuple[bytes, bytes]], *, boundary: str = BOUNDARY, close: bool = True
) -> bytes:
    """A multipart body from (part headers, data); `close=False` leaves out the final boundary."""
    out = b""
    for head, data in parts:
        out += b"--" + boundary.encode() + b"\r\n" + head + b"\r\n\r\n" + data + b"\r\n"
    return out + (b"--" + boundary.encode() + b"--\r\n" if close else b"")


def field_part(name: str, data: bytes, extra: bytes = b"") -> tuple[bytes, bytes]:
    return b'Content-Disposition: form-data; name="' + name.encode() + b'"' + extra, data


def file_part(
    data: bytes, ctype: bytes = b"image/png", filename: bytes = b"a.png", name: bytes = b"image"
) -> tuple[bytes, bytes]:
    head = b'Content-Disposition: form-data; name="' + name + b'"; filename="' + filename + b'"'
    return head + b"\r\nContent-Type: " + ctype, data


def form(body: bytes, ctype: str | None = None, **headers: str) -> dict[str, Any]:
    h = {"content-type": ctype or f"multipart/form-data; boundary={BOUNDARY}"}
    return {"content": body, "headers": h | headers}


def batch(posts: Any, **top: Any) -> dict[str, Any]:
    return {"content": json.dumps({"posts": posts, **top}).encode(),
            "headers": {"content-type": "application/json"}}  # fmt: skip


def raw_json(text: str | bytes) -> dict[str, Any]:
    body = text.encode() if isinstance(text, str) else text
    return {"content": body, "headers": {"content-type": "application/json"}}


def cases() -> list[Case]:
    png = image_bytes("PNG")
    good_b64 = base64.b64encode(png).decode()
    text = field_part("text", b"a photo")
    max_text = LIMITS["max_text_chars"]
    deep = 100_000
    out: list[Case] = []

    def add(name: str, status: int | tuple[int, ...], code: str | None = None, **kw: Any) -> None:
        out.append(Case(name, status, code=code, **kw))

    # -- POST /predict: the text field -----------------------------------------------------
    for label, data, status, code in [
        ("empty", b"", 200, None),
        ("at the limit", b"a" * max_text, 200, None),
        ("one over the limit", b"a" * (max_text + 1), 422, "text_too_long"),
        ("100k characters", "é".encode() * 50_000, 422, "text_too_long"),
        ("invalid UTF-8", b"bad \xff\xfe text", 400, "invalid_encoding"),
        ("a UTF-8-encoded surrogate", b"bad \xed\xa0\x80 text", 400, "invalid_encoding"),
        ("an overlong UTF-8 slash", b"\xc0\xaf", 400, "invalid_encoding"),
        ("a cut-off UTF-8 sequence", "caf\u00e9".encode()[:-1], 400, "invalid_encoding"),
        ("NUL and control characters", b"a\x00b\x07c\x1b[31m", 200, None),
        ("zero-width, RTL and emoji", "\u200b\u202e\u2066 \U0001f600\u0301".encode(), 200, None),
    ]:
        add(f"text: {label}", status, code, kwargs=form(multipart([field_part("text", data)])))
    add(
        "text: Latin-1 declared on the part",
        200,
        kwargs=form(
            multipart(
                [
                    field_part(
                        "text", b"caf\xe9", b"\r\nContent-Type: text/plain; charset=iso-8859-1"
                    )
                ]
            )
        ),
    )
    add(
        "text: an unknown charset",
        415,
        "unsupported_charset",
        kwargs=form(
            multipart([field_part("text", b"x", b"\r\nContent-Type: text/plain; charset=klingon")])
        ),
    )
    add(
        "text: an unknown charset on the request",
        415,
        "unsupported_charset",
        kwargs=form(
            multipart([text]), f"multipart/form-data; boundary={BOUNDARY}; charset=klingon"
        ),
    )
    add(
        "text: sent as a file",
        422,
        "invalid_field",
        kwargs=form(multipart([file_part(b"hello", b"text/plain", b"t.txt", b"text")])),
    )
    add("text: twice", 422, "repeated_field", kwargs=form(multipart([text, text])))
    add("text: missing", 422, "missing_field", kwargs=form(multipart([file_part(png)])))

    # -- POST /predict: the multipart structure ---------------------------------------------
    add(
        "multipart: no closing boundary",
        400,
        "malformed_multipart",
        kwargs=form(multipart([text], close=False)),
    )
    add(
        "multipart: no closing boundary after an image",
        400,
        "malformed_multipart",
        kwargs=form(multipart([text, file_part(png)], close=False)),
    )
    add(
        "multipart: cut in the middle of a part",
        400,
        "malformed_multipart",
        kwargs=form(multipart([text, file_part(png)])[:150]),
    )
    add(
        "multipart: another boundary in the body",
        400,
        "malformed_multipart",
        kwargs=form(multipart([text], boundary="other")),
    )
    add(
        "multipart: no boundary parameter",
        400,
        "malformed_multipart",
        kwargs=form(multipart([text]), "multipart/form-data"),
    )
    add(
        "multipart: an empty boundary",
        400,
        "malformed_multipart",
        kwargs=form(multipart([text]), "multipart/form-data; boundary="),
    )
    long_b = "b" * 200
    add(
        "multipart: a 200-character boundary",
        200,
        kwargs=form(multipart([text], boundary=long_b), f"multipart/form-data; boundary={long_b}"),
    )
    add("multipart: empty body", 400, "malformed_multipart", kwargs=form(b""))
    add(
        "multipart: only the closing boundary",
        422,
        "missing_field",
        kwargs=form(f"--{BOUNDARY}--\r\n".encode()),
    )
    add(
        "multipart: LF line ends",
        400,
        "malformed_multipart",
        kwargs=form(multipart([text]).replace(b"\r\n", b"\n")),
    )
    add(
        "multipart: a part without a name",
        400,
        "malformed_multipart",
        kwargs=form(multipart([(b"Content-Disposition: form-data", b"x")])),
    )
    add(
        "multipart: a part without headers",
        400,
        "malformed_multipart",
        kwargs=form(multipart([(b"", b"x")])),
    )
    add(
        "multipart: a 20 KB part header",
        400,
        "malformed_multipart",
        kwargs=form(multipart([field_part("text", b"x", b"; pad=" + b"p" * 20_000)])),
    )
    add(
        "multipart: an unknown field",
        422,
        "unknown_field",
        kwargs=form(multipart([text, field_part("image_path", b"/etc/passwd")])),
    )
    add(
        "multipart: 50 parts",
        422,
        "too_many_fields",
        kwargs=form(multipart([field_part(f"f{i}", b"x") for i in range(50)])),
    )
    add(
        "multipart: a field name in invalid UTF-8",
        400,
        "invalid_encoding",
        kwargs=form(multipart([(b'Content-Disposition: form-data; name="te\xffxt"', b"x")])),
    )
    add(
        "multipart: upper-case media type",
        200,
        kwargs=form(multipart([text]), f"MULTIPART/FORM-DATA; boundary={BOUNDARY}"),
    )
    add(
        "multipart: nested multipart/mixed as the image",
        415,
        "wrong_content_type",
        kwargs=form(multipart([text, file_part(multipart([text]), b"multipart/mixed")])),
    )

    # -- POST /predict: the image part ------------------------------------------------------
    for label, data, ctype, status, code in [
        ("PNG", png, b"image/png", 200, None),
        ("GIF", image_bytes("GIF"), b"image/gif", 200, None),
        ("WebP", image_bytes("WEBP"), b"image/webp", 200, None),
        ("1x1 pixel", image_bytes("PNG", (1, 1)), b"image/png", 200, None),
        ("16-bit greyscale", image_bytes("PNG", (20, 20), "I;16"), b"image/png", 200, None),
        ("no content type", png, b"", 200, None),
        ("octet-stream", png, b"application/octet-stream", 200, None),
        (
            "bomb 100000x100000",
            png_header_claiming(100_000, 100_000),
            b"image/png",
            413,
            "image_too_large",
        ),
        (
            "bomb 65536x65536",
            png_header_claiming(65_536, 65_536),
            b"image/png",
            413,
            "image_too_large",
        ),
        # too_large (413) for its resized size, or bad_shape (422) for its aspect ratio
        ("a 100000x1 strip", png_header_claiming(100_000, 1), b"image/png", (413, 422), None),
        ("a 1x5000 strip", png_header_claiming(1, 5000), b"image/png", (413, 422), None),
        ("zero width", png_header_claiming(0, 10), b"image/png", 422, "invalid_image"),
        ("truncated PNG", png[: len(png) // 2], b"image/png", 422, "invalid_image"),
        ("garbage", b"\x89PNG\r\n\x1a\n" + b"\xff" * 100, b"image/png", 422, "invalid_image"),
        ("text as image/png", b"hello world", b"image/png", 422, "invalid_image"),
        (
            "SVG",
            b"<svg xmlns='http://www.w3.org/2000/svg'/>",
            b"image/svg+xml",
            415,
            "unsupported_image_format",
        ),
        ("gzip bytes", gzip.compress(b"\0" * 1_000_000), b"image/png", 422, "invalid_image"),
        ("text/plain", png, b"text/plain", 415, "wrong_content_type"),
        ("application/json", png, b"application/json", 415, "wrong_content_type"),
        ("empty file", b"", b"image/png", 422, "invalid_image"),
    ]:
        add(
            f"image: {label}",
            status,
            code,
            kwargs=form(multipart([text, file_part(data, ctype)])),
        )
    add(
        "image: a traversal filename",
        200,
        kwargs=form(multipart([text, file_part(png, filename=b"../../../../etc/passwd")])),
    )
    add(
        "image: a filename in invalid UTF-8 with a NUL",
        200,
        kwargs=form(multipart([text, file_part(png, filename=b"\xff\x00.png")])),
    )
    add(
        "image: a 10 KB filename (over the part-header limit)",
        400,
        "malformed_multipart",
        kwargs=form(multipart([text, file_part(png, filename=b"a" * 10_000)])),
    )
    add(
        "image: a plain field, not a file",
        422,
        "image_not_a_file",
        kwargs=form(multipart([text, field_part("image", b"/etc/passwd")])),
    )
    add(
        "image: twice",
        422,
        "repeated_field",
        kwargs=form(multipart([text, file_part(png), file_part(png)])),
    )
    add(
        "image: garbage with image_policy=text-only",
        200,
        url="/predict?image_policy=text-only",
        kwargs=form(multipart([text, file_part(b"garbage")])),
    )
    add(
        "image: over the upload limit",
        413,
        "upload_too_large",
        kwargs=form(multipart([text, file_part(b"\xff\xd8" + b"\0" * 300_000)])),
    )

    # -- POST /predict: content types, encodings and lengths --------------------------------
    add("no Content-Type", 415, "unsupported_media_type", kwargs={"content": b"text=x"})
    add("text/plain body", 415, "unsupported_media_type", kwargs=form(b"x", "text/plain"))
    add("JSON to /predict", 415, "unsupported_media_type", kwargs=raw_json('{"text": "x"}'))
    add(
        "a 10 KB Content-Type",
        415,
        "unsupported_media_type",
        kwargs=form(b"x", "x/" + "y" * 10_000),
    )
    add(
        "gzip-encoded body (a bomb)",
        415,
        "unsupported_content_encoding",
        kwargs=form(
            gzip.compress(multipart([text]) + b"\0" * 5_000_000), **{"content-encoding": "gzip"}
        ),
    )
    add(
        "urlencoded text",
        200,
        kwargs=form(b"text=hello+there%21", "application/x-www-form-urlencoded"),
    )
    add("urlencoded: empty text", 200, kwargs=form(b"text=", "application/x-www-form-urlencoded"))
    add(
        "urlencoded: invalid percent-encoded UTF-8",
        400,
        "malformed_form",
        kwargs=form(b"text=%ff%fe", "application/x-www-form-urlencoded"),
    )
    add(
        "urlencoded: an encoded surrogate",
        400,
        "malformed_form",
        kwargs=form(b"text=%ed%a0%80", "application/x-www-form-urlencoded"),
    )
    add(
        "urlencoded: raw non-ASCII bytes",
        400,
        "malformed_form",
        kwargs=form("text=café".encode(), "application/x-www-form-urlencoded"),
    )
    add(
        "urlencoded: a field without =",
        400,
        "malformed_form",
        kwargs=form(b"text", "application/x-www-form-urlencoded"),
    )
    add(
        "urlencoded: 100 fields",
        400,
        "malformed_form",
        kwargs=form(
            b"&".join(b"f%d=x" % i for i in range(100)), "application/x-www-form-urlencoded"
        ),
    )
    add(
        "urlencoded: text twice",
        422,
        "repeated_field",
        kwargs=form(b"text=a&text=b", "application/x-www-form-urlencoded"),
    )
    add(
        "urlencoded: empty body",
        422,
        "missing_field",
        kwargs=form(b"", "application/x-www-form-urlencoded"),
    )
    for label, value, status, code in [
        ("letters", "abc", 400, "bad_content_length"),
        ("negative", "-5", 400, "bad_content_length"),
        ("5000 digits", "9" * 5000, 413, "upload_too_large"),
        ("two different values", None, 400, "bad_content_length"),
    ]:
        headers = [("content-type", f"multipart/form-data; boundary={BOUNDARY}")]
        headers += (
            [("content-length", "3"), ("content-length", "4")]
            if value is None
            else [("content-length", value)]
        )
        add(
            f"Content-Length: {label}",
            status,
            code,
            asgi_only=True,
            kwargs={"content": b"abc", "headers": headers},
        )

    # -- query parameters -------------------------------------------------------------------
    good_form = form(multipart([text]))
    for query, status in [
        ("explain=perhaps", 422), ("image_policy=bogus", 422), ("explain=" + "x" * 20_000, 422),
        ("image_policy=%ed%a0%80", 422), ("explain=true&explain=false", 200),
        ("explain=%00", 422), ("unknown=1", 200), ("explain=1", 200),
    ]:  # fmt: skip
        add(
            f"query: {query[:40]}",
            status,
            "invalid_parameter" if status == 422 else None,
            url=f"/predict?{query}",
            kwargs=good_form,
        )

    # -- POST /predict/batch ----------------------------------------------------------------
    def b(name: str, status: int, code: str | None, kwargs: dict[str, Any]) -> None:
        add(f"batch: {name}", status, code, url="/predict/batch", kwargs=kwargs)

    b("arrays nested 100000 deep", 400, "invalid_json", raw_json("[" * deep + "]" * deep))
    b(
        "objects nested 100000 deep",
        400,
        "invalid_json",
        raw_json('{"a":' * deep + "1" + "}" * deep),
    )
    b(
        "a post nested 100000 deep",
        400,
        "invalid_json",
        raw_json('{"posts": [' + "[" * deep + "]" * deep + "]}"),
    )
    b(
        "an id nested 500 deep",
        422,
        "invalid_field",
        raw_json('{"posts": [{"text": "x", "id": ' + "[" * 500 + "]" * 500 + "}]}"),
    )
    b(
        "an id of 5000 digits",
        422,
        "invalid_field",
        raw_json('{"posts": [{"text": "x", "id": ' + "7" * 5000 + "}]}"),
    )
    b(
        "an id of -5000 digits",
        422,
        "invalid_field",
        raw_json('{"posts": [{"text": "x", "id": -' + "7" * 5000 + "}]}"),
    )
    b(
        "an id of 5000 digits in a string",
        422,
        "invalid_field",
        batch([{"text": "x", "id": "7" * 5000}]),
    )
    b("an integer id", 200, None, batch([{"text": "x", "id": 42}]))
    b(
        "a float id of 5000 digits",
        422,
        "invalid_field",
        raw_json('{"posts": [{"text": "x", "id": 1.' + "5" * 5000 + "}]}"),
    )
    b(
        "an id of 1e999999",
        422,
        "invalid_field",
        raw_json('{"posts": [{"text": "x", "id": 1e999999}]}'),
    )
    b(
        "a lone surrogate in the id",
        422,
        "invalid_field",
        raw_json('{"posts": [{"text": "x", "id": "a\\ud800b"}]}'),
    )
    b("a NUL in the id", 422, "invalid_field", batch([{"text": "x", "id": "a\x00b"}]))
    for label, value in [("a list", ["a"]), ("an object", {"a": 1}), ("true", True),
                         ("a float", 1.5)]:  # fmt: skip
        b(f"an id that is {label}", 422, "invalid_field", batch([{"text": "x", "id": value}]))
    b("an id that is NaN", 422, "invalid_field", raw_json('{"posts": [{"text": "x", "id": NaN}]}'))
    b(
        "a lone surrogate in the text",
        200,
        None,
        raw_json('{"posts": [{"text": "bad \\ud800 text"}]}'),
    )
    b(
        "a surrogate pair written as two escapes",
        200,
        None,
        raw_json('{"posts": [{"text": "ok \\ud83d\\ude00"}]}'),
    )
    for label, value in [("a number", 5), ("a list", ["x"]), ("null", None), ("true", True),
                         ("an object", {"t": "x"})]:  # fmt: skip
        status, code = (422, "missing_field") if value is None else (422, "invalid_field")
        b(f"text that is {label}", status, code, batch([{"text": value}]))
    b("text that is Infinity", 422, "invalid_field", raw_json('{"posts": [{"text": Infinity}]}'))
    b("text over the limit", 422, "text_too_long", batch([{"text": "a" * (max_text + 1)}]))
    b("text missing", 422, "missing_field", batch([{"image": good_b64}]))
    for label, value in [("a number", 5), ("a list", [good_b64]), ("true", True),
                         ("an object", {"b64": good_b64})]:  # fmt: skip
        b(f"an image that is {label}", 422, "invalid_field", batch([{"text": "x", "image": value}]))
    for label, value in [("invalid base64", "@@@not base64@@@"),
                         ("base64 with line breaks", good_b64[:40] + "\n" + good_b64[40:]),
                         ("non-ASCII", "é" * 8), ("a server path", "/etc/passwd"),
                         ("a web URL", "https://example.org/cat.jpg")]:  # fmt: skip
        b(f"an image in {label}", 422, "invalid_base64", batch([{"text": "x", "image": value}]))
    b(
        "an image data: URL without a comma",
        422,
        "invalid_image",
        batch([{"text": "x", "image": "data:image/png;base64"}]),
    )
    b(
        "an image that is a bomb",
        413,
        "image_too_large",
        batch(
            [
                {
                    "text": "x",
                    "image": base64.b64encode(png_header_claiming(100_000, 100_000)).decode(),
                }
            ]
        ),
    )
    b(
        "two bad images",
        422,
        "invalid_images",
        batch(
            [
                {"text": "x", "image": base64.b64encode(b"garbage").decode()},
                {"text": "y", "image": base64.b64encode(png_header_claiming(10, 0)).decode()},
            ]
        ),
    )
    for label, posts in [("an object", {"text": "x"}), ("a string", "x"), ("null", None),
                         ("a number", 3)]:  # fmt: skip
        b(f"posts that is {label}", 422, "missing_field", batch(posts))
    b("posts empty", 422, "empty_batch", batch([]))
    b("posts one over the limit", 413, "too_many_posts", batch([{"text": "x"}] * 9))
    b("100000 posts", 413, "too_many_posts", batch([{"text": ""}] * 100_000))
    b("a post that is a string", 422, "invalid_field", batch(["x"]))
    b("a post that is null", 422, "invalid_field", batch([None]))
    for label, body in [("a list", "[]"), ("a string", '"posts"'), ("a number", "5"),
                        ("null", "null"), ("empty", ""), ("whitespace", "  \n "),
                        ("not JSON", "{posts: oops"), ("trailing garbage", '{"posts": []} x'),
                        ("a bare NaN", "NaN")]:  # fmt: skip
        status, code = (
            (400, "invalid_json")
            if label in ("empty", "whitespace", "not JSON", "trailing garbage")
            else (422, "missing_field")
        )
        b(f"a body that is {label}", status, code, raw_json(body))
    b(
        "an unknown top-level key with a lone surrogate",
        422,
        "unknown_field",
        raw_json('{"posts": [{"text": "x"}], "\\udc80": 1}'),
    )
    b(
        "an unknown post key of 1 MB",
        422,
        "unknown_field",
        batch([{"text": "x", "k" * 1_000_000: 1}]),
    )
    b(
        "duplicate keys (the last wins, as in JSON parsers)",
        200,
        None,
        raw_json('{"posts": "x", "posts": [{"text": "x"}]}'),
    )
    b(
        "a UTF-8 BOM",
        200,
        None,
        raw_json(b"\xef\xbb\xbf" + json.dumps({"posts": [{"text": "x"}]}).encode()),
    )
    b("UTF-16 JSON", 200, None, raw_json(json.dumps({"posts": [{"text": "x"}]}).encode("utf-16")))
    b("invalid UTF-8 in a string", 400, "invalid_json", raw_json(b'{"posts": [{"text": "\xff"}]}'))
    b("over the request limit", 413, "upload_too_large", batch([{"text": "x" * 2_100_000}]))
    b(
        "text/plain",
        415,
        "unsupported_media_type",
        {"content": b'{"posts": []}', "headers": {"content-type": "text/plain"}},
    )
    b(
        "NDJSON",
        415,
        "unsupported_media_type",
        {"content": b'{"text": "x"}\n', "headers": {"content-type": "application/x-ndjson"}},
    )
    b("multipart", 415, "unsupported_media_type", form(multipart([text])))
    b(
        "gzip-encoded",
        415,
        "unsupported_content_encoding",
        {
            "content": gzip.compress(json.dumps({"posts": [{"text": "x"}]}).encode()),
            "headers": {"content-type": "application/json", "content-encoding": "gzip"},
        },
    )

    # -- methods and paths ------------------------------------------------------------------
    for method, url, status in [
        ("GET", "/predict", 405), ("PUT", "/predict", 405), ("DELETE", "/labels", 405),
        ("OPTIONS", "/predict", 405), ("POST", "/health", 405), ("GET", "/nope", 404),
        ("GET", "/static/%2e%2e/app.py", 404), ("GET", "/static/../../etc/passwd", 404),
        ("GET", "/%C3%A9%00", 404), ("GET", "/" + "a" * 10_000, 404), ("GET", "/labels", 200),
        ("GET", "/static/app.js", 200),
    ]:  # fmt: skip
        add(f"{method} {url[:40]}", status, method=method, url=url)
    add(
        "POST /labels with a 1 MB body",
        413,
        "upload_too_large",
        url="/labels",
        kwargs={"content": b"x" * 1_000_000},
    )
    return out


# requests only a real socket can send: (name, raw bytes, the status the answer must have, or
# None for any answer but a 5xx)
def raw_cases() -> list[tuple[str, bytes, int | None]]:
    good_head = b"POST /predict HTTP/1.1\r\nHost: t\r\n"
    return [
        ("a 100 KB header", b"GET /labels HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 100_000
         + b"\r\n\r\n", 431),
        ("2000 headers", b"GET /labels HTTP/1.1\r\nHost: t\r\n"
         + b"".join(b"X-%d: 1\r\n" % i for i in range(2000)) + b"\r\n", 431),
        ("a 100 KB request line", b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 431),
        ("a Content-Length of 5000 digits", good_head + b"Content-Length: " + b"9" * 5000
         + b"\r\n\r\n", 400),
        ("a negative Content-Length", good_head + b"Content-Length: -1\r\n\r\n", 400),
        ("a Content-Length in letters", good_head + b"Content-Length: abc\r\n\r\n", 400),
        ("two Content-Lengths", good_head + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
         400),
        ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 64 + b"\r\n\r\n", 400),
        ("a header without a colon", b"GET /labels HTTP/1.1\r\nHost: t\r\nbroken\r\n\r\n", 400),
        ("bad chunked encoding", good_head + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        ("a NUL in a header", b"GET /labels HTTP/1.1\r\nHost: t\r\nX: a\x00b\r\n\r\n", 400),
        ("an unknown HTTP version", b"GET /labels HTTP/7.0\r\nHost: t\r\n\r\n", None),
    ]  # fmt: skip
