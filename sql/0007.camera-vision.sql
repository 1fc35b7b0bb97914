-- depends: 0006.audio
-- Camera vision stages (docs/flows/camera_vision.md): columns are the DataFrame columns of
-- loom_assets/stages/camera_vision.py (*_DTYPES) plus model_version. Pixel coordinates are in the
-- upright original photo. Kept 30 days, compressed after 7 (the defaults).

CREATE OR REPLACE FUNCTION loom_create_photo_table(table_name text, columns text) RETURNS text
LANGUAGE sql AS $fn$
    SELECT loom_create_timeseries(table_name, $head$
        window_start  timestamptz NOT NULL,
        device_id     text NOT NULL,
        recorded_at   timestamptz NOT NULL,
        model_version text NOT NULL,
        camera_type   text,
    $head$ || columns, time_column => 'recorded_at');
$fn$;

SELECT loom_create_photo_table('camera_vision_preprocessed', $cols$
    format            text,
    original_width    integer,
    original_height   integer,
    exif_orientation  smallint,
    width             integer,
    height            integer,
    scale             double precision,
    brightness        double precision,
    blur_score        double precision,
    is_blurred        boolean,
    focal_length_35mm real,
    error_type        text,
    error_message     text
$cols$);

SELECT loom_create_photo_table('camera_vision_faces', $cols$
    face_index smallint NOT NULL,
    confidence real NOT NULL,
    x real, y real, w real, h real,
    keypoints  real[]
$cols$);

SELECT loom_create_photo_table('camera_vision_poses', $cols$
    person_index      smallint NOT NULL,
    visible_landmarks smallint,
    mean_visibility   real,
    landmarks         real[],
    world_landmarks   real[]
$cols$);

SELECT loom_create_photo_table('camera_vision_gaze', $cols$
    face_index           smallint NOT NULL,
    x real, y real, w real, h real,
    right_iris_x         real,
    right_iris_y         real,
    left_iris_x          real,
    left_iris_y          real,
    gaze_x               real,
    gaze_y               real,
    gaze_z               real,
    yaw_degrees          real,
    pitch_degrees        real,
    head_yaw_degrees     real,
    head_pitch_degrees   real,
    head_roll_degrees    real,
    camera_angle_degrees real,
    looking_at_camera    boolean
$cols$);

SELECT loom_create_photo_table('camera_vision_slam', $cols$
    segment_start         timestamptz NOT NULL,
    status                text NOT NULL CHECK (status IN ('initialized','tracked','lost')),
    keyframe_recorded_at  timestamptz,
    is_keyframe           boolean NOT NULL,
    matches               integer,
    inliers               integer,
    median_parallax_px    real,
    step_rotation_degrees real,
    step_rotation         real[],
    step_translation      real[],
    rotation              real[],
    translation           real[],
    position              real[],
    focal_px              real,
    cx                    real,
    cy                    real,
    vo_width              integer,
    vo_height             integer,
    keypoints             bytea,
    descriptors           bytea
$cols$);
