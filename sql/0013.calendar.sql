-- depends: 0010.embeddings
-- Calendar flow (docs/flows/calendar.md): fetched event occurrences, the enriched events, their embeddings,
-- and the forward-geocoding cache the events stage looks locations up through.
--
-- Retention: 90 days for all three tables. docs/flows/calendar.md#retention keeps calendar_events and
-- calendar_embeddings 90 days (chunk 7 days, no compression); the raw table is kept as long as
-- what it feeds, so every event row can be reprocessed from it (Loom v2's DB kept its raw table
-- 365 days, but nothing downstream outlives 90). The sync range is 30 days back to 60 ahead, so
-- an event stays about 60 days after it took place. Event time is the occurrence's start.

SELECT loom_create_raw_table('calendar_raw', $cols$
    event_id         text NOT NULL,
    uid              text,
    recurrence_id    timestamptz,
    calendar_id      text,
    calendar_name    text,
    account_name     text,
    owner_email      text,
    source_url       text,
    title            text,
    description      text,
    location         text,
    start_time       timestamptz NOT NULL,
    end_time         timestamptz,
    all_day          boolean NOT NULL,
    timezone         text,
    recurring_rule   text,
    status           text,
    organizer        text,
    attendees        jsonb,
    sequence         integer,
    last_modified    timestamptz,
    gps_point        text,
    content_hash     text
$cols$, retention => interval '90 days', compress_after => interval '30 days', chunk_interval => interval '7 days');

-- calendar/events. The time dimension is start_time (docs/flows/calendar.md#retention); recorded_at
-- is the same instant (the envelope's timestamp), kept because every Loom table has it.
-- window_start (the Kafka arrival window) stays the slice key the IO manager deletes and rewrites.
SELECT loom_create_timeseries('calendar_events', $cols$
    window_start       timestamptz NOT NULL,
    device_id          text NOT NULL,
    recorded_at        timestamptz NOT NULL,
    model_version      text NOT NULL,
    source_topic       text NOT NULL,
    source_partition   integer,
    source_offset      bigint,
    message_id         text,
    trace_id           text,
    event_id           text NOT NULL,
    uid                text,
    calendar_id        text,
    calendar_name      text,
    account_name       text,
    owner_email        text,
    title              text,
    description        text,
    location           text,
    start_time         timestamptz NOT NULL,
    end_time           timestamptz NOT NULL,
    all_day            boolean NOT NULL,
    timezone           text,
    duration_minutes   double precision NOT NULL,
    duration_category  text NOT NULL CHECK (duration_category IN ('short','medium','long','all_day')),
    time_of_day        text NOT NULL CHECK (time_of_day IN ('morning','afternoon','evening','all_day')),
    recurring_rule     text,
    recurrence_pattern text NOT NULL
        CHECK (recurrence_pattern IN ('none','daily','weekly','biweekly','monthly','yearly','custom')),
    recurrence_id      timestamptz,
    status             text NOT NULL,
    organizer          text,
    attendees          jsonb,
    attendee_count     integer NOT NULL,
    meeting_type       text NOT NULL CHECK (meeting_type IN ('none','1:1','team','external')),
    online_meeting_url text,
    latitude           double precision,
    longitude          double precision,
    place_name         text,
    place_address      text,
    place_country_code text,
    geocode_provider   text,
    geocode_cached     boolean
$cols$, time_column => 'start_time', retention => interval '90 days', compress_after => NULL,
   chunk_interval => interval '7 days');
CREATE INDEX calendar_events_event ON calendar_events (event_id, window_start DESC);

-- Each occurrence as it stands now: its newest version across windows (of the newest model
-- version), cancelled ones included with their status.
CREATE VIEW calendar_events_current AS
SELECT DISTINCT ON (device_id, event_id) *
FROM calendar_events_latest
ORDER BY device_id, event_id, window_start DESC, source_partition DESC, source_offset DESC;

SELECT loom_create_embedding_table('calendar_embeddings', retention => interval '90 days',
                                   compress_after => NULL);

-- Forward geocoding (text → place) already done, per provider and version; a text that named no
-- place is cached too (found = false), so it is not looked up again.
CREATE TABLE geocode_search_cache (
    provider         text NOT NULL,
    provider_version text NOT NULL,
    query            text NOT NULL,
    latitude         double precision,
    longitude        double precision,
    name             text,
    address          text,
    city             text,
    state            text,
    country          text,
    country_code     text,
    timezone         text,
    raw              jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, provider_version, query)
);
