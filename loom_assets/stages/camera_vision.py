"""Camera vision: photos -> preprocessed frames, objects and their hashes, faces, poses, gaze and
visual odometry (docs/flows/camera_vision.md, docs/architecture.md#components).

One function per table, each reading the raw camera rows of one window (`RAW_COLUMNS`: the image
bytes, or their base64 text, plus `format`, `width`, `height`, `camera_type`):

| stage (table `camera_vision_<stage>`) | function            | Loom v2 stage          |
|---------------------------------------|---------------------|------------------------|
| preprocessed                          | `preprocessed_rows` | 1 image_preprocessing  |
| objects                               | `object_rows`       | 2 object_detection     |
| object_hashes                         | `object_hash_rows`  | 3 object_hashing       |
| faces                                 | `face_rows`         | 4 face_detection       |
| poses                                 | `pose_rows`         | 5 pose_detection       |
| gaze                                  | `gaze_rows`         | 6 gaze_detection       |
| slam                                  | `slam_rows`         | 7 slam_processor       |

Each stage decodes the photo itself (`decode_image` + `preprocess`: 15-45 ms for 1080p, ~0.1 s
for 12 MP on a 2-core machine, at 1-2 photos a minute), so each table is one asset reading the raw rows, plus
the objects (object hashes) or the faces (gaze: the gaze stage reads the detected faces, and its
face_index is theirs). An image that does not decode is one `preprocessed` row carrying
`error_type`/`error_message`; the other stages skip it. Pixel coordinates in every table are in
the upright (EXIF-rotated) original image; models run on the frame resized to <= 2048 px.
Object hashes and visual odometry continue from their own table's earlier rows (`previous`),
so a photo gets the same row however the photos are split into windows.

Models are passed in (`loom_assets.models.vision` wraps mediapipe, `loom_assets.models.objects`
the object detectors); this module imports no ML framework beyond OpenCV.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np
import pandas as pd

from loom_assets.stages.frames import typed_frame, utc, with_columns
from loom_assets.stages.images import DecodedImage, ImageDecodeError, decode_image


@dataclass(frozen=True)
class VisionRules:
    """Every number of the camera vision flow, with its reason. Bump `version` when one changes."""

    version: str = "1"

    # -- decoding and preprocessing (docs/flows/camera_vision.md#preprocessed) --
    # 100 MP: above every phone's default output (108 MP sensors; 200 MP ones bin to 12/50 MP by
    # default) and ~300 MB of RGB; a larger header is a decompression bomb, not a photo.
    max_pixels: int = 100_000_000
    max_side: int = 2048
    # Blur = variance of the Laplacian (Pech-Pacheco et al. 2000) of the luma, downscaled to
    # 512 px wide (never upscaled) so the score does not depend on the camera's resolution.
    # Measured here at 512 px: sharp photos 148-940 (skimage astronaut 861, coffee 736, chelsea
    # 148, JPEG q85 alike); the same photos Gaussian-blurred by sigma 1 px (4 px at 2048) 17-66,
    # a 15 px motion smear 15-55. 100 sits between the two groups (and is the value commonly used
    # with this measure). Smooth subjects (a white wall, a retina scan: 69) score low too: the
    # flag says "no fine detail", which is what downstream matching needs.
    blur_width: int = 512
    blur_threshold: float = 100.0

    # -- objects (docs/flows/camera_vision.md#objects) --
    object_min_confidence: float = 0.5   # docs/flows/camera_vision.md#objects
    max_objects: int = 50                # docs/flows/camera_vision.md#objects
    # docs/flows/camera_vision.md#object_hashes: similarity 0.85 = 1 - Hamming/64 of a 64-bit pHash
    # (<= 9 differing bits). Loom v2's hash_size 256 would be a 256-bit hash; 64 bits fit a BIGINT
    # column and are the standard pHash (DCT of a 32x32 luma crop, 8x8 lowest frequencies against
    # their median).
    object_hash_similarity: float = 0.85
    # An object continues a track of the same label seen on the same camera in the last 10 min
    # (Loom v2's track_across_frames names no horizon; at 1-2 photos/min that is 10-20 photos).
    track_memory_seconds: float = 600.0

    # -- faces, pose, gaze (docs/flows/camera_vision.md#faces) --
    face_min_confidence: float = 0.5     # mediapipe's own default and the other thresholds
    face_min_size_px: float = 50.0       # docs/flows/camera_vision.md#faces, in original-image pixels
    # BlazeFace sees its input at 128 px (short range) or 192 px (full range): on a whole
    # 2048 x 1536 frame the full-range model found (measured here, the astronaut pasted at random
    # places into a 2048 x 1536 coffee photo) every face of >= 186 px, 4/6 of 130 px, none
    # smaller. Also running it on square tiles of the shorter side and its halves down to
    # 512 px (2 + 15 tiles, ~170 ms) found every face of >= 65 px and none in 4 faceless photos.
    face_tiles: bool = True
    face_tile_min_px: int = 512
    face_merge_iou: float = 0.3
    # Gaze: the face mesh runs on a crop of 2x the face box (the face with its surroundings, as
    # the mesh's own detector expects), brought up to at least 256 px.
    gaze_crop_factor: float = 2.0
    gaze_crop_min_px: int = 256
    pose_min_visibility: float = 0.5     # a landmark counts as visible at >= 0.5 (mediapipe's use)
    # Gaze is "at the camera" within 10 degrees: people judge gaze as direct within roughly
    # +-5-10 degrees (the "cone of direct gaze"), about the accuracy of this geometric method.
    eye_contact_max_degrees: float = 10.0
    # Eyeball radius 12 mm over half the eye opening (corner to corner ~30 mm -> 15 mm): an iris
    # shifted by a fraction f of the half-opening turned by asin(f * 15 / 12).
    eyeball_radius_mm: float = 12.0
    eye_half_width_mm: float = 15.0
    # Loom v2's anonymize_option, blur (docs/flows/camera_vision.md#object_hashes). Face boxes are
    # blurred in any crop or preview that is stored; sigma is a quarter of the box's longer side,
    # enough to remove identity at any face size.
    blur_stored_faces: bool = True
    face_blur_sigma_fraction: float = 0.25
    # Object crops are kept as thumbnails (what a track looked like), not at full resolution.
    crop_max_side: int = 256
    crop_jpeg_quality: int = 85

    # -- visual odometry (docs/flows/camera_vision.md#slam: monocular) --
    vo_max_side: int = 1024              # VO runs on <= 1024 px: ORB keypoints and parallax in these px
    orb_features: int = 2000
    lowe_ratio: float = 0.75             # Lowe 2004
    ransac_probability: float = 0.999
    ransac_threshold_px: float = 1.0
    min_matches: int = 30                # fewer ratio-test matches: tracking lost
    min_inliers: int = 20                # fewer pose inliers: tracking lost
    # A frame becomes the next keyframe when it moved enough for a stable baseline: median
    # parallax of the inliers > 20 px (2 % of 1024 px) or a rotation > 5 degrees.
    keyframe_parallax_px: float = 20.0
    keyframe_rotation_degrees: float = 5.0
    # After 10 min without a photo from a camera its keyframe is not matched against: the phone
    # has moved elsewhere, and a new pose chain starts.
    vo_max_gap_seconds: float = 600.0
    # Without EXIF focal length: f = 0.75 x the longer side, the principal point at the centre.
    # 0.75 is a 26 mm (35 mm-equivalent) lens on a 4:3 sensor (f_px = 26 / 34.6 x long side):
    # the main camera of most phones (24-28 mm); front cameras and laptop webcams are near it
    # (~0.65-0.85). COLMAP's generic 1.2 x (a ~45 degree lens) is far off for phones: on the
    # synthetic scene of the tests, shot with f = 0.75, assuming 1.2 turned rotations of 5/10/15
    # degrees into 8.4/13.7/26.4 (errors 3.5-11.7 degrees; 0.3-1.1 with the true f). The
    # principal point's offset from the centre on phone cameras is small next to that.
    default_focal_factor: float = 0.75
    exif_focal_range_mm: tuple[float, float] = (8.0, 400.0)  # plausible FocalLengthIn35mmFilm


# -- row layouts ----------------------------------------------------------------------------------
RAW_COLUMNS = ("window_start", "device_id", "recorded_at", "image_data", "format", "width", "height",
               "camera_type")

_TIME = "datetime64[us, UTC]"
_HEAD: dict[str, str] = {
    "window_start": _TIME,   # timestamptz NOT NULL: the partition that emitted the row
    "device_id": "str",      # text NOT NULL
    "recorded_at": _TIME,    # timestamptz NOT NULL: the photo's time (the raw row's key)
    "camera_type": "str",    # text: front | rear | NULL
}

PREPROCESSED_DTYPES: dict[str, str] = {
    **_HEAD,
    "format": "str",                   # text: decoded format (jpeg, png, webp, ...); NULL on error
    "original_width": "Int64",         # integer: upright original (after EXIF rotation)
    "original_height": "Int64",        # integer
    "exif_orientation": "Int64",       # smallint: EXIF orientation 1-8 that was undone, NULL if none
    "width": "Int64",                  # integer: the frame the models see (<= 2048 px)
    "height": "Int64",                 # integer
    "scale": "float64",                # double precision: width / original_width
    "brightness": "float64",           # double precision: mean luma 0-255
    "blur_score": "float64",           # double precision: variance of the Laplacian at 512 px
    "is_blurred": "boolean",           # boolean: blur_score < rules.blur_threshold
    "focal_length_35mm": "float64",    # real: EXIF FocalLengthIn35mmFilm, NULL if absent
    # text: NULL, or invalid_base64 | empty_image | invalid_image | truncated_image | image_too_large
    "error_type": "str",
    "error_message": "str",            # text
}

OBJECT_DTYPES: dict[str, str] = {
    **_HEAD,
    "object_index": "Int64",           # smallint: 0.. by descending confidence
    "label": "str",                    # text NOT NULL
    "confidence": "float64",           # real: NULL from a detector without scores (Moondream2)
    "x": "float64", "y": "float64",    # real: box top-left, original px
    "w": "float64", "h": "float64",    # real
}

OBJECT_HASH_DTYPES: dict[str, str] = {
    **_HEAD,
    "object_index": "Int64",           # smallint: the objects row it hashes
    "label": "str",                    # text NOT NULL
    "phash": "Int64",                  # bigint: 64-bit pHash as a signed two's-complement integer
    "track_id": "str",                 # text NOT NULL: "<device_id>-<first seen, epoch ms>-<object_index>"
    "is_new_track": "boolean",         # boolean
    "similarity": "float64",           # real: to the track's last hash; NULL for a new track
    # The object's crop as JPEG (≤ crop_max_side px, faces blurred when blur_stored_faces); the
    # flow stores it in the blob store and keeps `crop_uri`.
    "crop": "object",
}

FACE_DTYPES: dict[str, str] = {
    **_HEAD,
    "face_index": "Int64",             # smallint: 0.. left to right
    "confidence": "float64",           # real
    "x": "float64", "y": "float64",    # real: box top-left, original px
    "w": "float64", "h": "float64",    # real
    # real[12]: (x, y) px of right eye, left eye, nose tip, mouth centre, right ear tragion,
    # left ear tragion (the subject's right/left; mediapipe's order)
    "keypoints": "object",
}

POSE_DTYPES: dict[str, str] = {
    **_HEAD,
    "person_index": "Int64",           # smallint: mediapipe Pose finds one person a photo: 0
    "visible_landmarks": "Int64",      # smallint: landmarks with visibility >= pose_min_visibility
    "mean_visibility": "float64",      # real
    # real[132]: 33 BlazePose landmarks x (x px, y px, z px relative to the hips' depth, visibility)
    "landmarks": "object",
    # real[99]: 33 x (x, y, z) metres, origin between the hips (mediapipe world landmarks)
    "world_landmarks": "object",
}

GAZE_DTYPES: dict[str, str] = {
    **_HEAD,
    "face_index": "Int64",             # smallint: the faces row it belongs to
    "x": "float64", "y": "float64",    # real: box around the face mesh, original px
    "w": "float64", "h": "float64",    # real
    "right_iris_x": "float64",         # real: the subject's right iris centre, original px
    "right_iris_y": "float64",
    "left_iris_x": "float64",          # real: the subject's left iris centre
    "left_iris_y": "float64",
    "gaze_x": "float64",               # real: unit gaze vector, camera coordinates
    "gaze_y": "float64",               #       (x right, y down, z forward out of the lens)
    "gaze_z": "float64",
    "yaw_degrees": "float64",          # real: gaze yaw, + toward the image's right
    "pitch_degrees": "float64",        # real: gaze pitch, + up
    "head_yaw_degrees": "float64",     # real: head pose from solvePnP, same conventions
    "head_pitch_degrees": "float64",
    "head_roll_degrees": "float64",    # real: + clockwise in the image
    "camera_angle_degrees": "float64",  # real: angle between the gaze and the eyes-to-camera ray
    "looking_at_camera": "boolean",    # boolean: camera_angle_degrees <= eye_contact_max_degrees
}

SLAM_DTYPES: dict[str, str] = {
    **_HEAD,
    "segment_start": _TIME,            # timestamptz NOT NULL: first frame of this pose chain
    "status": "str",                   # text: initialized | tracked | lost (lost starts a new chain)
    "keyframe_recorded_at": _TIME,     # timestamptz: the keyframe this frame was matched against
    "is_keyframe": "boolean",          # boolean
    "matches": "Int64",                # integer: ratio-test matches with the keyframe
    "inliers": "Int64",                # integer: RANSAC + cheirality inliers
    "median_parallax_px": "float64",   # real: at VO resolution
    "step_rotation_degrees": "float64",  # real: rotation from the keyframe
    "step_rotation": "object",         # real[9]: R (row-major), keyframe camera -> this camera
    "step_translation": "object",      # real[3]: unit t (monocular: direction only)
    "rotation": "object",              # real[9]: world -> camera, world = the chain's first camera
    "translation": "object",           # real[3]: world -> camera, in keyframe baselines
    "position": "object",              # real[3]: camera centre in the world (-R^T t)
    "focal_px": "float64",             # real: intrinsics used, at VO resolution
    "cx": "float64", "cy": "float64",  # real
    "vo_width": "Int64",               # integer: VO resolution
    "vo_height": "Int64",
    "keypoints": "object",             # bytea: keyframes only, float32 (n, 2) VO px
    "descriptors": "object",           # bytea: keyframes only, uint8 (n, 32) ORB
}


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
