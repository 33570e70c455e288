"""Safe image loading: every way an image file can be bad gets a named reason instead of a crash.

Reasons (the keys counted in an extraction manifest):

    missing             the file does not exist
    unreadable          it exists but cannot be read (a directory, no permission, I/O error)
    empty_file          zero bytes
    not_an_image        no image decoder recognises it (e.g. a text file named .jpg)
    unsupported_format  a real image in a format we do not decode (HEIC, PSD, EPS, ICO, PDF, ...):
                        decoders for rare formats are attack surface, and CLIP saw none of them
    too_large           width x height exceeds the pixel limit (decompression bombs); checked on
                        the header, before a single pixel is decoded
    truncated           the file ends before the image data does
    corrupt             the header parses but the pixel data does not decode

Only the first frame of animated or multi-page images is used, as the Hugging Face processor does.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

IMAGE_REASONS = (
    "missing",
    "unreadable",
    "empty_file",
    "not_an_image",
    "unsupported_format",
    "too_large",
    "truncated",
    "corrupt",
)

# the formats photos on social media arrive in (the JPEG decoder also opens phones' multi-picture
# MPO files); AVIF where this Pillow build decodes it
Image.init()
SUPPORTED_FORMATS = tuple(
    f for f in ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "AVIF") if f in Image.OPEN
)

# signatures of image formats Pillow cannot open at all, so that a phone's HEIC photo is reported
# as an unsupported format rather than as "not an image"
_FOREIGN_SIGNATURES = (
    (4, b"ftypheic", "HEIC"),
    (4, b"ftypheix", "HEIC"),
    (4, b"ftyphevc", "HEIC"),
    (4, b"ftypmif1", "HEIF"),
    (4, b"ftypavif", "AVIF"),
    (0, b"%PDF", "PDF"),
    (0, b"<svg", "SVG"),
    (0, b"<?xml", "SVG/XML"),
    (0, b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (0, b"\xff\x0a", "JPEG XL"),
)


class ImageProblem(Exception):
    """An image that cannot be used; `reason` is one of IMAGE_REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        assert reason in IMAGE_REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _sniff_foreign(head: bytes) -> str | None:
    stripped = head.lstrip()
    for offset, magic, name in _FOREIGN_SIGNATURES:
        blob = stripped if name.startswith("SVG") else head
        if blob[offset : offset + len(magic)] == magic:
            return name
    return None


def _open_checked(fp: BinaryIO, max_pixels: int) -> Image.Image:
    """Open (header only), check format and size, then decode. Raises ImageProblem."""
    try:
        with warnings.catch_warnings():
            # our own limit below is the one that applies; Pillow's warning threshold is not
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(fp, formats=SUPPORTED_FORMATS)
    except Image.DecompressionBombError as e:
        raise ImageProblem("too_large", str(e)) from None
    except UnidentifiedImageError:
        fp.seek(0)
        head = fp.read(64)
        foreign = _sniff_foreign(head)
        if foreign is None:
            fp.seek(0)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    other = Image.open(fp)  # header only: which format is it?
                foreign = other.format or "unknown"
            except Exception:
                foreign = None
        if foreign is not None:
            raise ImageProblem(
                "unsupported_format",
                f"{foreign} images are not supported (use one of {', '.join(SUPPORTED_FORMATS)})",
            ) from None
        raise ImageProblem("not_an_image", "no image decoder recognises this file") from None
    except (OSError, SyntaxError, ValueError) as e:
        # a recognised header that is itself malformed
        raise ImageProblem("corrupt", f"unreadable image header ({e})") from None
    width, height = img.size
    if width <= 0 or height <= 0:
        raise ImageProblem("corrupt", f"image has size {width}x{height}")
    if width * height > max_pixels:
        raise ImageProblem(
            "too_large",
            f"{width}x{height} = {width * height} pixels exceeds the limit of {max_pixels} "
            "(extract.max_image_pixels)",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img.load()
    except Image.DecompressionBombError as e:
        raise ImageProblem("too_large", str(e)) from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as e:
        msg = str(e) or type(e).__name__
        if "truncated" in msg or isinstance(e, EOFError):
            raise ImageProblem("truncated", msg) from None
        raise ImageProblem("corrupt", msg) from None
    return img


def load_image(path: str | Path, *, max_pixels: int) -> Image.Image:
    """Decode the image file at `path` (first frame), or raise ImageProblem saying why not."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageProblem("missing", f"no file at {path}") from None
    except OSError as e:
        raise ImageProblem("unreadable", f"{path}: {e.strerror or e}") from None
    if not os.path.isfile(path):
        raise ImageProblem("unreadable", f"{path} is not a regular file")
    if st.st_size == 0:
        raise ImageProblem("empty_file", f"{path} is empty (0 bytes)")
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below, after decoding
    except OSError as e:
        raise ImageProblem("unreadable", f"{path}: {e.strerror or e}") from None
    with f:
        try:
            return _open_checked(f, max_pixels)
        except OSError as e:  # I/O errors while reading
            raise ImageProblem("unreadable", f"{path}: {e}") from None


def load_image_bytes(data: bytes, *, max_pixels: int) -> Image.Image:
    """Decode an in-memory image (an upload), or raise ImageProblem saying why not."""
    if not data:
        raise ImageProblem("empty_file", "the image is empty (0 bytes)")
    return _open_checked(io.BytesIO(data), max_pixels)


def check_image(img: Image.Image, *, max_pixels: int) -> Image.Image:
    """Validate an already-decoded PIL image handed over in memory."""
    width, height = img.size
    if width <= 0 or height <= 0:
        raise ImageProblem("corrupt", f"image has size {width}x{height}")
    if width * height > max_pixels:
        raise ImageProblem(
            "too_large",
            f"{width}x{height} = {width * height} pixels exceeds the limit of {max_pixels}",
        )
    return img


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB the way the Hugging Face image processor makes it: transparency is composited onto
    white (not dropped to black), so a logo on a transparent background keeps its look."""
    has_alpha = "A" in img.getbands() or img.info.get("transparency") is not None
    if img.mode == "RGB" and not has_alpha:
        return img  # most photos: skip a full-size copy
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")
