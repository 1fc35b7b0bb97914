"""PostgreSQL / TimescaleDB: migrations, and the `Warehouse` resource over the offset log, the
error rows and the tables (the IO manager that writes them is in `io_manager.py`)."""

import contextlib
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import psycopg
from dagster import ConfigurableResource
from psycopg import sql

from loom_assets.resources.offset_log import (
    FAILING_AFTER_REQUESTS,
    UnlandedWindow,
    insert_plans,
    log_tail,
)
from loom_assets.resources.pg_copy import (  # noqa: F401 (the COPY helpers, for callers of the warehouse)
    copy_frame,
    copy_refusing,
    read_frame,
    refuses_data,
    table_columns,
)
from loom_assets.settings import settings
from loom_assets.stack import NO_DATABASE
from loom_assets.windows import OffsetRange

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
# A database that does not answer must fail a sensor tick or a run step, never hang it.
CONNECT_TIMEOUT_S = 10


def yoyo_uri(database_url: str) -> str:
    """yoyo wants the driver in the scheme; Loom uses psycopg 3."""
    scheme, rest = database_url.split("://", 1)
    return f"postgresql+psycopg://{rest}" if scheme in ("postgres", "postgresql") else database_url


def apply_migrations(database_url: str, sql_dir: Path = SQL_DIR) -> list[str]:
    """Apply pending `sql/` migrations with yoyo (its own version table and lock)."""
    from yoyo import get_backend, read_migrations

    backend = get_backend(yoyo_uri(database_url))
    # One connection for everything: yoyo otherwise opens a second one per migration, which a
    # single-connection server (TimescaleDB in WASM, a small pool) cannot serve.
    backend.copy = lambda: contextlib.nullcontext(backend)
    # No server-side prepared statements: a server that shares one session between clients
    # (TimescaleDB in WASM) would see their names clash.
    backend.connection.prepare_threshold = None
    try:
        migrations = read_migrations(str(sql_dir))
        with backend.lock(), contextlib.redirect_stdout(io.StringIO()):  # yoyo prints SELECT results
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
        return [m.id for m in pending]
    finally:
        backend.connection.close()


class DatabaseNotConfigured(RuntimeError):
    """Neither DATABASE_URL nor a running `loom dev` names a database."""


def resolve_database_url(configured: str | None) -> str:
    url = configured or settings().database_url
    if not url:
        raise DatabaseNotConfigured(NO_DATABASE)
    return url


class Warehouse(ConfigurableResource):
    """The Loom database: offset log, error rows and the state stages read across windows."""

    # None: DATABASE_URL, read when used.
    database_url: str | None = None

    @property
    def url(self) -> str:
        return resolve_database_url(self.database_url)

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        with psycopg.connect(self.url, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            yield conn

    # -- offset log -------------------------------------------------------------------------
    def last_planned(self, flow: str) -> tuple[datetime | None, dict[tuple[str, int], int]]:
        """The latest planned window of `flow` and the end offset planned last per partition."""
        with self.connect() as conn:
            tail = log_tail(conn, flow)
        return tail.last_start, tail.ends

    def last_planned_end(self, flow: str) -> datetime | None:
        with self.connect() as conn:
            return log_tail(conn, flow).last_end

    @contextmanager
    def planning(self, flow: str) -> Iterator[psycopg.Connection]:
        """A transaction holding `flow`'s planning lock: read the log's tail, plan, insert, commit,
        with no other planner (a sensor, `loom process`) in between."""
        with self.connect() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('loom.planning'), hashtext(%s))", (flow,))
            yield conn

    def record_plans(self, flow: str, size: timedelta,
                     plans: Sequence[tuple[datetime, Sequence[OffsetRange]]]) -> None:
        """Append windows' plans to the log in one transaction (the log refuses a range that does
        not start where its partition's previous range ended)."""
        with self.planning(flow) as conn:
            insert_plans(conn, flow, size, plans)

    def planned_ranges(self, flow: str, start: datetime, end: datetime) -> dict[datetime, list[OffsetRange]]:
        """The planned ranges of every window in [start, end), by window start (less those whose
        records Kafka dropped before they landed)."""
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT window_start, topic, partition, start_offset, end_offset FROM loom_offset_log"
                " WHERE flow = %s AND window_start >= %s AND window_start < %s AND lost_at IS NULL"
                " ORDER BY window_start, topic, partition",
                (flow, start, end),
            ).fetchall()
        plans: dict[datetime, list[OffsetRange]] = {}
        for window_start, topic, partition, first, last in rows:
            plans.setdefault(window_start, []).append(OffsetRange(topic, partition, first, last))
        return plans

    def unlanded_windows(self, flow: str, since: datetime) -> list[UnlandedWindow]:
        """Windows from `since` on with records planned that have neither landed nor been lost."""
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT window_start, topic, partition, start_offset, end_offset, requests, requested_at"
                " FROM loom_offset_log WHERE flow = %(flow)s AND lost_at IS NULL AND window_start IN ("
                "  SELECT window_start FROM loom_offset_log WHERE flow = %(flow)s AND window_start >= %(since)s"
                "   AND landed_at IS NULL AND lost_at IS NULL AND end_offset > start_offset)"
                " ORDER BY window_start, topic, partition",
                {"flow": flow, "since": since},
            ).fetchall()
        windows: dict[datetime, UnlandedWindow] = {}
        for start, topic, partition, first, last, requests, requested_at in rows:
            window = windows.setdefault(start, UnlandedWindow(start, [], requests, requested_at))
            window.ranges.append(OffsetRange(topic, partition, first, last))
        return list(windows.values())

    def flows_with_unlanded_windows(self, since: datetime) -> set[str]:
        """The flows with a window from `since` on whose records have neither landed nor been lost."""
        with self.connect() as conn:
            return {flow for (flow,) in conn.execute(
                "SELECT DISTINCT flow FROM loom_offset_log WHERE window_start >= %s"
                " AND landed_at IS NULL AND lost_at IS NULL AND end_offset > start_offset", (since,))}

    def mark_requested(self, flow: str, starts: Sequence[datetime], at: datetime) -> None:
        with self.connect() as conn:
            conn.execute(
                "UPDATE loom_offset_log SET requests = requests + 1, requested_at = %s"
                " WHERE flow = %s AND window_start = ANY(%s)",
                (at, flow, list(starts)),
            )

    def mark_lost(self, flow: str, start: datetime, ranges: Sequence[OffsetRange], reason: str) -> None:
        """These ranges' records left Kafka before they landed: say so for good and stop asking
        (the window's other ranges still land)."""
        with self.connect() as conn, conn.cursor() as cur:
            cur.executemany(
                "UPDATE loom_offset_log SET lost_at = now(), lost_reason = %s WHERE flow = %s"
                " AND window_start = %s AND topic = %s AND partition = %s AND landed_at IS NULL",
                [(reason, flow, start, r.topic, r.partition) for r in ranges],
            )

    def landed_prefix(self, flow: str) -> dict[tuple[str, int], int]:
        """Per partition, the end of its longest run of windows that have landed (or hold no
        records, or were lost): what the consumer group may commit without skipping a hole."""
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT topic, partition, max(end_offset) FROM loom_offset_log l WHERE flow = %s"
                " AND NOT EXISTS (SELECT 1 FROM loom_offset_log u WHERE u.flow = l.flow AND u.topic = l.topic"
                "  AND u.partition = l.partition AND u.window_start <= l.window_start"
                "  AND u.landed_at IS NULL AND u.lost_at IS NULL AND u.end_offset > u.start_offset)"
                " GROUP BY topic, partition",
                (flow,),
            ).fetchall()
        return {(topic, partition): end for topic, partition, end in rows}

    def landing_state(self, flow: str) -> dict:
        """What the log knows of `flow`'s landing: records planned but not landed, windows asked
        for again and again, records lost, and the gaps Loom skipped on purpose."""
        with self.connect() as conn:
            unlanded, failing = conn.execute(
                "SELECT coalesce(sum(end_offset - start_offset), 0),"
                " count(DISTINCT window_start) FILTER (WHERE requests >= %s)"
                " FROM loom_offset_log WHERE flow = %s AND landed_at IS NULL AND lost_at IS NULL",
                (FAILING_AFTER_REQUESTS, flow),
            ).fetchone()
            lost = conn.execute(
                "SELECT coalesce(sum(end_offset - start_offset), 0) FROM loom_offset_log"
                " WHERE flow = %s AND lost_at IS NOT NULL AND landed_at IS NULL", (flow,),
            ).fetchone()[0]
            gaps = conn.execute(
                "SELECT topic, partition, from_offset, to_offset, window_start, reason FROM loom_offset_gaps"
                " WHERE flow = %s ORDER BY detected_at", (flow,),
            ).fetchall()
        return {
            "unlanded_records": int(unlanded), "failing_windows": int(failing), "lost_records": int(lost),
            "gaps": [{"partition": f"{t}/{p}", "offsets": f"[{a}, {b})", "window": w, "reason": r}
                     for t, p, a, b, w, r in gaps],
        }

    # -- reads ------------------------------------------------------------------------------
    def query(self, statement: str | sql.Composable, params: Sequence | Mapping | None = None) -> pd.DataFrame:
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(statement, params)
            columns = [d.name for d in cur.description]
            return read_frame(cur.fetchall(), columns)

    def rows_between(self, table: str, start: datetime, end: datetime, time_column: str = "recorded_at") -> pd.DataFrame:
        statement = sql.SQL("SELECT * FROM {t} WHERE {c} >= %s AND {c} < %s ORDER BY {c}").format(
            t=sql.Identifier(table), c=sql.Identifier(time_column)
        )
        return self.query(statement, (start, end))

    def raw_tail(self, table: str, window_start: datetime, seconds: float,
                 columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The last `seconds` of event time per device of one window's raw rows: what a stage
        needs of the previous window to compute features that straddle the boundary."""
        selected = (sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in columns)
                    if columns else sql.SQL("t.*"))
        statement = sql.SQL(
            "SELECT {cols} FROM {t} t JOIN ("
            "  SELECT device_id, max(recorded_at) AS last FROM {t} WHERE window_start = %(w)s GROUP BY device_id"
            ") latest USING (device_id)"
            " WHERE t.window_start = %(w)s AND t.recorded_at >= latest.last - make_interval(secs => %(s)s)"
            " ORDER BY t.device_id, t.recorded_at"
        ).format(cols=selected, t=sql.Identifier(table))
        return self.query(statement, {"w": window_start, "s": float(seconds)})

    # -- errors -----------------------------------------------------------------------------
    def mark_published(self, flow: str, start: datetime, end: datetime, errors: pd.DataFrame) -> None:
        """Record that `errors` (rows of `flow`'s windows in [start, end)) are on the error topic."""
        with self.connect() as conn:
            conn.execute(
                "UPDATE processing_errors e SET published_at = now()"
                " FROM unnest(%s::text[], %s::integer[], %s::bigint[]) AS u(topic, partition, offset_)"
                " WHERE e.flow = %s AND e.window_start >= %s AND e.window_start < %s AND e.published_at IS NULL"
                " AND e.source_topic = u.topic AND e.source_partition = u.partition AND e.source_offset = u.offset_",
                (list(errors["source_topic"]), [int(p) for p in errors["source_partition"]],
                 [int(o) for o in errors["source_offset"]], flow, start, end),
            )


def replace_errors(conn: psycopg.Connection, flow: str, start: datetime, end: datetime, errors: pd.DataFrame) -> None:
    """The error rows of `flow` for windows in [start, end), in the caller's transaction."""
    if "published_at" in errors:
        # A record that was an error before, for the same reason, keeps its announcement.
        published = dict(((t, p, o, e), at) for t, p, o, e, at in conn.execute(
            "SELECT source_topic, source_partition, source_offset, error_type, published_at FROM processing_errors"
            " WHERE flow = %s AND window_start >= %s AND window_start < %s AND published_at IS NOT NULL",
            (flow, start, end),
        ).fetchall())
        keys = zip(errors["source_topic"], errors["source_partition"], errors["source_offset"], errors["error_type"])
        errors["published_at"] = pd.to_datetime([published.get((t, int(p), int(o), e)) for t, p, o, e in keys], utc=True)
    conn.execute(
        "DELETE FROM processing_errors WHERE flow = %s AND window_start >= %s AND window_start < %s",
        (flow, start, end),
    )
    copy_frame(conn, "processing_errors", errors)



def offsets_metadata(ranges: Iterable[OffsetRange]) -> dict[str, str]:
    """`topic/partition -> [start, end)`; a range of windows is contiguous, so it is one range."""
    spans: dict[str, tuple[int, int]] = {}
    for r in ranges:
        key = f"{r.topic}/{r.partition}"
        start, end = spans.get(key, (r.start, r.end))
        spans[key] = (min(start, r.start), max(end, r.end))
    return {key: f"[{start}, {end})" for key, (start, end) in sorted(spans.items())}
