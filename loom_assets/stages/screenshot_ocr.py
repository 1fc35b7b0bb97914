"""Screenshot OCR: screenshots -> words, cleaned text, layout blocks and entities
(docs/flows/screenshot_ocr.md, docs/architecture.md#components).

The four stages of docs/flows/screenshot_ocr.md are plain functions here, and `screenshot_text` runs
them over one window of raw screenshot rows (the caller wires it into Dagster and writes table
`screenshot_ocr_text`):

| Loom v2 stage            | here                                                         |
|--------------------------|--------------------------------------------------------------|
| 1 image_preprocessing    | `decode_image`, `preprocess` (+ `dhash`, `near_duplicate`)   |
| 2 text_extraction        | `ocr` (tesseract through pytesseract)                        |
| 3 text_postprocessing    | `text_blocks`, `entities`                                    |
| 4 database_writer        | the flow (rows of `OCR_DTYPES`)                              |

Pixel coordinates in every output are in the upright (EXIF-rotated) original image. Tesseract runs
as a subprocess (pytesseract) with the language setting passed in (`OcrRules.languages`).
Not built (docs/flows/screenshot_ocr.md#differs-from-loom-v2): Loom v2's `spell_check` (no
dictionary that knows app names, URLs and identifiers would do more good than harm on screen text)
and its alternative engines.
"""

from __future__ import annotations

import math
import re
import statistics
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import cv2
import numpy as np
import pandas as pd
import pytesseract
from PIL import Image
from pytesseract import Output

from loom_assets.stages import images
from loom_assets.stages.frames import typed_frame, utc, with_columns
from loom_assets.stages.images import MAX_IMAGE_PIXELS, ImageDecodeError



@dataclass(frozen=True)
class OcrRules:
    """Every number of the screenshot OCR flow, with its reason. Bump `version` when one changes."""

    version: str = "1"

    # -- decoding (docs/messages.md#payload-fields: base64 PNG/JPEG, ~2 MB) --
    # 100 MP: 6x a 6K display (6016x3384 = 20 MP) and ~300 MB of RGB; anything larger is a
    # decompression bomb, not a screenshot.
    max_pixels: int = MAX_IMAGE_PIXELS

    # -- preprocessing (docs/flows/screenshot_ocr.md#text) --
    # Loom v2's enhance_contrast is the polarity normalisation below plus tesseract's own (Otsu)
    # binarisation, which a linear stretch would not change; convert_format: the page goes to
    # tesseract as an uncompressed BMP (lossless, and no PNG encode).
    max_side: int = 2048
    # Screen recordings (`device.video.screen.raw`): one frame every 2 s is read like a
    # screenshot (a UI changes in steps; the near-duplicate check below skips the frames in
    # between that did not change), at most 300 frames (10 minutes) per recording.
    video_frame_seconds: float = 2.0
    max_video_frames: int = 300
    # Upscale 2x (cubic) when the median height of the glyph-sized connected components of the
    # binarised page (<= 2048 px) is under 12 px. Those components are mostly lower-case letters,
    # so the median is about the x-height: ~9 px for the 13-16 px UI fonts of a 1x display,
    # ~15-19 px for a 2x (retina) one. Measured on the test page rendered at 0.8-2x (recall of
    # 120 words, 1x -> 2x): glyphs of 8-9 px 0.958-0.983 -> 0.992-1.000; glyphs of 12-19 px
    # 0.992-1.000 either way, for 25-50 % more time. docs/architecture.md#components: grayscale +
    # 2x + polarity took a synthetic screenshot from 36/45 to 43/45 words. Tesseract's LSTM reads
    # every line rescaled to 36 px; what small text loses is in the page binarisation and layout
    # analysis that run at the source resolution, where 1 px strokes break apart.
    small_text_px: float = 12.0
    upscale_factor: float = 2.0
    # Components counted for that estimate: 3-150 px tall, at most 4x wider than tall (no rules,
    # underlines or panel edges), at least 4 px of ink.
    glyph_height_range: tuple[int, int] = (3, 150)
    # A page whose median gray level is under 128 has a dark background: it is inverted so the
    # text is dark on light, the polarity tesseract's binarisation expects
    # (docs/architecture.md#components) ...
    dark_background_level: int = 128
    # ... and then each solid dark area of the page that can hold a line of text (a filled
    # button, a dark toolbar or sidebar: at least 2x the glyph height in both directions) is
    # inverted too, text included, so light-on-dark UI inside a light page reads as well.
    panel_size: float = 2.0
    # Text regions: morphological gradient (3x3), edges stronger than max(Otsu, 24 gray levels)
    # (24: well above JPEG noise, well below the weakest text contrast a UI uses), closed by a
    # horizontal kernel as wide as the estimated glyph height (joins letters and the ~0.3 em
    # word gaps into line boxes, never joins two lines), then contours -> boxes. Boxes 0.5x-8x
    # the glyph height tall and at least 35 % edge pixels are kept (photos and icons are lower).
    min_edge_contrast: int = 24
    region_height_range: tuple[float, float] = (0.5, 8.0)
    region_min_fill: float = 0.35
    # Orientation: off. A screenshot comes from the framebuffer, which the OS has already rotated
    # to the display's orientation, so it is upright by construction. When on, tesseract's OSD
    # runs on the <= 2048 px page (~0.6-0.8 s, about half an OCR pass) and its answer is taken
    # at orientation_conf >= 1.5 (measured on the test page: right answers at 1.6-8.2 for all four
    # rotations; OSD fails outright on pages with little text, which then stay at 0).
    detect_orientation: bool = False
    osd_min_confidence: float = 1.5

    # -- text extraction (docs/flows/screenshot_ocr.md#text: tesseract, confidence 0.6, 30 s) --
    # A setting (LOOM_SCREENSHOT_OCR_LANGUAGES): Loom v2's "eng, spa" needs tesseract-ocr-spa; the
    # default is what the image installs. Tesseract's own "+" syntax: "eng+spa".
    languages: str = "eng"
    # Page segmentation 11 (sparse text): every run of text is its own line, and `text_blocks`
    # rebuilds paragraphs from the boxes. Same words and time as 3 (fully automatic) on the test
    # screenshots (120/120), but 3's column analysis ran a sidebar item and a paragraph line into
    # one line on the dark-mode page; UI screens are sparse text, not book pages.
    psm: int = 11
    oem: int = 1                       # LSTM only: the engine eng.traineddata is trained for
    min_confidence: float = 0.6        # tesseract conf >= 60
    timeout_seconds: float = 30.0      # docs/flows/screenshot_ocr.md#text timeout

    # -- text postprocessing (docs/flows/screenshot_ocr.md#text) --
    # A line whose median word height is >= 1.3x the page's median word height is a heading
    # (typical UI/web type scales step 1.2-1.5x per level; body text wobbles < 10 % between
    # lines), when it has at most 12 words (a heading is short; a paragraph in a big font is not).
    heading_height_ratio: float = 1.3
    heading_max_words: int = 12
    # A line goes on the block above it when it starts within 0.8 line heights below that
    # block's last line (body line spacing is 1.2-1.6 em, so the gap between two lines' boxes is
    # 0.2-0.6 of a box; paragraph and list gaps are larger), is left- or centre-aligned with it
    # within 1 line height, and the word heights differ by < 25 %. Pieces of one visual line
    # (vertical overlap > 50 %) at most 2 word heights apart are one line (a word space is
    # ~0.5 word heights; table cells and sidebar-to-content gaps are wider).
    paragraph_gap: float = 0.8
    paragraph_indent: float = 1.0
    paragraph_height_tolerance: float = 0.25
    line_join_gap: float = 2.0

    # -- near duplicates (a screenshot every 10 s, mostly of an unchanged screen) --
    # dHash: 9x8 area-averaged thumbnail, 64 bits of "brighter than the cell to its left".
    # Measured on the 1280x800 test page (bits of 64 from the original): cursor blinked 0, JPEG
    # q70 re-encode 0, one word changed 0, heading changed 0, first paragraph replaced 1, both
    # replaced 6, scrolled by a line 7, page without its paragraphs 15, dark mode 44. Each cell
    # averages ~140x100 px, so the hash sees a screen's layout, not its words: "same text" and
    # "changed text" overlap at 0 bits and no threshold separates them. 0 is the least that still
    # catches the static screen (blinks, re-encodes), and the one that copies stale text least
    # often (every change that moves a cell's order is OCR'd). A near duplicate is compared with
    # the device's last OCR'd screenshot (whose text it copies), so drift cannot chain.
    # `skip_near_duplicates` False OCRs every screenshot (~0.7-1.5 s each on one core, 7-15 % of
    # a core per device at one screenshot per 10 s) when stale text is not acceptable.
    duplicate_max_distance: int = 0
    skip_near_duplicates: bool = True

    @property
    def tesseract_config(self) -> str:
        return f"--oem {self.oem} --psm {self.psm}"


# -- row layouts ----------------------------------------------------------------------------------
RAW_COLUMNS = ("window_start", "device_id", "recorded_at", "source_topic", "source_partition",
               "source_offset", "message_id", "image_data", "video_data", "format", "width", "height")

_TIME = "datetime64[us, UTC]"
_HEAD: dict[str, str] = {
    "window_start": _TIME,         # timestamptz NOT NULL: the partition that emitted the row
    "device_id": "str",            # text NOT NULL
    "recorded_at": _TIME,          # timestamptz NOT NULL: the screenshot's time
    "source_topic": "str",         # text NOT NULL: lineage of the raw record
    "source_partition": "Int64",   # integer NOT NULL
    "source_offset": "Int64",      # bigint NOT NULL
    "message_id": "str",           # text
}

OCR_DTYPES: dict[str, str] = {
    **_HEAD,
    "frame_seconds": "float64",    # real: the frame's time in a screen recording; NULL for a screenshot
    "width": "Int64",              # integer: upright decoded image (after EXIF rotation)
    "height": "Int64",             # integer
    "dhash": "Int64",              # bigint: 64-bit dHash as a signed two's-complement integer
    "duplicate_of": "str",         # text: message_id of the OCR'd screenshot whose text was copied; NULL if OCR'd
    "word_count": "Int64",         # integer: words kept (conf >= 0.6)
    "mean_confidence": "float64",  # real: mean word confidence 0-1; NULL without words
    "text": "str",                 # text NOT NULL: cleaned text, blocks separated by a blank line (full-text index)
    "words": "object",             # jsonb: [{text, conf, left, top, width, height, block_num, par_num, line_num, word_num}]
    "blocks": "object",            # jsonb: [{kind: heading|paragraph|list_item, text, box: {left, top, width, height}}]
    "entities": "object",          # jsonb: [{type: url|email|date|phone, value, start, end, normalized}] (GIN index)
    "inverted": "boolean",         # boolean: page had a dark background and was inverted
    "upscaled": "boolean",         # boolean: small text, OCR ran at 2x
    "ocr_languages": "str",        # text: tesseract languages used, e.g. "eng"
}

OCR_ERROR_DTYPES: dict[str, str] = {
    **_HEAD,
    "error_type": "str",           # text: invalid_base64 | empty_image | invalid_image | truncated_image | image_too_large | invalid_video | ocr_failed | ocr_timeout
    "error_message": "str",        # text
}


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


_ROT90 = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


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
        page = cv2.rotate(page, _ROT90[degrees])
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


# -- text extraction ------------------------------------------------------------------------------
def _tesseract_input(gray: np.ndarray) -> Image.Image:
    """`gray` as a PIL image that pytesseract writes as an uncompressed BMP (PNG costs ~0.1 s a page)."""
    image = Image.fromarray(gray)
    image.format = "BMP"
    return image


def ocr(pre: Preprocessed, rules: OcrRules = OcrRules()) -> list[dict[str, Any]]:
    """Words tesseract reads with conf >= rules.min_confidence, boxes in original-image px.

    Each word: {text, conf (0-1), left, top, width, height, block_num, par_num, line_num, word_num}.
    Raises pytesseract.TesseractError (and RuntimeError on timeout) as pytesseract does.
    """
    data = pytesseract.image_to_data(
        _tesseract_input(pre.gray), lang=rules.languages, config=rules.tesseract_config,
        output_type=Output.DICT, timeout=rules.timeout_seconds,
    )
    factor = pre.scale
    page_h, page_w = pre.gray.shape
    size = (page_w, page_h) if pre.orientation_degrees in (0, 180) else (page_h, page_w)
    words = []
    for i, text in enumerate(data["text"]):
        text = (text or "").strip()
        try:
            conf = float(data["conf"][i])
        except (TypeError, ValueError):
            continue
        if not text or conf < rules.min_confidence * 100:
            continue
        box = (data["left"][i], data["top"][i], data["width"][i], data["height"][i])
        x, y, w, h = _unrotate_box(box, pre.orientation_degrees, size)
        words.append({
            "text": text,
            "conf": round(conf / 100.0, 4),
            "left": int(round(x / factor)), "top": int(round(y / factor)),
            "width": max(1, int(round(w / factor))), "height": max(1, int(round(h / factor))),
            "block_num": int(data["block_num"][i]), "par_num": int(data["par_num"][i]),
            "line_num": int(data["line_num"][i]), "word_num": int(data["word_num"][i]),
        })
    return words


# -- text postprocessing --------------------------------------------------------------------------
# A line's first token that marks a list item: bullet glyphs, and what tesseract reads small round
# bullets as («, », °, ©, +), or an enumerator: 1. 2) (3) a. b)
_BULLET = re.compile(r"^(?:[•·▪◦‣∙●○■□►▸▶✓✔✗*+«»°©\-–—]|\(?\d{1,3}[.)]|\(?[a-zA-Z][.)])$")
_BULLET_GLYPH = re.compile(r"^[•·▪◦‣∙●○■□►▸▶✓✔✗*+«»°©\-–—]$")
# Tokens made only of these are cursor bars, borders, scroll thumbs and button edges read as text.
_NOISE = re.compile(r"^[|¦_~`^'\"‘’“”.,:;!()\[\]{}]+$")
_HYPHENATED = re.compile(r"[A-Za-zÀ-ÿ]{2,}-$")


def _clean(text: str) -> str:
    """NFKC (ligatures, full-width forms), no control characters, single spaces."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(c for c in text if unicodedata.category(c)[0] != "C")
    return re.sub(r"\s+", " ", text).strip()


@dataclass
class _Line:
    words: list[dict]
    left: float
    top: float
    right: float
    bottom: float
    word_height: float  # median word height: steadier than the box (bullets, descenders)

    @property
    def height(self) -> float:
        return self.bottom - self.top

    @property
    def text(self) -> str:
        return " ".join(w["text"] for w in self.words)


def _line(words: list[dict]) -> _Line:
    words = sorted(words, key=lambda w: w["left"])
    return _Line(
        words=words,
        left=min(w["left"] for w in words), top=min(w["top"] for w in words),
        right=max(w["left"] + w["width"] for w in words),
        bottom=max(w["top"] + w["height"] for w in words),
        word_height=float(statistics.median(w["height"] for w in words)),
    )


def _similar(a: float, b: float, rules: OcrRules) -> bool:
    return abs(a - b) <= rules.paragraph_height_tolerance * max(a, b)


def _same_line(a: _Line, b: _Line, rules: OcrRules) -> bool:
    """`b` goes on `a` to its right: they overlap vertically by > 50 % and the gap between them is
    at most rules.line_join_gap word heights."""
    overlap = min(a.bottom, b.bottom) - max(a.top, b.top)
    gap = b.left - a.right
    return (overlap > 0.5 * min(a.height, b.height) and _similar(a.word_height, b.word_height, rules)
            and -0.5 * a.word_height <= gap <= rules.line_join_gap * max(a.word_height, b.word_height))


def _lines(words: Iterable[Mapping[str, Any]], rules: OcrRules) -> list[_Line]:
    """Visual lines: tesseract's lines with noise tokens dropped, cut where a gap is wider than
    rules.line_join_gap word heights (a line tesseract ran across two columns), and pieces of one
    visual line that tesseract split joined. In tesseract's order."""
    groups: dict[tuple[int, int, int], list[dict]] = {}
    for word in words:
        text = _clean(str(word["text"]))
        if not text or _NOISE.match(text):
            continue
        key = (int(word["block_num"]), int(word["par_num"]), int(word["line_num"]))
        groups.setdefault(key, []).append({**word, "text": text})
    pieces: list[_Line] = []
    for group in groups.values():
        group = sorted(group, key=lambda w: w["left"])
        height = float(statistics.median(w["height"] for w in group))
        start = 0
        for i in range(1, len(group) + 1):
            if i == len(group) or (group[i]["left"] - group[i - 1]["left"] - group[i - 1]["width"]
                                   > rules.line_join_gap * height):
                pieces.append(_line(group[start:i]))
                start = i
    lines: list[_Line] = []
    for piece in pieces:
        for i, line in enumerate(lines):
            if _same_line(line, piece, rules) or _same_line(piece, line, rules):
                lines[i] = _line(line.words + piece.words)
                break
        else:
            lines.append(piece)
    return lines


def _kind(line: _Line, page_height: float, rules: OcrRules) -> str:
    if (line.word_height >= rules.heading_height_ratio * page_height
            and len(line.words) <= rules.heading_max_words):
        return "heading"
    if len(line.words) > 1 and _BULLET.match(line.words[0]["text"]):
        return "list_item"
    return "paragraph"


def _continues(block: Mapping[str, Any], line: _Line, kind: str, rules: OcrRules) -> tuple[float, str] | None:
    """(gap, kind of `line`) when `line` goes on `block` (see `text_blocks`), else None. The kind
    changes for one case: a capitalised line at a list item's text column is the next item,
    whose bullet tesseract did not read."""
    last: _Line = block["lines"][-1]
    unit = max(last.height, line.height)
    gap = line.top - last.bottom
    if not (-0.5 * unit <= gap <= rules.paragraph_gap * unit):
        return None
    if not _similar(last.word_height, line.word_height, rules):
        return None
    aligned = (abs(line.left - last.left) <= rules.paragraph_indent * unit
               or abs((line.left + line.right) - (last.left + last.right)) <= 2 * rules.paragraph_indent * unit)
    if block["kind"] == "heading":
        return (gap, kind) if kind == "heading" and aligned else None
    if kind != "paragraph":
        return None
    if block["kind"] == "list_item":
        item = block["lines"][0]
        text_left = item.words[1]["left"]
        if not item.left + 0.5 * (text_left - item.left) <= line.left <= text_left + rules.paragraph_indent * unit:
            return None
        first = line.words[0]["text"][:1]
        return (gap, "list_item") if first.isupper() or first.isdigit() else (gap, "wrap")
    return (gap, kind) if aligned else None


def _join_lines(lines: Sequence[str]) -> str:
    """Lines of one block -> one string; a word hyphenated at a line end is joined when the next
    line goes on in lower case ("docu-" + "ment" -> "document")."""
    text = ""
    for line in lines:
        if not text:
            text = line
        elif _HYPHENATED.search(text) and line[:1].islower():
            text = text[:-1] + line
        else:
            text = f"{text} {line}"
    return text


def _reading_order(boxes: Sequence[tuple[float, float, float, float]]) -> list[int]:
    """Indexes of (left, top, right, bottom) boxes in reading order: recursive XY-cut. Each group
    is cut along the band of whitespace with the largest area (gap x the group's extent along
    the cut) that crosses it: rows are read top to bottom, columns left to right. Area, not
    width: a sidebar's gutter runs the page's height and beats the row gaps that happen to line
    up across it, while a short header row's wide gaps lose to the gap below it. A group that
    cannot be cut is read top to bottom, then left to right."""
    def cut(group: list[int]) -> list[int]:
        if len(group) <= 1:
            return group
        extent = {axis: max(boxes[i][axis + 2] for i in group) - min(boxes[i][axis] for i in group)
                  for axis in (0, 1)}
        best = None
        for axis in (1, 0):  # 1: cut between rows (a horizontal band), 0: between columns
            spans = sorted((boxes[i][axis], boxes[i][axis + 2]) for i in group)
            reach = spans[0][1]
            for lo, hi in spans[1:]:
                area = (lo - reach) * extent[1 - axis]
                if lo > reach and (best is None or area > best[0]):
                    best = (area, axis, (reach + lo) / 2)
                reach = max(reach, hi)
        if best is None:
            return sorted(group, key=lambda i: (boxes[i][1], boxes[i][0]))
        _, axis, at = best
        before = [i for i in group if boxes[i][axis] < at]
        after = [i for i in group if boxes[i][axis] >= at]
        return cut(before) + cut(after)

    return cut(list(range(len(boxes))))


def text_blocks(words: Sequence[Mapping[str, Any]], rules: OcrRules = OcrRules()) -> dict[str, Any]:
    """OCR words -> {text, blocks: [{kind: heading|paragraph|list_item, text, box}]}.

    Lines are rebuilt from the word boxes (`_lines`) and grouped by geometry, not by tesseract's
    block numbers (on UI screens those join a sidebar item to a paragraph line, or split one
    paragraph into several blocks):
    - a line whose median word height is >= 1.3x the page's median word height and that has
      <= 12 words is a heading;
    - a line whose first token is a bullet (or what tesseract reads a small bullet as) or an
      enumerator (1. 2) a.) starts a list item; the glyph bullet itself is dropped from the text;
      a line under it at its text column goes on it when it starts in lower case (a wrapped
      item) and is the next item when it does not (its bullet unread);
    - a line goes on the block just above it when it starts within 0.8 line heights below that
      block's last line, the word heights differ by < 25 % and it is left- or centre-aligned with
      it within 1 line height (a wrapped list item: indented past its bullet); headings go on only
      headings, list items and paragraphs never go on a heading;
    - a word hyphenated at a line end is joined with the next line's first word when that one
      starts in lower case.
    Blocks are in reading order (XY-cut); `text` is their text separated by blank lines.
    """
    lines = _lines(words, rules)
    if not lines:
        return {"text": "", "blocks": []}
    page_height = float(statistics.median(w["height"] for line in lines for w in line.words))
    blocks: list[dict[str, Any]] = []
    for line in sorted(lines, key=lambda l: (l.top, l.left)):
        kind = _kind(line, page_height, rules)
        if kind == "list_item" and _BULLET_GLYPH.match(line.words[0]["text"]):
            line.words[0] = {**line.words[0], "bullet": True}
        fits = [(fit, i) for i, block in enumerate(blocks)
                if (fit := _continues(block, line, kind, rules)) is not None]
        if fits:
            (_, fit_kind), i = min(fits)
            if fit_kind == "list_item":  # the next item of a list, its bullet unread
                blocks.append({"kind": "list_item", "lines": [line]})
            else:
                blocks[i]["lines"].append(line)
        else:
            blocks.append({"kind": kind, "lines": [line]})
    boxes = [(min(l.left for l in b["lines"]), min(l.top for l in b["lines"]),
              max(l.right for l in b["lines"]), max(l.bottom for l in b["lines"])) for b in blocks]
    out = []
    for i in _reading_order(boxes):
        left, top, right, bottom = boxes[i]
        texts = [" ".join(w["text"] for w in l.words if not w.get("bullet")) for l in blocks[i]["lines"]]
        out.append({
            "kind": blocks[i]["kind"],
            "text": _join_lines(texts),
            "box": {"left": int(left), "top": int(top), "width": int(right - left), "height": int(bottom - top)},
        })
    return {"text": "\n\n".join(b["text"] for b in out), "blocks": out}


# -- entities -------------------------------------------------------------------------------------
_MONTHS = {m: i + 1 for i, m in enumerate(
    ["january", "february", "march", "april", "may", "june", "july", "august", "september",
     "october", "november", "december"])}
_MONTHS.update({m[:3]: i for m, i in list(_MONTHS.items())})
_MONTHS["sept"] = 9
_MONTH = r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24}\b")
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"'`]+", re.IGNORECASE)
_DATES = (
    # ISO 8601 date, optionally with a time: 2024-03-15, 2024-03-15T09:30
    ("iso", re.compile(r"\b(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?\b")),
    # March 15, 2024 / Mar 15 2024 / March 15th, 2024
    ("mdy", re.compile(rf"\b(?P<mon>{_MONTH})\s+(?P<d>\d{{1,2}})(?:st|nd|rd|th)?,?\s+(?P<y>\d{{4}})\b", re.IGNORECASE)),
    # 15 March 2024 / 15th Mar 2024
    ("dmy", re.compile(rf"\b(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\s+(?P<mon>{_MONTH}),?\s+(?P<y>\d{{4}})\b", re.IGNORECASE)),
    # 03/15/2024 (US month first; day first when the first number is > 12), 15.03.2024
    ("numeric", re.compile(r"\b(?P<a>\d{1,2})(?P<sep>[/.])(?P<b>\d{1,2})(?P=sep)(?P<y>\d{4}|\d{2})\b")),
)
# E.164 (+ and 8-15 digits, separators allowed) and US numbers: (415) 555-0132, 415-555-0132,
# 415.555.0132, +1 415 555 0132. A bare 10-digit run is not taken: on screens it is far more
# often an id or an amount than a phone number.
_PHONE = re.compile(
    r"(?<![\w+])(?:"
    r"\+\d{1,3}(?:[\s.-]?\(?\d{1,4}\)?){2,5}"
    r"|(?:1[\s.-])?\(\d{3}\)\s?\d{3}[\s.-]\d{4}"
    r"|(?:1[\s.-])?\d{3}[.-]\d{3}[.-]\d{4}"
    r")(?!\w)"
)
_TRAILING = ".,;:!?)]}'\""


def _date(match: re.Match, kind: str) -> str | None:
    """The matched date as YYYY-MM-DD, None when it is not a real date."""
    g = match.groupdict()
    try:
        if kind == "iso":
            y, m, d = int(g["y"]), int(g["m"]), int(g["d"])
        elif kind in ("mdy", "dmy"):
            y, m, d = int(g["y"]), _MONTHS[g["mon"].rstrip(".").lower()], int(g["d"])
        else:
            a, b, y = int(g["a"]), int(g["b"]), int(g["y"])
            y = y + 2000 if y < 100 else y
            if g["sep"] == "." or a > 12:
                d, m = a, b          # 15.03.2024 (European dots), 15/03/2024
            else:
                m, d = a, b          # 03/15/2024 (US)
        return date(y, m, d).isoformat()
    except (KeyError, ValueError):
        return None


def _phone(value: str) -> str | None:
    """E.164 form of a matched phone number, None when its digit count cannot be one."""
    digits = re.sub(r"\D", "", value)
    if value.startswith("+"):
        return f"+{digits}" if 8 <= len(digits) <= 15 else None
    if len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    return f"+1{digits}" if len(digits) == 10 else None


def entities(text: str) -> list[dict[str, Any]]:
    """URLs, emails, dates and phone numbers in `text`, by position: {type, value, start, end,
    normalized} with text[start:end] == value. Dates normalise to YYYY-MM-DD (ISO, "March 15,
    2024", "15 March 2024", 03/15/2024 US order, 15.03.2024), phones to E.164 (+1 for US
    numbers). A span already taken by an earlier type (email, url, date, phone, in that order)
    is not matched again."""
    found: list[dict[str, Any]] = []
    taken: list[tuple[int, int]] = []

    def add(kind: str, start: int, end: int, normalized: str | None) -> None:
        if any(start < e and s < end for s, e in taken):
            return
        taken.append((start, end))
        found.append({"type": kind, "value": text[start:end], "start": start, "end": end,
                      "normalized": normalized})

    for m in _EMAIL.finditer(text):
        add("email", m.start(), m.end(), m.group().lower())
    for m in _URL.finditer(text):
        value = m.group().rstrip(_TRAILING)
        if value.count("(") > value.count(")") and m.group()[len(value):].startswith(")"):
            value += ")"  # keep a balanced parenthesis (wikipedia-style URLs)
        normalized = value if "://" in value else f"http://{value}"
        add("url", m.start(), m.start() + len(value), normalized)
    for kind, pattern in _DATES:
        for m in pattern.finditer(text):
            iso = _date(m, kind)
            if iso is not None:
                add("date", m.start(), m.end(), iso)
    for m in _PHONE.finditer(text):
        value = m.group().rstrip(_TRAILING + " ")
        e164 = _phone(value)
        if e164 is not None:
            add("phone", m.start(), m.start() + len(value), e164)
    return sorted(found, key=lambda e: (e["start"], e["end"]))


# -- near duplicates ------------------------------------------------------------------------------
_MASK64 = (1 << 64) - 1


def dhash(gray: np.ndarray) -> int:
    """64-bit difference hash (Krawetz): 9x8 area-averaged thumbnail, bit = "brighter than the
    cell to its left", row-major, first bit most significant. Unsigned (0 .. 2**64 - 1).

    The cell means are kept as floats: rounded to uint8, two equal-looking white cells flip
    their bit on JPEG noise (4 bits of 64 on a q70 re-encode of the test page; 0 unrounded).
    """
    if gray.ndim == 3:
        gray = cv2.cvtColor(gray, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(gray.astype(np.float32), (9, 8), interpolation=cv2.INTER_AREA)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def hamming(a: int, b: int) -> int:
    return ((int(a) ^ int(b)) & _MASK64).bit_count()


def near_duplicate(prev_hash: int | None, hash: int, rules: OcrRules = OcrRules()) -> bool:
    """Whether `hash` is within rules.duplicate_max_distance bits of `prev_hash` (either signed or
    unsigned 64-bit); False without a previous hash."""
    if prev_hash is None or pd.isna(prev_hash):
        return False
    return hamming(prev_hash, hash) <= rules.duplicate_max_distance


def signed64(value: int) -> int:
    """An unsigned 64-bit value as the signed int64 a PostgreSQL bigint holds."""
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


# -- the stage --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OcrResult:
    rows: pd.DataFrame      # OCR_DTYPES, one row per decodable screenshot
    errors: pd.DataFrame    # OCR_ERROR_DTYPES, one row per screenshot that could not be read


_COPIED = ("word_count", "mean_confidence", "text", "words", "blocks", "entities", "inverted",
           "upscaled", "ocr_languages")


def page_text(image: np.ndarray, rules: OcrRules = OcrRules()) -> dict[str, Any]:
    """One upright RGB screenshot -> the OCR columns of its row (preprocess, ocr, blocks, entities)."""
    pre = preprocess(image, rules)
    words = ocr(pre, rules)
    degrees, size = pre.orientation_degrees, pre.original_size
    if degrees:  # lay the page out the way it reads, then put the block boxes back
        upright = [{**w, **dict(zip(("left", "top", "width", "height"), _rotate_box(
            (w["left"], w["top"], w["width"], w["height"]), degrees, size)))} for w in words]
        layout = text_blocks(upright, rules)
        for block in layout["blocks"]:
            box = block["box"]
            block["box"] = dict(zip(("left", "top", "width", "height"), (int(v) for v in _unrotate_box(
                (box["left"], box["top"], box["width"], box["height"]), degrees, size))))
    else:
        layout = text_blocks(words, rules)
    return {
        "word_count": len(words),
        "mean_confidence": float(np.mean([w["conf"] for w in words])) if words else math.nan,
        "text": layout["text"],
        "words": words,
        "blocks": layout["blocks"],
        "entities": entities(layout["text"]),
        "inverted": pre.inverted,
        "upscaled": pre.upscaled,
        "ocr_languages": rules.languages,
    }


def missing_languages(rules: OcrRules) -> list[str]:
    """The languages of `rules.languages` ("eng+spa") that this tesseract has no data for."""
    installed = set(pytesseract.get_languages())
    return [lang for lang in rules.languages.split("+") if lang not in installed]


def _is_missing(value: Any) -> bool:
    try:
        return value is None or bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def screen_frames(video: bytes, rules: OcrRules = OcrRules()) -> list[tuple[float, np.ndarray]]:
    """A screen recording's frames every `video_frame_seconds`: (seconds, upright RGB). OpenCV's
    FFmpeg reads from a file, so the bytes go through a temporary one. Raises ImageDecodeError
    (`invalid_video`) when no frame can be read."""
    with tempfile.NamedTemporaryFile(suffix=".video") as file:
        file.write(video)
        file.flush()
        capture = cv2.VideoCapture(file.name)
        try:
            fps = capture.get(cv2.CAP_PROP_FPS)
            step = max(1, round(fps * rules.video_frame_seconds)) if fps and math.isfinite(fps) else 1
            frames, index = [], 0
            while len(frames) < rules.max_video_frames:
                ok, bgr = capture.read()
                if not ok:
                    break
                if index % step == 0:
                    if bgr.shape[0] * bgr.shape[1] > rules.max_pixels:
                        raise ImageDecodeError("image_too_large", f"{bgr.shape[1]}x{bgr.shape[0]} video frames")
                    frames.append((index / fps if fps else float(index), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
                index += 1
        finally:
            capture.release()
    if not frames:
        raise ImageDecodeError("invalid_video", f"no frame could be read from {len(video)} bytes")
    return frames


def _captures(frame: pd.DataFrame, rules: OcrRules) -> Iterator[tuple[dict, np.ndarray | ImageDecodeError]]:
    """Each screenshot, and each sampled frame of each screen recording (its own message id and
    time), with its image or why it has none."""
    for record in frame.to_dict("records"):
        video = record.get("video_data")
        if _is_missing(video):
            try:
                yield record, decode_image(record.get("image_data"), rules.max_pixels)
            except ImageDecodeError as error:
                yield record, error
            continue
        try:
            frames = screen_frames(bytes(video), rules)
        except ImageDecodeError as error:
            yield record, error
            continue
        for seconds, image in frames:
            yield {**record, "frame_seconds": seconds,
                   "recorded_at": record["recorded_at"] + pd.Timedelta(seconds=seconds),
                   "message_id": f"{record.get('message_id')}@{seconds:.1f}s"}, image


def screenshot_text(raw: pd.DataFrame | None, last_by_device: Mapping[str, Mapping[str, Any]] | None,
                    rules: OcrRules = OcrRules()) -> OcrResult:
    """One window of raw screenshots (`RAW_COLUMNS`) -> OCR rows and error rows.

    Per device in time order (recorded_at, then partition and offset): decode, dHash, and when the
    hash is a near duplicate of the device's last OCR'd screenshot, copy that one's text with
    `duplicate_of` = its message_id instead of running OCR. `last_by_device` carries that
    screenshot across windows: device_id -> the device's last row of this table recorded before
    the window (at least message_id, dhash and the copied columns; a duplicate's row works too,
    its `duplicate_of` is followed), so a rerun of a window gives the same rows. A screenshot
    that does not decode, or that tesseract fails on, is an error row (and does not become the
    device's last screenshot). Raises ValueError when a configured language is not installed.
    """
    frame = with_columns(raw, RAW_COLUMNS)
    if len(frame):
        frame = frame.assign(recorded_at=utc(frame["recorded_at"]))
        frame = frame.sort_values(["device_id", "recorded_at", "source_partition", "source_offset"],
                                  kind="stable")
    last: dict[str, dict[str, Any]] = {}
    for device, row in (last_by_device or {}).items():
        root = row.get("duplicate_of")
        root = row.get("message_id") if _is_missing(root) else root
        if not _is_missing(row.get("dhash")) and not _is_missing(root):
            last[device] = {**{c: row.get(c) for c in _COPIED}, "dhash": int(row["dhash"]), "message_id": root}
    rows, errors = [], []
    checked = False
    for record, image in _captures(frame, rules):
        head = {c: record.get(c) for c in _HEAD}
        if isinstance(image, ImageDecodeError):
            errors.append({**head, "error_type": image.error_type, "error_message": image.message})
            continue
        hash_ = signed64(dhash(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)))
        device = record.get("device_id")
        previous = last.get(device)
        out = {**head, "frame_seconds": record.get("frame_seconds"),
               "width": image.shape[1], "height": image.shape[0], "dhash": hash_}
        if (rules.skip_near_duplicates and previous is not None
                and near_duplicate(previous["dhash"], hash_, rules)):
            rows.append({**out, "duplicate_of": previous["message_id"], **{c: previous[c] for c in _COPIED}})
            continue
        if not checked:  # a language that is not installed fails every page: fail the run instead
            if missing := missing_languages(rules):
                raise ValueError(f"tesseract has no data for {missing} (LOOM_SCREENSHOT_OCR_LANGUAGES="
                                 f"{rules.languages!r}); install tesseract-ocr-<lang>")
            checked = True
        try:
            found = page_text(image, rules)
        except pytesseract.TesseractError as error:
            errors.append({**head, "error_type": "ocr_failed", "error_message": str(error)[:1000]})
            continue
        except RuntimeError as error:  # pytesseract's timeout
            if "timeout" not in str(error).lower():
                raise
            errors.append({**head, "error_type": "ocr_timeout",
                           "error_message": f"tesseract ran over {rules.timeout_seconds} s"})
            continue
        rows.append({**out, "duplicate_of": None, **found})
        if not _is_missing(record.get("message_id")):
            last[device] = {**found, "dhash": hash_, "message_id": record["message_id"]}
        else:
            last.pop(device, None)  # nothing to point duplicate_of at
    return OcrResult(typed_frame(rows, OCR_DTYPES), typed_frame(errors, OCR_ERROR_DTYPES))
