-- depends: 0008.screenshot-ocr
-- Where each fetcher's account stopped (IMAP UIDVALIDITY + last UID, calendar sync times, the
-- Hacker News items already published): read before a fetch, written after its messages are
-- in Kafka, so a crash between the two publishes again rather than losing anything.
CREATE TABLE fetch_cursors (
    source     text NOT NULL,
    account    text NOT NULL,
    state      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, account)
);
