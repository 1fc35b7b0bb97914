"""The screenshot and camera generators: PNG screens rendered with Pillow, JPEG photos."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from datetime import datetime
from functools import lru_cache

from loom_assets.demo.constants import CAMERA_TOPIC, SCREENSHOT_TOPIC
from loom_assets.demo.day import DayPlan
from loom_assets.demo.messages import DemoMessage, rest_message
from loom_assets.demo.people import DemoDevice
from loom_assets.demo.streams import _stream_rng, _ticks

# ---- screenshots and photos ------------------------------------------------------------------

SCREENSHOT_INTERVAL_S = 300.0  # a screen-capture client's default (Loom v2 expected one every 10 s;
# the demo keeps the OCR load of `loom dev` light)
SCREEN_SIZE = (1280, 800)
# What is on the laptop's screen, by activity: a window title and its lines of text.
SCREENS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "work": (
        ("Pull request 482: Retry failed uploads", (
            "Review comments on the upload retry change",
            "The backoff starts at 2 seconds and doubles up to one minute",
            "Please add a test for the network timeout case",
            "Deploy to staging after the release checklist is done")),
        ("Meeting notes: storage migration", (
            "Attendees: Dana, Priya, Marco",
            "Decision: move the archive bucket before December 15",
            "Action: Priya writes the rollback plan",
            "Questions go to storage-team@example.com")),
    ),
    "coffee": (
        ("Reading: How databases index text", (
            "A full text index maps each word to the rows holding it",
            "Vector search finds neighbours by meaning instead of words",
            "Hybrid ranking merges both lists into one")),
    ),
    "evening": (
        ("Recipe: Lentil soup", (
            "Two cups of red lentils and one chopped onion",
            "Simmer with cumin and garlic for twenty minutes",
            "Serve with lemon and fresh bread")),
    ),
}
PHOTO_INTERVAL_S = 600.0
P_PHOTO = 0.35  # per tick while a subject is at hand
# scikit-image's bundled photos stand in for what the camera sees, by activity.
PHOTO_SUBJECTS = {"coffee": ("coffee", "astronaut"), "evening": ("chelsea", "coffee"), "work": ("astronaut",)}


@lru_cache(maxsize=16)
def _screenshot_png(title: str, lines: tuple[str, ...]) -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", SCREEN_SIZE, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, SCREEN_SIZE[0], 48), fill=(236, 236, 236))
    draw.text((24, 10), title, fill="black", font=ImageFont.load_default(size=26))
    body = ImageFont.load_default(size=22)
    for i, line in enumerate(lines):
        draw.text((48, 110 + 44 * i), line, fill=(30, 30, 30), font=body)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


@lru_cache(maxsize=8)
def _photo_jpeg(subject: str) -> bytes:
    from PIL import Image
    from skimage import data

    out = io.BytesIO()
    Image.fromarray(getattr(data, subject)()).convert("RGB").save(out, format="JPEG", quality=85)
    return out.getvalue()


def screenshot_stream(
    device: DemoDevice, plan: DayPlan, seed: int, start: datetime, end: datetime
) -> Iterator[DemoMessage]:
    """``device.image.screenshot.raw`` (flat REST, docs/messages.md#payload-fields: base64 PNG,
    ``camera_type: screen``) of a laptop every 5 min while its lid is open: a window of text that
    fits the activity."""
    if device.family != "laptop":
        return
    rng = _stream_rng(seed, device, SCREENSHOT_TOPIC)
    for t in _ticks(rng, start, end, SCREENSHOT_INTERVAL_S):
        screens = SCREENS.get(plan.at(t).activity)
        if plan.intensity("laptop", t) <= 0 or not screens:
            continue
        png = _screenshot_png(*rng.choice(screens))
        yield rest_message(SCREENSHOT_TOPIC, device.device_id, t, {
            "image_data": base64.b64encode(png).decode(), "format": "png", "width": SCREEN_SIZE[0],
            "height": SCREEN_SIZE[1], "camera_type": "screen", "file_size": len(png)}, rng)


def camera_stream(
    device: DemoDevice, plan: DayPlan, seed: int, start: datetime, end: datetime
) -> Iterator[DemoMessage]:
    """``device.image.camera.raw`` (flat REST, docs/messages.md#payload-fields: base64 JPEG) of a
    phone: now and then a photo of what is at hand (a coffee, the cat, a colleague)."""
    if device.family != "phone":
        return
    rng = _stream_rng(seed, device, CAMERA_TOPIC)
    for t in _ticks(rng, start, end, PHOTO_INTERVAL_S):
        subjects = PHOTO_SUBJECTS.get(plan.at(t).activity)
        if not subjects or rng.random() >= P_PHOTO:
            continue
        jpeg = _photo_jpeg(rng.choice(subjects))
        yield rest_message(CAMERA_TOPIC, device.device_id, t, {
            "image_data": base64.b64encode(jpeg).decode(), "format": "jpeg", "camera_type": "rear",
            "file_size": len(jpeg)}, rng)
