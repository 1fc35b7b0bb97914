"""Row layouts of the camera vision tables."""

from __future__ import annotations

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
