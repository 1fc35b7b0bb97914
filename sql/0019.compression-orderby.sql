-- depends: 0018.error-publication
-- Compressed batches ordered by window first. Writing a window deletes its rows by
-- window_start (then copies them back); window_start is neither the time dimension nor a
-- segmentby column, so on a compressed chunk ordered by event time alone every batch holds rows
-- of many windows and the DELETE decompresses the whole chunk, tripping
-- timescaledb.max_tuples_decompressed_per_dml_transaction. With window_start leading the
-- orderby, a batch holds consecutive windows and its min/max metadata lets the DELETE skip the
-- batches of other windows. A time bound on the DELETE would not do it: a window's rows may have
-- any event time (a device uploading a backlog), so no bound follows from the window itself.

-- The compression orderby of a Loom table: window_start, then its time column, newest first.
CREATE OR REPLACE FUNCTION loom_compress_orderby(time_column text) RETURNS text
LANGUAGE sql IMMUTABLE AS $fn$
    SELECT CASE WHEN time_column = 'window_start' THEN 'window_start DESC'
                ELSE format('window_start, %I DESC', time_column) END
$fn$;

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
                table_name, segment_by, loom_compress_orderby(time_column));
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

-- Existing hypertables take the new orderby; chunks already compressed keep their old batches
-- until recompressed (compress_chunk(.., recompress => true) keeps the old batch order), so
-- they are decompressed and compressed again here. Nothing to do without TimescaleDB.
DO $$
DECLARE
    t record;
    chunk regclass;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        RETURN;
    END IF;
    FOR t IN
        SELECT l.table_name, l.time_column FROM loom_timeseries l
        JOIN timescaledb_information.hypertables h
          ON h.hypertable_name = l.table_name AND h.hypertable_schema = current_schema()
        WHERE l.storage = 'hypertable' AND h.compression_enabled
    LOOP
        EXECUTE format('ALTER TABLE %I SET (timescaledb.compress_orderby = %L)',
                       t.table_name, loom_compress_orderby(t.time_column));
        FOR chunk IN
            SELECT format('%I.%I', c.chunk_schema, c.chunk_name)::regclass
            FROM timescaledb_information.chunks c
            WHERE c.hypertable_schema = current_schema() AND c.hypertable_name = t.table_name
              AND c.is_compressed
        LOOP
            PERFORM decompress_chunk(chunk);
            PERFORM compress_chunk(chunk);
        END LOOP;
    END LOOP;
END
$$;
