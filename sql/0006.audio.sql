-- depends: 0005.media-raw
-- Audio stages (docs/flows/audio.md): voice segments (VAD), transcripts with word times and a full-text
-- index, and the acoustic environment. Columns are the DataFrame columns of
-- loom_assets/stages/audio.py and stages/speech.py plus model_version; segment audio is a WAV
-- in the blob store.

-- The VAD's state at the end of each window, per device: the next window continues from it.
CREATE TABLE audio_vad_carry (
    window_start               timestamptz NOT NULL,
    device_id                  text NOT NULL,
    source_topic               text,
    vad_model                  text NOT NULL,
    rules_version              text NOT NULL,
    stream_end                 timestamptz NOT NULL,
    stream_samples             bigint NOT NULL,
    open_segment_start         timestamptz,
    segment_start_sample       bigint,
    segment_audio_start_sample bigint,
    segment_after_cut          boolean,
    silence_start_sample       bigint,
    last_segment_end_sample    bigint,
    segment_probs              bytea,
    audio                      bytea,
    vad_state                  bytea,
    chunks                     bytea,
    PRIMARY KEY (window_start, device_id)
);

-- docs/flows/audio.md#retention: compressed after 7 days, kept 30.
SELECT loom_create_timeseries('audio_voice_segments', $cols$
    window_start        timestamptz NOT NULL,
    device_id           text NOT NULL,
    recorded_at         timestamptz NOT NULL,
    model_version       text NOT NULL,
    segment_id          text NOT NULL,
    start_time          timestamptz NOT NULL,
    end_time            timestamptz NOT NULL,
    duration_ms         integer NOT NULL,
    mean_probability    double precision,
    max_probability     double precision,
    end_reason          text NOT NULL CHECK (end_reason IN ('silence','max_duration','stream_end')),
    sample_rate         integer NOT NULL,
    audio_uri           text NOT NULL,
    source_topic        text,
    source_partition    integer,
    first_source_offset bigint,
    last_source_offset  bigint,
    chunk_count         integer,
    vad_model           text NOT NULL
$cols$, time_column => 'recorded_at', retention => interval '30 days', compress_after => interval '7 days');

-- docs/flows/audio.md#retention: compressed after 14 days, kept 90; English full-text index.
SELECT loom_create_timeseries('audio_transcripts', $cols$
    window_start         timestamptz NOT NULL,
    device_id            text NOT NULL,
    recorded_at          timestamptz NOT NULL,
    model_version        text NOT NULL,
    segment_id           text NOT NULL,
    text                 text NOT NULL,
    language             text,
    words                jsonb,
    word_count           integer NOT NULL,
    avg_word_probability double precision,
    duration_ms          integer,
    transcriber          text NOT NULL
$cols$, time_column => 'recorded_at', retention => interval '90 days', compress_after => interval '14 days');
CREATE INDEX audio_transcripts_text ON audio_transcripts USING gin (to_tsvector('english', text));

SELECT loom_create_timeseries('audio_environment', $cols$
    window_start  timestamptz NOT NULL,
    device_id     text NOT NULL,
    recorded_at   timestamptz NOT NULL,
    model_version text NOT NULL,
    duration_ms   integer NOT NULL,
    environment   text NOT NULL CHECK (environment IN ('indoor','outdoor','vehicle','crowd','quiet','unknown')),
    confidence    double precision NOT NULL,
    rms_dbfs      double precision NOT NULL,
    top_labels    jsonb,
    model         text NOT NULL
$cols$, time_column => 'recorded_at', retention => interval '30 days', compress_after => interval '7 days');
