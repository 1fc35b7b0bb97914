"""The screenshot OCR stage: raw screenshots and screen recordings of one window into text rows."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytesseract

from loom_assets.lazy import LazyModule
from loom_assets.stages.frames import typed_frame, utc, with_columns
from loom_assets.stages.images import ImageDecodeError
from loom_assets.stages.screenshot_ocr.blocks import text_blocks
from loom_assets.stages.screenshot_ocr.duplicates import dhash, near_duplicate, signed64
from loom_assets.stages.screenshot_ocr.entities import entities
from loom_assets.stages.screenshot_ocr.ocr import ocr
from loom_assets.stages.screenshot_ocr.preprocess import (
    _rotate_box,
    _unrotate_box,
    decode_image,
    preprocess,
)
from loom_assets.stages.screenshot_ocr.rows import (
    _HEAD,
    OCR_DTYPES,
    OCR_ERROR_DTYPES,
    RAW_COLUMNS,
)
from loom_assets.stages.screenshot_ocr.rules import OcrRules

cv2 = LazyModule("cv2")


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
