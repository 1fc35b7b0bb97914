"""Image payloads → upright RGB arrays, one decoder for every flow that reads photos or
screenshots, with one set of error codes for the errors table."""

import base64
import binascii
import io
import math
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Pillow refuses (DecompressionBombError) any image over twice this many pixels when it reads the
# header, and warns above it. Its default (~89 MP) is an accident of history; this is the same
# 100 MP cap `decode_image` enforces itself, set on purpose. The setting is process-wide: every
# Pillow user in the process gets the same, deliberate bomb limit.
MAX_IMAGE_PIXELS = 100_000_000
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


class ImageDecodeError(ValueError):
    """An image payload that is not a usable image. `error_type` is a stable short code:
    invalid_base64, empty_image, invalid_image, truncated_image or image_too_large."""

    def __init__(self, error_type: str, message: str):
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message


@dataclass(frozen=True)
class DecodedImage:
    """An upright RGB frame and what its file said about it."""

    rgb: np.ndarray                   # (h, w, 3) uint8, upright; smaller than width x height
                                      # when decode_image was given max_side
    width: int                        # the upright original's size
    height: int
    format: str                       # jpeg, png, ...
    exif_orientation: int | None      # 2-8 when it was rotated/flipped, else None
    focal_length_35mm: float | None   # EXIF FocalLengthIn35mmFilm


def image_bytes(data: str | bytes | bytearray | memoryview | None) -> bytes:
    """The bytes of an image payload: base64 text (a `data:` URL prefix allowed,
    docs/messages.md#binary-payloads), or the bytes themselves (what a stage reads back from the
    blob store)."""
    if isinstance(data, str):
        text = data.split(",", 1)[1] if data.startswith("data:") and "," in data else data
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ImageDecodeError("invalid_base64", "image_data is not valid base64") from None
    elif isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
    elif data is None or (isinstance(data, float) and math.isnan(data)):
        raise ImageDecodeError("empty_image", "image_data is missing")
    else:
        raise ImageDecodeError("invalid_image", f"image_data is {type(data).__name__}, "
                                                "expected base64 text or bytes")
    if not raw:
        raise ImageDecodeError("empty_image", "image_data has 0 bytes")
    return raw


def decode_image(data: str | bytes | None, max_pixels: int = MAX_IMAGE_PIXELS,
                 max_side: int | None = None) -> DecodedImage:
    """An image payload → upright (EXIF-transposed) RGB, or ImageDecodeError.

    The pixel count is checked from the header before any pixel is decoded (and Pillow's own bomb
    check refuses anything over 2 x MAX_IMAGE_PIXELS, whatever `max_pixels` says). With
    `max_side`, a JPEG is decoded at the smallest DCT scale (1/2, 1/4, 1/8) that keeps its longer
    side at or above 3/4 of `max_side`: a 4032 x 3024 photo decodes at 2016 x 1512, ~3x faster,
    and needs no resize after.
    """
    raw = image_bytes(data)
    with warnings.catch_warnings():
        # Sizes are checked explicitly below; Pillow's warning band adds nothing.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(raw))
        except Image.DecompressionBombError as error:
            raise ImageDecodeError("image_too_large", str(error)) from None
        except UnidentifiedImageError:
            raise ImageDecodeError("invalid_image", f"{len(raw)} bytes that no image decoder "
                                                    "recognises") from None
        except Exception as error:  # noqa: BLE001 - Pillow raises many types for broken headers
            raise ImageDecodeError("invalid_image", f"unreadable image header: {error}") from None
        width, height = image.size
        if width <= 0 or height <= 0:
            raise ImageDecodeError("invalid_image", f"image is {width}x{height}")
        if width * height > max_pixels:
            raise ImageDecodeError("image_too_large", f"{width}x{height} is over {max_pixels} pixels")
        fmt = (image.format or "unknown").lower()
        try:
            exif = image.getexif()
            orientation = int(exif.get(0x0112) or 1)
            focal = exif.get_ifd(0x8769).get(0xA405)  # Exif IFD: FocalLengthIn35mmFilm
            if max_side and fmt == "jpeg":
                longer = max(width, height)
                reduce = max(d for d in (1, 2, 4, 8) if d == 1 or longer / d >= 0.75 * max_side)
                if reduce > 1:
                    image.draft("RGB", (math.ceil(width / reduce), math.ceil(height / reduce)))
            image.load()
            if 2 <= orientation <= 8:
                image = ImageOps.exif_transpose(image)
            if image.mode != "RGB":
                image = image.convert("RGB")
            rgb = np.ascontiguousarray(np.asarray(image))
        except Image.DecompressionBombError as error:  # a later frame/tile (TIFF, ICO) can be one
            raise ImageDecodeError("image_too_large", str(error)) from None
        except OSError as error:
            kind = "truncated_image" if "truncated" in str(error).lower() else "invalid_image"
            raise ImageDecodeError(kind, f"{fmt}: {error}") from None
        except (ValueError, SyntaxError, EOFError) as error:
            raise ImageDecodeError("invalid_image", f"{fmt}: {error}") from None
    try:
        focal_mm = float(focal) if focal else None
    except (TypeError, ValueError):
        focal_mm = None
    rotated = orientation in (5, 6, 7, 8)
    return DecodedImage(rgb, height if rotated else width, width if rotated else height, fmt,
                        orientation if 2 <= orientation <= 8 else None, focal_mm)
