"""Decoding and preprocessing of a photo: blur, resizing, camera intrinsics."""

from __future__ import annotations

import math

import numpy as np

from loom_assets.lazy import LazyModule
from loom_assets.stages.camera_vision.rules import VisionRules
from loom_assets.stages.images import decode_image

cv2 = LazyModule("cv2")


# -- decoding -------------------------------------------------------------------------------------
def load_frame(data: str | bytes, max_pixels: int = VisionRules.max_pixels) -> np.ndarray:
    """An image payload (base64 text or bytes) -> upright (EXIF auto-oriented) RGB uint8 array.

    Raises ImageDecodeError for anything that is not a whole, reasonably sized image.
    """
    return decode_image(data, max_pixels).rgb


# -- preprocessing --------------------------------------------------------------------------------
def blur_score(frame: np.ndarray, rules: VisionRules) -> float:
    """Variance of the Laplacian of the luma at `rules.blur_width` px wide (never upscaled)."""
    gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    h, w = gray.shape
    if w > rules.blur_width:
        gray = cv2.resize(gray, (rules.blur_width, max(1, round(h * rules.blur_width / w))),
                          interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def resized(frame: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """`frame` scaled (area interpolation) so its longer side is at most `max_side`, and the scale."""
    h, w = frame.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale >= 1.0:
        return frame, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA), size[0] / w


def preprocess(frame: np.ndarray, rules: VisionRules) -> tuple[np.ndarray, float, float, bool]:
    """(frame resized to <= rules.max_side, scale new/original, blur score, is blurred)."""
    small, scale = resized(frame, rules.max_side)
    score = blur_score(small, rules)
    return small, scale, score, score < rules.blur_threshold


def default_intrinsics(width: int, height: int, rules: VisionRules,
                       focal_length_35mm: float | None = None) -> np.ndarray:
    """3x3 camera matrix: EXIF 35 mm-equivalent focal length when plausible, else
    `rules.default_focal_factor` x the longer side; principal point at the centre."""
    lo, hi = rules.exif_focal_range_mm
    if focal_length_35mm is not None and lo <= focal_length_35mm <= hi:
        # 35 mm equivalence is defined on the diagonal (43.27 mm).
        focal = focal_length_35mm * math.hypot(width, height) / math.hypot(36.0, 24.0)
    else:
        focal = rules.default_focal_factor * max(width, height)
    return np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])
