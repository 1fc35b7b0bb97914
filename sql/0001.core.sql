-- Loom core: the time-series table factory, the offset log and the errors table.
--
-- Every Loom table is made by loom_create_timeseries(), which picks the storage the server
-- offers: a TimescaleDB hypertable (chunk 1 day, compression after 7 days segmented by
-- device_id, retention 30 days, as policies; docs/architecture.md#storage) where the extension exists, else
-- native range partitioning by day plus a default partition, whose expired days Loom's
-- retention schedule drops (loom_drop_expired_partitions).

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
    END IF;
END
$$;

CREATE TABLE IF NOT EXISTS loom_timeseries (
    table_name     text PRIMARY KEY,
    time_column    text NOT NULL,
    retention      interval NOT NULL,
    compress_after interval,
    storage        text NOT NULL CHECK (storage IN ('hypertable', 'native')),
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE OR REPLACE FUNCTION loom_create_timeseries(
    table_name     text,
    columns        text,
    time_column    text,
    retention      interval DEFAULT interval '30 days',
    compress_after interval DEFAULT interval '7 days',
    chunk_interval interval DEFAULT interval '1 day',
    segment_by     text DEFAULT 'device_id'
) RETURNS text LANGUAGE plpgsql AS $fn$
DECLARE
    storage text;
    versioned boolean := columns ~ '\mmodel_version\M';
BEGIN
    IF versioned THEN
        -- Outputs of rules and models keep every version side by side (reprocessing);
        -- processed_at says which version was written last.
        columns := columns || ', processed_at timestamptz NOT NULL DEFAULT now()';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        storage := 'hypertable';
        EXECUTE format('CREATE TABLE %I (%s)', table_name, columns);
        PERFORM create_hypertable(table_name::regclass, time_column,
                                  chunk_time_interval => chunk_interval);
        IF compress_after IS NOT NULL THEN
            EXECUTE format(
                'ALTER TABLE %I SET (timescaledb.compress, timescaledb.compress_segmentby = %L, '
                'timescaledb.compress_orderby = %L)',
                table_name, segment_by, time_column || ' DESC');
            PERFORM add_compression_policy(table_name::regclass, compress_after);
        END IF;
        PERFORM add_retention_policy(table_name::regclass, retention);
    ELSE
        storage := 'native';
        EXECUTE format('CREATE TABLE %I (%s) PARTITION BY RANGE (%I)', table_name, columns, time_column);
        EXECUTE format('CREATE TABLE %I PARTITION OF %I DEFAULT', table_name || '_default', table_name);
    END IF;

    -- Writes delete and reload one planned window: window_start is the slice key.
    EXECUTE format('CREATE INDEX ON %I (window_start)', table_name);
    IF segment_by = 'device_id' THEN
        EXECUTE format('CREATE INDEX ON %I (device_id, %I DESC)', table_name, time_column);
    END IF;

    IF versioned THEN
        -- The newest model version written for each window is the current one.
        EXECUTE format(
            'CREATE VIEW %I AS SELECT t.* FROM %I t JOIN ('
            '  SELECT DISTINCT ON (window_start) window_start, model_version FROM %I'
            '  ORDER BY window_start, processed_at DESC) newest'
            ' USING (window_start, model_version)',
            table_name || '_latest', table_name, table_name);
    END IF;

    INSERT INTO loom_timeseries VALUES (table_name, time_column, retention, compress_after, storage);
    RETURN storage;
END
$fn$;

-- Native path: make sure the daily partition holding `day` exists. Rows that landed in the
-- default partition for that day (clock skew, old events) move into it first, so ATTACH succeeds.
CREATE OR REPLACE FUNCTION loom_ensure_day_partition(parent text, day date) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    part text := parent || '_p' || to_char(day, 'YYYYMMDD');
    time_col text;
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        RETURN;
    END IF;
    SELECT time_column INTO time_col FROM loom_timeseries WHERE table_name = parent;
    EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part, parent);
    EXECUTE format(
        'WITH moved AS (DELETE FROM %I WHERE %I >= %L AND %I < %L RETURNING *) '
        'INSERT INTO %I SELECT * FROM moved',
        parent || '_default', time_col, day::timestamp AT TIME ZONE 'UTC',
        time_col, (day + 1)::timestamp AT TIME ZONE 'UTC', part);
    -- Bounds are UTC midnights, whatever the server's time zone.
    EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   parent, part, day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
END
$fn$;

-- Native path retention: drop whole expired days, then expired stragglers in the default partition.
CREATE OR REPLACE FUNCTION loom_drop_expired_partitions(now timestamptz DEFAULT now())
RETURNS integer LANGUAGE plpgsql AS $fn$
DECLARE
    t record;
    p record;
    dropped integer := 0;
BEGIN
    FOR t IN SELECT * FROM loom_timeseries WHERE storage = 'native' LOOP
        FOR p IN
            SELECT c.relname FROM pg_inherits i
            JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = t.table_name::regclass
              AND c.relname ~ '_p[0-9]{8}$'
              AND to_date(right(c.relname, 8), 'YYYYMMDD') + 1 <= (now - t.retention)::date
        LOOP
            EXECUTE format('DROP TABLE %I', p.relname);
            dropped := dropped + 1;
        END LOOP;
        EXECUTE format('DELETE FROM %I WHERE %I < %L',
                       t.table_name || '_default', t.time_column, now - t.retention);
    END LOOP;
    RETURN dropped;
END
$fn$;

-- The offset log (docs/architecture.md#offset-log): every window's planned Kafka offset range per
-- topic partition, written before its run is requested. Runs and backfills read their range from
-- here.
CREATE TABLE IF NOT EXISTS loom_offset_log (
    flow         text NOT NULL,
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    topic        text NOT NULL,
    partition    integer NOT NULL,
    start_offset bigint NOT NULL,
    end_offset   bigint NOT NULL,
    planned_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (flow, window_start, topic, partition),
    CHECK (end_offset >= start_offset)
);
CREATE INDEX IF NOT EXISTS loom_offset_log_latest
    ON loom_offset_log (flow, topic, partition, window_start DESC);

-- Records that could not become rows, with the original bytes kept.
SELECT loom_create_timeseries('processing_errors', $cols$
    window_start     timestamptz NOT NULL,
    flow             text NOT NULL,
    source_topic     text NOT NULL,
    source_partition integer NOT NULL,
    source_offset    bigint NOT NULL,
    error_type       text NOT NULL,
    error_message    text NOT NULL,
    original_key     bytea,
    original_value   bytea,
    original_size    bigint NOT NULL,
    kafka_timestamp  timestamptz,
    device_id        text,
    recorded_at      timestamptz NOT NULL DEFAULT now()
$cols$, time_column => 'window_start', segment_by => 'flow');
