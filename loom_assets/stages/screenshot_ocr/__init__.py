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

# Names the module held before it became a package, which callers and tests still reach through it.
from loom_assets.stages.images import MAX_IMAGE_PIXELS, ImageDecodeError
from loom_assets.stages.screenshot_ocr.blocks import text_blocks
from loom_assets.stages.screenshot_ocr.duplicates import (
    dhash,
    hamming,
    near_duplicate,
    signed64,
)
from loom_assets.stages.screenshot_ocr.entities import entities
from loom_assets.stages.screenshot_ocr.ocr import ocr
from loom_assets.stages.screenshot_ocr.preprocess import (
    Box,
    Preprocessed,
    _rotate_box,
    _unrotate_box,
    decode_image,
    preprocess,
    text_regions,
)
from loom_assets.stages.screenshot_ocr.rows import (
    OCR_DTYPES,
    OCR_ERROR_DTYPES,
    RAW_COLUMNS,
)
from loom_assets.stages.screenshot_ocr.rules import OcrRules
from loom_assets.stages.screenshot_ocr.tables import (
    _COPIED,
    OcrResult,
    missing_languages,
    page_text,
    screen_frames,
    screenshot_text,
)
