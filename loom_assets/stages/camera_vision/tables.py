"""One function per camera vision table, each reading the raw camera rows of one window."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from loom_assets.lazy import LazyModule
from loom_assets.stages.camera_vision.faces import blur_faces, faces
from loom_assets.stages.camera_vision.gaze import gaze
from loom_assets.stages.camera_vision.objects import (
    _signed64,
    _unsigned64,
    match_objects,
    object_hashes,
)
from loom_assets.stages.camera_vision.odometry import (
    Features,
    VOState,
    chain_poses,
    visual_odometry,
)
from loom_assets.stages.camera_vision.poses import poses
from loom_assets.stages.camera_vision.preprocess import default_intrinsics, preprocess
from loom_assets.stages.camera_vision.protocols import (
    FaceDetectorModel,
    FaceMeshModel,
    ObjectDetector,
    PoseModel,
)
from loom_assets.stages.camera_vision.rows import (
    FACE_DTYPES,
    GAZE_DTYPES,
    OBJECT_DTYPES,
    OBJECT_HASH_DTYPES,
    POSE_DTYPES,
    PREPROCESSED_DTYPES,
    RAW_COLUMNS,
    SLAM_DTYPES,
)
from loom_assets.stages.camera_vision.rules import VisionRules
from loom_assets.stages.frames import typed_frame, utc, with_columns
from loom_assets.stages.images import DecodedImage, ImageDecodeError, decode_image

cv2 = LazyModule("cv2")


# -- stage plumbing -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Photo:
    head: dict[str, Any]
    image: DecodedImage | None
    frame: np.ndarray | None      # preprocessed (<= max_side)
    scale: float                  # frame width / original width
    blur: float
    error: ImageDecodeError | None


def _raw(raw: pd.DataFrame | None) -> pd.DataFrame:
    frame = with_columns(raw, RAW_COLUMNS)
    frame = frame.dropna(subset=["device_id", "recorded_at"])
    frame = frame.assign(recorded_at=utc(frame["recorded_at"]), window_start=utc(frame["window_start"]))
    frame = frame.sort_values(["device_id", "recorded_at"], kind="stable")
    return frame.drop_duplicates(["device_id", "recorded_at"], keep="first")


def _camera(value: Any) -> str | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA else str(value)


def _photos(raw: pd.DataFrame | None, rules: VisionRules, only=None) -> Iterator[_Photo]:
    """Each photo of `raw` decoded and preprocessed, in (device_id, recorded_at) order; with
    `only`, just the photos whose (device_id, recorded_at) is in it."""
    for row in _raw(raw).itertuples(index=False):
        if only is not None and (row.device_id, row.recorded_at) not in only:
            continue
        head = {"window_start": row.window_start, "device_id": row.device_id,
                "recorded_at": row.recorded_at, "camera_type": _camera(row.camera_type)}
        try:
            image = decode_image(row.image_data, rules.max_pixels, rules.max_side)
        except ImageDecodeError as error:
            yield _Photo(head, None, None, 1.0, math.nan, error)
            continue
        frame, _, score, _ = preprocess(image.rgb, rules)
        yield _Photo(head, image, frame, frame.shape[1] / image.width, score, None)


def _floats(values: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(values, dtype=np.float64).ravel()]


# -- stages ---------------------------------------------------------------------------------------
def preprocessed_rows(raw: pd.DataFrame, rules: VisionRules) -> pd.DataFrame:
    """One row per photo (`PREPROCESSED_DTYPES`): sizes, blur, brightness, EXIF facts, or the
    reason it did not decode."""
    rows = []
    for photo in _photos(raw, rules):
        if photo.error is not None:
            rows.append({**photo.head, "error_type": photo.error.error_type, "error_message": photo.error.message})
            continue
        ow, oh = photo.image.width, photo.image.height
        h, w = photo.frame.shape[:2]
        rows.append({
            **photo.head, "format": photo.image.format, "original_width": ow, "original_height": oh,
            "exif_orientation": photo.image.exif_orientation, "width": w, "height": h, "scale": photo.scale,
            "brightness": float(cv2.cvtColor(photo.frame, cv2.COLOR_RGB2GRAY).mean()),
            "blur_score": photo.blur, "is_blurred": photo.blur < rules.blur_threshold,
            "focal_length_35mm": photo.image.focal_length_35mm,
        })
    return typed_frame(rows, PREPROCESSED_DTYPES)


def object_rows(raw: pd.DataFrame, detector: ObjectDetector, rules: VisionRules) -> pd.DataFrame:
    """Objects found by `detector` (`OBJECT_DTYPES`): at >= rules.object_min_confidence, at most
    rules.max_objects a photo, most confident first. A detector that gives no score (Moondream2)
    reports NaN: those boxes are kept, after the scored ones, in the detector's order."""
    rows = []
    for photo in _photos(raw, rules):
        if photo.error is not None:
            continue
        found = sorted((d for d in detector.detect(photo.frame) if not d[1] < rules.object_min_confidence),
                       key=lambda d: -d[1] if d[1] == d[1] else math.inf)[: rules.max_objects]
        for index, (label, confidence, x, y, w, h) in enumerate(found):
            s = photo.scale
            rows.append({**photo.head, "object_index": index, "label": str(label),
                         "confidence": None if confidence != confidence else float(confidence),
                         "x": x / s, "y": y / s, "w": w / s, "h": h / s})
    return typed_frame(rows, OBJECT_DTYPES)


def object_crop(frame: np.ndarray, box: Sequence[float], face_boxes: Sequence[Sequence[float]],
                rules: VisionRules) -> bytes:
    """The JPEG thumbnail of one (x, y, w, h) box of an RGB frame, with the faces in it blurred
    when `rules.blur_stored_faces` (face boxes in the same pixels as `box`)."""
    h, w = frame.shape[:2]
    x0, y0 = max(0, int(math.floor(box[0]))), max(0, int(math.floor(box[1])))
    x1, y1 = min(w, max(x0 + 1, int(math.ceil(box[0] + box[2])))), min(h, max(y0 + 1, int(math.ceil(box[1] + box[3]))))
    crop = frame[y0:y1, x0:x1]
    if rules.blur_stored_faces and len(face_boxes):
        crop = blur_faces(crop, [(fx - x0, fy - y0, fw, fh) for fx, fy, fw, fh in face_boxes], rules)
    scale = min(1.0, rules.crop_max_side / max(crop.shape[:2]))
    if scale < 1.0:
        crop = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))),
                          interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, rules.crop_jpeg_quality])
    if not ok:
        raise ValueError(f"could not encode a {crop.shape} crop")
    return jpeg.tobytes()


def object_hash_rows(raw: pd.DataFrame, objects: pd.DataFrame, previous: pd.DataFrame | None,
                     rules: VisionRules, faces: pd.DataFrame | None = None) -> pd.DataFrame:
    """A pHash per object, a track id and the object's crop (`OBJECT_HASH_DTYPES`); faces
    (`FACE_DTYPES` rows of the same photos) are blurred in the crops.

    An object continues the track, of the same label on the same device and camera, whose last
    hash is most similar (>= rules.object_hash_similarity) among tracks seen in the
    rules.track_memory_seconds before the photo; else it starts a track. `previous` is this
    table's rows from before the window (at least the last rules.track_memory_seconds).
    """
    objects = with_columns(objects, OBJECT_DTYPES)
    if objects.empty:
        return typed_frame([], OBJECT_HASH_DTYPES)
    objects = objects.assign(recorded_at=utc(objects["recorded_at"]))
    by_photo = {key: group.sort_values("object_index") for key, group in objects.groupby(["device_id", "recorded_at"])}
    # (device, camera) -> track -> (label, unsigned hash, last seen)
    tracks: dict[tuple[str, str | None], dict[str, tuple[str, int, pd.Timestamp]]] = {}
    earlier = with_columns(previous, OBJECT_HASH_DTYPES)
    if not earlier.empty:
        earlier = earlier.assign(recorded_at=utc(earlier["recorded_at"])).sort_values("recorded_at", kind="stable")
        for row in earlier.dropna(subset=["phash", "track_id"]).itertuples(index=False):
            tracks.setdefault((row.device_id, _camera(row.camera_type)), {})[row.track_id] = (
                row.label, _unsigned64(int(row.phash)), row.recorded_at)
    memory = pd.Timedelta(seconds=rules.track_memory_seconds)
    face_boxes: dict[tuple[str, pd.Timestamp], list[tuple[float, float, float, float]]] = {}
    found = with_columns(faces, FACE_DTYPES)
    for face in found.assign(recorded_at=utc(found["recorded_at"])).itertuples(index=False) if not found.empty else ():
        face_boxes.setdefault((face.device_id, face.recorded_at), []).append((face.x, face.y, face.w, face.h))
    rows = []
    for photo in _photos(raw, rules, only=by_photo.keys()):
        boxes = by_photo.get((photo.head["device_id"], photo.head["recorded_at"]))
        if photo.error is not None or boxes is None:
            continue
        at = photo.head["recorded_at"]
        known = tracks.setdefault((photo.head["device_id"], photo.head["camera_type"]), {})
        s = photo.scale
        scaled = [(r.x * s, r.y * s, r.w * s, r.h * s) for r in boxes.itertuples()]
        hashes = object_hashes(photo.frame, scaled)
        in_photo = face_boxes.get((photo.head["device_id"], at), [])
        face_px = [(x * s, y * s, w * s, h * s) for x, y, w, h in in_photo]
        assigned: list[tuple[str | None, float]] = [(None, math.nan)] * len(hashes)
        labels = list(boxes["label"])
        for label in dict.fromkeys(labels):
            candidates = {t: hv for t, (lb, hv, seen) in known.items() if lb == label and at - memory <= seen < at}
            idx = [i for i, lb in enumerate(labels) if lb == label]
            for i, match in zip(idx, match_objects(candidates, [hashes[i] for i in idx], rules)):
                assigned[i] = match
        epoch_ms = int((at - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1))
        for box, scaled_box, value, (track, similarity) in zip(boxes.itertuples(), scaled, hashes, assigned):
            if value is None:
                continue
            new = track is None
            track = f"{photo.head['device_id']}-{epoch_ms}-{int(box.object_index)}" if new else track
            known[track] = (box.label, value, at)
            rows.append({**photo.head, "object_index": int(box.object_index), "label": box.label,
                         "phash": _signed64(value), "track_id": track, "is_new_track": new,
                         "similarity": None if new else similarity,
                         "crop": object_crop(photo.frame, scaled_box, face_px, rules)})
    return typed_frame(rows, OBJECT_HASH_DTYPES)


def face_rows(raw: pd.DataFrame, detector: FaceDetectorModel, rules: VisionRules) -> pd.DataFrame:
    """Faces (`FACE_DTYPES`): box, confidence and 6 keypoints, left to right."""
    rows = []
    for photo in _photos(raw, rules):
        if photo.error is not None:
            continue
        for index, face in enumerate(faces(photo.frame, detector, rules, photo.scale)):
            rows.append({**photo.head, "face_index": index, "confidence": face.confidence,
                         "x": face.box[0], "y": face.box[1], "w": face.box[2], "h": face.box[3],
                         "keypoints": _floats(face.keypoints)})
    return typed_frame(rows, FACE_DTYPES)


def pose_rows(raw: pd.DataFrame, estimator: PoseModel, rules: VisionRules) -> pd.DataFrame:
    """Body poses (`POSE_DTYPES`): 33 landmarks in pixels and in metres."""
    rows = []
    for photo in _photos(raw, rules):
        if photo.error is not None:
            continue
        for index, pose in enumerate(poses(photo.frame, estimator, rules, photo.scale)):
            rows.append({**photo.head, "person_index": index, "visible_landmarks": pose.visible_landmarks,
                         "mean_visibility": pose.mean_visibility, "landmarks": _floats(pose.landmarks),
                         "world_landmarks": _floats(pose.world_landmarks)})
    return typed_frame(rows, POSE_DTYPES)


def gaze_rows(raw: pd.DataFrame, faces: pd.DataFrame, face_mesh: FaceMeshModel, rules: VisionRules) -> pd.DataFrame:
    """Gaze per face of `faces` (this window's `face_rows`; `GAZE_DTYPES`, same face_index):
    iris centres, gaze vector and angles, head pose, eye contact. The face mesh runs on a crop
    around each face box (docs/flows/camera_vision.md#gaze reads the detected faces)."""
    faces = with_columns(faces, FACE_DTYPES)
    if faces.empty:
        return typed_frame([], GAZE_DTYPES)
    faces = faces.assign(recorded_at=utc(faces["recorded_at"]))
    by_photo = {key: group.sort_values("face_index") for key, group in faces.groupby(["device_id", "recorded_at"])}
    rows = []
    for photo in _photos(raw, rules, only=by_photo.keys()):
        boxes = by_photo.get((photo.head["device_id"], photo.head["recorded_at"]))
        if photo.error is not None or boxes is None:
            continue
        found = gaze(photo.frame, face_mesh, rules, photo.scale, photo.image.focal_length_35mm,
                     boxes=boxes[["x", "y", "w", "h"]].to_numpy(dtype=np.float64))
        for index, g in zip(boxes["face_index"], found):
            if g is None:
                continue
            rows.append({
                **photo.head, "face_index": int(index), "x": g.box[0], "y": g.box[1], "w": g.box[2], "h": g.box[3],
                "right_iris_x": g.right_iris[0], "right_iris_y": g.right_iris[1],
                "left_iris_x": g.left_iris[0], "left_iris_y": g.left_iris[1],
                "gaze_x": g.direction[0], "gaze_y": g.direction[1], "gaze_z": g.direction[2],
                "yaw_degrees": g.yaw_degrees, "pitch_degrees": g.pitch_degrees,
                "head_yaw_degrees": g.head_yaw_degrees, "head_pitch_degrees": g.head_pitch_degrees,
                "head_roll_degrees": g.head_roll_degrees, "camera_angle_degrees": g.camera_angle_degrees,
                "looking_at_camera": g.camera_angle_degrees <= rules.eye_contact_max_degrees,
            })
    return typed_frame(rows, GAZE_DTYPES)


def vo_states(previous: pd.DataFrame | None) -> dict[tuple[str, str | None], VOState]:
    """Each camera's (device_id, camera_type) last keyframe from earlier `slam_rows` rows (which
    must hold each camera's last keyframe row and its last row)."""
    earlier = with_columns(previous, SLAM_DTYPES)
    states: dict[tuple[str, str | None], VOState] = {}
    if earlier.empty:
        return states
    earlier = earlier.assign(recorded_at=utc(earlier["recorded_at"]), segment_start=utc(earlier["segment_start"]),
                             camera_type=[_camera(c) for c in earlier["camera_type"]])
    last_seen: dict[tuple[str, str | None], pd.Timestamp] = {}
    for device, camera, at in zip(earlier["device_id"], earlier["camera_type"], earlier["recorded_at"]):
        if not pd.isna(at) and ((device, camera) not in last_seen or at > last_seen[(device, camera)]):
            last_seen[(device, camera)] = at
    earlier = earlier[earlier["is_keyframe"].fillna(False).astype(bool) & earlier["descriptors"].notna()]
    for row in earlier.sort_values("recorded_at", kind="stable").itertuples(index=False):
        K = np.array([[row.focal_px, 0.0, row.cx], [0.0, row.focal_px, row.cy], [0.0, 0.0, 1.0]])
        features = Features(np.frombuffer(bytes(row.keypoints), dtype="<f4").reshape(-1, 2),
                            np.frombuffer(bytes(row.descriptors), dtype=np.uint8).reshape(-1, 32),
                            K, int(row.vo_width), int(row.vo_height))
        states[(row.device_id, _camera(row.camera_type))] = VOState(
            features, np.asarray(row.rotation, dtype=np.float64).reshape(3, 3),
            np.asarray(row.translation, dtype=np.float64).reshape(3), row.recorded_at, row.segment_start,
            last_seen[(row.device_id, row.camera_type)])
    return states


def slam_rows(raw: pd.DataFrame, previous: pd.DataFrame | None, rules: VisionRules) -> pd.DataFrame:
    """Monocular visual odometry per camera (device_id, camera_type) (`SLAM_DTYPES`).

    Each photo is matched against its camera's last keyframe (`previous`: this table's earlier
    rows, at least each camera's last keyframe row; keyframe rows carry their ORB keypoints and
    descriptors). A tracked photo gets the keyframe's pose chained with the step, and becomes
    the keyframe when it moved enough (rules.keyframe_*). A photo that cannot be matched, or
    whose keyframe is older than rules.vo_max_gap_seconds, starts a new chain at the identity.
    """
    states = vo_states(previous)
    gap = pd.Timedelta(seconds=rules.vo_max_gap_seconds)
    rows = []
    for photo in _photos(raw, rules):
        if photo.error is not None:
            continue
        head, at = photo.head, photo.head["recorded_at"]
        key = (head["device_id"], head["camera_type"])
        ow, oh = photo.image.width, photo.image.height
        K = default_intrinsics(ow, oh, rules, photo.image.focal_length_35mm)
        K[:2] *= photo.scale
        state = states.get(key)
        if state is not None and not (state.last_seen < at <= state.last_seen + gap):
            state = None
        step = visual_odometry(state.features if state else None, photo.frame, K, rules)
        if state is not None and step.tracked:
            status, keyframe_at, segment = "tracked", state.recorded_at, state.segment_start
            R, t = chain_poses((state.R, state.t), step)
        else:
            status = "lost" if state is not None else "initialized"
            keyframe_at, segment, R, t = None, at, np.eye(3), np.zeros(3)
        is_keyframe = step.is_keyframe or not step.tracked or state is None
        if is_keyframe:
            states[key] = VOState(step.features, R, t, at, segment, at)
        else:
            state.last_seen = at
        f = step.features
        rows.append({
            **head, "segment_start": segment, "status": status, "keyframe_recorded_at": keyframe_at,
            "is_keyframe": is_keyframe, "matches": step.matches, "inliers": step.inliers,
            "median_parallax_px": step.median_parallax_px,
            "step_rotation_degrees": step.rotation_degrees if status == "tracked" else None,
            "step_rotation": _floats(step.R) if status == "tracked" else None,
            "step_translation": _floats(step.t) if status == "tracked" else None,
            "rotation": _floats(R), "translation": _floats(t), "position": _floats(-R.T @ t),
            "focal_px": float(f.K[0, 0]), "cx": float(f.K[0, 2]), "cy": float(f.K[1, 2]),
            "vo_width": f.width, "vo_height": f.height,
            "keypoints": f.keypoints.astype("<f4").tobytes() if is_keyframe else None,
            "descriptors": f.descriptors.astype(np.uint8).tobytes() if is_keyframe else None,
        })
    return typed_frame(rows, SLAM_DTYPES)
