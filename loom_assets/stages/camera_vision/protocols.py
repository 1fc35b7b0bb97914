"""What camera vision expects of its models (loom_assets.models.vision implements them), and their outputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


# -- model protocols and their outputs (models.vision implements them) ---------------------------
@dataclass(frozen=True)
class FaceDetection:
    """One face, in coordinates relative to the frame (0-1)."""

    score: float
    box: tuple[float, float, float, float]  # xmin, ymin, width, height
    keypoints: np.ndarray                    # (6, 2) x, y


@dataclass(frozen=True)
class PoseDetection:
    landmarks: np.ndarray         # (33, 4) x, y (0-1), z (x's scale, hips' depth = 0), visibility
    world_landmarks: np.ndarray   # (33, 3) metres, origin between the hips


class FaceDetectorModel(Protocol):
    version: str

    def detect(self, frame: np.ndarray) -> list[FaceDetection]: ...


class FaceMeshModel(Protocol):
    version: str

    def landmarks(self, frame: np.ndarray) -> list[np.ndarray]:
        """Per face a (478, 3) array: x, y relative to the frame, z on x's scale (iris: 468-477)."""
        ...


class PoseModel(Protocol):
    version: str

    def estimate(self, frame: np.ndarray) -> list[PoseDetection]: ...


class ObjectDetector(Protocol):
    version: str

    def detect(self, frame: np.ndarray) -> list[tuple[str, float, float, float, float, float]]:
        """(label, confidence, x, y, w, h) with the box in `frame`'s pixels."""
        ...
