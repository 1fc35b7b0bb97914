-- depends: 0001.core
-- Raw landing tables: one row per valid Kafka record, traceable to its topic partition and
-- offset. Every raw table has the envelope and lineage columns (docs/messages.md#envelopes), then its payload
-- (docs/messages.md#payload-fields); event time (recorded_at) is the time dimension.

CREATE OR REPLACE FUNCTION loom_create_raw_table(table_name text, payload_columns text)
RETURNS text LANGUAGE sql AS $fn$
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
    $cols$ || payload_columns, time_column => 'recorded_at');
$fn$;

SELECT loom_create_raw_table('app_lifecycle_raw', $cols$
    app_identifier   text NOT NULL,
    app_name         text,
    event_type       text NOT NULL CHECK (event_type IN ('launch','foreground','background','terminate','crash')),
    duration_seconds double precision
$cols$);

SELECT loom_create_raw_table('power_state_raw', $cols$
    battery_level    double precision NOT NULL CHECK (battery_level BETWEEN 0 AND 100),
    is_charging      boolean NOT NULL,
    power_source     text,
    lid_closed       boolean,
    thermal_state    text
$cols$);

SELECT loom_create_raw_table('network_events_raw', $cols$
    ssid             text,
    bssid            text,
    signal_strength  integer,
    frequency        double precision,
    channel          integer,
    security         text,
    connected        boolean NOT NULL,
    ip_address       text
$cols$);

-- GPS fixes land here so that other flows (network correlation, power charging locations) can
-- use them; the location flow's own stages build on this table.
SELECT loom_create_raw_table('location_raw', $cols$
    latitude         double precision NOT NULL,
    longitude        double precision NOT NULL,
    altitude         double precision,
    accuracy         double precision,
    heading          double precision,
    speed            double precision
$cols$);
