-- depends: 0020.exactly-once
-- `loom erase` by Kafka position, not event time: per partition of every raw topic, the high
-- watermark when the device was erased. Landing drops the device's records below it, however
-- far ahead their event time is, and lands those at or above it (sent after the erase).
CREATE TABLE erasure_positions (
    device_id   text NOT NULL REFERENCES erased_devices (device_id) ON DELETE CASCADE,
    topic       text NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint NOT NULL CHECK (next_offset >= 0),
    PRIMARY KEY (device_id, topic, partition)
);
COMMENT ON COLUMN erased_devices.erased_at IS
    'when the erase took its lock: a stage that read its inputs before this drops the device''s rows';
COMMENT ON COLUMN erased_devices.erased_through IS 'the same instant as erased_at (kept for older readers)';

-- Which devices' fixes wrote or reused each geocode cache entry, so an erase removes the
-- entries the device used (the cache holds the points it was at).
CREATE TABLE geocode_cache_devices (
    cache_id  bigint NOT NULL REFERENCES geocode_cache (id) ON DELETE CASCADE,
    device_id text NOT NULL,
    PRIMARY KEY (cache_id, device_id)
);
CREATE INDEX geocode_cache_devices_device ON geocode_cache_devices (device_id);
-- Entries used before this migration: the geocoded rows name the entry they used.
INSERT INTO geocode_cache_devices (cache_id, device_id)
SELECT DISTINCT g.cache_id, g.device_id FROM location_geocoded g JOIN geocode_cache c ON c.id = g.cache_id
ON CONFLICT DO NOTHING;
