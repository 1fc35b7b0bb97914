"""Body poses: BlazePose landmarks in original pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from loom_assets.stages.camera_vision.protocols import PoseModel
from loom_assets.stages.camera_vision.rules import VisionRules


@dataclass(frozen=True)
class Pose:
    landmarks: np.ndarray        # (33, 4) x px, y px, z px (hips' depth 0, + away), visibility
    world_landmarks: np.ndarray  # (33, 3) metres
    visible_landmarks: int
    mean_visibility: float


def poses(frame: np.ndarray, estimator: PoseModel, rules: VisionRules, scale: float = 1.0) -> list[Pose]:
    """33 BlazePose landmarks per person, in original pixels (`frame` = original x `scale`)."""
    h, w = frame.shape[:2]
    ow, oh = w / scale, h / scale
    out = []
    for found in estimator.estimate(frame):
        lm = np.asarray(found.landmarks, dtype=np.float64).copy()
        lm[:, 0] *= ow
        lm[:, 1] *= oh
        lm[:, 2] *= ow  # mediapipe: z on roughly the scale of x
        visibility = lm[:, 3]
        out.append(Pose(lm, np.asarray(found.world_landmarks, dtype=np.float64),
                        int((visibility >= rules.pose_min_visibility).sum()), float(visibility.mean())))
    return out
