"""Decoding a screenshot and preparing the page tesseract reads: orientation, inversion, scale, text regions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pytesseract
from pytesseract import Output

from loom_assets.lazy import LazyModule
from loom_assets.stages import images
from loom_assets.stages.screenshot_ocr.rules import OcrRules

cv2 = LazyModule("cv2")


# -- decoding -------------------------------------------------------------------------------------
def decode_image(data: str | bytes | None, max_pixels: int = OcrRules.max_pixels) -> np.ndarray:
    """An image payload -> upright RGB uint8 (h, w, 3), or ImageDecodeError (`stages.images`)."""
    return images.decode_image(data, max_pixels).rgb


# -- preprocessing --------------------------------------------------------------------------------
Box = tuple[int, int, int, int]  # left, top, width, height


@dataclass(frozen=True)
class Preprocessed:
    """The page tesseract reads and how it relates to the original image."""

    gray: np.ndarray                 # uint8, dark text on light, what tesseract reads
    scale: float                     # gray px per original px (after the orientation fix)
    inverted: bool                   # the whole page was inverted (dark background)
    regions: list[Box]               # text-line regions, original px
    orientation_degrees: int         # clockwise rotation applied before OCR: 0, 90, 180, 270
    original_size: tuple[int, int]   # (width, height) of the upright original
    text_height_px: float            # median glyph height in original px (NaN without glyphs)
    upscaled: bool


def _glyph_height(gray: np.ndarray, rules: OcrRules) -> float:
    """Median height (px) of glyph-sized connected components of the binarised page (text dark)."""
    _, ink = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    count, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    if count <= 1:
        return math.nan
    w, h, area = stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT], stats[1:, cv2.CC_STAT_AREA]
    lo, hi = rules.glyph_height_range
    keep = (h >= lo) & (h <= hi) & (w <= 4 * h) & (area >= 4)
    return float(np.median(h[keep])) if keep.any() else math.nan


def text_regions(gray: np.ndarray, glyph_height: float, rules: OcrRules) -> list[Box]:
    """Line-sized boxes of text in `gray` (its own px): gradient, threshold, horizontal close,
    contours (the classic morphology text detector; polarity does not matter)."""
    grad = cv2.morphologyEx(gray, cv2.MORPH_GRADIENT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    otsu, _ = cv2.threshold(grad, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    _, edges = cv2.threshold(grad, max(otsu, rules.min_edge_contrast), 255, cv2.THRESH_BINARY)
    height = glyph_height if math.isfinite(glyph_height) else 10.0
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (max(3, round(height)), 1))
    closed = cv2.morphologyEx(edges, cv2.MORPH_CLOSE, kernel)
    contours, _ = cv2.findContours(closed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    lo, hi = rules.region_height_range
    boxes = []
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        if not lo * height <= h <= hi * height or w < 0.5 * height:
            continue
        if cv2.countNonZero(edges[y:y + h, x:x + w]) < rules.region_min_fill * w * h:
            continue
        boxes.append((x, y, w, h))
    return sorted(boxes, key=lambda b: (b[1], b[0]))


def _dark_panels(page: np.ndarray, glyph_height: float, rules: OcrRules) -> np.ndarray | None:
    """Mask of the solid dark areas of a light page (a filled button, a dark toolbar or sidebar),
    or None without any.

    The local background is the median over a square twice the glyph height: text strokes are a
    minority of any such square, whichever their polarity, so it is the panel's colour. Dark
    background is then opened with the same square, which drops the few dense spots of bold
    dark text and keeps only areas that can hold a line of text.
    """
    if not math.isfinite(glyph_height):
        return None
    size = max(5, round(rules.panel_size * glyph_height)) | 1  # odd, for the median
    background = cv2.medianBlur(page, size)
    dark = (background < rules.dark_background_level).astype(np.uint8)
    solid = cv2.morphologyEx(dark, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (size, size)))
    return solid.astype(bool) if solid.any() else None


def _resized(gray: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return gray
    h, w = gray.shape
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)


def _osd_rotation(gray: np.ndarray, rules: OcrRules) -> int:
    """Clockwise degrees that make the page upright per tesseract OSD, 0 when unsure or failing."""
    try:
        osd = pytesseract.image_to_osd(gray, config="--psm 0", output_type=Output.DICT,
                                       timeout=rules.timeout_seconds)
    except (pytesseract.TesseractError, RuntimeError):
        return 0  # "Too few characters", or a timeout: leave the page as it is
    if float(osd.get("orientation_conf", 0.0)) < rules.osd_min_confidence:
        return 0
    return int(osd.get("rotate", 0)) % 360


# OpenCV's names, looked up when a page is turned (OpenCV is imported only then).
_ROT90 = {90: "ROTATE_90_CLOCKWISE", 180: "ROTATE_180", 270: "ROTATE_90_COUNTERCLOCKWISE"}


def _unrotate_box(box: Sequence[float], degrees: int, size: tuple[float, float]) -> tuple[float, ...]:
    """A box (left, top, width, height) of the page rotated clockwise by `degrees` -> the same box
    in the page before rotation, whose (width, height) is `size`."""
    x, y, w, h = box
    width, height = size
    if degrees == 90:
        return y, height - x - w, h, w
    if degrees == 180:
        return width - x - w, height - y - h, w, h
    if degrees == 270:
        return width - y - h, x, h, w
    return x, y, w, h


def _rotate_box(box: Sequence[float], degrees: int, size: tuple[float, float]) -> tuple[float, ...]:
    """A box (left, top, width, height) of a page whose (width, height) is `size` -> the same box
    in that page rotated clockwise by `degrees` (the inverse of `_unrotate_box`)."""
    x, y, w, h = box
    width, height = size
    if degrees == 90:
        return height - y - h, x, h, w
    if degrees == 180:
        return width - x - w, height - y - h, w, h
    if degrees == 270:
        return y, width - x - w, h, w
    return x, y, w, h


def preprocess(image: np.ndarray, rules: OcrRules = OcrRules()) -> Preprocessed:
    """Upright RGB (or gray) screenshot -> the page tesseract reads.

    Grayscale; resized to <= rules.max_side; dark-background polarity inverted (the whole page by
    its median, then each solid dark panel, so a dark toolbar or a filled button on a light page
    is inverted too); text regions found; upscaled 2x (cubic) when the text is small.
    """
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    original_h, original_w = gray.shape
    scale = min(1.0, rules.max_side / max(original_h, original_w))
    page = _resized(gray, scale)
    degrees = _osd_rotation(page, rules) if rules.detect_orientation else 0
    if degrees:
        page = cv2.rotate(page, getattr(cv2, _ROT90[degrees]))
    inverted = bool(np.median(page) < rules.dark_background_level)
    if inverted:
        page = 255 - page
    glyph = _glyph_height(page, rules)
    panels = _dark_panels(page, glyph, rules)
    if panels is not None:
        page = np.where(panels, 255 - page, page)
    regions = text_regions(page, glyph, rules)
    upscaled = bool(math.isfinite(glyph) and glyph < rules.small_text_px)
    factor = rules.upscale_factor if upscaled else 1.0
    if upscaled:
        page = _resized(page, factor)
    rotated_size = (page.shape[1] / factor, page.shape[0] / factor)
    unrotated_size = rotated_size if degrees in (0, 180) else rotated_size[::-1]
    original_regions = [
        tuple(round(v / scale) for v in _unrotate_box(box, degrees, unrotated_size)) for box in regions
    ]
    return Preprocessed(
        gray=np.ascontiguousarray(page), scale=scale * factor, inverted=inverted,
        regions=original_regions, orientation_degrees=degrees,
        original_size=(original_w, original_h), text_height_px=glyph / scale,
        upscaled=upscaled,
    )
