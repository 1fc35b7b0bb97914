-- depends: 0007.camera-vision
-- screenshot_ocr/text (docs/flows/screenshot_ocr.md): the OCR of each screenshot (or of the
-- screenshot it nearly duplicates), its layout blocks and entities; English full-text and entity
-- indexes.
SELECT loom_create_timeseries('screenshot_ocr_text', $cols$
    window_start     timestamptz NOT NULL,
    device_id        text NOT NULL,
    recorded_at      timestamptz NOT NULL,
    model_version    text NOT NULL,
    source_topic     text NOT NULL,
    source_partition integer,
    source_offset    bigint,
    message_id       text,
    width            integer,
    height           integer,
    dhash            bigint,
    duplicate_of     text,
    word_count       integer NOT NULL,
    mean_confidence  real,
    text             text NOT NULL,
    words            jsonb,
    blocks           jsonb,
    entities         jsonb,
    inverted         boolean,
    upscaled         boolean,
    ocr_languages    text
$cols$, time_column => 'recorded_at');
CREATE INDEX screenshot_ocr_text_search ON screenshot_ocr_text USING gin (to_tsvector('english', text));
CREATE INDEX screenshot_ocr_text_entities ON screenshot_ocr_text USING gin (entities jsonb_path_ops);
