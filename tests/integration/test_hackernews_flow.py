"""The Hacker News flow end to end against a local server replaying recorded HN shapes: fetch →
Kafka → `loom process` → hackernews_raw, hackernews_items (with the linked articles' text) and
hackernews_embeddings; a second fetch publishes nothing, a new favorite arrives alone, Loom v2's
device-less messages land, and a malformed message is an error row with its original kept."""

import orjson
import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition
from pgvector.psycopg import register_vector

from loom_assets.resources.models import Models

from tests.integration.test_spine import invoke, produce, table
from tests.unit.test_hackernews import RecordedHackerNews, fixture_page

pytestmark = pytest.mark.integration

TOPIC = "external.hackernews.activity.raw"


def published(bootstrap: str) -> int:
    """Messages in the topic so far (the sum of its partitions' high watermarks)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "hn-test-count"})
    try:
        partitions = consumer.list_topics(TOPIC, timeout=10).topics[TOPIC].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)[1] for p in partitions)
    finally:
        consumer.close()


@pytest.fixture
def recorded(loom_env, monkeypatch):
    server = RecordedHackerNews()
    monkeypatch.setenv("LOOM_HACKERNEWS_USERNAME", "quietlurker")
    monkeypatch.setenv("LOOM_HACKERNEWS_API_URL", f"{server.base}/v0")
    monkeypatch.setenv("LOOM_HACKERNEWS_SITE_URL", server.base)
    monkeypatch.setenv("LOOM_HACKERNEWS_REQUEST_PAUSE_SECONDS", "0")
    yield server
    server.stop()


def test_favorites_and_submissions_become_searchable_items(loom_env, recorded):
    bootstrap, url = loom_env["bootstrap"], loom_env["database_url"]
    invoke("fetch", "hackernews")
    assert published(bootstrap) == 6  # 4 favorites, 2 submissions (a comment and a null item skipped)
    invoke("fetch", "hackernews")
    assert published(bootstrap) == 6
    recorded.overrides["/favorites?id=quietlurker"] = (
        200, "text/html", fixture_page("favorites-quietlurker-p1-after-new-favorite.html"))
    invoke("fetch", "hackernews")
    assert published(bootstrap) == 7

    v2 = orjson.dumps({"schema_version": "v1", "device_id": None, "timestamp": "2024-10-15T14:04:02",
                       "content_hash": "5d1e", "data": {
                           "url": f"{recorded.base}/articles/rust-compile-times.html", "source": "hackernews",
                           "type": "submitted_story", "title": "Where the time goes when Rust compiles",
                           "score": 312, "comments_url": "https://news.ycombinator.com/item?id=41800001",
                           "story_id": 41800001, "author": "ekidd", "comment_count": 142}})
    malformed = orjson.dumps({"schema_version": "v1", "device_id": None, "timestamp": "2024-10-15T14:04:02",
                              "data": {"type": "liked_story", "story_id": "not-an-id", "title": "Broken"}})
    produce(bootstrap, [(TOPIC, v2), (TOPIC, malformed)], key=b"https://example.com/post")
    invoke("process", "--through-now", "--flow", "hackernews")

    raw = table(url, "hackernews_raw")
    assert len(raw) == 8
    assert not raw.duplicated(["device_id", "item_id", "interaction_type"]).any()
    assert set(raw["device_id"]) == {"hackernews-quietlurker", "hackernews"}
    assert (raw["item_id"] == 41800006).sum() == 1  # the new favorite, once

    items = table(url, "hackernews_items").set_index(["device_id", "interaction_type", "item_id"])
    assert len(items) == 8
    rust = items.loc[("hackernews-quietlurker", "favorite", 41800001)]
    assert rust["article_status"] == "ok"
    assert "monomorphization copies every generic function" in rust["article_text"]
    assert "Accept all cookies" not in rust["article_text"]
    assert [c["author"] for c in rust["top_comments"]] == ["pcwalton", "steveklabnik"]
    assert items.loc[("hackernews-quietlurker", "favorite", 41800003), "article_status"] == "disallowed_by_robots"
    assert items.loc[("hackernews-quietlurker", "favorite", 41800006), "article_status"] == "http_error"
    assert items.loc[("hackernews-quietlurker", "favorite", 41800002), "story_text"].startswith("I have tried wikis")
    legacy = items.loc[("hackernews", "submission", 41800001)]
    assert legacy["article_status"] == "ok" and len(legacy["top_comments"]) == 2  # kids asked of the API
    assert not recorded.asked(r"^/private/")

    embeddings = table(url, "hackernews_embeddings", order="source_id")
    assert len(embeddings) == 7  # one per user and item: 41800002 was favorited and submitted
    dims = table(url, "(SELECT DISTINCT vector_dims(embedding) AS dims FROM hackernews_embeddings) d", order="dims")
    assert dims["dims"].tolist() == [384]
    assert embeddings["source_id"].isin(table(url, "hackernews_items")["message_id"]).all()  # the link back
    hits = table(url, "hackernews_embeddings WHERE to_tsvector('english', coalesce(title, '') || ' ' || body)"
                      " @@ plainto_tsquery('english', 'checkpoint starvation')", order="source_id")
    assert set(hits["title"]) == {"SQLite's write-ahead log, explained"}
    # A question in other words finds its item by meaning (pgvector cosine distance).
    for question, title in (("why does my cargo build take so long", "Where the time goes when Rust compiles"),
                            ("organising my notes so I can find them later",
                             "Ask HN: How do you keep a personal knowledge base you can search?")):
        vector = Models().embedder().embed([question])[0]
        with psycopg.connect(url) as conn:
            register_vector(conn)
            nearest = conn.execute("SELECT title FROM hackernews_embeddings ORDER BY embedding <=> %s LIMIT 1",
                                   (vector,)).fetchone()[0]
        assert nearest == title

    errors = table(url, "processing_errors")
    assert errors[["flow", "error_type", "device_id"]].values.tolist() == \
        [["hackernews", "validation_error", "hackernews"]]
    assert bytes(errors.iloc[0]["original_value"]) == malformed
