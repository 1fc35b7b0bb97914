"""Perceptual hashes of detected objects, and matching them across photos."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from loom_assets.lazy import LazyModule
from loom_assets.stages.camera_vision.rules import VisionRules

cv2 = LazyModule("cv2")


# -- object hashes --------------------------------------------------------------------------------
def phash(crop: np.ndarray) -> int:
    """64-bit perceptual hash: luma resized to 32x32, 2-D DCT, the 8x8 lowest frequencies
    against their median (the standard pHash, as `imagehash.phash`). Bit 63 = coefficient (0, 0)."""
    gray = crop if crop.ndim == 2 else cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8]
    bits = (low > np.median(low)).ravel()
    return int(np.packbits(bits).view(">u8")[0])


def object_hashes(frame: np.ndarray, boxes: Sequence[Sequence[float]]) -> list[int | None]:
    """pHash of each (x, y, w, h) crop of `frame` (frame px); None for a box with < 4 px inside."""
    h, w = frame.shape[:2]
    out: list[int | None] = []
    for box in boxes:
        x0, y0 = max(0, int(round(box[0]))), max(0, int(round(box[1])))
        x1, y1 = min(w, int(round(box[0] + box[2]))), min(h, int(round(box[1] + box[3])))
        out.append(phash(frame[y0:y1, x0:x1]) if x1 - x0 >= 4 and y1 - y0 >= 4 else None)
    return out


def hash_similarity(a: int, b: int) -> float:
    """1 - Hamming distance / 64."""
    return 1.0 - ((a ^ b) & 0xFFFF_FFFF_FFFF_FFFF).bit_count() / 64.0


def match_objects(prev_hashes: Mapping[str, int], hashes: Sequence[int | None],
                  rules: VisionRules) -> list[tuple[str | None, float]]:
    """(track id, similarity) per hash: one-to-one, most similar pairs first, at
    >= rules.object_hash_similarity; (None, nan) where no track matches (a new object)."""
    pairs = []
    for i, h in enumerate(hashes):
        if h is None:
            continue
        for track, previous in prev_hashes.items():
            s = hash_similarity(h, previous)
            if s >= rules.object_hash_similarity:
                pairs.append((-s, i, track))
    out: list[tuple[str | None, float]] = [(None, math.nan)] * len(hashes)
    used: set[str] = set()
    for neg, i, track in sorted(pairs):
        if out[i][0] is None and track not in used:
            out[i] = (track, -neg)
            used.add(track)
    return out


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _unsigned64(value: int) -> int:
    return value + (1 << 64) if value < 0 else value
