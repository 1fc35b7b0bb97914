-- depends: 0009.fetchers
-- Text embeddings (pgvector): every searchable flow writes `<flow>_embeddings` with one shape,
-- so `loom search` ranks them all alike: cosine similarity over an HNSW index plus full text.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector') THEN
        RAISE EXCEPTION 'Loom needs the pgvector extension for text embeddings: install it on this '
                        'PostgreSQL server (the embedded default and timescale/timescaledb-ha include it)';
    END IF;
    CREATE EXTENSION IF NOT EXISTS vector;
END
$$;

CREATE OR REPLACE FUNCTION loom_create_embedding_table(
    table_name     text,
    retention      interval DEFAULT interval '365 days',
    compress_after interval DEFAULT interval '30 days',
    dimensions     integer DEFAULT 384,
    -- TimescaleDB chunks of a week, not a day: every chunk holds its own HNSW graph and a search
    -- scans each one, so a year of daily chunks would cost 365 index scans per query. Texts are
    -- few (tens to hundreds a day), so a week's chunk stays small. (The native path's
    -- partitions stay daily.)
    chunk_interval interval DEFAULT interval '7 days'
) RETURNS text LANGUAGE plpgsql AS $fn$
DECLARE
    storage text;
BEGIN
    storage := loom_create_timeseries(table_name, format($cols$
        window_start  timestamptz NOT NULL,
        device_id     text NOT NULL,
        recorded_at   timestamptz NOT NULL,
        source_id     text NOT NULL,
        title         text,
        body          text NOT NULL,
        embedding     vector(%s) NOT NULL,
        model_version text NOT NULL
    $cols$, dimensions), time_column => 'recorded_at', retention => retention,
        compress_after => compress_after, chunk_interval => chunk_interval);
    EXECUTE format('CREATE INDEX ON %I USING hnsw (embedding vector_cosine_ops)', table_name);
    EXECUTE format('CREATE INDEX ON %I USING gin (to_tsvector(''english'', coalesce(title, '''') || '' '' || body))',
                   table_name);
    RETURN storage;
END
$fn$;
