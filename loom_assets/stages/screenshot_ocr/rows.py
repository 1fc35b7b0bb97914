"""Row layouts of the screenshot OCR tables."""

from __future__ import annotations

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
