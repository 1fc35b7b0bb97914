-- depends: 0003.light-flows
-- Location and motion flows (docs/flows/location.md, docs/flows/motion.md): the accelerometer raw table, the
-- georegions you define, the geocode cache, and the stage tables. Stage columns are the
-- DataFrame columns of loom_assets/stages/{location,geocoding,motion,activity}.py.

-- Raw tables may now set their own retention and chunking (50 Hz motion is ~4 M rows a day
-- per device).
DROP FUNCTION loom_create_raw_table(text, text);
CREATE FUNCTION loom_create_raw_table(
    table_name     text,
    payload_columns text,
    retention      interval DEFAULT interval '30 days',
    compress_after interval DEFAULT interval '7 days',
    chunk_interval interval DEFAULT interval '1 day'
) RETURNS text LANGUAGE sql AS $fn$
    SELECT loom_create_timeseries(table_name, $cols$
        window_start     timestamptz NOT NULL,
        device_id        text NOT NULL,
        recorded_at      timestamptz NOT NULL,
        received_at      timestamptz,
        schema_version   text NOT NULL,
        message_id       text NOT NULL,
        trace_id         text,
        source_topic     text NOT NULL,
        source_partition integer NOT NULL,
        source_offset    bigint NOT NULL,
        ingested_at      timestamptz NOT NULL,
        metadata         jsonb,
    $cols$ || payload_columns, time_column => 'recorded_at', retention => retention,
        compress_after => compress_after, chunk_interval => chunk_interval);
$fn$;

-- docs/flows/motion.md#retention: accelerometer tables chunk by the hour, compress after a day, keep 7 days.
SELECT loom_create_raw_table('motion_raw', $cols$
    x        double precision NOT NULL,
    y        double precision NOT NULL,
    z        double precision NOT NULL,
    accuracy integer
$cols$, retention => interval '7 days', compress_after => interval '1 day',
   chunk_interval => interval '1 hour');

-- The places you name (docs/flows/location.md#georegions, DB 031/033), managed with `loom regions
-- add|list|remove`. A polygon keeps its GeoJSON ring; its centre and radius are the ring's centroid
-- and the farthest vertex, so one bounding test serves both shapes.
CREATE TABLE georegions (
    id                  serial PRIMARY KEY,
    name                text NOT NULL UNIQUE,
    description         text,
    type                text NOT NULL DEFAULT 'custom' CHECK (type IN ('home','work','custom')),
    geometry_type       text NOT NULL DEFAULT 'circle' CHECK (geometry_type IN ('circle','polygon')),
    center_latitude     double precision NOT NULL CHECK (center_latitude BETWEEN -90 AND 90),
    center_longitude    double precision NOT NULL CHECK (center_longitude BETWEEN -180 AND 180),
    radius_meters       double precision NOT NULL CHECK (radius_meters > 0),
    polygon_coordinates jsonb,
    is_active           boolean NOT NULL DEFAULT true,
    metadata            jsonb,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK ((geometry_type = 'polygon') = (polygon_coordinates IS NOT NULL))
);

-- docs/flows/location.md#geocode-cache: one row per address looked up, reused within 50 m.
CREATE TABLE geocode_cache (
    id               bigserial PRIMARY KEY,
    provider         text NOT NULL,
    provider_version text NOT NULL,
    latitude         double precision NOT NULL,
    longitude        double precision NOT NULL,
    name             text,
    address          text,
    house_number     text,
    road             text,
    city             text,
    state            text,
    country          text,
    country_code     text,
    postal_code      text,
    place_type       text,
    timezone         text,
    raw              jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_used_at     timestamptz NOT NULL DEFAULT now(),
    use_count        integer NOT NULL DEFAULT 1
);
CREATE INDEX geocode_cache_position ON geocode_cache (provider, latitude, longitude);

-- location/georegions: enter, exit and dwell events (docs/flows/location.md#retention keeps them 90 days).
SELECT loom_create_event_table('location_georegions', $cols$
    region_id              integer NOT NULL,
    region_name            text NOT NULL,
    region_type            text NOT NULL CHECK (region_type IN ('home','work','custom')),
    event_type             text NOT NULL CHECK (event_type IN ('enter','exit','dwell')),
    entered_at             timestamptz,
    dwell_time_seconds     double precision CHECK (dwell_time_seconds >= 0),
    distance_from_center_m double precision NOT NULL,
    confidence             double precision NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    latitude               double precision NOT NULL,
    longitude              double precision NOT NULL,
    accuracy               double precision
$cols$, retention => interval '90 days', compress_after => interval '7 days');

-- location/places: visits (stays), the place each one was and the 30-day visit count. Kept a
-- year (docs/flows/location.md#retention), well beyond the 30 days the counts look back.
SELECT loom_create_timeseries('location_places', $cols$
    window_start      timestamptz NOT NULL,
    device_id         text NOT NULL,
    recorded_at       timestamptz NOT NULL,
    model_version     text NOT NULL,
    visit_id          text NOT NULL,
    arrived_at        timestamptz NOT NULL,
    departed_at       timestamptz NOT NULL,
    duration_seconds  double precision NOT NULL CHECK (duration_seconds >= 0),
    latitude          double precision NOT NULL,
    longitude         double precision NOT NULL,
    radius_m          double precision NOT NULL,
    fix_count         integer NOT NULL,
    place_source      text NOT NULL CHECK (place_source IN ('georegion','business','geocoded','unknown')),
    place_key         text NOT NULL,
    place_name        text,
    place_category    text,
    address           text,
    region_id         integer,
    business_provider text,
    business_id       text,
    visit_count_30d   integer NOT NULL
$cols$, time_column => 'recorded_at', retention => interval '365 days', compress_after => interval '7 days');

-- motion/activities: one row per 5 s window (docs/flows/motion.md#retention: 7 days).
SELECT loom_create_timeseries('motion_activities', $cols$
    window_start          timestamptz NOT NULL,
    device_id             text NOT NULL,
    recorded_at           timestamptz NOT NULL,
    model_version         text NOT NULL,
    window_end            timestamptz NOT NULL,
    activity              text NOT NULL CHECK (activity IN ('still','walking','stairs','running','cycling','vehicle','unknown')),
    confidence            double precision,
    classifier_label      text,
    classifier_confidence double precision,
    probabilities         jsonb,
    gps_speed_mps         double precision,
    step_cadence_hz       double precision,
    source                text NOT NULL
$cols$, time_column => 'recorded_at', retention => interval '7 days', compress_after => interval '1 day',
   chunk_interval => interval '1 hour');

-- motion/windows: 5 s feature windows with 1 s overlap (docs/flows/motion.md#windows), 7 days like
-- the samples. `features` is the activity classifier's input vector
-- (loom_assets/stages/activity.py).
SELECT loom_create_timeseries('motion_windows', $cols$
    window_start      timestamptz NOT NULL,
    device_id         text NOT NULL,
    recorded_at       timestamptz NOT NULL,
    model_version     text NOT NULL,
    window_end        timestamptz NOT NULL,
    sample_count      integer NOT NULL,
    sampling_rate_hz  double precision,
    mean_x            double precision NOT NULL,
    mean_y            double precision NOT NULL,
    mean_z            double precision NOT NULL,
    std_x             double precision NOT NULL,
    std_y             double precision NOT NULL,
    std_z             double precision NOT NULL,
    magnitude_mean    double precision NOT NULL,
    magnitude_std     double precision NOT NULL,
    peak_frequency_hz double precision,
    step_count        integer CHECK (step_count >= 0),
    features          real[]
$cols$, time_column => 'recorded_at', retention => interval '7 days', compress_after => interval '1 day',
   chunk_interval => interval '1 hour');

-- motion/significant_motion: debounced threshold crossings with a motion type
-- (docs/flows/motion.md#significant-motion).
SELECT loom_create_timeseries('motion_significant_motion', $cols$
    window_start        timestamptz NOT NULL,
    device_id           text NOT NULL,
    recorded_at         timestamptz NOT NULL,
    model_version       text NOT NULL,
    event_id            text NOT NULL,
    start_time          timestamptz NOT NULL,
    end_time            timestamptz NOT NULL,
    duration_seconds    double precision NOT NULL CHECK (duration_seconds >= 0),
    motion_type         text NOT NULL CHECK (motion_type IN ('sudden_start','sudden_stop','fall','shake','walking','running','vehicle','unknown')),
    confidence          double precision NOT NULL,
    activity_type       text NOT NULL CHECK (activity_type IN ('stationary','walking','running','vehicle','unknown')),
    activity_confidence double precision NOT NULL,
    sample_count        integer NOT NULL,
    max_acceleration    double precision NOT NULL,
    avg_acceleration    double precision NOT NULL,
    std_acceleration    double precision NOT NULL,
    min_acceleration    double precision NOT NULL,
    p25_acceleration    double precision NOT NULL,
    p75_acceleration    double precision NOT NULL,
    dominant_axis       text NOT NULL CHECK (dominant_axis IN ('x','y','z')),
    x_variance          double precision NOT NULL,
    y_variance          double precision NOT NULL,
    z_variance          double precision NOT NULL
$cols$, time_column => 'recorded_at', retention => interval '30 days', compress_after => interval '7 days',
   chunk_interval => interval '7 days');

-- location/geocoded: the address of each fix where the device moved ≥ 100 m
-- (docs/flows/location.md#retention: geocoded locations kept 90 days). `cache_id` has no foreign
-- key: old cache rows may go.
SELECT loom_create_event_table('location_geocoded', $cols$
    latitude                 double precision NOT NULL,
    longitude                double precision NOT NULL,
    accuracy                 double precision,
    name                     text,
    address                  text,
    house_number             text,
    road                     text,
    city                     text,
    state                    text,
    country                  text,
    country_code             text,
    postal_code              text,
    place_type               text,
    timezone                 text,
    provider                 text NOT NULL,
    provider_version         text NOT NULL,
    cached                   boolean NOT NULL,
    cache_id                 bigint,
    cache_distance_m         double precision NOT NULL,
    distance_from_previous_m double precision
$cols$, retention => interval '90 days', compress_after => interval '7 days');
