-- depends: 0004.location-motion
-- Raw tables of the media flows (docs/flows/audio.md, docs/flows/screenshot_ocr.md,
-- docs/flows/camera_vision.md, docs/messages.md#payload-fields): the bytes live in the blob store,
-- content-addressed; a row keeps the blob's URI and size. Audio and images are kept 7 days raw
-- (docs/flows/audio.md#retention: compressed after 1 day, kept 7).

SELECT loom_create_raw_table('audio_raw', $cols$
    data_uri     text NOT NULL,
    data_bytes   integer NOT NULL,
    sample_rate  integer NOT NULL,
    channels     integer NOT NULL,
    format       text NOT NULL,
    duration_ms  integer,
    file_id      text,
    chunk_number integer
$cols$, retention => interval '7 days', compress_after => interval '1 day');

SELECT loom_create_raw_table('screenshot_ocr_raw', $cols$
    image_data_uri   text NOT NULL,
    image_data_bytes integer NOT NULL,
    format           text NOT NULL,
    width            integer,
    height           integer,
    camera_type      text,
    file_size        integer
$cols$, retention => interval '7 days', compress_after => interval '1 day');

SELECT loom_create_raw_table('camera_vision_raw', $cols$
    image_data_uri   text NOT NULL,
    image_data_bytes integer NOT NULL,
    format           text NOT NULL,
    width            integer,
    height           integer,
    camera_type      text,
    file_size        integer
$cols$, retention => interval '7 days', compress_after => interval '1 day');
