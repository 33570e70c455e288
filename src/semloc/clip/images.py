"""Safe image loading: every way an image file can be bad gets a named reason instead of a crash.

Reasons (the keys counted in an extraction manifest):

    missing             the file does not exist
    unreadable          it exists but cannot be read (a directory, no permission, I/O error)
    empty_file          zero bytes
    not_an_image        no image decoder recognises it (e.g. a text file named .jpg)
    unsupported_format  a real image in a format we do not decode (HEIC, PSD, EPS, ICO, PDF, ...):
                        decoders for rare formats are attack surface, and CLIP saw none of them
    too_large           width x height exceeds the pixel limit (decompression bombs), or one side
                        exceeds MAX_IMAGE_SIDE; checked on the header, before a pixel is decoded
    bad_shape           one side is more than MAX_ASPECT_RATIO times the other (a 100000x1 strip
                        would cost CLIP's resize gigabytes); checked on the header too
    truncated           the file ends before the image data does
    corrupt             the header parses but the pixel data does not decode

Only the first frame of animated or multi-page images is used, as the Hugging Face processor does.

A decoded image is what the camera meant (`DECODING`, recorded in every feature store's
preprocessing): the EXIF orientation of phone photos is applied, and 16-bit or 32-bit greyscale
(PNG/TIFF modes I;16, I, F) is scaled to 8 bits by the range of its type rather than clipped
(clipping turns a 16-bit photo almost entirely white).
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_REASONS = (
    "missing",
    "unreadable",
    "empty_file",
    "not_an_image",
    "unsupported_format",
    "too_large",
    "bad_shape",
    "truncated",
    "corrupt",
)

# work bounds checked on the header: CLIP's resize makes the short side ~224 px, so a long side
# more than MAX_ASPECT_RATIO times the short one only costs memory (and is not a photo)
MAX_ASPECT_RATIO = 50.0
MAX_IMAGE_SIDE = 65_535
ORIENTATION_TAG = 0x0112  # the largest side JPEG and WebP can encode
# how decoded images are normalised before CLIP's preprocessing (part of the features' identity)
DECODING = {"exif_orientation": True, "high_bit_depth": "scaled by type range to 8 bits"}

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
    _check_size(img, max_pixels)
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
    return normalise_decoded(img)


def _check_size(img: Image.Image, max_pixels: int) -> None:
    width, height = img.size
    if width <= 0 or height <= 0:
        raise ImageProblem("corrupt", f"image has size {width}x{height}")
    if width * height > max_pixels:
        raise ImageProblem(
            "too_large",
            f"{width}x{height} = {width * height} pixels exceeds the limit of {max_pixels} "
            "(extract.max_image_pixels)",
        )
    if max(width, height) > MAX_IMAGE_SIDE:
        raise ImageProblem("too_large", f"{width}x{height}: a side exceeds {MAX_IMAGE_SIDE} pixels")
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ImageProblem(
            "bad_shape",
            f"{width}x{height}: one side is more than {MAX_ASPECT_RATIO:g} times the other",
        )


def normalise_decoded(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation and bring high-bit-depth greyscale to 8 bits by range
    (see `DECODING`). Raises ImageProblem for an image mode that cannot become RGB."""
    try:
        # most photos have no orientation tag (or "upright"): skip exif_transpose's full copy
        if img.getexif().get(ORIENTATION_TAG, 1) != 1:
            img = ImageOps.exif_transpose(img)
    except Exception:  # a malformed EXIF block: the pixels are still usable as stored
        pass
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(img).astype(np.float64)
        finite = a[np.isfinite(a)]
        if img.mode == "F":  # float images: [0, 1] by convention, else their own range
            in_unit = finite.size and finite.min() >= 0 and finite.max() <= 1
            lo, hi = (0.0, 1.0) if in_unit or not finite.size else (finite.min(), finite.max())
        elif img.mode == "I" and finite.size and (finite.min() < 0 or finite.max() > 65535):
            lo, hi = finite.min(), finite.max()  # a true 32-bit image: its own range
        else:  # 16-bit samples (PNG/TIFF): the type's range
            lo, hi = 0.0, 65535.0
        a = np.nan_to_num(a, nan=lo, posinf=hi, neginf=lo)
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        img = Image.fromarray(np.clip(np.rint((a - lo) * scale), 0, 255).astype(np.uint8))
    try:
        if img.mode not in ("RGB", "RGBA", "L", "LA", "P", "PA", "1", "CMYK", "YCbCr", "La"):
            img = img.convert("RGB")
    except (ValueError, OSError) as e:
        raise ImageProblem("unsupported_format", f"image mode {img.mode} ({e})") from None
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
    """Validate an already-decoded PIL image handed over in memory (and normalise it as a file's
    would be: orientation, bit depth)."""
    _check_size(img, max_pixels)
    return normalise_decoded(img)


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
