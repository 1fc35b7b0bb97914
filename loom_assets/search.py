"""`loom search`: hybrid ranking over every text Loom holds.

Every `<flow>_embeddings` table (sql/0010) is searched twice: semantically (the query's vector
against the rows' vectors, pgvector cosine distance over the HNSW index) and by full text
(PostgreSQL `websearch_to_tsquery` against the GIN-indexed title and body). Each table gives
its best candidates per method, the candidates of all tables are ranked per method, and the two
rankings are merged by reciprocal rank fusion. A flow joins the search by having an embeddings
table: tables are found in `loom_timeseries`, never listed here.
"""

import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg.rows import dict_row

from loom_assets.resources.warehouse import CONNECT_TIMEOUT_S
from loom_assets.stages.embeddings import Embedder
from loom_assets.windows import PARTITION_FMT

TABLE_SUFFIX = "_embeddings"
# Reciprocal rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009): score = Σ 1 / (k + rank).
# Cosine distances and ts_rank_cd values live on unrelated scales (ts_rank_cd is unbounded and
# grows with repeated terms; cosine spread depends on the model), so mixing the scores would need
# a calibration per model and per corpus. Ranks need none, and k = 60 (the paper's value) keeps
# one list's top hit from drowning an item ranked well in both lists.
RRF_K = 60
# Candidates per table and per method: deep enough for fusion to reorder, small enough that the
# HNSW scan and ts_rank_cd stay cheap.
CANDIDATES = 50
# ts_rank_cd re-parses each matching row's text: a common word matching every row of a 100k-row
# table took 600 ms to rank. Only the newest matches of each table are ranked (recent items are
# the likelier targets), which bounds the cost whatever the word.
TEXT_MATCHES_RANKED = 1000
# A nearest neighbour is always found, however unrelated: below this cosine similarity it is not
# a match. Measured with all-MiniLM-L6-v2 on tests/integration/test_search.py's corpus: gibberish
# and unrelated queries reach 0.10–0.19, paraphrases sharing no word 0.25–0.6.
MIN_SIMILARITY = 0.2
SNIPPET_CHARS = 220
HIGHLIGHT = ("«", "»")
HEADLINE_OPTIONS = (f"StartSel={HIGHLIGHT[0]}, StopSel={HIGHLIGHT[1]}, MaxWords=30, MinWords=12, "
                    "MaxFragments=2, FragmentDelimiter=\" … \"")
DEFAULT_UI_URL = "http://localhost:3000"  # `loom dev` serves the Dagster UI there

# The stage table and key column a flow's `source_id` names: the link back to the row. A flow
# missing here links to its embeddings row (`<flow>_embeddings source_id=…`).
SOURCES: dict[str, tuple[str, str]] = {
    "email": ("email_messages", "message_id"),
    "calendar": ("calendar_events", "event_id"),
    "hackernews": ("hackernews_items", "message_id"),
    "audio": ("audio_transcripts", "segment_id"),
    "screenshot_ocr": ("screenshot_ocr_text", "message_id"),
}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m|min|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}

# Only rows embedded by the query's model are compared with its vector: the embedding stages'
# model_version is `<logic>+<model>` (flows: rules_version=embedder_version(...)), so it ends in
# "+<model>". Rows of an older logic version with the same model are the same vectors; they
# collapse with their newer twins (same source_id and time). A LIKE with a constant pattern is
# estimated from the column's statistics, so the planner sees that most rows pass and keeps the
# HNSW index; an expression such as substr(...) = … is guessed at 0.5 % of rows and turned a
# 100k-row search into a sequential scan (15 ms → 140 ms, bench/embed.py).
_SAME_MODEL = sql.SQL("model_version LIKE %(model_like)s")
_DOCUMENT = sql.SQL("to_tsvector('english', coalesce(title, '') || ' ' || body)")  # = the GIN index
_QUERY = sql.SQL("websearch_to_tsquery('english', %(query)s)")


class SearchError(RuntimeError):
    """A search that cannot run as asked (nothing searchable, unknown flow, bad --since)."""


@dataclass(frozen=True)
class Table:
    flow: str
    name: str
    dimensions: int | None


@dataclass(frozen=True)
class Hit:
    flow: str
    recorded_at: datetime
    window_start: datetime
    source_id: str
    title: str | None
    snippet: str
    score: float  # reciprocal rank fusion
    similarity: float | None  # cosine similarity to the query, when among the semantic candidates
    text_rank: float | None  # ts_rank_cd, when the text matched the query
    link: str  # the stage table and key of the row
    url: str  # the Dagster asset partition that wrote it

    def as_json(self) -> dict:
        return {**asdict(self), "recorded_at": self.recorded_at.isoformat(),
                "window_start": self.window_start.isoformat()}


def embedding_tables(conn: psycopg.Connection) -> list[Table]:
    """Every `<flow>_embeddings` table with its vector size (atttypmod of `vector(n)`)."""
    rows = conn.execute(
        "SELECT t.table_name, a.atttypmod FROM loom_timeseries t"
        " JOIN pg_attribute a ON a.attrelid = to_regclass(t.table_name) AND a.attname = 'embedding'"
        " WHERE right(t.table_name, %s) = %s ORDER BY t.table_name",
        (len(TABLE_SUFFIX), TABLE_SUFFIX)).fetchall()
    return [Table(name.removesuffix(TABLE_SUFFIX), name, dims if dims > 0 else None) for name, dims in rows]


def since_time(value: str, now: datetime) -> datetime:
    """`--since`: a duration back from now (90m, 12h, 7d, 2w) or a date/time (local time unless
    it carries an offset)."""
    if match := _DURATION.match(value):
        return now - timedelta(**{_UNITS[match.group(2).lower()]: float(match.group(1))})
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise SearchError(f"--since {value!r}: give a date (2025-06-01), a time (2025-06-01T09:00) "
                          "or a duration (90m, 12h, 7d, 2w)") from None
    return parsed if parsed.tzinfo else parsed.astimezone()


def reciprocal_rank_fusion(rankings: Sequence[Sequence[Hashable]], k: int = RRF_K) -> dict[Hashable, float]:
    """Σ 1 / (k + rank) over the rankings an item appears in (ranks from 1)."""
    scores: dict[Hashable, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
    return scores


def hybrid_search(database_url: str, query: str, embedder: Callable[[], Embedder], *, flow: str | None = None,
                  since: datetime | None = None, until: datetime | None = None, limit: int = 10,
                  ui_url: str = DEFAULT_UI_URL) -> list[Hit]:
    """The `limit` best rows for `query` over every embeddings table (or `flow`'s), recorded
    since `since` (and before `until`). `embedder` gives the query's model (loaded only once there is a table)."""
    if not query.strip():
        raise SearchError("give a query: loom search \"what you are looking for\"")
    with psycopg.connect(database_url, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        tables = embedding_tables(conn)
        if not tables:
            raise SearchError("nothing is searchable yet: this database has no *_embeddings tables "
                              "(run `loom migrate`)")
        if flow is not None:
            tables = [t for t in tables if t.flow == flow]
            if not tables:
                raise SearchError(f"flow {flow!r} has no embeddings table; searchable flows: "
                                  + ", ".join(t.flow for t in embedding_tables(conn)))
        model = embedder()
        vector = model.embed([query])[0]
        return ranked_hits(conn, query, vector, model.version, tables, since=since, until=until, limit=limit,
                           ui_url=ui_url)


def ranked_hits(conn: psycopg.Connection, query: str, vector: np.ndarray, model: str, tables: Sequence[Table], *,
                since: datetime | None = None, until: datetime | None = None, limit: int = 10,
                ui_url: str = DEFAULT_UI_URL) -> list[Hit]:
    """The `limit` best rows of `tables` for `query` (embedded as `vector` by `model`)."""
    params = sql_params(query, vector, model, since, limit, until)
    semantic: list[tuple[float, tuple, dict]] = []
    textual: list[tuple[float, tuple, dict]] = []
    register_vector(conn)
    with conn.transaction():
        # pgvector ≥ 0.8: with filters, keep walking the HNSW graph until `k` rows pass them
        # (otherwise ef_search candidates are filtered and fewer rows come back). ef_search stays
        # at its default (40): every daily partition runs its own index scan, and 100 made a
        # 32-partition search 5× slower for no better top 10 (bench/embed.py).
        conn.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
        for table in tables:
            if table.dimensions in (None, len(params["vector"])):  # a table of another size: text only
                for row in _rows(conn, nearest_sql(table, since, until), params):
                    semantic.append((row["distance"], _key(table, row), {**row, "table": table}))
            for row in _rows(conn, matching_sql(table, since, until), params):
                textual.append((-row["rank"], _key(table, row), {**row, "table": table}))
    semantic = [c for c in sorted(semantic, key=lambda c: c[0]) if 1 - c[0] >= MIN_SIMILARITY]
    textual.sort(key=lambda c: c[0])
    semantic_keys, textual_keys = _unique(semantic), _unique(textual)
    scores = reciprocal_rank_fusion([list(semantic_keys), list(textual_keys)])
    # Ties (an item in one list only, at the same rank as another's): the closer vector, then
    # the newer item.
    ranked = sorted(scores, key=lambda key: (
        -scores[key], semantic_keys[key]["distance"] if key in semantic_keys else 2.0, -key[2].timestamp()))
    return [_hit(key, scores[key], semantic_keys.get(key), textual_keys.get(key), ui_url)
            for key in ranked[:limit]]


def format_hits(hits: Sequence[Hit]) -> str:
    """Hits for a terminal: local time, flow, title; the snippet; the link and the UI URL."""
    lines = []
    for number, hit in enumerate(hits, start=1):
        when = hit.recorded_at.astimezone().isoformat(sep=" ", timespec="minutes")
        lines.append(f"{number:>2}. {when}  [{hit.flow}]  {hit.title or '(untitled)'}")
        lines.append(f"    {hit.snippet}")
        lines.append(f"    {hit.link}  ·  {hit.url}")
    return "\n".join(lines)


# -- helpers ------------------------------------------------------------------------------------
def _since_clause(since: datetime | None, until: datetime | None = None) -> sql.Composable:
    return sql.SQL("").join([sql.SQL(" AND recorded_at >= %(since)s") if since is not None else sql.SQL(""),
                             sql.SQL(" AND recorded_at < %(until)s") if until is not None else sql.SQL("")])


def sql_params(query: str, vector: np.ndarray, model: str, since: datetime | None, limit: int,
               until: datetime | None = None) -> dict:
    """The parameters of `nearest_sql` and `matching_sql`."""
    return {"vector": np.asarray(vector, dtype=np.float32), "query": query, "model_like": "%+" + _like_literal(model),
            "since": since, "until": until, "k": max(CANDIDATES, limit), "ranked": TEXT_MATCHES_RANKED, "options": HEADLINE_OPTIONS}


def nearest_sql(table: Table, since: datetime | None, until: datetime | None = None) -> sql.Composable:
    # ORDER BY the distance operator itself with LIMIT: the form pgvector's HNSW index serves.
    return sql.SQL(
        "SELECT window_start, recorded_at, source_id, title, body, embedding <=> %(vector)s AS distance"
        " FROM {table} WHERE {model}{since} ORDER BY embedding <=> %(vector)s LIMIT %(k)s"
    ).format(table=sql.Identifier(table.name), model=_SAME_MODEL, since=_since_clause(since, until))


def matching_sql(table: Table, since: datetime | None, until: datetime | None = None) -> sql.Composable:
    # The newest matches are ranked, and the headline made only for the `k` best (ts_rank_cd and
    # ts_headline re-parse the text).
    return sql.SQL(
        "WITH matched AS ("
        "  SELECT window_start, recorded_at, source_id, title, body FROM {table}"
        "  WHERE {document} @@ {query} AND {model}{since} ORDER BY recorded_at DESC LIMIT %(ranked)s),"
        " best AS ("
        "  SELECT *, ts_rank_cd({document}, {query}) AS rank FROM matched ORDER BY rank DESC LIMIT %(k)s)"
        " SELECT *, ts_headline('english', body, {query}, %(options)s) AS headline FROM best"
    ).format(table=sql.Identifier(table.name), document=_DOCUMENT, query=_QUERY, model=_SAME_MODEL,
             since=_since_clause(since, until))


def _like_literal(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _rows(conn: psycopg.Connection, statement: sql.Composable, params: Mapping) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(statement, params)
        return cur.fetchall()


def _key(table: Table, row: Mapping) -> tuple:
    return table.flow, row["source_id"], row["recorded_at"]


def _unique(candidates: list[tuple[float, tuple, dict]]) -> dict[tuple, dict]:
    """Candidates in rank order, each item once (its best row)."""
    best: dict[tuple, dict] = {}
    for _, key, row in candidates:
        best.setdefault(key, row)
    return best


def _hit(key: tuple, score: float, semantic: dict | None, textual: dict | None, ui_url: str) -> Hit:
    row = textual or semantic
    table: Table = row["table"]
    if textual is not None:
        snippet = _one_line(textual["headline"])
    else:
        snippet = _one_line(row["body"])
        if len(snippet) > SNIPPET_CHARS:
            snippet = snippet[:SNIPPET_CHARS].rsplit(" ", 1)[0] + " …"
    stage_table, column = SOURCES.get(table.flow, (table.name, "source_id"))
    window = row["window_start"].astimezone(UTC).strftime(PARTITION_FMT)
    return Hit(
        flow=table.flow, recorded_at=row["recorded_at"], window_start=row["window_start"],
        source_id=row["source_id"], title=row["title"], snippet=snippet, score=round(score, 6),
        similarity=None if semantic is None else round(1 - float(semantic["distance"]), 4),
        text_rank=None if textual is None else round(float(textual["rank"]), 4),
        link=f"{stage_table} {column}={row['source_id']}",
        url=f"{ui_url.rstrip('/')}/assets/{quote(table.flow)}/embeddings?partition={quote(window, safe=':-')}",
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())
