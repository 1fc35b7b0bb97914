"""Text extraction: tesseract's words on a preprocessed page."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytesseract
from PIL import Image
from pytesseract import Output

from loom_assets.stages.screenshot_ocr.preprocess import Preprocessed, _unrotate_box
from loom_assets.stages.screenshot_ocr.rules import OcrRules


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
