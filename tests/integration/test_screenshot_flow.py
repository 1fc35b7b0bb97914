"""The screenshot OCR flow end to end: a rendered screenshot → `loom process` → its words, a
heading, entities and a full-text match; the same screenshot again is a near duplicate, not
OCRed twice; bytes that are not an image become an error row."""

import base64
import io
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from tests.integration.test_spine import flat, invoke, nested, produce, table

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


def slide(title: str) -> np.ndarray:
    image = Image.new("RGB", (960, 540), "white")
    ImageDraw.Draw(image).text((60, 200), title, fill="black", font=ImageFont.load_default(size=44))
    return np.asarray(image)


def screen_recording(path, titles: list[str], seconds_each: int = 2, fps: int = 5) -> bytes:
    """An MJPEG screen recording showing each title for `seconds_each` seconds."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (960, 540))
    for title in titles:
        frame = cv2.cvtColor(slide(title), cv2.COLOR_RGB2BGR)
        for _ in range(seconds_each * fps):
            writer.write(frame)
    writer.release()
    return path.read_bytes()


def test_screen_captures_from_the_video_topic(loom_env, tmp_path):
    """The unified route's screenshots and screen recordings both arrive on device.video.screen.raw."""
    at = datetime.now(UTC) - timedelta(minutes=1)
    titles = ["Quarterly revenue dashboard", "Kubernetes deployment settings", "Invoice from Acme Corporation"]
    video = screen_recording(tmp_path / "screen.avi", titles)
    produce(loom_env["bootstrap"], [
        ("device.video.screen.raw", nested(at, "screenshot", image_data=screenshot(), width=1280, height=800)),
        ("device.video.screen.raw", flat(at + timedelta(seconds=5), video_data=base64.b64encode(video).decode(),
                                         format="avi", duration=6, fps=5, width=960, height=540)),
        ("device.video.screen.raw", flat(at + timedelta(seconds=9), video_data=base64.b64encode(b"not a video").decode(),
                                         format="mp4")),
        ("device.video.screen.raw", flat(at + timedelta(seconds=12), format="png")),  # neither image nor video
    ])
    invoke("process", "--through-now", "--flow", "screenshot_ocr")
    url = loom_env["database_url"]

    raw = table(url, "screenshot_ocr_raw")
    assert raw["video_data_uri"].notna().sum() == 2 and raw["image_data_uri"].notna().sum() == 1
    rows = table(url, "screenshot_ocr_text", order="recorded_at")
    still = rows[rows["frame_seconds"].isna()]
    assert len(still) == 1 and "migration" in still.iloc[0]["text"].lower()
    frames = rows[rows["frame_seconds"].notna()]
    assert frames["frame_seconds"].tolist() == [0.0, 2.0, 4.0]
    for title, text in zip(titles, frames["text"], strict=True):
        assert title.lower() in text.lower()
    assert (frames["recorded_at"].diff().dropna() == timedelta(seconds=2)).all()
    assert frames["message_id"].is_unique
    errors = table(url, "processing_errors", order="source_offset")
    assert sorted(errors["error_type"]) == ["invalid_video", "validation_error"]
    # Landing keeps a refused record's bytes; a stage error points at its raw row, whose video
    # stays in the blob store.
    refused = errors[errors["error_type"] == "validation_error"].iloc[0]
    assert b'"format": "png"' in bytes(refused["original_value"])
    bad_video = errors[errors["error_type"] == "invalid_video"].iloc[0]
    kept = raw[raw["source_offset"] == bad_video["source_offset"]]
    assert kept["video_data_uri"].notna().all() and kept["video_data_bytes"].tolist() == [len(b"not a video")]
