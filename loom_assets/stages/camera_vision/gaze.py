"""Gaze and head pose from the face mesh."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from loom_assets.lazy import LazyModule
from loom_assets.stages.camera_vision.preprocess import default_intrinsics
from loom_assets.stages.camera_vision.protocols import FaceMeshModel
from loom_assets.stages.camera_vision.rules import VisionRules

cv2 = LazyModule("cv2")

# Face mesh indices (mediapipe 478-point topology). "right"/"left" are the subject's: the right
# eye is on the image's left for a face looking at the camera.
_NOSE_TIP, _CHIN = 1, 152
_RIGHT_EYE_OUTER, _RIGHT_EYE_INNER, _LEFT_EYE_INNER, _LEFT_EYE_OUTER = 33, 133, 362, 263
_MOUTH_RIGHT, _MOUTH_LEFT = 61, 291
_RIGHT_IRIS, _LEFT_IRIS = 468, 473
# The same 6 vertices of mediapipe's canonical face model (face_geometry/data/
# canonical_face_model.obj, cm; the mesh the face mesh's landmarks are numbered on), turned into
# camera-like axes for a face looking at the camera: x to the image's right, y down, z away from
# the camera (the eyes sit behind the nose tip).
_HEAD_MODEL = np.array([
    [0.0, 1.126865, -7.475604],         # 1 nose tip
    [0.0, 9.403378, -4.264492],         # 152 chin
    [-4.445859, -2.663991, -3.173422],  # 33 right eye outer corner (image left)
    [4.445859, -2.663991, -3.173422],   # 263 left eye outer corner
    [-2.456206, 4.342621, -4.283884],   # 61 right mouth corner
    [2.456206, 4.342621, -4.283884],    # 291 left mouth corner
])
_HEAD_POINTS = (_NOSE_TIP, _CHIN, _RIGHT_EYE_OUTER, _LEFT_EYE_OUTER, _MOUTH_RIGHT, _MOUTH_LEFT)


@dataclass(frozen=True)
class Gaze:
    box: tuple[float, float, float, float]  # around the mesh, pixels
    right_iris: tuple[float, float]         # pixels
    left_iris: tuple[float, float]
    direction: np.ndarray                   # unit 3-vector, camera coordinates
    yaw_degrees: float
    pitch_degrees: float
    head_rotation: np.ndarray               # 3x3, head model -> camera
    head_yaw_degrees: float
    head_pitch_degrees: float
    head_roll_degrees: float
    camera_angle_degrees: float             # between the gaze and the eyes-to-camera ray


def _yaw_pitch(v: np.ndarray) -> tuple[float, float]:
    """Degrees of a camera-coordinate direction seen from the camera: yaw + toward the image's
    right, pitch + up; (0, 0) is a direction pointing back into the lens."""
    return (math.degrees(math.atan2(v[0], -v[2])), math.degrees(math.atan2(-v[1], math.hypot(v[0], v[2]))))


def _eye_angles(points: np.ndarray, outer: int, inner: int, iris: int, rules: VisionRules) -> tuple[float, float]:
    """The iris offset from the middle of the eye corners, as a fraction of half the eye width,
    along (image-rightward) and across (image-downward) the corner line."""
    a, b = points[outer, :2], points[inner, :2]
    left, right = (a, b) if a[0] <= b[0] else (b, a)
    axis = right - left
    half = float(np.linalg.norm(axis)) / 2.0
    if half < 1e-6:
        return 0.0, 0.0
    u = axis / (2.0 * half)
    n = np.array([-u[1], u[0]])
    offset = points[iris, :2] - (left + right) / 2.0
    return float(offset @ u) / half, float(offset @ n) / half


def _meshes(frame: np.ndarray, face_mesh: FaceMeshModel, boxes: Sequence[Sequence[float]] | None,
            rules: VisionRules) -> list[np.ndarray | None]:
    """(478, 2) landmark pixels of `frame`: per face found in the whole frame, or per box
    (frame px) from a crop around it (None where the crop shows no face)."""
    h, w = frame.shape[:2]
    if boxes is None:
        return [np.asarray(m, dtype=np.float64)[:, :2] * [w, h] for m in face_mesh.landmarks(frame)]
    out: list[np.ndarray | None] = []
    for bx, by, bw, bh in boxes:
        # The face mesh finds its face with BlazeFace at 128 px: crop the face with its
        # surroundings (rules.gaze_crop_factor x the box) and bring small crops up to 256 px.
        cx, cy, half = bx + bw / 2, by + bh / 2, rules.gaze_crop_factor * max(bw, bh) / 2
        x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
        x1, y1 = min(w, int(math.ceil(cx + half))), min(h, int(math.ceil(cy + half)))
        if x1 - x0 < 8 or y1 - y0 < 8:
            out.append(None)
            continue
        crop = np.ascontiguousarray(frame[y0:y1, x0:x1])
        if max(crop.shape[:2]) < rules.gaze_crop_min_px:
            up = rules.gaze_crop_min_px / max(crop.shape[:2])
            crop = cv2.resize(crop, (round(crop.shape[1] * up), round(crop.shape[0] * up)),
                              interpolation=cv2.INTER_LINEAR)
        found = [np.asarray(m, dtype=np.float64)[:, :2] * [x1 - x0, y1 - y0] + [x0, y0]
                 for m in face_mesh.landmarks(crop)]
        # the mesh nearest the box's centre is the box's face
        out.append(min(found, key=lambda p: float(np.hypot(*(p.mean(axis=0) - [cx, cy])))) if found else None)
    return out


def gaze(frame: np.ndarray, face_mesh: FaceMeshModel, rules: VisionRules = VisionRules(),
         scale: float = 1.0, focal_length_35mm: float | None = None,
         boxes: Sequence[Sequence[float]] | None = None) -> list[Gaze | None]:
    """Iris centres and a 3-D gaze direction in camera coordinates, in original pixels (`frame`
    is the original resized by `scale`): per face box (x, y, w, h, original px; None where its
    crop yields no mesh), or, without boxes, per face the mesh finds itself, left to right.

    Method: the head's rotation comes from cv2.solvePnP of 6 face-mesh landmarks (nose tip,
    chin, outer eye corners, mouth corners) against the same points of mediapipe's canonical
    face, with the default intrinsics; the eyes' rotation within the head from the iris
    centres' offsets from the middle of their eye corners (averaged over both eyes), turned
    into angles on a 12 mm eyeball. Gaze = head rotation x eye direction. A geometric estimate:
    expect errors of several degrees on a frontal face, more beyond ~45 degrees of head yaw.
    """
    h, w = frame.shape[:2]
    ow, oh = w / scale, h / scale
    camera = default_intrinsics(round(ow), round(oh), rules, focal_length_35mm)
    frame_boxes = None if boxes is None else [[v * scale for v in box] for box in boxes]
    out = []
    for mesh in _meshes(frame, face_mesh, frame_boxes, rules):
        if mesh is None or mesh.shape[0] < 478:  # < 478: no iris (refine_landmarks off)
            out.append(None)
            continue
        out.append(_gaze(mesh / scale, camera, rules))
    if boxes is None:
        return sorted((g for g in out if g is not None), key=lambda g: (g.box[0], g.box[1]))
    return out


def _gaze(points: np.ndarray, camera: np.ndarray, rules: VisionRules) -> Gaze | None:
    """The gaze of one face from its (478, 2) landmark pixels and the camera matrix."""
    ok, rvec, tvec = cv2.solvePnP(_HEAD_MODEL, points[list(_HEAD_POINTS)], camera, None,
                                  flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok or tvec[2, 0] <= 0:  # the mirror solution puts the head behind the camera
        return None
    head, _ = cv2.Rodrigues(rvec)
    ratio = rules.eye_half_width_mm / rules.eyeball_radius_mm
    across, down = zip(_eye_angles(points, _RIGHT_EYE_OUTER, _RIGHT_EYE_INNER, _RIGHT_IRIS, rules),
                       _eye_angles(points, _LEFT_EYE_OUTER, _LEFT_EYE_INNER, _LEFT_IRIS, rules))
    eye_yaw = math.asin(float(np.clip(np.mean(across) * ratio, -1.0, 1.0)))
    eye_pitch = math.asin(float(np.clip(np.mean(down) * ratio, -1.0, 1.0)))
    in_head = np.array([math.sin(eye_yaw) * math.cos(eye_pitch), math.sin(eye_pitch),
                        -math.cos(eye_yaw) * math.cos(eye_pitch)])
    direction = head @ in_head
    direction /= np.linalg.norm(direction)
    # The ray from the eyes to the camera: eyes at the midpoint of the irises, at the head's depth.
    mid = (points[_RIGHT_IRIS] + points[_LEFT_IRIS]) / 2.0
    eyes = np.linalg.inv(camera) @ np.array([mid[0], mid[1], 1.0]) * tvec[2, 0]
    to_camera = -eyes / np.linalg.norm(eyes)
    angle = math.degrees(math.acos(float(np.clip(direction @ to_camera, -1.0, 1.0))))
    head_yaw, head_pitch = _yaw_pitch(head @ np.array([0.0, 0.0, -1.0]))
    yaw, pitch = _yaw_pitch(direction)
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    return Gaze(
        box=(float(x0), float(y0), float(x1 - x0), float(y1 - y0)),
        right_iris=(float(points[_RIGHT_IRIS, 0]), float(points[_RIGHT_IRIS, 1])),
        left_iris=(float(points[_LEFT_IRIS, 0]), float(points[_LEFT_IRIS, 1])),
        direction=direction, yaw_degrees=yaw, pitch_degrees=pitch,
        head_rotation=head, head_yaw_degrees=head_yaw, head_pitch_degrees=head_pitch,
        head_roll_degrees=math.degrees(math.atan2(head[1, 0], head[0, 0])),
        camera_angle_degrees=angle,
    )
