"""Request parsing and validation: request bodies in, `ServePost`s out, or an `ApiError`.

The two formats:

    POST /predict        multipart/form-data: a `text` field (required, may be empty) and an
                         optional `image` file part; or application/x-www-form-urlencoded
                         `text=...` for a text-only post
    POST /predict/batch  application/json {"posts": [{"id"?, "text", "image"?: base64}, ...]}

Each field is checked for its type, size and encoding, and a wrong one is a 4xx naming the field
(and the post, in a batch): nothing is coerced silently. Text follows the posts reader's policy
(`semloc.data.records.clean_text`): a lone surrogate (which JSON escapes allow but UTF-8 and the
tokenizer do not) is replaced by U+FFFD and counted in the answer (`text_replaced_characters`);
bytes that are not valid text in the declared charset are refused. An id must be a string or
an integer (ids are compared, so one is never repaired): a lone surrogate in it, or an integer
with more digits than Python converts, is refused. The server never opens a path or a URL a
client sends: images arrive as bytes.

Form bodies are split into parts by `semloc.serve.forms`.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from PIL import Image

from semloc.clip.backbone import ImagePreprocessing
from semloc.clip.images import ImageProblem, load_image_bytes
from semloc.config import ServeConfig
from semloc.data.records import clean_text, has_lone_surrogate
from semloc.serve.errors import ApiError
from semloc.serve.forms import (
    FORM_FIELDS,
    FormPart,
    decode_field,
    parse_multipart,
    parse_urlencoded,
)
from semloc.serve.predictor import ServePost, crop_box, presize

ImagePolicy = Literal["fail", "text-only"]
IMAGE_CONTENT_TYPES = ("image/", "application/octet-stream")
IMAGE_PROBLEM_STATUS = {
    "too_large": (413, "image_too_large"),
    "unsupported_format": (415, "unsupported_image_format"),
}
MAX_ID_CHARS = 1000  # a post id is an identifier, not a document
POST_KEYS = ("id", "text", "image")


# ----------------------------------------------------------------------------------------------
# fields


def content_type(header: str | None) -> str:
    """The media type of a Content-Type header, lower case, without parameters."""
    return (header or "").split(";")[0].strip().lower()


def check_text(value: Any, cfg: ServeConfig, post: int | None = None) -> tuple[str, int]:
    """(the post's text, characters replaced), or ApiError naming the field."""
    if value is None:
        raise ApiError(
            422, "missing_field", "the post has no 'text' field (it may be empty, not absent)",
            field="text", post=post,
        )  # fmt: skip
    if not isinstance(value, str):
        raise ApiError(
            422, "invalid_field", f"'text' must be a string, not {_kind(value)}", field="text",
            post=post,
        )  # fmt: skip
    if len(value) > cfg.max_text_chars:
        raise ApiError(
            422,
            "text_too_long",
            f"the text has {len(value)} characters; the limit is {cfg.max_text_chars} "
            "(serve.max_text_chars)",
            field="text",
            post=post,
            limit=cfg.max_text_chars,
        )
    return clean_text(value)


class LongInt(str):
    """A JSON integer with more digits than Python converts (kept as its digits)."""


def _parse_int(digits: str) -> int | LongInt:
    return LongInt(digits) if len(digits.lstrip("-")) > 4000 else int(digits)


def check_id(value: Any, post: int | None = None) -> str | None:
    """The post's id as a string (an integer id in its decimal form), or ApiError."""
    if value is None:
        return None
    if isinstance(value, LongInt):
        raise ApiError(
            422, "invalid_field", f"'id' is an integer of {len(value)} digits; send long ids "
            "as strings", field="id", post=post,
        )  # fmt: skip
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ApiError(
            422, "invalid_field", f"'id' must be a string or an integer, not {_kind(value)}",
            field="id", post=post,
        )  # fmt: skip
    if len(value) > MAX_ID_CHARS:
        raise ApiError(
            422, "invalid_field", f"'id' has {len(value)} characters; the limit is "
            f"{MAX_ID_CHARS}", field="id", post=post, limit=MAX_ID_CHARS,
        )  # fmt: skip
    if has_lone_surrogate(value) or "\x00" in value:
        raise ApiError(
            422, "invalid_field", "'id' contains a lone surrogate or a NUL character (not "
            "valid text; ids are never repaired)", field="id", post=post,
        )  # fmt: skip
    return value


def _kind(value: Any) -> str:
    names = {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        list: "a list",
        dict: "an object",
    }
    return names.get(type(value), type(value).__name__)


# ----------------------------------------------------------------------------------------------
# images


def decode_image(
    data: bytes, cfg: ServeConfig, prep: ImagePreprocessing, policy: ImagePolicy, post: int | None
) -> tuple[Image.Image | None, str | None, str | None, dict[str, float] | None]:
    """(image resized for CLIP or None, why it was dropped, detail, crop box). Under policy
    `fail` an unusable image is an ApiError; under `text-only` it is dropped with its reason."""
    if len(data) > cfg.max_upload_bytes:
        problem = ImageProblem(
            "too_large", f"{len(data)} bytes exceeds the limit of {cfg.max_upload_bytes}"
        )
    else:
        try:
            img = load_image_bytes(data, max_pixels=cfg.max_image_pixels)
            check_resized_size(img, prep, cfg.max_image_pixels)
            box = crop_box(prep, img.width, img.height)
            return presize(img, prep), None, None, box
        except ImageProblem as e:
            problem = e
        except Exception as e:  # a decoder bug on one odd upload must not take the server down
            problem = ImageProblem("corrupt", f"{type(e).__name__}: {e}")
    if "pixels" in problem.detail and "serve." not in problem.detail:
        problem.detail = problem.detail.replace(
            "extract.max_image_pixels", "serve.max_image_pixels"
        )
    if policy == "text-only":
        return None, problem.reason, problem.detail, None
    status, code = IMAGE_PROBLEM_STATUS.get(problem.reason, (422, "invalid_image"))
    raise ApiError(
        status, code, f"unusable image: {problem.detail}", field="image", reason=problem.reason,
        post=post,
    )  # fmt: skip


def check_resized_size(img: Image.Image, prep: ImagePreprocessing, max_pixels: int) -> None:
    """Refuse an image whose resize for CLIP would exceed the pixel limit: a 1 x 5000 strip
    is small, but scaled to a short side of 224 it becomes 224 x 1.1 million (gigabytes)."""
    if not prep.do_resize:
        return
    height, width = prep.resized_size(img.height, img.width)
    if height * width > max_pixels:
        raise ImageProblem(
            "too_large",
            f"{img.width}x{img.height} would be resized to {width}x{height} = {width * height} "
            f"pixels for CLIP, over the limit of {max_pixels} (serve.max_image_pixels)",
        )


def _b64_image(value: Any, index: int) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(
            422, "invalid_field", f"'image' must be a base64 string or null, not {_kind(value)}",
            field="image", post=index,
        )  # fmt: skip
    if value.startswith("data:"):  # a data: URL, as a browser's FileReader makes
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ApiError(
            422,
            "invalid_base64",
            "'image' is not valid base64 image bytes (the server never opens paths or URLs; "
            "send the image's bytes)",
            field="image",
            post=index,
        ) from None


# ----------------------------------------------------------------------------------------------
# POST /predict


def check_form_type(header: str) -> str:
    """The media type of a POST /predict body, or the 415 (checked before the body is read)."""
    ctype = content_type(header)
    # url-encoded forms are accepted too, for text-only posts (`curl -d text=...`)
    if ctype not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"POST /predict takes multipart/form-data (a 'text' field and an optional 'image' "
            f"file), not {ctype or 'a body without Content-Type'}; for JSON use "
            "POST /predict/batch",
        )
    return ctype


def parse_single_post(
    body: bytes,
    header: str,
    cfg: ServeConfig,
    prep: ImagePreprocessing,
    explain: bool,
    policy: ImagePolicy,
) -> ServePost:
    """The post of a POST /predict body (decoded image included), or ApiError."""
    if check_form_type(header) == "multipart/form-data":
        parts = parse_multipart(body, header, cfg)
    else:
        parts = parse_urlencoded(body, cfg)
    unknown = sorted({p.name for p in parts} - set(FORM_FIELDS))
    if unknown:
        raise ApiError(
            422,
            "unknown_field",
            f"unknown form field(s) {', '.join(map(repr, unknown))}; send 'text' and an "
            "optional 'image' file (the server never reads paths or URLs)",
            field=unknown[0],
        )
    by_name: dict[str, FormPart] = {}
    for part in parts:
        if part.name in by_name:
            raise ApiError(
                422, "repeated_field", f"'{part.name}' given more than once: one post per "
                "request (use POST /predict/batch for many)", field=part.name,
            )  # fmt: skip
        by_name[part.name] = part
    text_part = by_name.get("text")
    if text_part is not None and text_part.filename is not None:
        raise ApiError(
            422, "invalid_field", "'text' must be a plain form field, not a file", field="text"
        )
    raw_text = None
    if text_part is not None:
        raw_text = decode_field(text_part.data, text_part.charset or "utf-8", "text")
    text, replaced = check_text(raw_text, cfg)
    part = by_name.get("image")
    if part is None:
        return ServePost(text, explain=explain, text_replaced=replaced)
    if part.filename is None:
        raise ApiError(
            422,
            "image_not_a_file",
            "'image' must be an uploaded file part (multipart with a filename), not a "
            "string; the server never opens paths or URLs",
            field="image",
        )
    if part.content_type and not part.content_type.startswith(IMAGE_CONTENT_TYPES):
        raise ApiError(
            415,
            "wrong_content_type",
            f"the 'image' part has content type {part.content_type!r}; send an image "
            "(image/jpeg, image/png, image/webp, ...)",
            field="image",
        )
    if not part.data and not part.filename:  # a browser's empty file input
        return ServePost(text, explain=explain, text_replaced=replaced)
    image, reason, detail, box = decode_image(part.data, cfg, prep, policy, None)
    return ServePost(text, image, reason, detail, explain, None, box, replaced, policy)


# ----------------------------------------------------------------------------------------------
# POST /predict/batch


@dataclass
class BatchEntry:
    post_id: str | None
    text: str
    text_replaced: int
    image: bytes | None


def _load_json(body: bytes) -> Any:
    if body.startswith(codecs.BOM_UTF8):  # as spreadsheet programs and some editors write
        body = body[len(codecs.BOM_UTF8) :]
    try:
        return json.loads(body, parse_int=_parse_int)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {e}") from None
    except RecursionError:
        raise ApiError(
            400, "invalid_json", "the JSON is nested too deeply (a batch is "
            '{"posts": [{...}, ...]})',
        ) from None  # fmt: skip
    except ValueError as e:  # e.g. a float literal too long for the converter
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {e}") from None


def parse_batch_json(body: bytes, cfg: ServeConfig) -> list[BatchEntry]:
    """The posts of a POST /predict/batch body (images still encoded), or ApiError."""
    data = _load_json(body)
    if not isinstance(data, dict) or not isinstance(data.get("posts"), list):
        raise ApiError(
            422, "missing_field", 'the body must be {"posts": [{"text": ..., "image": ...}, ...]}',
            field="posts",
        )  # fmt: skip
    unknown = sorted(set(data) - {"posts"})
    if unknown:
        raise ApiError(
            422, "unknown_field", f"unknown key(s) {str(unknown)[:200]}",
            field=clean_text(unknown[0])[0][:200],
        )  # fmt: skip
    posts = data["posts"]
    if not posts:
        raise ApiError(422, "empty_batch", "'posts' is empty", field="posts")
    if len(posts) > cfg.max_batch_posts:
        raise ApiError(
            413,
            "too_many_posts",
            f"{len(posts)} posts in one request; the limit is {cfg.max_batch_posts} "
            "(serve.max_batch_posts)",
            field="posts",
            limit=cfg.max_batch_posts,
        )
    parsed = []
    for i, post in enumerate(posts):
        if not isinstance(post, dict):
            raise ApiError(
                422, "invalid_field", f"each post must be an object, not {_kind(post)}", post=i
            )
        extra = sorted(set(post) - set(POST_KEYS))
        if extra:
            raise ApiError(
                422, "unknown_field", f"unknown key(s) {str(extra)[:200]} in a post; give id, "
                "text and image (base64 bytes; the server never reads paths or URLs)",
                field=clean_text(extra[0])[0][:200], post=i,
            )  # fmt: skip
        pid = check_id(post.get("id"), post=i)
        text, replaced = check_text(post.get("text"), cfg, post=i)
        parsed.append(BatchEntry(pid, text, replaced, _b64_image(post.get("image"), i)))
    return parsed


def decode_batch(
    entries: Sequence[BatchEntry],
    cfg: ServeConfig,
    prep: ImagePreprocessing,
    explain: bool,
    policy: ImagePolicy,
) -> list[ServePost]:
    """Decode every post's image; every bad one is reported at once, not only the first."""
    posts, problems = [], []
    for i, e in enumerate(entries):
        if e.image is None:
            posts.append(ServePost(e.text, explain=explain, post_id=e.post_id,
                                   text_replaced=e.text_replaced))  # fmt: skip
            continue
        try:
            image, reason, detail, box = decode_image(e.image, cfg, prep, policy, i)
        except ApiError as err:
            problems.append(err)
            continue
        posts.append(ServePost(e.text, image, reason, detail, explain, e.post_id, box,
                               e.text_replaced, policy))  # fmt: skip
    if len(problems) == 1:
        raise problems[0]
    if problems:
        statuses = {p.status for p in problems}
        raise ApiError(
            statuses.pop() if len(statuses) == 1 else 422,
            "invalid_images",
            f"{len(problems)} post(s) have an unusable image (or pass image_policy=text-only)",
            problems=[p.body()["error"] for p in problems],
        )
    return posts
