"""The camera vision flow's rules: thresholds, sizes and model settings of every stage."""

from __future__ import annotations

from dataclasses import dataclass


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
