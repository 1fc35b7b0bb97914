"""Screenshots (bytes in the blob store) → their text: OCR with word boxes, layout blocks and
entities; a near-duplicate of the device's previous screenshot is not OCRed twice."""

import pandas as pd
from dagster import RetryPolicy

from loom_assets.flows.base import Carry, Flow, StageOutput
from loom_assets.flows.embeddings import Embedded, embeddings_stage
from loom_assets.settings import settings
from loom_assets.stages import screenshot_ocr as ocr
from loom_assets.stages.embeddings import ocr_pages

FLOW = Flow(
    name="screenshot_ocr",
    # Screenshots, and screen captures (screenshots or recordings) from the unified route.
    topics=("device.image.screenshot.raw", "device.video.screen.raw"),
    description="Screenshots and screen recordings of each device (bytes in the blob store).",
    alert_error_rate=0.1,  # docs/flows/screenshot_ocr.md#retries-and-alerts
)
RULES = ocr.OcrRules(languages=settings().ocr_languages)

raw = FLOW.raw


@FLOW.stage(
    logic_version="1",
    rules_version=f"tesseract-{RULES.languages}-rules{RULES.version}",
    retry=RetryPolicy(max_retries=1, delay=10),  # docs/flows/screenshot_ocr.md#retries-and-alerts: 1 retry, 10 s
    carry=Carry(per=("device_id",)),
    media={"raw": {"image_data_uri": "image_data", "video_data_uri": "video_data"}},
)
def text(raw: pd.DataFrame, state: pd.DataFrame) -> StageOutput:
    """Each screenshot's text: preprocessed (≤ 2048 px, grayscale, 2× for small text, dark
    panels inverted), OCRed by tesseract (words ≥ 0.6 confidence with boxes), merged into
    headings, paragraphs and list items, with its URLs, emails, dates and phone numbers. A
    screenshot whose hash equals the device's previous one takes that one's text. A screen
    recording is read a frame every 2 s, each frame a screenshot of its own."""
    result = ocr.screenshot_text(raw, {row["device_id"]: row for row in state.to_dict("records")}, RULES)
    return StageOutput(result.rows, errors=result.errors)


def _embedded_pages(text: pd.DataFrame) -> Embedded:
    pages = ocr_pages(text)
    return Embedded(pages, pages["source_id"], pages["title"], pages["text"])


embeddings = embeddings_stage(
    FLOW, of="text", embedded=_embedded_pages,
    description="Each OCR'd screenshot's text with its vector (all-MiniLM-L6-v2 by default, 384 dims) and its "
                "first heading as title, so `loom search` finds what was on screen; a near-duplicate "
                "screenshot is not embedded again.",
)
