"""Near-duplicate screenshots by difference hash."""

from __future__ import annotations

import numpy as np
import pandas as pd

from loom_assets.lazy import LazyModule
from loom_assets.stages.screenshot_ocr.rules import OcrRules

cv2 = LazyModule("cv2")

# -- near duplicates ------------------------------------------------------------------------------
_MASK64 = (1 << 64) - 1


def dhash(gray: np.ndarray) -> int:
    """64-bit difference hash (Krawetz): 9x8 area-averaged thumbnail, bit = "brighter than the
    cell to its left", row-major, first bit most significant. Unsigned (0 .. 2**64 - 1).

    The cell means are kept as floats: rounded to uint8, two equal-looking white cells flip
    their bit on JPEG noise (4 bits of 64 on a q70 re-encode of the test page; 0 unrounded).
    """
    if gray.ndim == 3:
        gray = cv2.cvtColor(gray, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(gray.astype(np.float32), (9, 8), interpolation=cv2.INTER_AREA)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def hamming(a: int, b: int) -> int:
    return ((int(a) ^ int(b)) & _MASK64).bit_count()


def near_duplicate(prev_hash: int | None, hash: int, rules: OcrRules = OcrRules()) -> bool:
    """Whether `hash` is within rules.duplicate_max_distance bits of `prev_hash` (either signed or
    unsigned 64-bit); False without a previous hash."""
    if prev_hash is None or pd.isna(prev_hash):
        return False
    return hamming(prev_hash, hash) <= rules.duplicate_max_distance


def signed64(value: int) -> int:
    """An unsigned 64-bit value as the signed int64 a PostgreSQL bigint holds."""
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value
