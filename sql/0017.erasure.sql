-- depends: 0016.screen-recordings
-- Devices whose data was erased (`loom erase`): landing drops their records up to that time,
-- so reprocessing a window from Kafka (which keeps raw messages until topic retention) cannot
-- bring the rows back.
CREATE TABLE erased_devices (
    device_id      text PRIMARY KEY,
    erased_through timestamptz NOT NULL,
    erased_at      timestamptz NOT NULL DEFAULT now()
);
