"""Screenshots, kept in the blob store. This lands them; OCR builds on it."""

from loom_assets.flows.base import Flow

FLOW = Flow(
    name="screenshot_ocr",
    topics=("device.image.screenshot.raw",),
    description="Screenshots of each device (bytes in the blob store).",
    alert_error_rate=0.1,  # SPEC §1.5 image_preprocessing
)

raw = FLOW.raw
