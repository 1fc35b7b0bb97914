"""Camera vision: photos (bytes in the blob store) → preprocessed (upright, size, blur); objects →
object hashes tracked across windows; faces → gaze; poses; monocular visual odometry (slam)
chained across windows."""

import pandas as pd
from dagster import RetryPolicy

from loom_assets.flows.base import Carry, Flow
from loom_assets.models.vision import model_versions
from loom_assets.resources.models import Models, object_model_version
from loom_assets.stages import camera_vision as vision

FLOW = Flow(
    name="camera_vision",
    topics=("device.image.camera.raw",),
    description="Camera photos of each device (bytes in the blob store).",
    alert_error_rate=0.1,  # docs/flows/camera_vision.md#retries-and-alerts
)
RULES = vision.VisionRules()
MODELS = model_versions()
# Visual odometry continues from each camera's last keyframe, at most this far back.
SLAM_LOOKBACK = pd.Timedelta(seconds=RULES.vo_max_gap_seconds)
# The detector (LOOM_OBJECT_MODEL) and its version: a new one makes objects and hashes stale.
OBJECT_MODEL = object_model_version()
# Object tracks continue from hashes seen this far back.
TRACK_LOOKBACK = pd.Timedelta(seconds=RULES.track_memory_seconds)

# Every stage reads the photos' bytes from the blob store.
PHOTOS = {"raw": {"image_data_uri": "image_data"}}

raw = FLOW.raw


@FLOW.stage(media=PHOTOS, logic_version="1", rules_version=f"rules{RULES.version}",
            retry=RetryPolicy(max_retries=2, delay=5))  # docs/flows/camera_vision.md#retries-and-alerts: 2 retries, 5 s
def preprocessed(raw: pd.DataFrame) -> pd.DataFrame:
    """Each photo upright (EXIF), its size, brightness and blur score (variance of the
    Laplacian; blurred below the stated threshold), or why it did not decode."""
    return vision.preprocessed_rows(raw, RULES)


# Moondream2, the production detector, runs on CUDA when the pod has a GPU.
@FLOW.stage(media=PHOTOS, logic_version="1", rules_version=f"{OBJECT_MODEL}-rules{RULES.version}", gpu=True,
            retry=RetryPolicy(max_retries=1, delay=10))  # docs/flows/camera_vision.md#retries-and-alerts: 1 retry, 10 s
def objects(raw: pd.DataFrame, models: Models) -> pd.DataFrame:
    """Objects (LOOM_OBJECT_MODEL: COCO MB3-CenterNet by default, or Moondream2): label,
    confidence ≥ 0.5 and box, at most 50 a photo, most confident first."""
    return vision.object_rows(raw, models.objects(), RULES)


@FLOW.stage(media=PHOTOS, logic_version="1", rules_version=f"{OBJECT_MODEL}-rules{RULES.version}",
            retry=RetryPolicy(max_retries=2, delay=2),  # docs/flows/camera_vision.md#retries-and-alerts: 2 retries, 2 s
            carry=Carry(per=(), lookback=TRACK_LOOKBACK + FLOW.window), stores={"crop": ".jpg"})
def object_hashes(raw: pd.DataFrame, objects: pd.DataFrame, faces: pd.DataFrame, state: pd.DataFrame) -> pd.DataFrame:
    """A 64-bit pHash of each object's crop and a track id: an object continues the most similar
    (≥ 0.85) track of its label on the same camera seen in the last 10 min (carried across
    windows), else starts one. The crop is stored as a thumbnail (`crop_uri`), faces blurred."""
    return vision.object_hash_rows(raw, objects, state, RULES, faces)


@FLOW.stage(media=PHOTOS, logic_version="1", rules_version=f"{MODELS['faces']}-rules{RULES.version}",
            retry=RetryPolicy(max_retries=2, delay=5))  # docs/flows/camera_vision.md#retries-and-alerts: 2 retries, 5 s
def faces(raw: pd.DataFrame, models: Models) -> pd.DataFrame:
    """Faces (MediaPipe, confidence ≥ 0.5, also on tiles for small faces): box and keypoints."""
    return vision.face_rows(raw, models.vision().faces, RULES)


@FLOW.stage(media=PHOTOS, logic_version="1", rules_version=f"{MODELS['face_mesh']}-rules{RULES.version}",
            retry=RetryPolicy(max_retries=1, delay=5))  # docs/flows/camera_vision.md#retries-and-alerts: 1 retry, 5 s
def gaze(raw: pd.DataFrame, faces: pd.DataFrame, models: Models) -> pd.DataFrame:
    """Per face: iris centres, a 3-D gaze direction (head pose by solvePnP, eyes by the iris
    offset), yaw and pitch, and whether the person looks at the camera."""
    return vision.gaze_rows(raw, faces, models.vision().face_mesh, RULES)


@FLOW.stage(media=PHOTOS, logic_version="1", rules_version=f"{MODELS['pose']}-rules{RULES.version}",
            retry=RetryPolicy(max_retries=1, delay=5))  # docs/flows/camera_vision.md#retries-and-alerts: 1 retry, 5 s
def poses(raw: pd.DataFrame, models: Models) -> pd.DataFrame:
    """Body pose (MediaPipe Pose): 33 landmarks in pixels and in metres, with visibility."""
    return vision.pose_rows(raw, models.vision().pose, RULES)


@FLOW.stage(media=PHOTOS, logic_version="1", rules_version=f"orb-rules{RULES.version}",
            retry=RetryPolicy(max_retries=0, delay=0),  # docs/flows/camera_vision.md#retries-and-alerts: no retries
            carry=Carry(per=(), lookback=SLAM_LOOKBACK + FLOW.window))
def slam(raw: pd.DataFrame, state: pd.DataFrame) -> pd.DataFrame:
    """Monocular visual odometry per camera: ORB features, essential matrix, the pose chained
    from the camera's last keyframe (carried across windows); a photo that cannot be matched
    starts a new chain."""
    return vision.slam_rows(raw, state, RULES)
