-- depends: 0010.embeddings
-- Email (docs/flows/email.md): the fetched messages (whole RFC 822 bytes, or Loom v2's extracted fields),
-- the parsed messages with a full-text index, and their embeddings. docs/flows/email.md#retention: email is
-- kept 365 days and compressed after 30.

SELECT loom_create_raw_table('email_raw', $cols$
    raw_message       bytea,
    account           text,
    account_name      text,
    account_index     integer,
    folder            text,
    uid               bigint,
    uidvalidity       bigint,
    flags             jsonb,
    internal_date     timestamptz,
    size              bigint,
    gmail_thread_id   text,
    gmail_labels      jsonb,
    attachments       jsonb,
    email_id          text,
    content_hash      text,
    header_message_id text,
    subject           text,
    sender            text,
    receiver          text,
    date_received     text,
    body              text,
    seen              boolean
$cols$, retention => interval '365 days', compress_after => interval '30 days');

-- email/messages: one row per (message_id, folder) of a window; columns are
-- loom_assets/stages/email.py MESSAGE_DTYPES.
SELECT loom_create_timeseries('email_messages', $cols$
    window_start     timestamptz NOT NULL,
    device_id        text NOT NULL,
    recorded_at      timestamptz NOT NULL,
    model_version    text NOT NULL,
    source_topic     text NOT NULL,
    source_partition integer NOT NULL,
    source_offset    bigint NOT NULL,
    message_id       text NOT NULL,
    thread_id        text NOT NULL,
    account          text,
    folder           text NOT NULL,
    uid              bigint,
    from_name        text,
    from_address     text,
    to_addresses     jsonb,
    cc_addresses     jsonb,
    subject          text,
    sent_at          timestamptz,
    in_reply_to      text,
    "references"     jsonb,
    body_text        text NOT NULL,
    quoted_text      text,
    body_source      text NOT NULL CHECK (body_source IN ('plain', 'html', 'none', 'loom_v2')),
    attachments      jsonb,
    headers          jsonb,
    flags            jsonb,
    seen             boolean,
    size_bytes       bigint,
    charset_issues   jsonb
$cols$, time_column => 'recorded_at', retention => interval '365 days', compress_after => interval '30 days');
CREATE INDEX email_messages_search ON email_messages
    USING gin (to_tsvector('english', coalesce(subject, '') || ' ' || body_text));
CREATE INDEX email_messages_message_id ON email_messages (message_id);
CREATE INDEX email_messages_thread_id ON email_messages (thread_id);

SELECT loom_create_embedding_table('email_embeddings', retention => interval '365 days',
                                   compress_after => interval '30 days');
