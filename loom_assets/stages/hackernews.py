"""Hacker News items: each favorite or submission with its linked article's text and its top
comments (docs/flows/hackernews.md#items), and the text its embedding is made of
(docs/flows/hackernews.md#embeddings).

The network is passed in: `fetch_article(url) -> Article` (robots.txt, size cap and timeout are
the fetcher's job) and `fetch_comments(item_id, kids, limit) -> [comment items]` (the API's
dicts, deleted and dead ones already skipped). The flow wires in the real ones from
`loom_assets/fetchers/hackernews.py`.

What becomes what:
- a link that cannot be read (robots.txt, HTTP error, timeout, over 10 MB, PDF, not HTML, no
  text found) is the web's normal state: the row is written and `article_status` says why;
- the HN API failing to give comments (`Unavailable`) is written in `comments_status`;
- anything else raised for one item (a bug, a page that crashes the extractor) is a stage error
  row (`hackernews/items`), and the item's row is still written, its status `failed`.
"""

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import lxml.html
import pandas as pd
from lxml.etree import ParserError

from loom_assets.lazy import LazyModule

trafilatura = LazyModule("trafilatura")

HN_ITEM_URL = "https://news.ycombinator.com/item?id={}"


@dataclass(frozen=True)
class HackerNewsRules:
    """Every number of the items stage, with its reason. Bump `version` when one changes."""

    version: str = "1"
    # docs/flows/hackernews.md#fetcher fetch_comments: true, with no count: the first five replies
    # in the site's ranking are what a reader sees first, and enough for the embedding (256 word
    # pieces).
    top_comments: int = 5
    # docs/flows/hackernews.md#items max_content_size_mb: 10 and timeout_seconds: 30 (for the whole download).
    max_article_bytes: int = 10 * 1024 * 1024
    article_timeout_s: float = 30.0
    # A summary is the page's own description when it has one, else its opening text, cut at a
    # word boundary near this length (about the 256 word pieces the embedding model reads).
    summary_chars: int = 500
    # Each comment in the embedded text is cut here, so one long comment cannot crowd out the rest.
    embedded_comment_chars: int = 300


@dataclass(frozen=True)
class Article:
    """What fetching a link gave: `status` "ok" with the page's bytes, or why there are none
    (disallowed_by_robots, robots_unavailable, http_error, timeout, too_large, pdf, not_html,
    connection_error, unsupported_url, fetch_failed)."""

    status: str
    html: bytes | None = None
    final_url: str | None = None
    http_status: int | None = None
    content_type: str | None = None
    detail: str | None = None


class Unavailable(Exception):
    """The outside service (the HN API) could not answer; not a fault of the record."""


@dataclass(frozen=True)
class Extracted:
    title: str | None
    text: str
    summary: str


@dataclass(frozen=True)
class ItemsResult:
    rows: pd.DataFrame
    errors: pd.DataFrame  # window_start, device_id, recorded_at, source_*, error_type, error_message


ITEM_COLUMNS = (
    "window_start", "device_id", "recorded_at", "source_topic", "source_partition", "source_offset",
    "message_id", "trace_id", "username", "item_id", "item_type", "interaction_type", "interacted_at",
    "created_at", "title", "url", "domain", "hn_url", "author", "score", "comment_count", "story_text",
    "article_status", "article_detail", "article_http_status", "article_content_type", "article_url",
    "article_title", "article_text", "article_summary", "comments_status", "top_comments",
)
ERROR_COLUMNS = ("window_start", "device_id", "recorded_at", "source_topic", "source_partition",
                 "source_offset", "error_type", "error_message")

FetchArticle = Callable[[str], Article]
FetchComments = Callable[[int, Sequence[int] | None, int], list[dict[str, Any]]]


# -- text ------------------------------------------------------------------------------------
_BLOCKS = ("p", "pre", "blockquote", "li")
_SPACES = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def hn_text(html: str | None) -> str:
    """Plain text of an HN text field: HTML whose paragraphs are separated by bare `<p>`, links
    shown by their text, entities escaped (`&#x27;`). Paragraphs become blank-line separated."""
    if not html or not html.strip():
        return ""
    try:
        root = lxml.html.fragment_fromstring(html, create_parent="div")
    except ParserError:
        return html.strip()
    for element in root.iter(*_BLOCKS):
        element.text = "\n\n" + (element.text or "")
    for br in root.iter("br"):
        br.tail = "\n" + (br.tail or "")
    lines = (_SPACES.sub(" ", line).strip() for line in root.text_content().split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def domain(url: str | None) -> str | None:
    """The host of a link without `www.`, as HN shows it beside the title."""
    if not url:
        return None
    host = (urlsplit(url).hostname or "").lower()
    return host.removeprefix("www.") or None


def summary(text: str, description: str | None, limit: int) -> str:
    """The page's description when it has a real one, else its opening, cut at a word boundary."""
    if description and len(description.strip()) >= 40:
        return description.strip()
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit]
    sentence = cut.rfind(". ")
    if sentence >= limit // 2:
        return cut[:sentence + 1]
    return cut[:cut.rfind(" ")].rstrip(",;:") + " …" if " " in cut else cut


def extract_article(html: bytes, url: str | None, rules: HackerNewsRules) -> Extracted | None:
    """The main text of a page (trafilatura: the article, not the navigation, sidebars, cookie
    banners or footers), its title and a summary; None when the page has no main text."""
    document = trafilatura.bare_extraction(html, url=url, with_metadata=True, include_comments=False,
                                           include_tables=True, favor_precision=True)
    if document is None or not (document.text or "").strip():
        return None
    text = document.text.strip()
    # The page's heading often opens the text: the summary starts after it.
    first, _, rest = text.partition("\n")
    opening = rest if document.title and first.strip() == document.title.strip() and rest.strip() else text
    return Extracted(title=document.title or None, text=text,
                     summary=summary(opening, document.description, rules.summary_chars))


# -- the stage -------------------------------------------------------------------------------
def items(raw: pd.DataFrame, fetch_article: FetchArticle, fetch_comments: FetchComments,
          rules: HackerNewsRules) -> ItemsResult:
    """One row per (user, item, interaction) of the window: the item, its linked article's text
    and its top comments. The same message twice in a window (a fetch published again after a
    crash) gives one row."""
    if raw.empty:
        return ItemsResult(pd.DataFrame(columns=list(ITEM_COLUMNS)), pd.DataFrame(columns=list(ERROR_COLUMNS)))
    raw = raw.sort_values(["recorded_at", "source_partition", "source_offset"], kind="stable")
    raw = raw.drop_duplicates(["device_id", "item_id", "interaction_type"], keep="first")
    rows, errors = [], []
    articles: dict[str, tuple[Article, Extracted | None]] = {}  # one fetch per link per window
    comments: dict[int, tuple[str, list[dict]]] = {}
    for record in raw.to_dict("records"):
        record = {k: (None if _missing(v) else v) for k, v in record.items()}
        problems: list[tuple[str, str]] = []
        url = record.get("url") or None
        if url is None:
            article, extracted = Article("no_url"), None
        elif url in articles:
            article, extracted = articles[url]
        else:
            try:
                article = fetch_article(url)
                extracted = extract_article(article.html, article.final_url or url, rules) \
                    if article.status == "ok" else None
                if article.status == "ok" and extracted is None:
                    article = Article("no_text", final_url=article.final_url, http_status=article.http_status,
                                      content_type=article.content_type, detail="no main text found")
            except Exception as error:  # noqa: BLE001 - one item's fault: an error row, the row still written
                article, extracted = Article("failed", detail=f"{type(error).__name__}: {error}"), None
                problems.append(("article_failed", f"{url}: {type(error).__name__}: {error}"))
            articles[url] = (article, extracted)

        item_id = int(record["item_id"])
        if item_id not in comments:
            kids = record.get("kids")
            try:
                fetched = fetch_comments(item_id, list(kids) if isinstance(kids, list | tuple) else None,
                                         rules.top_comments)
                comments[item_id] = ("ok", [_comment(c) for c in fetched])
            except Unavailable as error:
                comments[item_id] = (f"unavailable: {error}", [])
            except Exception as error:  # noqa: BLE001 - as above
                comments[item_id] = ("failed", [])
                problems.append(("comments_failed", f"item {item_id}: {type(error).__name__}: {error}"))
        comments_status, top = comments[item_id]

        rows.append({
            **{c: record.get(c) for c in ITEM_COLUMNS[:8]},
            "username": record.get("username"), "item_id": item_id,
            "item_type": record.get("item_type") or "story", "interaction_type": record["interaction_type"],
            "interacted_at": record.get("interacted_at"), "created_at": record.get("created_at"),
            "title": record.get("title"), "url": url, "domain": domain(url),
            "hn_url": HN_ITEM_URL.format(item_id), "author": record.get("author"),
            "score": record.get("score"), "comment_count": record.get("comment_count"),
            "story_text": hn_text(record.get("text")) or None,
            "article_status": article.status, "article_detail": article.detail,
            "article_http_status": article.http_status, "article_content_type": article.content_type,
            "article_url": article.final_url,
            "article_title": extracted.title if extracted else None,
            "article_text": extracted.text if extracted else None,
            "article_summary": extracted.summary if extracted else None,
            "comments_status": comments_status, "top_comments": top,
        })
        errors += [{**{c: record.get(c) for c in ERROR_COLUMNS[:6]}, "error_type": kind, "error_message": message}
                   for kind, message in problems]
    frame = pd.DataFrame(rows, columns=list(ITEM_COLUMNS))
    for column in ("score", "comment_count", "article_http_status"):
        frame[column] = frame[column].astype("Int64")
    return ItemsResult(frame, pd.DataFrame(errors, columns=list(ERROR_COLUMNS)))


def _missing(value: Any) -> bool:
    return not isinstance(value, list | tuple | dict) and bool(pd.isna(value))


def _comment(item: dict[str, Any]) -> dict[str, Any]:
    return {"id": item.get("id"), "author": item.get("by"), "time": item.get("time"), "text": hn_text(item.get("text"))}


# -- embeddings ------------------------------------------------------------------------------
def embedding_items(items: pd.DataFrame) -> pd.DataFrame:
    """The items to embed: one per (device, item) of the window (a story you favorited and
    submitted is found once), the favorite first."""
    if items.empty:
        return items
    order = items.assign(_fav=items["interaction_type"].ne("favorite"))
    order = order.sort_values(["_fav", "recorded_at"], kind="stable")
    return order.drop_duplicates(["device_id", "item_id"]).drop(columns="_fav").sort_index()


def embedding_text(items: pd.DataFrame, rules: HackerNewsRules) -> pd.Series:
    """What is embedded (docs/flows/hackernews.md#embeddings): the title, the article's summary
    (a text post's own text), then the top comments, each cut to a few hundred characters."""
    def text(row) -> str:
        row = {k: (None if _missing(v) else v) for k, v in row.items()}
        content = row["article_summary"] or summary(row["story_text"] or "", None, rules.summary_chars)
        replies = [_cut(c.get("text") or "", rules.embedded_comment_chars) for c in (row["top_comments"] or [])]
        return "\n\n".join(part for part in (row["title"], content, *replies) if part and part.strip())

    if items.empty:
        return pd.Series(dtype=object)
    return pd.Series([text(row) for row in items.to_dict("records")], index=items.index, dtype=object)


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " …"
