"""The screenshot OCR flow end to end: a rendered screenshot → `loom process` → its words, a
heading, entities and a full-text match; the same screenshot again is a near duplicate, not
OCRed twice; bytes that are not an image become an error row."""

import base64
import io
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image, ImageDraw, ImageFont

from tests.integration.test_spine import flat, invoke, produce, table

pytestmark = pytest.mark.integration

PARAGRAPH = ("Quarterly planning notes for the storage migration were shared with the team on "
             "Tuesday and everyone agreed to review the rollout checklist before Friday")


def screenshot() -> str:
    image = Image.new("RGB", (1280, 800), "white")
    draw = ImageDraw.Draw(image)
    draw.text((60, 50), "Migration plan", fill="black", font=ImageFont.load_default(size=40))
    body = ImageFont.load_default(size=20)
    words, y = PARAGRAPH.split(), 140
    for i in range(0, len(words), 10):
        draw.text((60, y), " ".join(words[i:i + 10]), fill="black", font=body)
        y += 34
    draw.text((60, y + 30), "Contact ops@example.com or visit https://example.com/plan by 2026-12-01",
              fill="black", font=body)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def test_screenshots_become_searchable_text(loom_env):
    at = datetime.now(UTC) - timedelta(minutes=1)
    shot = screenshot()
    produce(loom_env["bootstrap"], [
        ("device.image.screenshot.raw", flat(at, image_data=shot, format="png", width=1280, height=800, camera_type="screen")),
        ("device.image.screenshot.raw", flat(at + timedelta(seconds=10), image_data=shot, format="png",
                                             camera_type="screen")),
        ("device.image.screenshot.raw", flat(at + timedelta(seconds=20), image_data=base64.b64encode(b"%PDF-1.7").decode(),
                                             camera_type="screen")),
    ])
    invoke("process", "--through-now", "--flow", "screenshot_ocr")
    url = loom_env["database_url"]

    rows = table(url, "screenshot_ocr_text", order="recorded_at")
    assert len(rows) == 2
    first, second = rows.iloc[0], rows.iloc[1]
    found = set(first["text"].lower().replace(",", " ").split())
    expected = set(PARAGRAPH.lower().split())
    assert len(found & expected) / len(expected) >= 0.9
    assert any(b["kind"] == "heading" and "Migration" in b["text"] for b in first["blocks"])
    assert {e["type"] for e in first["entities"]} >= {"email", "url", "date"}
    assert second["duplicate_of"] == first["message_id"] and second["text"] == first["text"]
    hits = table(url, "screenshot_ocr_text WHERE to_tsvector('english', text) @@ plainto_tsquery('english', 'rollout checklist')",
                 order="recorded_at")
    assert len(hits) == 2
    errors = table(url, "processing_errors", order="source_offset")
    assert errors[["flow", "error_type"]].values.tolist() == [["screenshot_ocr/text", "invalid_image"]]
