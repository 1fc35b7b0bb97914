-- depends: 0020.exactly-once
-- Which version of each stage wrote each window, kept by Loom in the transaction that writes the
-- window's rows (docs/architecture.md#versions-and-state). Staleness, `loom reprocess`, the
-- reprocess schedule and the `_latest` views read it, so they no longer depend on Dagster's event
-- log (housekeeping may prune that freely), and a window whose newest version wrote no rows shows
-- no rows, not the old version's.
CREATE TABLE loom_stage_windows (
    table_name    text NOT NULL,
    window_start  timestamptz NOT NULL,
    model_version text NOT NULL,
    rows          bigint NOT NULL,
    -- Stages that carry state: a digest of the state the window read (its own earlier rows), and
    -- whether a rewrite of an earlier window has changed that state since (the window is then
    -- run again, and so on down the windows until the state stops changing).
    state_read    text,
    state_stale   boolean NOT NULL DEFAULT false,
    -- The snapshot the stage read its inputs in: whether a later landing of another flow's
    -- window (`loom_offset_log.landed_xid`) was visible to it, exactly, whatever the clocks say.
    read_snapshot pg_snapshot,
    written_at    timestamptz NOT NULL DEFAULT now(),
    run_id        text,
    PRIMARY KEY (table_name, window_start)
);
CREATE INDEX loom_stage_windows_stale ON loom_stage_windows (table_name, window_start) WHERE state_stale;

-- A table's current rows: each window's rows of the version written last for it.
CREATE FUNCTION loom_create_latest_view(table_name text) RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    EXECUTE format(
        'CREATE OR REPLACE VIEW %I AS SELECT t.* FROM %I t JOIN loom_stage_windows w'
        ' ON w.table_name = %L AND w.window_start = t.window_start AND w.model_version = t.model_version',
        table_name || '_latest', table_name, table_name);
END $fn$;

-- Each versioned table: its windows written before this migration (the version written last,
-- by processed_at, as the views chose it until now), and its view on the new table.
DO $$
DECLARE
    t text;
BEGIN
    FOR t IN SELECT s.table_name FROM loom_timeseries s JOIN information_schema.columns c
               ON c.table_name = s.table_name AND c.column_name = 'model_version'
              AND c.table_schema = current_schema() LOOP
        EXECUTE format(
            'INSERT INTO loom_stage_windows (table_name, window_start, model_version, rows, written_at)'
            ' SELECT DISTINCT ON (window_start) %L, window_start, model_version, n, written FROM ('
            '   SELECT window_start, model_version, count(*) AS n, max(processed_at) AS written'
            '   FROM %I GROUP BY window_start, model_version) g'
            ' ORDER BY window_start, written DESC', t, t);
        PERFORM loom_create_latest_view(t);
    END LOOP;
END $$;

-- Tables made by later migrations get the same view.
ALTER FUNCTION loom_create_timeseries(text, text, text, interval, interval, interval, text)
    RENAME TO loom_create_timeseries_unversioned;

CREATE FUNCTION loom_create_timeseries(
    table_name     text,
    columns        text,
    time_column    text,
    retention      interval DEFAULT interval '30 days',
    compress_after interval DEFAULT interval '7 days',
    chunk_interval interval DEFAULT interval '1 day',
    segment_by     text DEFAULT 'device_id'
) RETURNS text LANGUAGE plpgsql AS $fn$
DECLARE
    storage text := loom_create_timeseries_unversioned(table_name, columns, time_column, retention,
                                                       compress_after, chunk_interval, segment_by);
BEGIN
    IF columns ~ '\mmodel_version\M' THEN
        PERFORM loom_create_latest_view(table_name);
    END IF;
    RETURN storage;
END $fn$;

-- The transaction that landed each window, for `read_snapshot` above.
ALTER TABLE loom_offset_log ADD COLUMN landed_xid xid8;

-- Stage completeness is tracked for windows landed from now on; older windows were complete
-- by the rules of their time.
CREATE TABLE loom_markers (
    name text PRIMARY KEY,
    at   timestamptz NOT NULL DEFAULT now()
);
INSERT INTO loom_markers (name) VALUES ('stage_windows');
