-- depends: 0001.core
-- Output tables of the app_lifecycle, power_state and network_events flows. Columns are the
-- DataFrame columns of loom_assets/stages/<flow>.py (OUTPUT_COLUMNS there) plus model_version.
-- Retention and compression: docs/flows/app_lifecycle.md#retention and
-- docs/flows/power_state.md#retention (30 days, compression after 7 days, the defaults);
-- docs/flows/network_events.md#retention for network (chunk 7 days, compression after 30 days,
-- retention 90 days).

-- A stage table with one row per raw event: its window, device, event time, model version and
-- the Kafka record it came from, then the stage's own columns.
CREATE OR REPLACE FUNCTION loom_create_event_table(
    table_name     text,
    columns        text,
    retention      interval DEFAULT interval '30 days',
    compress_after interval DEFAULT interval '7 days',
    chunk_interval interval DEFAULT interval '1 day'
) RETURNS text LANGUAGE sql AS $fn$
    SELECT loom_create_timeseries(table_name, $lineage$
        window_start     timestamptz NOT NULL,
        device_id        text NOT NULL,
        recorded_at      timestamptz NOT NULL,
        model_version    text NOT NULL,
        source_topic     text NOT NULL,
        source_partition integer NOT NULL,
        source_offset    bigint NOT NULL,
        message_id       text,
        trace_id         text,
    $lineage$ || columns, time_column => 'recorded_at', retention => retention,
        compress_after => compress_after, chunk_interval => chunk_interval);
$fn$;

SELECT loom_create_event_table('app_lifecycle_enriched', $cols$
    app_identifier          text NOT NULL,
    app_name                text,
    event_type              text NOT NULL,
    app_category            text NOT NULL,
    category_source         text NOT NULL CHECK (category_source IN ('bundle_id','android_label','unknown')),
    session_id              text,
    session_start           timestamptz,
    session_end             timestamptz,
    foreground_seconds      double precision CHECK (foreground_seconds >= 0),
    client_duration_seconds double precision,
    session_open            boolean NOT NULL,
    is_crash                boolean NOT NULL,
    session_flag            text
$cols$, retention => interval '30 days', compress_after => interval '7 days');

SELECT loom_create_event_table('power_state_enriched', $cols$
    battery_level                    double precision,
    is_charging                      boolean,
    power_source                     text,
    lid_closed                       boolean,
    thermal_state                    text,
    power_source_normalised          text NOT NULL CHECK (power_source_normalised IN ('ac_charger','battery','unknown')),
    on_external_power                boolean NOT NULL,
    battery_state                    text CHECK (battery_state IN ('normal','low','critical')),
    charging_rate_pct_per_h          double precision,
    power_consumption_rate_pct_per_h double precision,
    time_to_full_min                 double precision,
    time_to_empty_min                double precision,
    charging_session_id              text,
    charging_session_start           timestamptz,
    rate_segment_start               timestamptz,
    rate_segment_start_level         double precision
$cols$, retention => interval '30 days', compress_after => interval '7 days');

SELECT loom_create_timeseries('power_state_patterns', $cols$
    window_start  timestamptz NOT NULL,
    device_id     text NOT NULL,
    model_version text NOT NULL,
    pattern_type  text NOT NULL CHECK (pattern_type IN ('charging_hour','consumption_period','battery_health','charging_location')),
    pattern_key   text NOT NULL,
    value         double precision,
    label         text,
    details       jsonb,
    sample_count  integer
$cols$, time_column => 'window_start', retention => interval '30 days', compress_after => interval '7 days');

SELECT loom_create_event_table('network_events_enriched', $cols$
    ssid             text,
    bssid            text,
    signal_strength  integer,
    frequency        double precision,
    channel          integer,
    security         text,
    connected        boolean,
    ip_address       text,
    ssid_valid       boolean NOT NULL,
    network_category text NOT NULL CHECK (network_category IN ('home','work','public','hotspot','enterprise','unknown')),
    category_reason  text NOT NULL,
    frequency_band   text CHECK (frequency_band IN ('2.4GHz','5GHz','6GHz')),
    signal_quality   text CHECK (signal_quality IN ('excellent','good','fair','weak'))
$cols$, retention => interval '90 days', compress_after => interval '30 days',
   chunk_interval => interval '7 days');

SELECT loom_create_event_table('network_events_location_correlated', $cols$
    ssid               text,
    bssid              text,
    network_category   text NOT NULL,
    latitude           double precision NOT NULL,
    longitude          double precision NOT NULL,
    accuracy           double precision,
    fix_recorded_at    timestamptz NOT NULL,
    fix_offset_seconds double precision NOT NULL
$cols$, retention => interval '90 days', compress_after => interval '30 days',
   chunk_interval => interval '7 days');
