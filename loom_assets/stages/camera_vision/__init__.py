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

# Names the module held before it became a package, which callers and tests still reach through it.
from loom_assets.stages.camera_vision.faces import Face, _iou, blur_faces, faces
from loom_assets.stages.camera_vision.gaze import _HEAD_MODEL, _HEAD_POINTS, Gaze, gaze
from loom_assets.stages.camera_vision.objects import (
    hash_similarity,
    match_objects,
    object_hashes,
    phash,
)
from loom_assets.stages.camera_vision.odometry import (
    Features,
    PoseStep,
    VOState,
    chain_poses,
    orb_features,
    rotation_degrees,
    visual_odometry,
)
from loom_assets.stages.camera_vision.poses import Pose, poses
from loom_assets.stages.camera_vision.preprocess import (
    blur_score,
    default_intrinsics,
    load_frame,
    preprocess,
    resized,
)
from loom_assets.stages.camera_vision.protocols import (
    FaceDetection,
    FaceDetectorModel,
    FaceMeshModel,
    ObjectDetector,
    PoseDetection,
    PoseModel,
)
from loom_assets.stages.camera_vision.rows import (
    _HEAD,
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
from loom_assets.stages.camera_vision.tables import (
    face_rows,
    gaze_rows,
    object_crop,
    object_hash_rows,
    object_rows,
    pose_rows,
    preprocessed_rows,
    slam_rows,
    vo_states,
)
from loom_assets.stages.frames import typed_frame
from loom_assets.stages.images import DecodedImage, ImageDecodeError, decode_image
