"""Camera vision stages: decoding, blur, faces, gaze, pose, object hashes and visual odometry."""

import base64
import dataclasses
import io
import math

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage import data

from loom_assets.models import vision
from loom_assets.stages import camera_vision as cv
from loom_assets.stages.frames import typed_frame

RULES = cv.VisionRules()
T0 = pd.Timestamp("2024-05-01T10:00:00Z")


@pytest.fixture(scope="module")
def models() -> vision.VisionModels:
    return vision.load()


def jpeg(rgb: np.ndarray, quality: int = 92, exif: Image.Exif | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality, **({"exif": exif} if exif else {}))
    return buffer.getvalue()


def b64(payload: bytes) -> str:
    return base64.b64encode(payload).decode()


def raw_rows(images: list, device: str = "phone-1", camera: str | None = "rear", start=T0,
             step_seconds: float = 30.0) -> pd.DataFrame:
    """Raw camera rows as landing gives them: base64 text (or bytes) plus the payload fields."""
    return pd.DataFrame({
        "window_start": [start.floor("15min")] * len(images),
        "device_id": [device] * len(images),
        "recorded_at": [start + pd.Timedelta(seconds=i * step_seconds) for i in range(len(images))],
        "source_topic": ["device.image.camera.raw"] * len(images),
        "source_partition": [0] * len(images),
        "source_offset": list(range(len(images))),
        "image_data": [b64(jpeg(i)) if isinstance(i, np.ndarray) else i for i in images],
        "format": ["jpeg"] * len(images),
        "width": [i.shape[1] if isinstance(i, np.ndarray) else None for i in images],
        "height": [i.shape[0] if isinstance(i, np.ndarray) else None for i in images],
        "camera_type": [camera] * len(images),
    })


def assert_typed(frame: pd.DataFrame, dtypes: dict[str, str]) -> None:
    assert list(frame.columns) == list(dtypes)
    expected = typed_frame([], dtypes).dtypes
    assert frame.dtypes.to_dict() == expected.to_dict()


class FaceBoxes:
    """Stand-in object detector: the face boxes, labelled "face" (object detection is another model)."""

    version = "test-face-boxes"

    def __init__(self, detector):
        self.detector = detector

    def detect(self, frame):
        return [("face", f.confidence, *f.box) for f in cv.faces(frame, self.detector, RULES)]


# -- decoding -------------------------------------------------------------------------------------
def test_exif_rotated_jpeg_is_uprighted():
    upright = data.coffee()  # 400 x 600
    stored = np.ascontiguousarray(np.rot90(upright, 1))  # as a sensor held sideways wrote it
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    frame = cv.load_frame(b64(jpeg(stored, exif=exif)))
    assert frame.shape == upright.shape
    assert np.abs(frame.astype(int) - upright.astype(int)).mean() < 4

    row = cv.preprocessed_rows(raw_rows([b64(jpeg(stored, exif=exif))]), RULES).iloc[0]
    assert (row["original_width"], row["original_height"], row["exif_orientation"]) == (600, 400, 6)


def test_bytes_and_data_urls_decode_like_base64_text():
    payload = jpeg(data.astronaut())
    a = cv.load_frame(payload)
    assert np.array_equal(a, cv.load_frame(b64(payload)))
    assert np.array_equal(a, cv.load_frame("data:image/jpeg;base64," + b64(payload)))


def _png(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (10, 20, 30)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("payload, error_type", [
    (b"", "empty_image"),
    ("", "empty_image"),
    ("this is not base64!", "invalid_base64"),
    (b"GIF89a but not really an image", "invalid_image"),
    (b64(b"\x00" * 64), "invalid_image"),
    (jpeg(data.astronaut())[:3000], "truncated_image"),
    (_png(200), "image_too_large"),  # 40 000 pixels, over the 30 000 allowed here
])
def test_bad_payloads_raise_an_image_decode_error(payload, error_type):
    with pytest.raises(cv.ImageDecodeError) as caught:
        cv.load_frame(payload, max_pixels=30_000 if error_type == "image_too_large" else RULES.max_pixels)
    assert caught.value.error_type == error_type


def test_an_undecodable_photo_is_an_error_row_and_other_stages_skip_it(models):
    raw = raw_rows([data.astronaut(), "%%%"])
    pre = cv.preprocessed_rows(raw, RULES)
    assert_typed(pre, cv.PREPROCESSED_DTYPES)
    assert pre["error_type"].isna().tolist() == [True, False]
    assert pre["error_type"].iloc[1] == "invalid_base64"
    assert len(cv.face_rows(raw, models.faces, RULES)) == 1


# -- preprocessing --------------------------------------------------------------------------------
def test_sharp_astronaut_passes_and_a_blurred_one_is_flagged():
    sharp = data.astronaut()
    _, _, score, blurred = cv.preprocess(sharp, RULES)
    assert not blurred and score > 3 * RULES.blur_threshold
    _, _, score, blurred = cv.preprocess(cv2.GaussianBlur(sharp, (0, 0), 2.0), RULES)
    assert blurred and score < RULES.blur_threshold / 3


def test_large_frames_are_resized_to_2048_and_blur_does_not_depend_on_resolution():
    big = cv2.resize(data.astronaut(), (4096, 4096), interpolation=cv2.INTER_NEAREST)
    small, scale, score, _ = cv.preprocess(big, RULES)
    assert small.shape == (2048, 2048, 3) and scale == 0.5
    # blur is measured at 512 px wide: 8x the same pixels scores as the original
    assert score == pytest.approx(cv.blur_score(data.astronaut(), RULES), rel=0.01)


def test_a_large_rotated_jpeg_is_decoded_small_and_reported_in_original_pixels(models):
    upright = cv2.resize(data.astronaut(), (4096, 4096), interpolation=cv2.INTER_CUBIC)[:, 1024:3072]  # 2048 x 4096
    exif = Image.Exif()
    exif[0x0112] = 8  # stored rotated: display turned 90 degrees counter-clockwise
    payload = jpeg(np.ascontiguousarray(np.rot90(upright, -1)), exif=exif)
    decoded = cv.decode_image(payload, max_side=RULES.max_side)
    assert (decoded.width, decoded.height) == (2048, 4096)
    assert decoded.rgb.shape[:2] == (2048, 1024)  # decoded at 1/2 scale, upright
    assert cv.decode_image(payload).rgb.shape[:2] == (4096, 2048)  # without max_side: all of it
    raw = raw_rows([b64(payload)])
    pre = cv.preprocessed_rows(raw, RULES).iloc[0]
    assert (pre["original_width"], pre["original_height"], pre["width"], pre["height"]) == (2048, 4096, 1024, 2048)
    assert (pre["scale"], pre["exif_orientation"]) == (0.5, 8)
    face = cv.face_rows(raw, models.faces, RULES).iloc[0]
    small = cv.faces(data.astronaut(), models.faces, RULES)[0]
    # the same eyes as on the 512 px astronaut, 8x further apart (to the detector's jitter)
    eyes = (np.reshape(face["keypoints"], (6, 2))[:2] + [1024, 0]) / 8
    assert np.allclose(eyes, small.keypoints[:2], atol=4)
    assert face["w"] / 8 == pytest.approx(small.box[2], rel=0.2)


# -- faces, gaze, pose ----------------------------------------------------------------------------
def test_astronaut_has_one_confident_face(models):
    rows = cv.face_rows(raw_rows([data.astronaut()]), models.faces, RULES)
    assert_typed(rows, cv.FACE_DTYPES)
    assert len(rows) == 1
    face = rows.iloc[0]
    assert face["confidence"] >= 0.8
    assert 150 < face["x"] < 200 and 60 < face["y"] < 110 and 70 < face["w"] < 130
    keypoints = np.reshape(face["keypoints"], (6, 2))
    right_eye, left_eye = keypoints[0], keypoints[1]
    assert right_eye[0] < left_eye[0]  # the subject's right eye is on the image's left


@pytest.mark.parametrize("image", [data.coffee(), data.rocket(), data.chelsea()], ids=["coffee", "rocket", "cat"])
def test_photos_without_people_have_no_face(models, image):
    assert cv.faces(image, models.faces, RULES) == []
    assert cv.gaze(image, models.face_mesh, RULES) == []


def test_small_faces_in_a_large_photo_are_found_in_tiles(models):
    frame = cv2.resize(data.coffee(), (2048, 1536))
    frame[900:1250, 1500:1850] = cv2.resize(data.astronaut(), (350, 350), interpolation=cv2.INTER_AREA)
    truth = (1500 + 178 * 350 / 512, 900 + 83 * 350 / 512, 65, 65)  # a 65 px face
    assert cv.faces(frame, models.faces, dataclasses.replace(RULES, face_tiles=False)) == []
    [face] = cv.faces(frame, models.faces, RULES)
    assert cv._iou(face.box, truth) > 0.5
    [g] = cv.gaze(frame, models.face_mesh, RULES, boxes=[face.box])
    assert g is not None and face.box[0] < g.right_iris[0] < g.left_iris[0] < face.box[0] + face.box[2]


def test_face_boxes_scale_back_to_original_pixels(models):
    big = cv2.resize(data.astronaut(), (3072, 3072), interpolation=cv2.INTER_CUBIC)
    small = cv.faces(data.astronaut(), models.faces, RULES)[0]
    frame, scale, _, _ = cv.preprocess(big, RULES)
    large = cv.faces(frame, models.faces, RULES, scale)[0]
    assert np.allclose(large.keypoints / 6, small.keypoints, atol=4)
    assert large.box[2] / 6 == pytest.approx(small.box[2], rel=0.2)


def test_face_mesh_has_478_landmarks_with_iris(models):
    meshes = models.face_mesh.landmarks(data.astronaut())
    assert len(meshes) == 1 and meshes[0].shape == (478, 3)
    face = cv.faces(data.astronaut(), models.faces, RULES)[0]
    whole = cv.gaze(data.astronaut(), models.face_mesh, RULES)[0]
    [cropped] = cv.gaze(data.astronaut(), models.face_mesh, RULES, boxes=[face.box])
    for g in (whole, cropped):
        # iris centres lie on the eyes found by the face detector
        assert np.linalg.norm(np.array(g.right_iris) - face.keypoints[0]) < 8
        assert np.linalg.norm(np.array(g.left_iris) - face.keypoints[1]) < 8
    assert np.allclose(whole.right_iris, cropped.right_iris, atol=2)
    assert np.degrees(np.arccos(whole.direction @ cropped.direction)) < 5


def test_astronaut_gaze_points_back_at_the_camera(models):
    raw = raw_rows([data.astronaut(), data.coffee()])
    faces = cv.face_rows(raw, models.faces, RULES)
    rows = cv.gaze_rows(raw, faces, models.face_mesh, RULES)
    assert_typed(rows, cv.GAZE_DTYPES)
    assert len(rows) == 1 and rows["face_index"].tolist() == [0]
    g = rows.iloc[0]
    v = np.array([g["gaze_x"], g["gaze_y"], g["gaze_z"]])
    assert np.linalg.norm(v) == pytest.approx(1.0)
    assert v[2] < -0.8 and abs(v[2]) > max(abs(v[0]), abs(v[1]))
    assert abs(g["yaw_degrees"]) < 10
    assert g["looking_at_camera"] and g["camera_angle_degrees"] < RULES.eye_contact_max_degrees


def test_eyes_turned_sideways_turn_the_gaze():
    """The iris offset within the eye corners turns the gaze, with a frontal head fixed."""
    class Mesh:
        version = "synthetic"

        def __init__(self, shift):
            self.shift = shift

        def landmarks(self, frame):
            f = cv.default_intrinsics(512, 512, RULES)[0, 0]
            pts = np.zeros((478, 3))
            model = cv._HEAD_MODEL + [0, 0, 60.0]  # 60 cm in front of the lens
            for index, p in zip(cv._HEAD_POINTS, model):
                pts[index, :2] = (f * p[:2] / p[2] + 256) / 512
            for outer, inner, iris, side in ((33, 133, 468, -1), (263, 362, 473, 1)):
                pts[inner] = pts[outer] - [side * 0.04, 0, 0]
                pts[iris] = (pts[outer] + pts[inner]) / 2 + [self.shift, 0, 0]
            return [pts]

    frame = np.zeros((512, 512, 3), np.uint8)
    ahead = cv.gaze(frame, Mesh(0.0), RULES)[0]
    right = cv.gaze(frame, Mesh(0.008), RULES)[0]
    assert abs(ahead.yaw_degrees) < 1 and abs(ahead.head_yaw_degrees) < 1
    # straight ahead from eyes 2.7 cm above the lens axis at 63 cm: 2.5 degrees off the camera
    assert ahead.camera_angle_degrees < 3
    assert right.yaw_degrees > 15 and not right.camera_angle_degrees < RULES.eye_contact_max_degrees


def test_astronaut_has_a_33_landmark_pose(models):
    rows = cv.pose_rows(raw_rows([data.astronaut()]), models.pose, RULES)
    assert_typed(rows, cv.POSE_DTYPES)
    assert len(rows) == 1
    landmarks = np.reshape(rows.iloc[0]["landmarks"], (33, 4))
    assert np.reshape(rows.iloc[0]["world_landmarks"], (33, 3)).shape == (33, 3)
    nose = landmarks[0]
    face = cv.faces(data.astronaut(), models.faces, RULES)[0].box
    assert face[0] < nose[0] < face[0] + face[2] and face[1] < nose[1] < face[1] + face[3]
    assert nose[3] > RULES.pose_min_visibility
    assert rows.iloc[0]["visible_landmarks"] >= 8


def test_blurring_faces_changes_only_the_boxes(models):
    frame = data.astronaut()
    boxes = [f.box for f in cv.faces(frame, models.faces, RULES)] + [(400, 400, 60, 50)]
    out = cv.blur_faces(frame, boxes, RULES)
    inside = np.zeros(frame.shape[:2], bool)
    for x, y, w, h in boxes:
        inside[int(math.floor(y)):int(math.ceil(y + h)), int(math.floor(x)):int(math.ceil(x + w))] = True
    assert np.array_equal(out[~inside], frame[~inside])
    assert np.abs(out[inside].astype(int) - frame[inside].astype(int)).mean() > 5
    assert np.array_equal(frame, data.astronaut())  # the input is not modified


# -- object hashes --------------------------------------------------------------------------------
def test_a_shifted_brightened_crop_matches_and_a_different_one_does_not():
    frame = data.astronaut()
    box = (170, 70, 110, 120)
    moved = np.clip(np.roll(frame, (3, 4), axis=(0, 1)).astype(int) + 20, 0, 255).astype(np.uint8)
    [a], [b] = cv.object_hashes(frame, [box]), cv.object_hashes(moved, [(box[0] + 4, box[1] + 3, *box[2:])])
    [other] = cv.object_hashes(data.coffee(), [(200, 50, 200, 150)])
    assert cv.hash_similarity(a, b) >= RULES.object_hash_similarity
    assert cv.hash_similarity(a, other) < RULES.object_hash_similarity
    assert cv.match_objects({"face-track": a, "cup-track": other}, [b, other, None], RULES) == [
        ("face-track", cv.hash_similarity(a, b)), ("cup-track", 1.0), (None, pytest.approx(math.nan, nan_ok=True))]


def test_match_objects_is_one_to_one():
    h = 0x0123_4567_89AB_CDEF
    matches = cv.match_objects({"t1": h}, [h, h ^ 1], RULES)
    assert matches[0] == ("t1", 1.0) and matches[1][0] is None


def test_objects_keep_their_track_across_photos_and_windows(models):
    astronaut = data.astronaut()
    moved = np.clip(np.roll(astronaut, (2, 3), axis=(0, 1)).astype(int) + 10, 0, 255).astype(np.uint8)
    raw = raw_rows([astronaut, data.coffee(), moved])
    detector = FaceBoxes(models.faces)
    objects = cv.object_rows(raw, detector, RULES)
    assert_typed(objects, cv.OBJECT_DTYPES)
    hashes = cv.object_hash_rows(raw, objects, None, RULES)
    assert_typed(hashes, cv.OBJECT_HASH_DTYPES)
    assert len(hashes) == 2 and hashes["track_id"].nunique() == 1
    assert hashes["is_new_track"].tolist() == [True, False]
    assert hashes["similarity"].iloc[1] >= RULES.object_hash_similarity
    # the same photos split over two windows: the second continues the first's track
    first = cv.object_hash_rows(raw.iloc[:1], objects.iloc[:1], None, RULES)
    second = cv.object_hash_rows(raw.iloc[1:], objects.iloc[1:], first, RULES)
    assert pd.concat([first, second], ignore_index=True)["track_id"].tolist() == hashes["track_id"].tolist()
    # another device never continues this device's tracks
    other = cv.object_hash_rows(raw_rows([moved], device="phone-2"), objects.iloc[1:].assign(device_id="phone-2"),
                                first, RULES)
    assert other["is_new_track"].all()


def test_stored_object_crops_are_thumbnails_with_the_faces_blurred(models):
    raw = raw_rows([data.astronaut()])
    faces = cv.face_rows(raw, models.faces, RULES)
    assert len(faces) == 1
    face = faces.iloc[0]
    # an object box around the head and shoulders, with the face inside it
    box = (face.x - 60, face.y - 40, face.w + 120, face.h + 200)
    objects = cv.typed_frame([{**raw.iloc[0][list(cv._HEAD)].to_dict(), "object_index": 0, "label": "person",
                               "confidence": 0.9, "x": box[0], "y": box[1], "w": box[2], "h": box[3]}],
                             cv.OBJECT_DTYPES)

    def face_sharpness(rules, with_faces):
        [crop] = cv.object_hash_rows(raw, objects, None, rules, faces if with_faces else None)["crop"]
        image = cv2.imdecode(np.frombuffer(crop, np.uint8), cv2.IMREAD_GRAYSCALE)
        assert max(image.shape) <= rules.crop_max_side
        s = image.shape[1] / box[2]  # crop px per photo px
        x0, y0 = round((face.x - box[0]) * s), round((face.y - box[1]) * s)
        patch = image[y0:y0 + round(face.h * s), x0:x0 + round(face.w * s)]
        return cv2.Laplacian(patch, cv2.CV_64F).var()

    sharp = face_sharpness(RULES, with_faces=False)
    assert face_sharpness(RULES, with_faces=True) < sharp / 5
    assert face_sharpness(cv.VisionRules(blur_stored_faces=False), with_faces=True) == pytest.approx(sharp)


# -- visual odometry ------------------------------------------------------------------------------
def yaw(degrees: float) -> np.ndarray:
    a = math.radians(degrees)
    return np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])


def render(R: np.ndarray, t: np.ndarray, K: np.ndarray, size=(1280, 960), squares: int = 150) -> np.ndarray:
    """A 3-D scene seen from x_cam = R x_world + t: 150 textured squares (crops of the astronaut
    and coffee photos) at 3-15 m, drawn far to near."""
    rng = np.random.default_rng(7)
    texture = np.concatenate([data.astronaut(), cv2.resize(data.coffee(), (512, 512))], axis=1)
    image = np.full((size[1], size[0], 3), 90, np.uint8)
    placed = []
    for _ in range(squares):
        z = rng.uniform(3, 15)
        centre = np.array([rng.uniform(-0.6, 0.6) * z, rng.uniform(-0.45, 0.45) * z, z])
        half = rng.uniform(0.05, 0.075) * z
        x0, y0 = rng.integers(0, 1024 - 128), rng.integers(0, 512 - 128)
        placed.append((centre, half, texture[y0:y0 + 128, x0:x0 + 128]))
    placed.sort(key=lambda p: -(R @ p[0] + t)[2])
    for centre, half, patch in placed:
        corners = centre + np.array([[-half, -half, 0], [half, -half, 0], [half, half, 0], [-half, half, 0]])
        cam = corners @ R.T + t
        if (cam[:, 2] < 0.5).any():
            continue
        pixels = cam @ K.T
        H = cv2.getPerspectiveTransform(np.float32([[0, 0], [128, 0], [128, 128], [0, 128]]),
                                        (pixels[:, :2] / pixels[:, 2:]).astype(np.float32))
        warped = cv2.warpPerspective(np.ascontiguousarray(patch), H, size)
        mask = cv2.warpPerspective(np.ones((128, 128), np.uint8), H, size, flags=cv2.INTER_NEAREST) > 0
        image[mask] = warped[mask]
    return image


@pytest.fixture(scope="module")
def scene():
    """Three views: the origin; yawed 5 degrees and moved; yawed 10 degrees and moved further."""
    K = cv.default_intrinsics(1280, 960, RULES)
    poses = [(np.eye(3), np.zeros(3)), (yaw(5), -yaw(5) @ [0.3, 0.1, 0.3]), (yaw(10), -yaw(10) @ [0.6, 0.1, 0.7])]
    return K, poses, [render(R, t, K) for R, t in poses]


def test_visual_odometry_recovers_a_5_degree_yaw(scene):
    K, poses, frames = scene
    keyframe = cv.orb_features(frames[0], K, RULES)
    step = cv.visual_odometry(keyframe, frames[1], K, RULES)
    R_true, t_true = poses[1]
    assert step.tracked and step.inliers >= RULES.min_inliers
    assert cv.rotation_degrees(step.R @ R_true.T) < 2.0
    assert math.degrees(math.acos(np.clip(step.t @ t_true / np.linalg.norm(t_true), -1, 1))) < 5.0
    assert step.is_keyframe  # parallax and rotation are both over the keyframe rule


def test_chained_steps_compose():
    a, b = yaw(3), cv.PoseStep(yaw(4), np.array([1.0, 0, 0]), 0, 0, 0.0, 4.0, True, True, None)
    R, t = cv.chain_poses((a, np.array([0, 0, 1.0])), b)
    assert np.allclose(R, yaw(7)) and np.allclose(t, yaw(4) @ [0, 0, 1.0] + [1.0, 0, 0])


def test_unrelated_photos_lose_tracking():
    K = cv.default_intrinsics(512, 512, RULES)
    step = cv.visual_odometry(cv.orb_features(data.astronaut(), K, RULES), cv2.resize(data.coffee(), (512, 512)),
                              K, RULES)
    assert not step.tracked and step.is_keyframe and np.allclose(step.R, np.eye(3))


def test_slam_chains_poses_per_camera_and_continues_across_windows(scene):
    _, poses, frames = scene
    raw = raw_rows(frames)
    rows = cv.slam_rows(raw, None, RULES)
    assert_typed(rows, cv.SLAM_DTYPES)
    assert rows["status"].tolist() == ["initialized", "tracked", "tracked"]
    assert rows["is_keyframe"].tolist() == [True, True, True]
    for (R_true, _), rotation in zip(poses, rows["rotation"]):
        assert cv.rotation_degrees(np.reshape(rotation, (3, 3)) @ R_true.T) < 2.0
    # the camera moved right and forward: positions in keyframe baselines point that way
    assert np.reshape(rows["position"].iloc[2], 3)[[0, 2]].min() > 0
    # split over two windows, the second continues from the first's last keyframe row
    first = cv.slam_rows(raw.iloc[:2], None, RULES)
    second = cv.slam_rows(raw.iloc[2:], first, RULES)
    both = pd.concat([first, second], ignore_index=True)
    assert both["status"].tolist() == rows["status"].tolist()
    assert np.allclose(np.vstack(both["rotation"]), np.vstack(rows["rotation"]))
    # front and rear cameras are separate chains; a long gap starts a new one
    front = cv.slam_rows(raw_rows(frames[2:], camera="front", start=T0 + pd.Timedelta(minutes=1)), first, RULES)
    assert front["status"].tolist() == ["initialized"]
    late = cv.slam_rows(raw_rows(frames[2:], start=T0 + pd.Timedelta(hours=1)), first, RULES)
    assert late["status"].tolist() == ["initialized"]


# -- models and layouts ---------------------------------------------------------------------------
def test_a_missing_model_file_fails_loudly():
    with pytest.raises(vision.VisionModelError, match="lacks modules/nowhere.tflite"):
        vision._mediapipe(("modules/nowhere.tflite",))


def test_model_versions_are_known_without_loading(models):
    assert vision.model_versions() == models.versions
    assert models.faces.version == "mediapipe-0.10.21-face_detection-full"


@pytest.mark.parametrize("stage, dtypes", [
    (lambda raw, m: cv.preprocessed_rows(raw, RULES), cv.PREPROCESSED_DTYPES),
    (lambda raw, m: cv.object_rows(raw, FaceBoxes(m.faces), RULES), cv.OBJECT_DTYPES),
    (lambda raw, m: cv.object_hash_rows(raw, pd.DataFrame(), None, RULES), cv.OBJECT_HASH_DTYPES),
    (lambda raw, m: cv.face_rows(raw, m.faces, RULES), cv.FACE_DTYPES),
    (lambda raw, m: cv.pose_rows(raw, m.pose, RULES), cv.POSE_DTYPES),
    (lambda raw, m: cv.gaze_rows(raw, pd.DataFrame(), m.face_mesh, RULES), cv.GAZE_DTYPES),
    (lambda raw, m: cv.slam_rows(raw, None, RULES), cv.SLAM_DTYPES),
])
def test_an_empty_window_gives_empty_typed_tables(models, stage, dtypes):
    assert_typed(stage(raw_rows([]), models), dtypes)
    assert_typed(stage(None, models), dtypes)
