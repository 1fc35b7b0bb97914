-- depends: 0019.compression-orderby
-- Exactly once, enforced by the database (docs/reliability.md):
--  * the offset log records when each planned range landed, how often its window was asked
--    for, and whether its records are lost (Kafka dropped them before they landed);
--  * offsets Loom skipped on purpose (retention deleted them first, the topic was recreated)
--    are rows of their own, and the log refuses any other range that does not start where the
--    previous one of its partition ended;
--  * a raw table holds each Kafka position at most once.

ALTER TABLE loom_offset_log
    ADD COLUMN landed_at    timestamptz,
    ADD COLUMN landed_by    text,
    ADD COLUMN requests     integer NOT NULL DEFAULT 0,
    ADD COLUMN requested_at timestamptz,
    ADD COLUMN lost_at      timestamptz,
    ADD COLUMN lost_reason  text;

-- Unlanded windows are looked up by every sensor tick.
CREATE INDEX loom_offset_log_unlanded ON loom_offset_log (flow, window_start)
    WHERE landed_at IS NULL AND lost_at IS NULL AND end_offset > start_offset;

-- Offsets between two planned ranges of a partition that no window holds, and why.
CREATE TABLE loom_offset_gaps (
    flow         text NOT NULL,
    topic        text NOT NULL,
    partition    integer NOT NULL,
    from_offset  bigint NOT NULL,     -- the previous range's end
    to_offset    bigint NOT NULL,     -- the next range's start
    window_start timestamptz NOT NULL, -- the first window planned after the gap
    reason       text NOT NULL CHECK (reason IN ('expired', 'topic_reset')),
    detected_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (flow, topic, partition, from_offset, to_offset)
);

CREATE OR REPLACE FUNCTION loom_offset_log_contiguous() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    previous loom_offset_log;
BEGIN
    IF EXISTS (SELECT 1 FROM loom_offset_log
               WHERE flow = NEW.flow AND topic = NEW.topic AND partition = NEW.partition
                 AND window_start >= NEW.window_start) THEN
        RAISE EXCEPTION 'offset log: % %/% already has a window at or after %',
            NEW.flow, NEW.topic, NEW.partition, NEW.window_start USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    SELECT * INTO previous FROM loom_offset_log
    WHERE flow = NEW.flow AND topic = NEW.topic AND partition = NEW.partition
    ORDER BY window_start DESC LIMIT 1;
    IF FOUND AND NEW.start_offset <> previous.end_offset AND NOT EXISTS (
        SELECT 1 FROM loom_offset_gaps
        WHERE flow = NEW.flow AND topic = NEW.topic AND partition = NEW.partition
          AND from_offset = previous.end_offset AND to_offset = NEW.start_offset) THEN
        RAISE EXCEPTION 'offset log: % %/% window % starts at offset % but the previous window ended at %',
            NEW.flow, NEW.topic, NEW.partition, NEW.window_start, NEW.start_offset, previous.end_offset
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$fn$;

CREATE TRIGGER loom_offset_log_contiguous BEFORE INSERT ON loom_offset_log
    FOR EACH ROW EXECUTE FUNCTION loom_offset_log_contiguous();

-- A raw table holds each Kafka position once. The time column is part of the key because a
-- partitioned table's (and a hypertable's) unique keys must hold it; a record's event time
-- comes from its bytes, so a second copy of a position always has the same one.
CREATE OR REPLACE FUNCTION loom_unique_kafka_position(raw_table text) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    time_col text;
    duplicated boolean;
BEGIN
    SELECT time_column INTO time_col FROM loom_timeseries WHERE table_name = raw_table;
    -- Duplicates an older Loom may have written go first, one copy kept (looked for before
    -- deleting: a DELETE would decompress every compressed chunk of a hypertable).
    EXECUTE format(
        'SELECT EXISTS (SELECT 1 FROM %I GROUP BY source_topic, source_partition, source_offset, %I'
        ' HAVING count(*) > 1)', raw_table, time_col) INTO duplicated;
    IF duplicated THEN
        EXECUTE format(
            'DELETE FROM %1$I a USING %1$I b WHERE a.source_topic = b.source_topic'
            ' AND a.source_partition = b.source_partition AND a.source_offset = b.source_offset'
            ' AND a.%2$I = b.%2$I AND a.ctid > b.ctid AND a.tableoid = b.tableoid', raw_table, time_col);
    END IF;
    EXECUTE format('CREATE UNIQUE INDEX %I ON %I (source_topic, source_partition, source_offset, %I)',
                   raw_table || '_kafka_position', raw_table, time_col);
END
$fn$;

SELECT loom_unique_kafka_position(table_name) FROM loom_timeseries WHERE table_name LIKE '%\_raw';

-- Raw tables made from now on get the key too: the function that makes them keeps its body
-- under another name, and the one of its name adds the key.
ALTER FUNCTION loom_create_raw_table(text, text, interval, interval, interval)
    RENAME TO loom_create_raw_table_unkeyed;

CREATE FUNCTION loom_create_raw_table(
    table_name     text,
    payload_columns text,
    retention      interval DEFAULT interval '30 days',
    compress_after interval DEFAULT interval '7 days',
    chunk_interval interval DEFAULT interval '1 day'
) RETURNS text LANGUAGE plpgsql AS $fn$
DECLARE
    storage text := loom_create_raw_table_unkeyed(table_name, payload_columns, retention,
                                                  compress_after, chunk_interval);
BEGIN
    PERFORM loom_unique_kafka_position(table_name);
    RETURN storage;
END
$fn$;

-- Windows planned before this migration count as landed where their raw rows and error rows
-- add up to their planned offsets; the others are asked for again (landing is idempotent).
DO $$
DECLARE
    f text;
BEGIN
    FOR f IN SELECT DISTINCT flow FROM loom_offset_log LOOP
        IF to_regclass(f || '_raw') IS NULL THEN
            CONTINUE;
        END IF;
        EXECUTE format(
            'UPDATE loom_offset_log l SET landed_at = l.planned_at WHERE l.flow = %1$L AND ('
            '  SELECT count(*) FROM %2$I r WHERE r.window_start = l.window_start'
            '   AND r.source_topic = l.topic AND r.source_partition = l.partition'
            ') + ('
            '  SELECT count(*) FROM processing_errors e WHERE e.flow = %1$L AND e.window_start = l.window_start'
            '   AND e.source_topic = l.topic AND e.source_partition = l.partition'
            ') = l.end_offset - l.start_offset', f, f || '_raw');
    END LOOP;
END
$$;
