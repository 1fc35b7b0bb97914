-- depends: 0017.erasure
-- When an error row was announced on its flow's error topic: a window landed again (a retry,
-- a re-run, a reprocess) rewrites its error rows but announces only those not yet announced,
-- so error-topic messages do not repeat with every retry.
ALTER TABLE processing_errors ADD COLUMN published_at timestamptz;
