"""Form bodies of POST /predict split into parts: multipart/form-data and url-encoded.

Multipart is parsed here with python-multipart rather than by Starlette's form parser, which
decodes undecodable text as Latin-1 without a word and accepts a body that ends before its
closing boundary (a cut-off upload answered 200). Here a body without its closing boundary, a
part without a name, or text that is not valid in its declared charset (UTF-8 unless said) is a
4xx; what the parts mean is checked in `semloc.serve.parsing`.
"""

from __future__ import annotations

import codecs
import urllib.parse
from dataclasses import dataclass
from typing import Any

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from semloc.config import ServeConfig
from semloc.serve.errors import ApiError

FORM_FIELDS = ("text", "image")


@dataclass
class FormPart:
    name: str
    data: bytes
    filename: str | None = None  # None: a plain field, not a file
    content_type: str = ""
    charset: str | None = None


def decode_field(raw: bytes, charset: str, name: str) -> str:
    """A form field's bytes as text, strictly (a 400 naming the field when they are not)."""
    try:
        return raw.decode(charset)
    except UnicodeDecodeError as e:
        raise ApiError(
            400, "invalid_encoding", f"form field {name!r} is not valid {charset} text (byte "
            f"{e.start}); send UTF-8", field=name,
        ) from None  # fmt: skip


def _charset(value: bytes | str | None, default: str) -> str:
    if not value:
        return default
    name = value.decode("latin-1") if isinstance(value, bytes) else value
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise ApiError(415, "unsupported_charset", f"unknown charset {name!r}") from None


def parse_multipart(body: bytes, header: str, cfg: ServeConfig) -> list[FormPart]:
    """The parts of a complete multipart/form-data body, or ApiError (400 when malformed)."""
    _, params = parse_options_header(header)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "malformed_multipart", "multipart/form-data without a boundary")
    charset = _charset(params.get(b"charset"), "utf-8")
    parts: list[FormPart] = []
    headers: list[tuple[bytes, bytes]] = []
    state: dict[str, Any] = {"name": b"", "value": b"", "data": [], "ended": False}
    max_part = max(cfg.max_upload_bytes, 4 * cfg.max_text_chars + 1024)

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["name"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        headers.append((state["name"].lower(), state["value"]))
        state["name"] = state["value"] = b""

    def on_part_begin() -> None:
        headers.clear()
        state["data"] = []

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state["data"].append(data[start:end])

    def on_part_end() -> None:
        if len(parts) >= 2 * len(FORM_FIELDS):
            raise ApiError(422, "too_many_fields", "more form parts than 'text' and 'image'")
        head = dict(headers)
        _, disp = parse_options_header(head.get(b"content-disposition", b""))
        if b"name" not in disp:
            raise ApiError(400, "malformed_multipart", "a part without a Content-Disposition name")
        ctype, ctype_params = parse_options_header(head.get(b"content-type", b""))
        filename = disp.get(b"filename")
        parts.append(
            FormPart(
                name=decode_field(disp[b"name"], charset, "name"),
                data=b"".join(state["data"]),
                filename=None if filename is None else filename.decode(charset, "replace"),
                content_type=ctype.decode("latin-1").lower(),
                charset=_charset(ctype_params.get(b"charset"), charset),
            )
        )
        if len(parts[-1].data) > max_part:
            raise ApiError(
                413, "upload_too_large", f"form part {parts[-1].name!r} is over {max_part} bytes"
            )

    def on_end() -> None:
        state["ended"] = True

    callbacks = dict(
        on_header_field=on_header_field, on_header_value=on_header_value,
        on_header_end=on_header_end, on_part_begin=on_part_begin, on_part_data=on_part_data,
        on_part_end=on_part_end, on_end=on_end,
    )  # fmt: skip
    try:
        parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
        parser.write(body)
        parser.finalize()
    except FormParserError as e:
        raise ApiError(400, "malformed_multipart", f"cannot parse the form: {e}") from None
    if not state["ended"]:
        raise ApiError(
            400, "malformed_multipart", "the multipart body ends before its closing boundary "
            "(a cut-off upload?)",
        )  # fmt: skip
    return parts


def parse_urlencoded(body: bytes, cfg: ServeConfig) -> list[FormPart]:
    """`text=...` (UTF-8, percent-encoded) as form parts; refused when not valid."""
    try:
        pairs = urllib.parse.parse_qsl(
            body.decode("ascii"), keep_blank_values=True, strict_parsing=bool(body),
            encoding="utf-8", errors="strict", max_num_fields=2 * len(FORM_FIELDS),
        )  # fmt: skip
    except (UnicodeDecodeError, ValueError) as e:
        raise ApiError(400, "malformed_form", f"the url-encoded form is not valid: {e}") from None
    return [FormPart(name, value.encode("utf-8"), charset="utf-8") for name, value in pairs]
