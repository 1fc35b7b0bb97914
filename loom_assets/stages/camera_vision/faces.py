"""Faces: tiled detection and blurring."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from loom_assets.lazy import LazyModule
from loom_assets.stages.camera_vision.protocols import FaceDetectorModel
from loom_assets.stages.camera_vision.rules import VisionRules

cv2 = LazyModule("cv2")


# -- faces, gaze, pose ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Face:
    confidence: float
    box: tuple[float, float, float, float]  # x, y, w, h in the frame's pixels
    keypoints: np.ndarray                    # (6, 2) pixels


def _tiles(width: int, height: int, rules: VisionRules) -> list[tuple[int, int, int]]:
    """(x, y, side) of the square tiles faces are looked for in: the shorter side, then halves
    of it down to rules.face_tile_min_px, each level overlapping by half a tile so every face
    up to half a tile wide lies whole in one."""
    tiles = []
    side = min(width, height)
    while side >= rules.face_tile_min_px:
        stride = side / 2
        nx = max(1, math.ceil((width - side) / stride) + 1)
        ny = max(1, math.ceil((height - side) / stride) + 1)
        xs = np.linspace(0, width - side, nx).round().astype(int)
        ys = np.linspace(0, height - side, ny).round().astype(int)
        tiles += [(int(x), int(y), side) for y in ys for x in xs]
        side //= 2
    return tiles


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def faces(frame: np.ndarray, detector: FaceDetectorModel, rules: VisionRules,
          scale: float = 1.0) -> list[Face]:
    """Faces at >= rules.face_min_confidence, boxes and 6 keypoints in pixels of the original
    (`frame` is the original resized by `scale`), left to right; faces under
    rules.face_min_size_px (original px) are dropped.

    BlazeFace sees its input at 128 px: a face under ~1/7 of the picture is missed. So the
    detector also runs on square tiles (`_tiles`), and overlapping finds are merged (the most
    confident of those overlapping by IoU > rules.face_merge_iou is kept).
    """
    h, w = frame.shape[:2]
    views = [(0, 0, w, h)] + [(x, y, t, t) for x, y, t in (_tiles(w, h, rules) if rules.face_tiles else [])
                              if (t, t) != (w, h)]
    found = []
    for x0, y0, vw, vh in views:
        view = frame if (vw, vh) == (w, h) else np.ascontiguousarray(frame[y0:y0 + vh, x0:x0 + vw])
        for det in detector.detect(view):
            if det.score < rules.face_min_confidence:
                continue
            x, y, bw, bh = det.box
            box = ((x0 + x * vw) / scale, (y0 + y * vh) / scale, bw * vw / scale, bh * vh / scale)
            if max(box[2], box[3]) < rules.face_min_size_px:
                continue
            keypoints = (np.asarray(det.keypoints, dtype=np.float64) * [vw, vh] + [x0, y0]) / scale
            found.append(Face(float(det.score), box, keypoints))
    kept: list[Face] = []
    for face in sorted(found, key=lambda f: -f.confidence):
        if all(_iou(face.box, k.box) <= rules.face_merge_iou for k in kept):
            kept.append(face)
    return sorted(kept, key=lambda f: (f.box[0], f.box[1]))


def blur_faces(frame: np.ndarray, boxes: Sequence[Sequence[float]], rules: VisionRules) -> np.ndarray:
    """A copy of `frame` with each (x, y, w, h) box (frame px) Gaussian-blurred in place; pixels
    outside the boxes are untouched (the blur reflects at the box edge instead of reading them)."""
    out = frame.copy()
    h, w = frame.shape[:2]
    for box in boxes:
        x0, y0 = max(0, int(math.floor(box[0]))), max(0, int(math.floor(box[1])))
        x1, y1 = min(w, int(math.ceil(box[0] + box[2]))), min(h, int(math.ceil(box[1] + box[3])))
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        sigma = max(2.0, rules.face_blur_sigma_fraction * max(x1 - x0, y1 - y0))
        roi = np.ascontiguousarray(out[y0:y1, x0:x1])
        # A wide Gaussian on a 4x-per-sigma-px downscale, then back up: the same blur as the
        # full-size one, without its 6-sigma kernel (~500 px for a face of a 12 MP photo).
        shrink = max(1.0, sigma / 4.0)
        small = cv2.resize(roi, (max(1, round((x1 - x0) / shrink)), max(1, round((y1 - y0) / shrink))),
                           interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), sigma / shrink, borderType=cv2.BORDER_REFLECT)
        out[y0:y1, x0:x1] = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    return out
