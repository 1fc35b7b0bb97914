"""Hacker News: the fetcher (favorites pages, the API, the cursor, the 100-item cap), the
article fetcher (robots.txt, 10 MB, timeouts), extraction, the items stage and the envelope
rule for Loom v2's device-less messages, against a local server replaying recorded shapes."""

import json
import re
import socket
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import orjson
import pandas as pd
import pytest
from urllib3.util.retry import Retry

from loom_assets.events import InvalidMessage, decode
from loom_assets.fetchers import hackernews as hnf
from loom_assets.fetchers.base import envelope
from loom_assets.stages import hackernews as hn

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hackernews"
TOPIC = "external.hackernews.activity.raw"
USER = "quietlurker"
NOW = datetime(2024, 10, 20, 12, 0, tzinfo=UTC)
RULES = hn.HackerNewsRules()


class RecordedHackerNews:
    """The HN API (`/v0/...`), the site's favorites pages and a small web of linked pages,
    replayed from tests/fixtures/hackernews on 127.0.0.1 ("{{BASE}}" becomes this server)."""

    def __init__(self):
        self.requests: list[str] = []
        self.overrides: dict[str, tuple[int, str, bytes]] = {}  # path?query -> answer
        self.failures: dict[str, int] = {}  # path?query -> 503s to answer first
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def asked(self, pattern: str) -> list[str]:
        return [r for r in self.requests if re.search(pattern, r)]

    def answer(self, path: str) -> tuple[int, str, bytes]:
        if path in self.overrides:
            return self.overrides[path]
        parts = urlsplit(path)
        if match := re.fullmatch(r"/v0/(item|user)/([^/]+)\.json", parts.path):
            file = FIXTURES / "api" / match[1] / f"{match[2]}.json"
            # The API answers an id it does not serve with HTTP 200 and `null`.
            return 200, "application/json; charset=utf-8", file.read_bytes() if file.exists() else b"null"
        if parts.path == "/favorites":
            query = parse_qs(parts.query)
            file = FIXTURES / "site" / f"favorites-{query['id'][0]}-p{query.get('p', ['1'])[0]}.html"
            return 200, "text/html; charset=utf-8", file.read_bytes() if file.exists() else b"No such user."
        file = FIXTURES / "web" / parts.path.lstrip("/")
        if file.is_file():
            kind = "text/plain" if file.suffix == ".txt" else "text/html; charset=utf-8"
            return 200, kind, file.read_bytes()
        return 404, "text/html", b"<html><body><h1>Not Found</h1></body></html>"

    def _handler(self):
        recorded = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                recorded.requests.append(self.path)
                if recorded.failures.get(self.path, 0) > 0:
                    recorded.failures[self.path] -= 1
                    return self._send(503, "text/html", b"Sorry, we're not able to serve your requests this quickly.")
                if self.path == "/test/endless":  # a body that never ends
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.end_headers()
                    chunk = b"<p>" + b"x" * 65536 + b"</p>"
                    try:
                        while True:
                            self.wfile.write(chunk)
                    except OSError:
                        return
                if self.path == "/test/slow":  # no answer for 3 s
                    time.sleep(3)
                    return self._send(200, "text/html", b"<html><body><p>late</p></body></html>")
                if self.path == "/test/drip":  # answers at once, then 10 bytes every 0.2 s
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.end_headers()
                    try:
                        for _ in range(30):
                            self.wfile.write(b"<p>drip</p>")
                            self.wfile.flush()
                            time.sleep(0.2)
                    except OSError:
                        pass
                    return
                self._send(*recorded.answer(self.path))

            def _send(self, status, kind, body):
                body = body.replace(b"{{BASE}}", recorded.base.encode())
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


@pytest.fixture
def recorded(monkeypatch):
    server = RecordedHackerNews()
    monkeypatch.setenv("LOOM_HACKERNEWS_API_URL", f"{server.base}/v0")
    monkeypatch.setenv("LOOM_HACKERNEWS_SITE_URL", server.base)
    monkeypatch.setenv("LOOM_HACKERNEWS_REQUEST_PAUSE_SECONDS", "0")
    yield server
    server.stop()


def fixture_page(name: str) -> bytes:
    return (FIXTURES / "site" / name).read_bytes()


def decoded(message) -> dict:
    """A fetched message as it lands: through the envelope and `events.decode`."""
    m = decode(TOPIC, envelope(message), partition=0, offset=0)
    return {"device_id": m.device_id, "recorded_at": m.recorded_at, **m.payload.model_dump()}


# -- favorites pages -----------------------------------------------------------------------------
def test_favorites_page_gives_row_ids_in_order_and_the_next_page():
    ids, more = hnf.favorites_page(fixture_page("favorites-quietlurker-p1.html"),
                                   "https://news.ycombinator.com/favorites?id=quietlurker")
    assert ids == [41800001, 41800002, 41800003]
    assert more == "https://news.ycombinator.com/favorites?id=quietlurker&p=2"
    ids, more = hnf.favorites_page(fixture_page("favorites-quietlurker-p2.html"),
                                   "https://news.ycombinator.com/favorites?id=quietlurker&p=2")
    assert ids == [41800004, 41800005] and more is None
    assert hnf.favorites_page(b"No such user.", "https://news.ycombinator.com/favorites?id=x") == ([], None)


# -- the fetch -----------------------------------------------------------------------------------
def test_first_fetch_publishes_stories_of_both_kinds_and_skips_comments_and_missing_items(recorded):
    result = hnf.fetch(hnf.HackerNewsAccount(USER), {}, NOW)
    got = [(m.data["interaction_type"], m.data["item_id"]) for m in result.messages]
    # Alternating favorites and submissions, newest first; 41800005 is null in the API, 41800301
    # is a comment the user wrote.
    assert got == [("favorite", 41800001), ("submission", 41800302), ("favorite", 41800002),
                   ("favorite", 41800003), ("submission", 41800002), ("favorite", 41800004)]
    assert recorded.asked(r"^/favorites\?id=quietlurker&p=2$"), "the More link was followed"
    assert {m.key for m in result.messages} == {str(i) for _, i in got}
    assert len({m.content_hash for m in result.messages}) == 6  # favorite and submission of one item differ
    assert result.cursor["favorite"] == {"seen": [41800005, 41800004, 41800003, 41800002, 41800001], "complete": True}
    assert result.cursor["submission"]["seen"] == [41800302, 41800301, 41800002]

    rows = {(r["interaction_type"], r["item_id"]): r for r in map(decoded, result.messages)}
    story = rows[("favorite", 41800001)]
    assert story["device_id"] == "hackernews-quietlurker" and story["username"] == USER
    assert story["url"] == f"{recorded.base}/articles/rust-compile-times.html"
    assert (story["author"], story["score"], story["comment_count"]) == ("ekidd", 312, 142)
    assert story["kids"] == [41800101, 41800102, 41800103, 41800104, 41800105]
    assert story["created_at"] == datetime.fromtimestamp(1729001042, UTC)
    # A favorite's time is when it was first seen; a submission's is the story's own time.
    assert story["recorded_at"] == NOW == story["interacted_at"]
    assert rows[("submission", 41800302)]["recorded_at"] == datetime.fromtimestamp(1729100000, UTC)
    ask = rows[("favorite", 41800002)]
    assert ask["url"] is None and "<p>" in ask["text"]  # Ask HN: a text post, kept


def test_a_second_fetch_publishes_nothing_and_reads_only_the_first_page(recorded):
    first = hnf.fetch(hnf.HackerNewsAccount(USER), {}, NOW)
    recorded.requests.clear()
    second = hnf.fetch(hnf.HackerNewsAccount(USER), json.loads(json.dumps(first.cursor)), NOW)
    assert second.messages == []
    assert recorded.requests == ["/favorites?id=quietlurker", "/v0/user/quietlurker.json"]
    assert second.cursor == first.cursor


def test_a_new_favorite_arrives_alone(recorded):
    cursor = hnf.fetch(hnf.HackerNewsAccount(USER), {}, NOW).cursor
    recorded.overrides["/favorites?id=quietlurker"] = (
        200, "text/html", fixture_page("favorites-quietlurker-p1-after-new-favorite.html"))
    recorded.requests.clear()
    result = hnf.fetch(hnf.HackerNewsAccount(USER), cursor, NOW)
    assert [(m.data["interaction_type"], m.data["item_id"]) for m in result.messages] == [("favorite", 41800006)]
    assert recorded.asked(r"^/v0/item/") == ["/v0/item/41800006.json"]
    assert not recorded.asked(r"p=2")  # the first page already held known favorites


def test_at_most_100_item_requests_a_run_and_the_rest_next_run(recorded):
    submitted = list(range(41900150, 41900000, -1))  # 150 ids the API answers with null
    recorded.overrides["/v0/user/quietlurker.json"] = (
        200, "application/json", orjson.dumps({"id": USER, "created": 1457628164, "karma": 1, "submitted": submitted}))
    first = hnf.fetch(hnf.HackerNewsAccount(USER), {}, NOW)
    asked_first = recorded.asked(r"^/v0/item/")
    assert len(asked_first) == 100
    assert first.cursor["favorite"]["complete"] and not first.cursor["submission"]["complete"]
    recorded.requests.clear()
    second = hnf.fetch(hnf.HackerNewsAccount(USER), first.cursor, NOW)
    asked_second = recorded.asked(r"^/v0/item/")
    assert len(asked_second) == 150 + 5 - 100 and not set(asked_first) & set(asked_second)
    assert second.messages == [] and second.cursor["submission"]["complete"]


def test_a_favorites_backlog_beyond_the_cap_is_paged_through_again(recorded, monkeypatch):
    monkeypatch.setenv("LOOM_HACKERNEWS_MAX_ITEMS", "2")
    recorded.overrides["/v0/user/quietlurker.json"] = (200, "application/json", b'{"id":"quietlurker","submitted":[]}')
    first = hnf.fetch(hnf.HackerNewsAccount(USER), {}, NOW)
    assert [m.data["item_id"] for m in first.messages] == [41800001, 41800002]
    assert not first.cursor["favorite"]["complete"]
    second = hnf.fetch(hnf.HackerNewsAccount(USER), first.cursor, NOW)
    assert [m.data["item_id"] for m in second.messages] == [41800003, 41800004]


def test_transient_answers_are_retried(recorded):
    recorded.failures["/v0/user/quietlurker.json"] = 2
    result = hnf.fetch(hnf.HackerNewsAccount(USER), {}, NOW)
    assert len(result.messages) == 6
    assert len(recorded.asked(r"^/v0/user/")) == 3


def test_an_unknown_user_fails_the_fetch(recorded):
    with pytest.raises(LookupError, match="no user 'nobody_here'"):
        hnf.fetch(hnf.HackerNewsAccount("nobody_here"), {}, NOW)


def test_polite_pause_between_requests(recorded):
    client = hnf.HackerNewsClient(f"{recorded.base}/v0", recorded.base, pause_s=0.3)
    started = time.monotonic()
    for item_id in (41800001, 41800002, 41800003):
        client.item(item_id)
    assert time.monotonic() - started >= 0.6


def test_accounts_from_the_environment():
    env = {"LOOM_HACKERNEWS_USERNAME": "pg", "LOOM_HACKERNEWS_USERNAME_1": " dang ",
           "LOOM_HACKERNEWS_USERNAME_2": "pg", "LOOM_HACKERNEWS_USERNAME_4": "tptacek"}
    assert [a.name for a in hnf.accounts(env)] == ["pg", "dang", "tptacek"]
    assert hnf.accounts({}) == []


def test_top_comments_skip_deleted_dead_and_missing_replies(recorded):
    client = hnf.HackerNewsClient(f"{recorded.base}/v0", recorded.base, pause_s=0)
    kids = json.loads((FIXTURES / "api/item/41800001.json").read_text())["kids"]
    assert [c["id"] for c in client.top_comments(41800001, kids, 5)] == [41800101, 41800104]
    assert [c["id"] for c in client.top_comments(41800001, kids, 1)] == [41800101]
    # Loom v2's messages carry no kids: the story is asked for them.
    assert [c["id"] for c in client.top_comments(41800002, None, 5)] == [41800201]
    recorded.failures["/v0/item/41800201.json"] = 10
    impatient = hnf.HackerNewsClient(f"{recorded.base}/v0", recorded.base, pause_s=0,
                                     retry=Retry(total=2, status_forcelist=(503,)))
    with pytest.raises(hn.Unavailable, match="503"):
        impatient.top_comments(41800002, [41800201], 5)
    assert len(recorded.asked(r"41800201")) == 1 + 3  # once above, then 1 + 2 retries


# -- linked pages --------------------------------------------------------------------------------
@pytest.fixture
def pages():
    return hnf.ArticleFetcher(RULES.max_article_bytes, RULES.article_timeout_s)


def test_an_article_is_read_and_robots_txt_is_read_once_per_site(recorded, pages):
    article = pages(f"{recorded.base}/articles/rust-compile-times.html")
    assert article.status == "ok" and b"Monomorphization dominates" in article.html
    assert (article.http_status, article.content_type) == (200, "text/html")
    assert pages(f"{recorded.base}/articles/sqlite-wal.html").status == "ok"
    assert len(recorded.asked(r"^/robots\.txt$")) == 1


def test_robots_txt_refusal_means_no_request(recorded, pages):
    article = pages(f"{recorded.base}/private/postmortem.html")
    assert article.status == "disallowed_by_robots" and article.html is None
    assert not recorded.asked(r"^/private/")
    # robots.txt names GPTBot: a fetcher calling itself that may read nothing.
    gpt = hnf.ArticleFetcher(RULES.max_article_bytes, RULES.article_timeout_s, user_agent="GPTBot/1.0")
    assert gpt(f"{recorded.base}/articles/sqlite-wal.html").status == "disallowed_by_robots"


def test_robots_txt_answers(recorded, pages):
    recorded.overrides["/robots.txt"] = (404, "text/html", b"not here")
    assert pages(f"{recorded.base}/articles/sqlite-wal.html").status == "ok"  # no robots.txt: allowed
    fetcher = hnf.ArticleFetcher(RULES.max_article_bytes, RULES.article_timeout_s)
    recorded.overrides["/robots.txt"] = (403, "text/html", b"forbidden")
    assert fetcher(f"{recorded.base}/articles/sqlite-wal.html").status == "disallowed_by_robots"
    fetcher = hnf.ArticleFetcher(RULES.max_article_bytes, RULES.article_timeout_s)
    recorded.overrides["/robots.txt"] = (500, "text/html", b"oops")
    assert fetcher(f"{recorded.base}/articles/sqlite-wal.html").status == "robots_unavailable"


def test_ten_megabyte_cap_on_an_endless_body(recorded, pages):
    started = time.monotonic()
    article = pages(f"{recorded.base}/test/endless")
    assert article.status == "too_large" and article.html is None
    assert time.monotonic() - started < 10
    recorded.overrides["/big"] = (200, "text/html", b"x" * (RULES.max_article_bytes + 1))
    assert pages(f"{recorded.base}/big").detail.startswith("Content-Length")  # refused before reading


def test_timeouts(recorded):
    # The slow page answers after 3 s, the drip takes 6 s: both read as "timeout" at 0.5 s.
    pages = hnf.ArticleFetcher(RULES.max_article_bytes, timeout_s=0.5)
    assert pages(f"{recorded.base}/test/slow").status == "timeout"
    assert pages(f"{recorded.base}/test/drip").status == "timeout"  # each read is quick, the whole is not


@pytest.mark.parametrize(("path", "answer", "status"), [
    ("/papers/paxos-simple.pdf", None, "pdf"),  # not even requested
    ("/download?id=7", (200, "application/pdf", b"%PDF-1.7\n"), "pdf"),
    ("/logo.png", (200, "image/png", b"\x89PNG\r\n\x1a\n"), "not_html"),
    ("/articles/gone.html", None, "http_error"),
    ("/redirect", (302, "text/html", b""), "http_error"),  # a redirect with no Location
])
def test_what_is_not_read(recorded, pages, path, answer, status):
    if answer:
        recorded.overrides[path] = answer
    assert pages(f"{recorded.base}{path}").status == status
    if path.endswith(".pdf"):
        assert not recorded.asked(r"\.pdf$")


def test_unreachable_and_unsupported_links(pages):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert pages(f"http://127.0.0.1:{port}/a.html").status == "robots_unavailable"
    assert pages("ftp://example.com/file.txt").status == "unsupported_url"


# -- extraction and text ---------------------------------------------------------------------------
def test_extraction_picks_the_article_not_the_navigation():
    html = (FIXTURES / "web/articles/rust-compile-times.html").read_bytes()
    extracted = hn.extract_article(html, "https://ferrous.example/articles/rust-compile-times.html", RULES)
    assert extracted.title == "Where the time goes when Rust compiles"
    assert "monomorphization copies every generic function" in extracted.text
    assert "Measuring first, and then attacking generic code" in extracted.text
    for boilerplate in ("Accept all cookies", "Popular posts", "Subscribe for weekly posts",
                        "Join 12,000 engineers", "All rights reserved", "You might also like"):
        assert boilerplate not in extracted.text
    assert extracted.summary.startswith("A profile of a 200-crate Rust workspace")  # the page's description


def test_summary_without_a_description_is_the_opening_cut_at_a_word():
    html = (FIXTURES / "web/articles/sqlite-wal.html").read_bytes()
    extracted = hn.extract_article(html, None, RULES)
    assert extracted.summary.startswith("In rollback-journal mode")
    assert len(extracted.summary) <= RULES.summary_chars + 2
    assert "Sponsored" not in extracted.text and "Sign in" not in extracted.text
    assert hn.extract_article(b"<html><head><title>Loading</title></head><body><script>app()</script></body></html>",
                              None, RULES) is None


def test_hn_text_fields_become_plain_text():
    text = json.loads((FIXTURES / "api/item/41800002.json").read_text())["text"]
    assert hn.hn_text(text) == (
        "I have tried wikis, plain Markdown folders and a couple of note apps, and I keep losing things.\n\n"
        "How do you organise notes so that you can actually find them again a year later? Do you tag, "
        "link, or just rely on full-text search?\n\n"
        "My current setup is described here: https://example.org/notes-setup")
    assert hn.hn_text("It&#x27;s <i>fast</i>") == "It's fast"
    assert hn.hn_text(None) == "" and hn.hn_text("  ") == ""


@pytest.mark.parametrize(("url", "expected"), [
    ("https://www.example.com/a", "example.com"), ("http://blog.Example.org:8080/", "blog.example.org"), (None, None)])
def test_domain(url, expected):
    assert hn.domain(url) == expected


# -- the items stage -------------------------------------------------------------------------------
def raw_rows(server: RecordedHackerNews) -> pd.DataFrame:
    """Raw rows as landing writes them, from the fetcher's own messages."""
    messages = hnf.fetch(hnf.HackerNewsAccount(USER), {}, NOW).messages
    rows = []
    for offset, m in enumerate(messages):
        rows.append({"window_start": pd.Timestamp("2024-10-20", tz="UTC"), "source_topic": TOPIC,
                     "source_partition": 0, "source_offset": offset, "message_id": m.content_hash,
                     "trace_id": None, **decoded(m)})
    return pd.DataFrame(rows)


def test_items_with_articles_comments_and_reasons(recorded, pages):
    raw = raw_rows(recorded)
    raw = pd.concat([raw, raw.iloc[[0]].assign(source_offset=99)], ignore_index=True)  # published twice
    client = hnf.HackerNewsClient(f"{recorded.base}/v0", recorded.base, pause_s=0)
    result = hn.items(raw, pages, client.top_comments, RULES)
    assert result.errors.empty
    rows = result.rows.set_index(["interaction_type", "item_id"])
    assert len(rows) == 6
    rust = rows.loc[("favorite", 41800001)]
    assert rust["article_status"] == "ok" and "critical path" in rust["article_text"]
    assert rust["article_title"] == "Where the time goes when Rust compiles" and rust["domain"] == "127.0.0.1"
    assert rust["hn_url"] == "https://news.ycombinator.com/item?id=41800001"
    assert [c["id"] for c in rust["top_comments"]] == [41800101, 41800104]
    assert rust["top_comments"][0]["text"].startswith("Monomorphization is the big one")
    assert "\n\nMoving the heavy generic code" in rust["top_comments"][0]["text"]
    ask = rows.loc[("favorite", 41800002)]
    assert ask["article_status"] == "no_url" and ask["story_text"].startswith("I have tried wikis")
    assert ask["top_comments"][0]["author"] == "tptacek"
    assert rows.loc[("favorite", 41800003), "article_status"] == "disallowed_by_robots"
    assert rows.loc[("favorite", 41800004), "article_status"] == "pdf"
    assert rows.loc[("submission", 41800302), "article_summary"].startswith("In rollback-journal mode")
    assert rows["comments_status"].eq("ok").all()
    # The same link is fetched once per window, however many items point at it.
    assert len(recorded.asked(r"^/articles/rust-compile-times")) == 1


def test_a_fault_of_one_item_is_an_error_row_and_its_row_is_still_written(recorded):
    raw = raw_rows(recorded)

    def broken_fetcher(url):
        if "rust" in url:
            raise RuntimeError("parser exploded")
        return hn.Article("timeout", detail="slow")

    def unavailable(item_id, kids, limit):
        raise hn.Unavailable("HTTPError: 503")

    result = hn.items(raw, broken_fetcher, unavailable, RULES)
    assert len(result.rows) == 6
    failed = result.rows[result.rows["item_id"] == 41800001].iloc[0]
    assert failed["article_status"] == "failed" and "parser exploded" in failed["article_detail"]
    assert result.errors[["error_type", "source_offset"]].values.tolist() == [["article_failed", 0]]
    assert result.rows["comments_status"].str.startswith("unavailable").all()
    assert set(result.rows.loc[result.rows["item_id"] == 41800302, "article_status"]) == {"timeout"}


def test_embedding_text_and_one_embedding_per_user_and_item(recorded, pages):
    client = hnf.HackerNewsClient(f"{recorded.base}/v0", recorded.base, pause_s=0)
    rows = hn.items(raw_rows(recorded), pages, client.top_comments, RULES).rows
    chosen = hn.embedding_items(rows)
    assert len(chosen) == 5  # 41800002 was favorited and submitted: embedded once, as the favorite
    assert chosen.loc[chosen["item_id"] == 41800002, "interaction_type"].tolist() == ["favorite"]
    texts = dict(zip(chosen["item_id"], hn.embedding_text(chosen, RULES)))
    rust = texts[41800001].split("\n\n")
    assert rust[0] == "Where the time goes when Rust compiles"
    assert rust[1].startswith("A profile of a 200-crate Rust workspace")
    assert rust[2].startswith("Monomorphization is the big one") and len(rust[2]) <= RULES.embedded_comment_chars + 2
    assert "cargo build --timings" in texts[41800001]
    assert texts[41800002].split("\n\n")[1].startswith("I have tried wikis")  # a text post's own text
    assert texts[41800004] == "Paxos Made Simple (2001) [pdf]"  # nothing but its title


def test_an_empty_window():
    result = hn.items(pd.DataFrame(), lambda url: None, lambda *a: [], RULES)
    assert result.rows.empty and list(result.rows.columns) == list(hn.ITEM_COLUMNS)


# -- Loom v2's envelope (docs/messages.md#fetcher-envelopes) ---------------------------------------
def loom_v2(**data) -> bytes:
    body = {"schema_version": "v1", "device_id": None, "timestamp": "2024-10-15T14:04:02",
            "content_hash": "9f2c", "data": {
                "url": "https://example.com/post", "source": "hackernews", "type": "liked_story",
                "title": "A post", "score": 12, "comments_url": "https://news.ycombinator.com/item?id=41800007",
                "story_id": 41800007, "author": "pg", "comment_count": 4, **data}}
    return orjson.dumps(body)


def test_loom_v2_messages_without_a_device_land_as_the_hackernews_device():
    message = decode(TOPIC, loom_v2(), partition=0, offset=5)
    assert message.device_id == "hackernews"
    assert message.recorded_at == datetime(2024, 10, 15, 14, 4, 2, tzinfo=UTC)
    p = message.payload
    assert (p.item_id, p.interaction_type, p.item_type, p.author, p.comment_count) == \
        (41800007, "favorite", "story", "pg", 4)
    submitted = decode(TOPIC, loom_v2(type="submitted_story"), partition=0, offset=6)
    assert submitted.payload.interaction_type == "submission"


def test_the_device_rule_is_only_for_fetcher_topics_and_bad_items_are_errors():
    other = orjson.dumps({"schema_version": "1.0", "device_id": None, "recorded_at": "2024-10-15T14:04:02Z",
                          "app_identifier": "com.example", "event_type": "launch"})
    with pytest.raises(InvalidMessage) as error:
        decode("os.events.app_lifecycle.raw", other, partition=0, offset=0)
    assert error.value.error_type == "missing_device_id"
    for bad in (loom_v2(type="upvoted_comment"), loom_v2(story_id="forty-two")):
        with pytest.raises(InvalidMessage) as error:
            decode(TOPIC, bad, partition=0, offset=0)
        assert error.value.error_type == "validation_error" and error.value.device_id == "hackernews"
