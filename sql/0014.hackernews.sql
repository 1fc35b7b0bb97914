-- depends: 0010.embeddings
-- Hacker News (docs/flows/hackernews.md): the fetched favorites and submissions, the items with their linked
-- articles and top comments (full-text index), and their embeddings.
-- docs/flows/hackernews.md#retention: kept 180 days, compressed after 7 (embeddings after 30, as
-- every embedding table: vectors hardly compress, and their HNSW index serves uncompressed chunks).

SELECT loom_create_raw_table('hackernews_raw', $cols$
    item_id          bigint NOT NULL,
    interaction_type text NOT NULL CHECK (interaction_type IN ('favorite', 'submission')),
    item_type        text NOT NULL,
    username         text,
    title            text,
    url              text,
    text             text,
    author           text,
    score            integer,
    comment_count    integer,
    kids             jsonb,
    created_at       timestamptz,
    interacted_at    timestamptz
$cols$, retention => interval '180 days', compress_after => interval '7 days');

-- hackernews/items: one row per (user, item, interaction) of a window; columns are
-- loom_assets/stages/hackernews.py ITEM_COLUMNS.
SELECT loom_create_event_table('hackernews_items', $cols$
    username             text,
    item_id              bigint NOT NULL,
    item_type            text NOT NULL,
    interaction_type     text NOT NULL,
    interacted_at        timestamptz,
    created_at           timestamptz,
    title                text,
    url                  text,
    domain               text,
    hn_url               text NOT NULL,
    author               text,
    score                integer,
    comment_count        integer,
    story_text           text,
    article_status       text NOT NULL,
    article_detail       text,
    article_http_status  integer,
    article_content_type text,
    article_url          text,
    article_title        text,
    article_text         text,
    article_summary      text,
    comments_status      text NOT NULL,
    top_comments         jsonb
$cols$, retention => interval '180 days', compress_after => interval '7 days');
CREATE INDEX hackernews_items_search ON hackernews_items USING gin (to_tsvector('english',
    coalesce(title, '') || ' ' || coalesce(story_text, '') || ' ' || coalesce(article_text, '')));
CREATE INDEX hackernews_items_item_id ON hackernews_items (item_id);

SELECT loom_create_embedding_table('hackernews_embeddings', retention => interval '180 days');
