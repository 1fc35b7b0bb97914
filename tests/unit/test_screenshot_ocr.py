"""Screenshot OCR stage functions (docs/flows/screenshot_ocr.md), on screenshots rendered here with Pillow."""

import base64
import io
import json
import math
import re
import struct
import textwrap
import zlib
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw, ImageFont
from pydantic import ValidationError

from loom_assets.events import ScreenCaptureV1
from loom_assets.stages import screenshot_ocr as so
from loom_assets.stages.screenshot_ocr import ImageDecodeError, OcrRules

RULES = OcrRules()

# -- a rendered "app window" ----------------------------------------------------------------------
_FONTS = Path("/usr/share/fonts/truetype/dejavu")


def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    path = _FONTS / ("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf")
    return ImageFont.truetype(str(path), size) if path.exists() else ImageFont.load_default(size=size)


PARAGRAPH_1 = (
    "Quarterly planning notes for the mobile team. We reviewed crash reports from the last release "
    "and agreed to ship the offline cache before the summer conference. Battery usage dropped after "
    "the sync changes, and nobody reported problems with the new settings screen during testing."
)
PARAGRAPH_2 = (
    "Please send feedback about the onboarding flow before Friday. Contact the design group at "
    "design@example.com or call +1 415-555-0132 with questions. The full report is published at "
    "https://docs.example.com/reports/q3 and the review meeting is on 2024-03-15 in room four."
)
OTHER_PARAGRAPH = (
    "Weekly status for the platform group. The database migration finished on schedule and the "
    "new monitoring dashboards caught two slow queries early. Next sprint we focus on search latency, "
    "billing exports and cleaning up the remaining feature flags in the admin console."
)
HEADING = "Release Review Summary"


def render_page(dark: bool = False, cursor: bool = True, paragraphs=(PARAGRAPH_1, PARAGRAPH_2),
                heading: str = HEADING) -> tuple[Image.Image, list[str]]:
    """A 1280x800 notes app: title bar, toolbar, sidebar, a heading, two ~40-word paragraphs, a
    list and 13-14 px UI text. Returns the image and the words drawn on it."""
    if dark:
        bg, fg, dim, bar, side, field = (30, 30, 30), (228, 228, 228), (150, 150, 150), (50, 50, 55), (40, 40, 44), (55, 55, 60)
    else:
        bg, fg, dim, bar, side, field = (255, 255, 255), (25, 25, 25), (105, 105, 105), (226, 226, 230), (243, 243, 246), (250, 250, 250)
    image = Image.new("RGB", (1280, 800), bg)
    draw = ImageDraw.Draw(image)
    words: list[str] = []

    def text(xy, value, font, fill):
        draw.text(xy, value, font=font, fill=fill)
        words.extend(value.split())

    ui13, ui14, body, big = _font(13), _font(14), _font(16), _font(28, bold=True)
    # title bar with window buttons
    draw.rectangle([0, 0, 1280, 34], fill=bar)
    for i, colour in enumerate([(255, 95, 86), (255, 189, 46), (39, 201, 63)]):
        draw.ellipse([14 + 22 * i, 11, 26 + 22 * i, 23], fill=colour)
    text((565, 9), "Notes - Workspace", ui14, fg)
    # toolbar: a plain button, a filled (white on blue) button, a search field
    draw.line([0, 34, 1280, 34], fill=dim)
    text((240, 46), "New note", ui13, fg)
    draw.rounded_rectangle([330, 40, 400, 66], radius=5, fill=(10, 90, 200))
    text((346, 46), "Share", ui13, (255, 255, 255))
    draw.rounded_rectangle([980, 40, 1260, 66], radius=5, fill=field, outline=dim)
    text((992, 46), "Search notes", ui13, dim)
    draw.line([0, 72, 1280, 72], fill=dim)
    # sidebar
    draw.rectangle([0, 73, 220, 800], fill=side)
    for i, item in enumerate(["Inbox", "Projects", "Archive", "Settings"]):
        text((20, 92 + 28 * i), item, ui14, fg)
    text((20, 770), "Saved", ui13, dim)
    # document
    text((260, 92), heading, big, fg)
    text((260, 134), "Updated March 22, 2024 by Maria Lopez", ui13, dim)
    y = 166
    for paragraph in paragraphs:
        for line in textwrap.wrap(paragraph, 95):
            text((260, y), line, body, fg)
            y += 24
        y += 18
    for item in ["Ship the offline cache", "Fix the sync retries", "Update the onboarding copy"]:
        draw.ellipse([264, y + 7, 269, y + 12], fill=fg)
        text((280, y), item, ui14, fg)
        y += 24
    if cursor:
        draw.rectangle([262, y + 12, 263, y + 30], fill=fg)
    text((1130, 770), "Ln 12, Col 4", ui13, dim)
    return image, [w for w in words if re.search(r"\w", w)]


def _norm(word: str) -> str:
    return re.sub(r"^\W+|\W+$", "", word).lower()


def recall(drawn: list[str], read: list[str]) -> float:
    """Fraction of the drawn words read (case-insensitive, outer punctuation stripped, multiset)."""
    available = Counter(_norm(w) for w in read)
    hits = 0
    for word in drawn:
        if available[_norm(word)] > 0:
            available[_norm(word)] -= 1
            hits += 1
    return hits / len(drawn)


def _b64(image: Image.Image, fmt: str = "PNG", **save) -> str:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return base64.b64encode(buffer.getvalue()).decode()


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (8-bit gray) with one tiny IDAT: Pillow reads the
    size without ever allocating the pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
            + chunk(b"IEND", b""))


@pytest.fixture(scope="module", autouse=True)
def _one_tesseract_thread():
    # Tesseract's OpenMP threads fight each other on a busy 2-core machine (a page took 1.6 s
    # instead of 0.7 s here); deployments set the same in the code location's environment.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_THREAD_LIMIT", "1")
        yield


@pytest.fixture(scope="module")
def light():
    image, drawn = render_page()
    return np.asarray(image), drawn, so.page_text(np.asarray(image), RULES)


@pytest.fixture(scope="module")
def dark():
    image, drawn = render_page(dark=True)
    return np.asarray(image), drawn, so.page_text(np.asarray(image), RULES)


# -- OCR of a rendered screenshot -----------------------------------------------------------------
@pytest.mark.parametrize("page", ["light", "dark"])
def test_rendered_screenshot_words_are_read(page, request):
    image, drawn, found = request.getfixturevalue(page)
    assert recall(drawn, [w["text"] for w in found["words"]]) >= 0.9
    assert found["upscaled"]  # 13-16 px UI text: x-height ~9 px
    assert found["inverted"] is (page == "dark")
    assert 0.6 <= found["mean_confidence"] <= 1.0
    assert found["word_count"] == len(found["words"])
    assert all(w["conf"] >= RULES.min_confidence for w in found["words"])


def test_white_on_blue_button_text_is_read_on_a_light_page(light):
    _, _, found = light
    assert "Share" in [w["text"] for w in found["words"]]


def test_word_boxes_are_in_original_image_pixels(light):
    _, _, found = light
    release = next(w for w in found["words"] if w["text"] == "Release")
    # drawn at (260, 92) in 28 px bold: the ink starts a couple of pixels in and below
    assert abs(release["left"] - 262) <= 4 and abs(release["top"] - 97) <= 4
    assert 18 <= release["height"] <= 30


@pytest.mark.parametrize("page", ["light", "dark"])
def test_entities_on_the_screenshot_are_found(page, request):
    _, _, found = request.getfixturevalue(page)
    got = {(e["type"], e["normalized"]) for e in found["entities"]}
    assert {
        ("url", "https://docs.example.com/reports/q3"),
        ("email", "design@example.com"),
        ("phone", "+14155550132"),
        ("date", "2024-03-15"),
        ("date", "2024-03-22"),
    } <= got
    for entity in found["entities"]:
        assert found["text"][entity["start"]:entity["end"]] == entity["value"]


@pytest.mark.parametrize("page", ["light", "dark"])
def test_layout_has_the_heading_paragraphs_and_list_items(page, request):
    _, _, found = request.getfixturevalue(page)
    blocks = found["blocks"]
    headings = [b["text"] for b in blocks if b["kind"] == "heading"]
    assert headings == [HEADING]
    paragraphs = [b["text"] for b in blocks if b["kind"] == "paragraph"]
    # each rendered paragraph is one block again (3 tesseract lines merged), in reading order
    first = next(p for p in paragraphs if p.startswith("Quarterly"))
    assert recall(PARAGRAPH_1.split(), first.split()) >= 0.95
    assert paragraphs.index(first) < paragraphs.index(next(p for p in paragraphs if p.startswith("Please")))
    items = [b["text"] for b in blocks if b["kind"] == "list_item"]
    assert items == ["Ship the offline cache", "Fix the sync retries", "Update the onboarding copy"]
    assert "|" not in found["text"]  # the text cursor is not text
    heading = next(b for b in blocks if b["kind"] == "heading")
    assert heading["box"]["top"] < next(b for b in blocks if b["text"] is first)["box"]["top"]


def test_sideways_screenshot_is_read_when_orientation_detection_is_on():
    image, drawn = render_page()
    sideways = np.ascontiguousarray(np.rot90(np.asarray(image)))  # 90 degrees counter-clockwise
    rules = OcrRules(detect_orientation=True)
    pre = so.preprocess(sideways, rules)
    assert pre.orientation_degrees == 90
    found = so.page_text(sideways, rules)
    assert recall(drawn, [w["text"] for w in found["words"]]) >= 0.9
    # boxes stay in the sideways original: "Release" at x 262 -> y = 1280 - 262 - width
    release = next(w for w in found["words"] if w["text"] == "Release")
    assert abs(release["left"] - 97) <= 4 and abs(release["top"] + release["height"] - (1280 - 262)) <= 4
    assert [b["text"] for b in found["blocks"] if b["kind"] == "heading"] == [HEADING]


def test_orientation_is_left_alone_by_default():
    pre = so.preprocess(np.rot90(np.full((100, 200), 255, np.uint8)).copy(), RULES)
    assert pre.orientation_degrees == 0 and not RULES.detect_orientation


@pytest.mark.parametrize("degrees", [0, 90, 180, 270])
def test_box_rotation_round_trips(degrees):
    box, size = (10, 20, 30, 5), (200, 100)
    rotated = so._rotate_box(box, degrees, size)
    assert so._unrotate_box(rotated, degrees, size) == box


# -- preprocessing ---------------------------------------------------------------------------------
def test_large_screenshots_are_scaled_to_2048_and_big_text_is_not_upscaled():
    image, _ = render_page()
    big = np.asarray(image.resize((2560, 1600), Image.LANCZOS))  # a 2x (retina) screenshot
    pre = so.preprocess(big, RULES)
    assert max(pre.gray.shape) == 2048 and pre.scale == pytest.approx(0.8)
    assert not pre.upscaled and pre.text_height_px >= 15
    assert pre.regions and all(len(r) == 4 for r in pre.regions)


def test_text_regions_cover_the_text_lines(light):
    image, _, _ = light
    pre = so.preprocess(image, RULES)
    def covered(x, y):
        return any(l <= x <= l + w and t <= y <= t + h for l, t, w, h in pre.regions)
    assert covered(300, 108)   # the heading
    assert covered(600, 180)   # first paragraph line
    assert not covered(800, 600)  # empty page


# -- text blocks and entities on literal words ------------------------------------------------------
def _word(text, left, top, height=12, block=1, line=1, conf=0.95):
    return {"text": text, "conf": conf, "left": left, "top": top, "width": 8 * len(text), "height": height,
            "block_num": block, "par_num": 1, "line_num": line, "word_num": 1}


def _words(lines):
    """[(left, top, height, block, "text of the line")] -> words left to right."""
    out = []
    for left, top, height, block, text in lines:
        x = left
        for token in text.split():
            out.append(_word(token, x, top, height, block))
            x += 8 * len(token) + 6
    return out


def test_hyphenated_line_ends_are_joined_and_split_blocks_merged():
    words = _words([
        (100, 100, 12, 1, "The deploy-"),
        (100, 120, 12, 2, "ment finished in well-"),   # tesseract put it in another block
        (100, 140, 12, 3, "Known regions only."),
    ])
    result = so.text_blocks(words)
    assert [b["kind"] for b in result["blocks"]] == ["paragraph"]
    assert result["text"] == "The deployment finished in well- Known regions only."


def test_heading_list_items_and_noise():
    words = _words([
        (100, 60, 24, 1, "Weekly Report"),
        (100, 100, 12, 2, "Status of the team |"),
        (100, 140, 12, 3, "• Ship the cache"),
        (100, 160, 12, 4, "1. Fix the retries"),
        (124, 180, 12, 5, "for real this time"),    # a wrapped item: lower case, at the text column
        (124, 200, 12, 6, "Update the copy"),       # the next item, its bullet unread
    ])
    blocks = so.text_blocks(words)["blocks"]
    assert [(b["kind"], b["text"]) for b in blocks] == [
        ("heading", "Weekly Report"),
        ("paragraph", "Status of the team"),
        ("list_item", "Ship the cache"),
        ("list_item", "1. Fix the retries for real this time"),
        ("list_item", "Update the copy"),
    ]
    assert blocks[0]["box"] == {"left": 100, "top": 60, "width": 8 * 6 + 6 + 8 * 6, "height": 24}


def test_columns_are_read_one_after_the_other():
    words = _words([
        (20, 100, 12, 1, "Inbox"), (400, 100, 12, 2, "Left column starts here"),
        (20, 140, 12, 3, "Archive"), (400, 118, 12, 4, "and goes on here."),
        (20, 180, 12, 5, "Settings"), (400, 160, 12, 6, "Second paragraph of it."),
    ])
    texts = [b["text"] for b in so.text_blocks(words)["blocks"]]
    assert texts == ["Inbox", "Archive", "Settings", "Left column starts here and goes on here.",
                     "Second paragraph of it."]


def test_no_words_give_empty_text():
    assert so.text_blocks([]) == {"text": "", "blocks": []}


@pytest.mark.parametrize("text, kind, value, normalized", [
    ("see https://example.com/a?b=1.", "url", "https://example.com/a?b=1", "https://example.com/a?b=1"),
    ("(www.example.org/path)", "url", "www.example.org/path", "http://www.example.org/path"),
    ("mail Ann.Lee+x@mail.example.co.uk today", "email", "Ann.Lee+x@mail.example.co.uk", "ann.lee+x@mail.example.co.uk"),
    ("due 2024-03-15T09:30Z", "date", "2024-03-15T09:30Z", "2024-03-15"),
    ("on March 5th, 2024 we", "date", "March 5th, 2024", "2024-03-05"),
    ("on 5 Sept 2024 we", "date", "5 Sept 2024", "2024-09-05"),
    ("on 03/15/2024 we", "date", "03/15/2024", "2024-03-15"),
    ("on 15/03/24 we", "date", "15/03/24", "2024-03-15"),
    ("on 15.03.2024 we", "date", "15.03.2024", "2024-03-15"),
    ("call (415) 555-0132 now", "phone", "(415) 555-0132", "+14155550132"),
    ("call 415.555.0132 now", "phone", "415.555.0132", "+14155550132"),
    ("call +44 20 7946 0958 now", "phone", "+44 20 7946 0958", "+442079460958"),
    ("call +4915112345678.", "phone", "+4915112345678", "+4915112345678"),
])
def test_entities_by_type(text, kind, value, normalized):
    found = so.entities(text)
    assert [(e["type"], e["value"], e["normalized"]) for e in found] == [(kind, value, normalized)]
    assert text[found[0]["start"]:found[0]["end"]] == value


@pytest.mark.parametrize("text", [
    "build 2024-13-45 failed",      # not a date
    "order 4155550132 shipped",     # a bare 10-digit number is not taken as a phone
    "version 1.2.3 and 10/20",      # no year
    "ratio 3/4/5",
])
def test_entities_not_found(text):
    assert so.entities(text) == []


def test_an_email_is_not_also_a_url_and_a_date_is_not_a_phone():
    found = so.entities("Write to ops@example.com by 2024-03-15.")
    assert [e["type"] for e in found] == ["email", "date"]


# -- near duplicates -------------------------------------------------------------------------------
def _hash(image):
    return so.dhash(np.asarray(image))


def test_blinking_cursor_is_a_near_duplicate_and_another_page_is_not():
    on, off = _hash(render_page(cursor=True)[0]), _hash(render_page(cursor=False)[0])
    assert so.near_duplicate(on, off, RULES)
    other_document = _hash(render_page(paragraphs=(OTHER_PARAGRAPH, OTHER_PARAGRAPH[:150]))[0])
    empty_document = _hash(render_page(paragraphs=(), heading="Untitled")[0])
    dark_mode = _hash(render_page(dark=True)[0])
    for other in (other_document, empty_document, dark_mode):
        assert not so.near_duplicate(on, other, RULES)


def test_jpeg_re_encoding_keeps_the_hash():
    image = render_page()[0]
    again = Image.open(io.BytesIO(base64.b64decode(_b64(image, "JPEG", quality=70))))
    assert so.hamming(_hash(image), _hash(again.convert("RGB"))) == 0


def test_hash_is_64_bits_and_fits_a_signed_bigint():
    h = _hash(render_page()[0])
    assert 0 <= h < 2 ** 64
    signed = so.signed64(h)
    assert -2 ** 63 <= signed < 2 ** 63 and signed & (2 ** 64 - 1) == h
    assert so.near_duplicate(signed, h, RULES)   # signed (from the table) against unsigned
    assert not so.near_duplicate(None, h, RULES)
    assert so.signed64(2 ** 64 - 1) == -1


# -- decoding -------------------------------------------------------------------------------------
def test_png_and_jpeg_payloads_decode_to_rgb():
    image = render_page()[0]
    for payload in (_b64(image), "data:image/png;base64," + _b64(image), base64.b64decode(_b64(image, "JPEG"))):
        rgb = so.decode_image(payload)
        assert rgb.shape == (800, 1280, 3) and rgb.dtype == np.uint8


def _truncated_png() -> str:
    raw = base64.b64decode(_b64(render_page()[0]))
    return base64.b64encode(raw[: len(raw) // 2]).decode()


@pytest.mark.parametrize("payload, error_type", [
    ("@@ not base64 @@", "invalid_base64"),
    ("", "empty_image"),
    (None, "empty_image"),
    (math.nan, "empty_image"),
    (base64.b64encode(b"hello, this is plain text and not an image").decode(), "invalid_image"),
    (pytest.param(_truncated_png, "truncated_image", id="truncated_png")),
    (base64.b64encode(_png_header(12_000, 9_000)).decode(), "image_too_large"),   # 108 MP: our check
    (base64.b64encode(_png_header(30_000, 30_000)).decode(), "image_too_large"),  # 900 MP: Pillow's bomb check
])
def test_bad_payloads_raise_image_decode_error(payload, error_type):
    payload = payload() if callable(payload) else payload
    with pytest.raises(ImageDecodeError) as caught:
        so.decode_image(payload)
    assert caught.value.error_type == error_type and caught.value.message


def test_max_pixels_is_a_parameter():
    with pytest.raises(ImageDecodeError, match="image_too_large"):
        so.decode_image(_b64(render_page()[0]), max_pixels=1_000_000)


def test_pillow_bomb_limit_is_set_on_purpose():
    assert Image.MAX_IMAGE_PIXELS == so.MAX_IMAGE_PIXELS == RULES.max_pixels


def test_exif_rotated_jpeg_is_uprighted():
    upright = Image.new("RGB", (120, 80), (255, 255, 255))
    ImageDraw.Draw(upright).rectangle([0, 0, 39, 29], fill=(200, 0, 0))       # red, top left
    ImageDraw.Draw(upright).rectangle([80, 50, 119, 79], fill=(0, 0, 200))    # blue, bottom right
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what the camera wrote: 80x120
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    payload = _b64(stored, "JPEG", quality=95, exif=exif)
    rgb = so.decode_image(payload)
    assert rgb.shape == (80, 120, 3)
    assert np.abs(rgb.astype(int) - np.asarray(upright).astype(int)).mean() < 4
    assert rgb[10, 10, 0] > 150 and rgb[70, 110, 2] > 150


# -- the stage ------------------------------------------------------------------------------------
def _raw_row(image, device, second, offset, message_id, payload=None):
    return {
        "window_start": pd.Timestamp("2024-03-15 10:00", tz="UTC"), "device_id": device,
        "recorded_at": pd.Timestamp("2024-03-15 10:00", tz="UTC") + pd.Timedelta(seconds=second),
        "source_topic": "device.image.screenshot.raw", "source_partition": 0, "source_offset": offset,
        "message_id": message_id, "image_data": payload if payload is not None else _b64(image),
        "format": "png", "width": 1280, "height": 800,
    }


def test_screenshot_text_ocrs_new_screens_copies_duplicates_and_reports_bad_images(light):
    _, _, light_found = light
    page, _ = render_page()
    blink, _ = render_page(cursor=False)
    other, other_words = render_page(paragraphs=(OTHER_PARAGRAPH,), heading="Platform Weekly")
    raw = pd.DataFrame([
        _raw_row(blink, "phone", 20, 12, "m2"),        # out of order on purpose
        _raw_row(page, "phone", 10, 11, "m1"),
        _raw_row(other, "phone", 30, 13, "m3"),
        _raw_row(None, "phone", 40, 14, "m4", payload="not base64!"),
        _raw_row(page, "laptop", 15, 20, "m5"),        # the laptop's last screen, from the previous window
    ])
    carry = {"laptop": {"message_id": "m0", "duplicate_of": None, "dhash": so.signed64(_hash(page)),
                        **{c: light_found[c] for c in so._COPIED}}}
    result = so.screenshot_text(raw, carry, RULES)
    rows = result.rows.set_index("message_id")
    assert list(result.rows.columns) == list(so.OCR_DTYPES)
    assert list(rows.index) == ["m5", "m1", "m2", "m3"]  # by device, then time
    assert pd.isna(rows.loc["m1", "duplicate_of"]) and pd.isna(rows.loc["m3", "duplicate_of"])
    assert rows.loc["m2", "duplicate_of"] == "m1" and rows.loc["m2", "text"] == rows.loc["m1", "text"]
    assert rows.loc["m5", "duplicate_of"] == "m0" and rows.loc["m5", "text"] == light_found["text"]
    assert recall(other_words, [w["text"] for w in rows.loc["m3", "words"]]) >= 0.9
    assert rows.loc["m1", "width"] == 1280 and rows.loc["m1", "height"] == 800
    assert rows.loc["m1", "dhash"] == so.signed64(_hash(page)) and rows.loc["m3", "dhash"] != rows.loc["m1", "dhash"]
    assert rows.loc["m1", "ocr_languages"] == "eng" and bool(rows.loc["m1", "upscaled"])
    assert rows.loc["m1", "word_count"] == len(rows.loc["m1", "words"])
    assert {e["type"] for e in rows.loc["m1", "entities"]} == {"url", "email", "date", "phone"}
    assert list(result.errors.columns) == list(so.OCR_ERROR_DTYPES)
    assert result.errors[["message_id", "source_offset", "error_type"]].values.tolist() == [["m4", 14, "invalid_base64"]]
    for column in ("words", "blocks", "entities"):  # jsonb-ready: plain Python values only
        json.dumps(rows.loc["m1", column], allow_nan=False)


def test_screenshot_text_of_an_empty_window():
    result = so.screenshot_text(pd.DataFrame(), {}, RULES)
    assert result.rows.empty and list(result.rows.columns) == list(so.OCR_DTYPES)
    assert result.errors.empty and list(result.errors.columns) == list(so.OCR_ERROR_DTYPES)


def test_skipping_near_duplicates_can_be_turned_off():
    small = Image.new("RGB", (320, 80), "white")
    ImageDraw.Draw(small).text((10, 20), "Hello again world", font=_font(20), fill="black")
    raw = pd.DataFrame([_raw_row(small, "phone", s, s, f"m{s}") for s in (1, 2)])
    rows = so.screenshot_text(raw, None, OcrRules(skip_near_duplicates=False)).rows
    assert rows["duplicate_of"].isna().all() and (rows["text"] == "Hello again world").all()


def test_a_language_that_is_not_installed_fails_the_run():
    raw = pd.DataFrame([_raw_row(render_page()[0], "phone", 1, 1, "m1")])
    with pytest.raises(ValueError, match="klingon"):
        so.screenshot_text(raw, {}, OcrRules(languages="eng+klingon"))
    assert so.missing_languages(RULES) == []


# -- screen recordings (device.video.screen.raw) ---------------------------------------------------
def _recording(path, seconds: int, fps: int = 5) -> bytes:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (320, 240))
    for i in range(seconds * fps):
        writer.write(np.full((240, 320, 3), i * 3 % 256, dtype=np.uint8))
    writer.release()
    return path.read_bytes()


def test_screen_frames_samples_every_two_seconds_up_to_the_cap(tmp_path):
    video = _recording(tmp_path / "a.avi", seconds=7)
    frames = so.screen_frames(video)
    assert [s for s, _ in frames] == [0.0, 2.0, 4.0, 6.0]
    assert frames[1][1].shape == (240, 320, 3)
    capped = so.screen_frames(video, OcrRules(max_video_frames=2))
    assert [s for s, _ in capped] == [0.0, 2.0]


def test_bytes_that_are_no_video_are_an_invalid_video():
    with pytest.raises(ImageDecodeError) as error:
        so.screen_frames(b"RIFF....AVI not really")
    assert error.value.error_type == "invalid_video"


def test_a_screen_capture_is_a_screenshot_or_a_recording_not_both():
    image = base64.b64encode(b"\x89PNG\r\n\x1a\n....").decode()
    assert ScreenCaptureV1.model_validate({"image_data": image}).video_data is None
    assert ScreenCaptureV1.model_validate({"video_data": image, "fps": 30}).image_data is None
    for fields in ({}, {"image_data": image, "video_data": image}):
        with pytest.raises(ValidationError, match="either image_data or video_data"):
            ScreenCaptureV1.model_validate(fields)
