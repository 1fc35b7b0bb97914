-- depends: 0001.core
-- Raw landing tables: one row per valid Kafka record, traceable to its topic partition and
-- offset. Envelope columns first (SPEC §2), then the payload (SPEC §3).

SELECT loom_create_timeseries('app_lifecycle_raw', $cols$
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
    app_identifier   text NOT NULL,
    app_name         text,
    event_type       text NOT NULL CHECK (event_type IN ('launch','foreground','background','terminate','crash')),
    duration_seconds double precision
$cols$, time_column => 'recorded_at');

SELECT loom_create_timeseries('power_state_raw', $cols$
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
    battery_level    double precision NOT NULL CHECK (battery_level BETWEEN 0 AND 100),
    is_charging      boolean NOT NULL,
    power_source     text,
    lid_closed       boolean,
    thermal_state    text
$cols$, time_column => 'recorded_at');

SELECT loom_create_timeseries('network_events_raw', $cols$
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
    ssid             text,
    bssid            text,
    signal_strength  integer,
    frequency        double precision,
    channel          integer,
    security         text,
    connected        boolean NOT NULL,
    ip_address       text
$cols$, time_column => 'recorded_at');

-- GPS fixes land here so that other flows (network correlation, power charging locations) can
-- use them; the location flow's own stages build on this table.
SELECT loom_create_timeseries('location_raw', $cols$
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
    latitude         double precision NOT NULL,
    longitude        double precision NOT NULL,
    altitude         double precision,
    accuracy         double precision,
    heading          double precision,
    speed            double precision
$cols$, time_column => 'recorded_at');
