"""Visual odometry: ORB features, pose steps between keyframes and their chaining."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from loom_assets.lazy import LazyModule
from loom_assets.stages.camera_vision.preprocess import resized
from loom_assets.stages.camera_vision.rules import VisionRules

cv2 = LazyModule("cv2")


# -- visual odometry ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Features:
    """ORB features of one frame at VO resolution, with the intrinsics at that resolution."""

    keypoints: np.ndarray    # (n, 2) float32 px
    descriptors: np.ndarray  # (n, 32) uint8
    K: np.ndarray            # 3x3
    width: int
    height: int


@dataclass(frozen=True)
class PoseStep:
    """The motion from the keyframe's camera to this frame's: x_this = R x_keyframe + t."""

    R: np.ndarray             # 3x3
    t: np.ndarray             # unit 3-vector (zero when lost or at initialisation)
    matches: int
    inliers: int
    median_parallax_px: float
    rotation_degrees: float
    is_keyframe: bool
    tracked: bool             # False: too few matches or inliers, R and t are identity/zero
    features: Features        # this frame's, to become the next keyframe


def rotation_degrees(R: np.ndarray) -> float:
    """The angle of a rotation matrix."""
    return math.degrees(math.acos(float(np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0))))


def orb_features(frame: np.ndarray, K: np.ndarray, rules: VisionRules) -> Features:
    """ORB keypoints and descriptors of `frame` resized to <= rules.vo_max_side; `K` is the
    frame's camera matrix, rescaled with it."""
    gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    small, scale = resized(gray, rules.vo_max_side)
    orb = cv2.ORB_create(nfeatures=rules.orb_features)
    keypoints, descriptors = orb.detectAndCompute(small, None)
    points = np.array([k.pt for k in keypoints], dtype=np.float32).reshape(-1, 2)
    if descriptors is None:
        descriptors = np.zeros((0, 32), dtype=np.uint8)
    K_small = np.asarray(K, dtype=np.float64).copy()
    K_small[:2] *= scale
    return Features(points, descriptors, K_small, small.shape[1], small.shape[0])


def visual_odometry(prev_keyframe: Features | None, frame: np.ndarray, K: np.ndarray,
                    rules: VisionRules) -> PoseStep:
    """The camera's motion from `prev_keyframe` to `frame` (K: `frame`'s camera matrix).

    ORB features, brute-force Hamming matching with Lowe's ratio test, the essential matrix by
    RANSAC (cv2.findEssentialMat) and the one of its four decompositions that puts the points in
    front of both cameras (cv2.recoverPose). Points are normalised by each frame's own K first,
    so frames of different sizes (portrait after landscape) still match. Monocular: `t` is a
    direction only.
    """
    features = orb_features(frame, K, rules)
    identity, zero = np.eye(3), np.zeros(3)
    if prev_keyframe is None:
        return PoseStep(identity, zero, 0, 0, math.nan, 0.0, True, True, features)

    def lost(matches: int, inliers: int = 0, parallax: float = math.nan) -> PoseStep:
        return PoseStep(identity, zero, matches, inliers, parallax, 0.0, True, False, features)

    if len(prev_keyframe.descriptors) < 2 or len(features.descriptors) < 2:
        return lost(0)
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
    good = [m[0] for m in matcher.knnMatch(prev_keyframe.descriptors, features.descriptors, k=2)
            if len(m) == 2 and m[0].distance < rules.lowe_ratio * m[1].distance]
    if len(good) < rules.min_matches:
        return lost(len(good))
    p1 = prev_keyframe.keypoints[[m.queryIdx for m in good]].astype(np.float64)
    p2 = features.keypoints[[m.trainIdx for m in good]].astype(np.float64)
    n1 = cv2.undistortPoints(p1.reshape(-1, 1, 2), prev_keyframe.K, None).reshape(-1, 2)
    n2 = cv2.undistortPoints(p2.reshape(-1, 1, 2), features.K, None).reshape(-1, 2)
    threshold = rules.ransac_threshold_px / float(np.sqrt(features.K[0, 0] * prev_keyframe.K[0, 0]))
    E, mask = cv2.findEssentialMat(n1, n2, np.eye(3), method=cv2.RANSAC,
                                   prob=rules.ransac_probability, threshold=threshold)
    if E is None or mask is None:
        return lost(len(good))
    if E.shape[0] > 3:  # several solutions: keep the first (the best-supported)
        E = E[:3]
    inliers, R, t, pose_mask = cv2.recoverPose(E, n1, n2, np.eye(3), mask=mask.copy())
    if inliers < rules.min_inliers:
        return lost(len(good), int(inliers))
    keep = pose_mask.ravel() > 0
    parallax = float(np.median(np.linalg.norm(p2[keep] - p1[keep], axis=1)))
    angle = rotation_degrees(R)
    is_keyframe = parallax > rules.keyframe_parallax_px or angle > rules.keyframe_rotation_degrees
    return PoseStep(R, t.ravel() / max(np.linalg.norm(t), 1e-12), len(good), int(inliers), parallax, angle,
                    bool(is_keyframe), True, features)


def chain_poses(previous_pose: tuple[np.ndarray, np.ndarray], step: PoseStep) -> tuple[np.ndarray, np.ndarray]:
    """The world -> camera pose (R, t) of the step's frame, from the keyframe's (x_cam = R x_world + t).

    Each step's translation has unit length: translations are in keyframe baselines, not metres.
    """
    R_prev, t_prev = previous_pose
    return step.R @ R_prev, step.R @ np.asarray(t_prev) + step.t


@dataclass
class VOState:
    """One camera's last keyframe and its pose: what the next window continues from."""

    features: Features
    R: np.ndarray
    t: np.ndarray
    recorded_at: pd.Timestamp    # the keyframe's
    segment_start: pd.Timestamp
    last_seen: pd.Timestamp      # the camera's last photo (tracked or not)
