"""Hacker News fetcher (docs/flows/hackernews.md#fetcher): a user's favorites and submissions, published to
`external.hackernews.activity.raw`; and the HTTP clients the items stage uses (the HN API for
top comments, linked pages read politely).

- Favorites come from the user's public favorites page (`/favorites?id=<user>`, rows
  `tr.athing`, 30 a page, a "More" link to the next page): the API has no favorites.
- Submissions come from the API's `user/<id>.json` `submitted` (newest first; comments included).
- Kept: top-level items, i.e. stories (Ask HN and other text posts without a url included),
  polls and jobs. Comments a user wrote, deleted and dead items, and ids the API answers with
  `null` are skipped (and remembered, so they are not asked for again).
- At most `LOOM_HACKERNEWS_MAX_ITEMS` (100) item requests a run, shared by favorites and
  submissions alternately, newest first; what is left waits for the next run.
- Cursor per user: the ids handled per interaction type, and whether the favorites listing
  was read to its end (then later runs stop paging at the first page holding a known id).
"""

import os
import threading
import time
import urllib.robotparser
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain, zip_longest
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import lxml.html
import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.retry import Retry

from loom_assets.fetchers.base import Fetched, FetchResult, content_hash
from loom_assets.settings import settings
from loom_assets.stages.hackernews import Article, Unavailable

SOURCE = "hackernews"
TOPIC = "external.hackernews.activity.raw"
TOP_LEVEL_TYPES = frozenset({"story", "poll", "job"})
INTERACTIONS = ("favorite", "submission")
USER_AGENT = "Loom/0.1 (personal data platform; fetches what its user favorited; respects robots.txt)"
API_TIMEOUT_S = 30.0
# Transient answers of the API and the site (HN answers bursts with 503): 3 retries, waiting
# 0, 2, 4 s (or what Retry-After says).
RETRY = Retry(total=3, backoff_factor=1.0, status_forcelist=(429, 500, 502, 503, 504),
              allowed_methods=frozenset({"GET"}), respect_retry_after_header=True)
MAX_ACCOUNTS = 10
MAX_ROBOTS_BYTES = 512 * 1024  # Google reads the first 500 KiB of a robots.txt


@dataclass(frozen=True)
class HackerNewsAccount:
    username: str

    @property
    def name(self) -> str:
        return self.username


def accounts(environ: Mapping[str, str] = os.environ) -> list[HackerNewsAccount]:
    """`LOOM_HACKERNEWS_USERNAME` (Loom v2's setting), plus `LOOM_HACKERNEWS_USERNAME_<i>`,
    i = 1…10, for more users."""
    names = [environ.get("LOOM_HACKERNEWS_USERNAME", "")]
    names += [environ.get(f"LOOM_HACKERNEWS_USERNAME_{i}", "") for i in range(1, MAX_ACCOUNTS + 1)]
    return [HackerNewsAccount(name) for name in dict.fromkeys(n.strip() for n in names) if name]


def session(retry: Retry | None = RETRY) -> requests.Session:
    http = requests.Session()
    http.headers["User-Agent"] = USER_AGENT
    if retry is not None:
        adapter = HTTPAdapter(max_retries=retry)
        http.mount("http://", adapter)
        http.mount("https://", adapter)
    return http


# -- the HN API and site ---------------------------------------------------------------------
class HackerNewsClient:
    """The official API (`item/<id>.json`, `user/<id>.json`) and the favorites pages, with a
    polite pause between requests (docs/flows/hackernews.md#fetcher: 0.5 s) and retries of transient
    answers."""

    def __init__(self, api_url: str, site_url: str, pause_s: float, retry: Retry = RETRY):
        self.api_url, self.site_url = api_url.rstrip("/"), site_url.rstrip("/")
        self.pause_s = pause_s
        self.http = session(retry)
        self._last = 0.0
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls) -> "HackerNewsClient":
        config = settings()
        return cls(config.hackernews_api_url, config.hackernews_site_url, config.hackernews_request_pause_s)

    def get(self, url: str) -> requests.Response:
        with self._lock:
            wait = self._last + self.pause_s - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                response = self.http.get(url, timeout=API_TIMEOUT_S)
            finally:
                self._last = time.monotonic()
        response.raise_for_status()
        return response

    def item(self, item_id: int) -> dict[str, Any] | None:
        """An item, or None where the API answers `null` (HTTP 200): an id it does not serve."""
        return self.get(f"{self.api_url}/item/{int(item_id)}.json").json()

    def user(self, username: str) -> dict[str, Any] | None:
        return self.get(f"{self.api_url}/user/{quote(username, safe='')}.json").json()

    def favorite_pages(self, username: str) -> Iterator[list[int]]:
        """The ids on each favorites page, newest favorite first; the next page is requested
        only when the caller asks for it."""
        url: str | None = f"{self.site_url}/favorites?id={quote(username, safe='')}"
        while url:
            response = self.get(url)
            ids, url = favorites_page(response.content, response.url)
            yield ids

    def top_comments(self, item_id: int, kids: Sequence[int] | None, limit: int) -> list[dict[str, Any]]:
        """The first `limit` live replies (deleted, dead and missing ones skipped) in the site's
        ranking order. `kids` unknown (Loom v2's messages): the item is asked for them."""
        try:
            if kids is None:
                kids = (self.item(item_id) or {}).get("kids") or []
            found = []
            for kid in kids:
                if len(found) >= limit:
                    break
                comment = self.item(kid)
                if comment and not comment.get("deleted") and not comment.get("dead") and comment.get("text"):
                    found.append(comment)
            return found
        except requests.RequestException as error:
            raise Unavailable(f"{type(error).__name__}: {error}") from error


def favorites_page(html: bytes, page_url: str) -> tuple[list[int], str | None]:
    """The item ids of a favorites page (rows `tr.athing`, in order) and the absolute URL of its
    "More" link (`a.morelink`), if any."""
    if not html.strip():
        return [], None
    root = lxml.html.fromstring(html)
    rows = root.xpath('//tr[contains(concat(" ", normalize-space(@class), " "), " athing ")]')
    ids = [int(row.get("id")) for row in rows if (row.get("id") or "").isdigit()]
    more = root.xpath('//a[contains(concat(" ", normalize-space(@class), " "), " morelink ")]/@href')
    return ids, urljoin(page_url, more[0]) if more else None


# -- the fetch -------------------------------------------------------------------------------
def fetch(account: HackerNewsAccount, cursor: dict[str, Any], now: datetime,
          client: HackerNewsClient | None = None) -> FetchResult:
    """New favorites and submissions of one user, at most `hackernews_max_items` item requests."""
    client = client or HackerNewsClient.from_settings()
    budget = settings().hackernews_max_items
    user = account.username
    state = {kind: _state(cursor.get(kind)) for kind in INTERACTIONS}
    seen = {kind: set(state[kind]["seen"]) for kind in INTERACTIONS}

    favorites, listing_read = new_favorites(client, user, seen["favorite"], state["favorite"]["complete"], budget)
    profile = client.user(user)
    if profile is None:
        raise LookupError(f"Hacker News has no user {user!r} (LOOM_HACKERNEWS_USERNAME)")
    submissions = [i for i in profile.get("submitted") or [] if i not in seen["submission"]]

    # Alternate the two kinds, newest first, so neither waits while the other has a backlog.
    pairs = zip_longest((("favorite", i) for i in favorites), (("submission", i) for i in submissions))
    queue = [entry for entry in chain.from_iterable(pairs) if entry is not None]
    handled, messages = queue[:budget], []
    for kind, item_id in handled:
        item = client.item(item_id)
        seen[kind].add(item_id)
        if _kept(item):
            messages.append(message(user, kind, item, now))
    left = {kind for kind, _ in queue[budget:]}
    new_cursor = {kind: {"seen": sorted(seen[kind], reverse=True),
                         "complete": kind not in left and (kind != "favorite" or listing_read)}
                  for kind in INTERACTIONS}
    return FetchResult(messages=messages, cursor=new_cursor)


def new_favorites(client: HackerNewsClient, user: str, seen: set[int], complete: bool,
                  budget: int) -> tuple[list[int], bool]:
    """Unseen favorite ids, newest first, at most `budget`, and whether the listing was read to
    its end. Pages are followed while needed: until `budget` new ids, or (once a previous run
    read the whole listing) the first page that holds an id seen before."""
    found: list[int] = []
    for ids in client.favorite_pages(user):
        fresh = [i for i in dict.fromkeys(ids) if i not in seen and i not in found]
        found += fresh
        if len(found) >= budget:
            return found[:budget], False
        if complete and len(fresh) < len(ids):
            return found, True
    return found, True


def _state(value: Any) -> dict[str, Any]:
    value = value if isinstance(value, dict) else {}
    return {"seen": [int(i) for i in value.get("seen") or []], "complete": bool(value.get("complete"))}


def _kept(item: dict[str, Any] | None) -> bool:
    return bool(item) and item.get("type") in TOP_LEVEL_TYPES and not item.get("deleted") and not item.get("dead")


def message(user: str, interaction: str, item: dict[str, Any], now: datetime) -> Fetched:
    """One item in the nested Loom v2 envelope, keyed by item id. Its time is the interaction's:
    a submission's is the story's time; a favorite's is when the fetcher first saw it (HN does
    not say when a story was favorited, and a years-old story's time would put the row past
    retention at once). The story's own time is `created_at`."""
    created = datetime.fromtimestamp(item["time"], UTC) if item.get("time") else None
    at = created if interaction == "submission" and created else now
    data = {
        "item_id": item["id"], "item_type": item.get("type"), "interaction_type": interaction,
        "interacted_at": now.isoformat(), "username": user, "title": item.get("title"), "url": item.get("url"),
        "text": item.get("text"), "author": item.get("by"), "score": item.get("score"),
        "comment_count": item.get("descendants"), "kids": item.get("kids") or [],
        "created_at": created.isoformat() if created else None,
    }
    return Fetched(key=str(item["id"]), device_id=f"hackernews-{user}", timestamp=at, data=data,
                   content_hash=content_hash(SOURCE, user, interaction, item["id"]))


# -- linked pages ----------------------------------------------------------------------------
class ArticleFetcher:
    """Linked pages for the items stage: robots.txt first (per site, read once per fetcher),
    PDFs skipped, then at most `max_bytes` read by streaming within `timeout_s` in all."""

    HTML_TYPES = ("text/html", "application/xhtml+xml")

    def __init__(self, max_bytes: int, timeout_s: float, user_agent: str = USER_AGENT):
        self.max_bytes, self.timeout_s, self.user_agent = max_bytes, timeout_s, user_agent
        self.http = session(retry=None)  # the stage's own retry covers transient faults
        self.http.headers["User-Agent"] = user_agent
        self._robots: dict[str, urllib.robotparser.RobotFileParser | str] = {}

    def __call__(self, url: str) -> Article:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return Article("unsupported_url", detail=url)
        if parts.path.lower().endswith(".pdf"):
            return Article("pdf", detail="a PDF link (not fetched)")
        robots = self.robots(url)
        if isinstance(robots, str):
            return Article("robots_unavailable", detail=robots)
        if not robots.can_fetch(self.user_agent, url):
            return Article("disallowed_by_robots", detail=f"{parts.scheme}://{parts.netloc}/robots.txt")
        return self.download(url)

    def robots(self, url: str) -> urllib.robotparser.RobotFileParser | str:
        """The site's rules (urllib.robotparser semantics: 401/403 disallow all, other 4xx allow
        all); a string saying why when robots.txt could not be read (then nothing is fetched)."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self._robots:
            parser = urllib.robotparser.RobotFileParser(f"{origin}/robots.txt")
            try:
                with self.http.get(parser.url, timeout=self.timeout_s, stream=True) as response:
                    if response.status_code in (401, 403):
                        parser.disallow_all = True
                    elif 400 <= response.status_code < 500:
                        parser.allow_all = True
                    elif response.status_code >= 500:
                        self._robots[origin] = f"robots.txt answered HTTP {response.status_code}"
                        return self._robots[origin]
                    else:
                        body = response.raw.read(MAX_ROBOTS_BYTES, decode_content=True)
                        parser.parse(body.decode("utf-8", "replace").splitlines())
            except requests.RequestException as error:
                self._robots[origin] = f"robots.txt: {type(error).__name__}: {error}"
                return self._robots[origin]
            self._robots[origin] = parser
        return self._robots[origin]

    def download(self, url: str) -> Article:
        deadline = time.monotonic() + self.timeout_s
        try:
            with self.http.get(url, timeout=self.timeout_s, stream=True, allow_redirects=True) as response:
                kind = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower() or None
                seen = {"final_url": response.url, "http_status": response.status_code, "content_type": kind}
                if not 200 <= response.status_code < 300:  # redirects were followed already
                    return Article("http_error", detail=f"HTTP {response.status_code}", **seen)
                if kind == "application/pdf":
                    return Article("pdf", detail="a PDF (not read)", **seen)
                if kind not in self.HTML_TYPES:
                    return Article("not_html", detail=kind, **seen)
                length = response.headers.get("Content-Length")
                if length and length.isdigit() and int(length) > self.max_bytes:
                    return Article("too_large", detail=f"Content-Length {length}", **seen)
                body = bytearray()
                # read1 returns what has arrived (iter_content would wait for a whole chunk), so
                # a server dripping a few bytes at a time still meets the deadline.
                while chunk := response.raw.read1(64 * 1024, decode_content=True):
                    body += chunk
                    if len(body) > self.max_bytes:
                        return Article("too_large", detail=f"over {self.max_bytes} bytes", **seen)
                    if time.monotonic() > deadline:
                        return Article("timeout", detail=f"not read within {self.timeout_s:g} s", **seen)
                return Article("ok", html=bytes(body), **seen)
        except requests.Timeout as error:
            return Article("timeout", detail=str(error))
        except requests.ConnectionError as error:
            # requests reports a read timeout in the middle of a body as a ConnectionError.
            stalled = any(isinstance(arg, ReadTimeoutError) for arg in error.args)
            return Article("timeout" if stalled else "connection_error", detail=str(error))
        except requests.RequestException as error:
            return Article("fetch_failed", detail=f"{type(error).__name__}: {error}")
