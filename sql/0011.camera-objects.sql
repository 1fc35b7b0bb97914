-- depends: 0009.fetchers
-- Camera vision objects (docs/flows/camera_vision.md#objects): columns are
-- OBJECT_DTYPES and OBJECT_HASH_DTYPES of loom_assets/stages/camera_vision.py plus model_version.
-- Boxes are in the upright original photo's pixels. Kept 30 days, compressed after 7 (the defaults).

SELECT loom_create_photo_table('camera_vision_objects', $cols$
    object_index smallint NOT NULL,
    label        text NOT NULL,
    confidence   real,
    x real, y real, w real, h real
$cols$);

SELECT loom_create_photo_table('camera_vision_object_hashes', $cols$
    object_index smallint NOT NULL,
    label        text NOT NULL,
    phash        bigint NOT NULL,
    track_id     text NOT NULL,
    is_new_track boolean NOT NULL,
    similarity   real,
    crop_uri     text  -- the object's thumbnail in the blob store, faces blurred
$cols$);
