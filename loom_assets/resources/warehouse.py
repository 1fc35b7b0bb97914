"""PostgreSQL / TimescaleDB: migrations, the offset log, and the IO manager for every table.

`HypertableIOManager` is Dagster's `DbIOManager` with a PostgreSQL `DbClient` and a pandas
`DbTypeHandler` (as dagster-duckdb-pandas is built): writing a window is DELETE of that
half-open window (for versioned outputs, only the model version being written) plus COPY, in
one transaction. Tables come from the `sql/` migrations, never from DataFrame dtypes.
"""

import contextlib
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
from dagster import (
    ConfigurableIOManagerFactory,
    ConfigurableResource,
    InputContext,
    MetadataValue,
    OutputContext,
    TableColumn,
    TableSchema,
)
from pgvector.psycopg import register_vector
from psycopg import sql

from loom_assets.dagster_compat import DbClient, DbIOManager, DbTypeHandler, TableSlice
from loom_assets.resources.offset_log import (
    FAILING_AFTER_REQUESTS,
    UnlandedWindow,
    insert_plans,
    log_tail,
    mark_landed,
)
from loom_assets.settings import settings
from loom_assets.stages.landing import Landing, refused
from loom_assets.windows import DEFAULT_WINDOWS, OffsetRange, window_size

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


def resolve_database_url(configured: str | None) -> str:
    url = configured or settings().database_url
    if not url:
        raise RuntimeError(
            "DATABASE_URL is not set: run `loom dev` (embedded PostgreSQL), or point it at "
            "PostgreSQL/TimescaleDB and run `loom migrate`"
        )
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
            return _frame(cur.fetchall(), columns)

    def last_rows(self, table: str, before: datetime, per: Sequence[str], model_version: str,
                  time_column: str = "recorded_at", lookback: timedelta = timedelta(days=2)) -> pd.DataFrame:
        """The last row per `per` group of the windows before `before`: a stage's state carried
        across windows, from its own rows of the same model version. `lookback` (event time)
        keeps the scan on recent partitions."""
        keys = sql.SQL(", ").join(map(sql.Identifier, per))
        statement = sql.SQL(
            "SELECT DISTINCT ON ({keys}) * FROM {table}"
            " WHERE window_start < %(before)s AND {time} >= %(since)s AND model_version = %(version)s"
            " ORDER BY {keys}, {time} DESC, window_start DESC"
        ).format(keys=keys, table=sql.Identifier(table), time=sql.Identifier(time_column))
        return self.query(statement, {"before": before, "since": before - lookback, "version": model_version})

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

    def replace_errors(self, flow: str, start: datetime, end: datetime, errors: pd.DataFrame) -> None:
        """Errors of a window are rewritten with the window, so a re-run leaves the same rows."""
        with self.connect() as conn, conn.transaction():
            replace_errors(conn, flow, start, end, errors)


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


# -- DataFrame <-> PostgreSQL -------------------------------------------------------------------
def _frame(rows: list[tuple], columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(rows, columns=columns)
    for column in frame.columns:
        if frame[column].dtype == object and rows and any(isinstance(v, datetime) for v in frame[column].head(50)):
            frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


# PostgreSQL's binary timestamptz is int64 microseconds since 2000-01-01 UTC, byte for byte an
# int8: times go to binary COPY as int8 computed a column at a time, not as datetime objects.
TIMESTAMPTZ_OID, INT8_OID = 1184, 20
INTEGER_OIDS = {20, 21, 23}  # int8, int2, int4
# psycopg's binary int2/int4 dumpers keep the low bits of a larger integer without a word
# (2**32 + 7 is stored as 7): such a value is refused here, so it fails its row, not silently.
INTEGER_RANGES = {20: (-(2**63), 2**63 - 1), 21: (-(2**15), 2**15 - 1), 23: (-(2**31), 2**31 - 1)}
INTEGER_NAMES = {20: "bigint", 21: "smallint", 23: "integer"}
PG_EPOCH = np.datetime64("2000-01-01T00:00:00", "us")


def _copy_column(column: pd.Series, oid: int) -> tuple[list, int]:
    """A column as the Python values binary COPY takes, with the type to send them as: None for
    NaN/NaT, dicts for jsonb, scalars otherwise."""
    if oid == TIMESTAMPTZ_OID and not column.empty:
        utc = pd.to_datetime(column, utc=True).dt.tz_localize(None).to_numpy("datetime64[us]")
        values = (utc - PG_EPOCH).astype("int64").astype(object)
        oid = INT8_OID
    elif oid in INTEGER_OIDS and column.dtype.kind == "f":
        # An optional integer field some records leave out arrives as floats with NaN.
        values = np.array(column.astype("Int64").to_numpy(dtype=object), dtype=object)
    else:
        values = np.array(column.to_numpy(dtype=object), dtype=object)
    missing = column.isna().to_numpy()
    if missing.any():
        values[missing] = None
    if oid in INTEGER_RANGES and not missing.all():
        low, high = INTEGER_RANGES[oid]
        present = values[~missing]
        if present.min() < low or present.max() > high:
            outside = next(v for v in present if not low <= v <= high)
            raise OverflowError(f"{column.name}: {outside} is out of range for {INTEGER_NAMES[oid]}")
    return values.tolist(), oid


def copy_frame(conn: psycopg.Connection, table: str, frame: pd.DataFrame,
               columns: Mapping[str, tuple[str, int]] | None = None) -> int:
    """Binary COPY of `frame` into `table` (columns by name, typed by the table). Native
    partitions for its days are made first. `columns`: the table's, if already read."""
    if frame.empty:
        return 0
    columns = columns or table_columns(conn, table)
    unknown = [c for c in frame.columns if c not in columns]
    if unknown:
        raise ValueError(f"{table} has no column(s) {unknown}; add them in a sql/ migration")
    ensure_partitions(conn, table, frame)
    if any(columns[c][0].startswith("vector") for c in frame.columns):
        register_vector(conn)  # pgvector's binary dumper for numpy arrays
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, frame.columns))
    )
    values, oids = zip(*(_copy_column(frame[c], columns[c][1]) for c in frame.columns))
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.set_types(list(oids))
        for row in zip(*values, strict=True):
            copy.write_row(row)
    return len(frame)


# SQLSTATE classes that blame the rows, not the connection: 22 data exception (a NUL in text,
# a number out of range), 23 integrity constraint violation, 54 program limit exceeded (an
# index row too large). A unique or exclusion violation is another writer's row, not a bad
# one: it fails the write.
DATA_SQLSTATE_CLASSES = ("22", "23", "54")
CONFLICT_SQLSTATES = ("23505", "23P01")


def refuses_data(error: BaseException) -> bool:
    """Whether `error` from a COPY is about the rows written (so retrying cannot help), not the
    connection or the server. Python-side conversion of a value fails with the builtin errors."""
    if isinstance(error, psycopg.Error):
        state = error.sqlstate or ""
        return state[:2] in DATA_SQLSTATE_CLASSES and state not in CONFLICT_SQLSTATES
    return isinstance(error, ValueError | TypeError | OverflowError | RecursionError)


def copy_refusing(conn: psycopg.Connection, table: str, frame: pd.DataFrame,
                  columns: Mapping[str, tuple[str, int]]) -> dict[int, str]:
    """COPY `frame` into `table` in the caller's transaction, leaving out the rows PostgreSQL
    refuses on their data, found by bisecting the batch (each try under its own savepoint).
    Returns their positions in `frame` with the reason; any other failure raises."""
    unknown = [c for c in frame.columns if c not in columns]
    if unknown:  # a missing migration is the deployment's fault, never the rows'
        raise ValueError(f"{table} has no column(s) {unknown}; add them in a sql/ migration")
    refusals: dict[int, str] = {}

    def attempt(start: int, stop: int) -> None:
        try:
            with conn.transaction():
                copy_frame(conn, table, frame.iloc[start:stop], columns)
        except Exception as error:
            if not refuses_data(error):
                raise
            if stop - start == 1:
                refusals[start] = f"{type(error).__name__}: {str(error)[:500]}"
                return
            middle = (start + stop) // 2
            attempt(start, middle)
            attempt(middle, stop)

    if not frame.empty:
        attempt(0, len(frame))
    return refusals


def ensure_partitions(conn: psycopg.Connection, table: str, frame: pd.DataFrame) -> None:
    """On the native path, create the daily partitions the rows fall in (recent days only;
    rows far outside retention wait in the default partition)."""
    info = conn.execute(
        "SELECT time_column, retention FROM loom_timeseries WHERE table_name = %s AND storage = 'native'",
        (table,),
    ).fetchone()
    if info is None or info[0] not in frame.columns:
        return
    time_column, retention = info
    days = pd.to_datetime(frame[time_column], utc=True).dt.floor("D").dropna().unique()
    today = pd.Timestamp.now(tz="UTC").floor("D")
    for day in days:
        if today - retention <= day <= today + pd.Timedelta(days=2):
            conn.execute("SELECT loom_ensure_day_partition(%s, %s)", (table, day.date()))


def table_columns(conn: psycopg.Connection, table: str) -> dict[str, tuple[str, int]]:
    """The table's columns in order: name -> (SQL type, type oid)."""
    rows = conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod), atttypid FROM pg_attribute"
        " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (table,),
    ).fetchall()
    return {name: (type_name, oid) for name, type_name, oid in rows}


# -- the IO manager ---------------------------------------------------------------------------
def _window_clause(table_slice: TableSlice) -> tuple[sql.Composable, list]:
    clauses, params = [], []
    for dimension in table_slice.partition_dimensions or []:
        window = dimension.partitions
        clauses.append(sql.SQL("{col} >= %s AND {col} < %s").format(col=sql.Identifier(dimension.partition_expr)))
        params += [window.start, window.end]
    return (sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("TRUE")), params


def _slice_windows(table_slice: TableSlice) -> list[datetime]:
    """The window starts a slice covers (one, or a ranged run's every window), on the grid of
    the flow the table belongs to (`<flow>_<stage>`)."""
    flow = next((f for f in sorted(DEFAULT_WINDOWS, key=len, reverse=True) if table_slice.table.startswith(f + "_")), None)
    starts = []
    for dimension in table_slice.partition_dimensions or []:
        start, end = dimension.partitions.start, dimension.partitions.end
        if flow is None:
            starts.append(start)
            continue
        while start < end:
            starts.append(start)
            start += window_size(flow)
    return starts


def lock_windows(conn: psycopg.Connection, table: str, starts: Iterable[datetime]) -> None:
    """One writer per (table, window) at a time, until the caller's transaction ends: a second
    writer waits, then deletes and rewrites what the first committed, so a window never holds
    two writers' rows. Taken in order, so two ranged runs cannot deadlock."""
    minutes = sorted({int(start.timestamp() // 60) for start in starts})
    if minutes:
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s), m) FROM unnest(%s::integer[]) AS m",
                     (table, minutes))


class PostgresClient(DbClient):
    def __init__(self, database_url: str):
        self.database_url = database_url

    @staticmethod
    def delete_table_slice(context: OutputContext, table_slice: TableSlice, connection: psycopg.Connection) -> None:
        lock_windows(connection, table_slice.table, _slice_windows(table_slice))
        where, params = _window_clause(table_slice)
        model_version = (context.definition_metadata or {}).get("model_version")
        if model_version is not None:
            # ML/rule outputs: a reprocess adds the new version's rows beside the old ones.
            where = sql.SQL("{} AND model_version = %s").format(where)
            params.append(str(model_version))
        connection.execute(sql.SQL("DELETE FROM {} WHERE {}").format(sql.Identifier(table_slice.table), where), params)

    @staticmethod
    def get_select_statement(table_slice: TableSlice) -> str:
        columns = ", ".join(table_slice.columns) if table_slice.columns else "*"
        dims = " AND ".join(
            f"{d.partition_expr} >= '{d.partitions.start.isoformat()}' AND {d.partition_expr} < '{d.partitions.end.isoformat()}'"
            for d in table_slice.partition_dimensions or []
        )
        return f"SELECT {columns} FROM {table_slice.table}" + (f" WHERE {dims}" if dims else "")

    @staticmethod
    def get_table_name(table_slice: TableSlice) -> str:
        return f"{table_slice.schema}.{table_slice.table}"

    @staticmethod
    def ensure_schema_exists(context, table_slice: TableSlice, connection: psycopg.Connection) -> None:
        # Tables come from migrations: a missing table is a deployment error, said plainly.
        if connection.execute("SELECT to_regclass(%s)", (table_slice.table,)).fetchone()[0] is None:
            raise RuntimeError(
                f"table {table_slice.table!r} does not exist: run `loom migrate` (tables come from sql/)"
            )

    @contextmanager
    def connect(self, context, table_slice: TableSlice) -> Iterator[psycopg.Connection]:
        with psycopg.connect(self.database_url, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            with conn.transaction():
                yield conn


class DataFrameHandler(DbTypeHandler[pd.DataFrame]):
    def handle_output(self, context: OutputContext, table_slice: TableSlice, obj: pd.DataFrame, connection):
        columns = table_columns(connection, table_slice.table)
        frame = obj.copy()
        model_version = (context.definition_metadata or {}).get("model_version")
        if model_version is not None:
            frame["model_version"] = str(model_version)
        rows = copy_frame(connection, table_slice.table, frame, columns)
        return {
            "dagster/row_count": rows,
            "dagster/column_schema": TableSchema(
                columns=[TableColumn(name, type_name) for name, (type_name, _) in columns.items()]
            ),
        }

    def load_input(self, context: InputContext, table_slice: TableSlice, connection) -> pd.DataFrame:
        where, params = _window_clause(table_slice)
        # An upstream with several model versions feeds only its current (newest) one.
        wanted = (context.upstream_output.definition_metadata or {}).get("model_version")
        if wanted is not None:
            where = sql.SQL("{} AND model_version = %s").format(where)
            params = [*params, str(wanted)]
        # A stage that names the columns it reads (AssetIn metadata) gets only those.
        selected = (sql.SQL(", ").join(map(sql.Identifier, table_slice.columns))
                    if table_slice.columns else sql.SQL("*"))
        statement = sql.SQL("SELECT {} FROM {} WHERE {}").format(selected, sql.Identifier(table_slice.table), where)
        with connection.cursor() as cur:
            cur.execute(statement, params)
            return _frame(cur.fetchall(), [d.name for d in cur.description])

    @property
    def supported_types(self) -> Sequence[type]:
        return [pd.DataFrame]


class LandingHandler(DbTypeHandler[Landing]):
    """A raw window: its rows and its error rows in the one transaction that replaces the window
    (so a failed window keeps no error rows without its rows, and a retry adds none). Rows
    PostgreSQL still refuses become error rows; the asset finds them in the `Landing` it passed,
    updated here, and publishes its error topic after the commit."""

    def handle_output(self, context: OutputContext, table_slice: TableSlice, obj: Landing, connection):
        columns = table_columns(connection, table_slice.table)
        refusals = copy_refusing(connection, table_slice.table, obj.rows, columns)
        if refusals:
            context.log.warning(f"{table_slice.table}: PostgreSQL refused {len(refusals)} row(s); kept as error rows")
        landed = refused(obj, refusals)
        (window,) = [d.partitions for d in table_slice.partition_dimensions]
        replace_errors(connection, landed.flow, window.start, window.end, landed.errors)
        mark_landed(connection, landed.flow, window.start, window.end, context.run_id)
        obj.rows, obj.errors, obj.records = landed.rows, landed.errors, landed.records
        return {
            "dagster/row_count": len(landed.rows),
            "rows": len(landed.rows),
            "errors": len(landed.errors),
            "error_types": MetadataValue.json(landed.errors["error_type"].value_counts().to_dict()),
            "refused_by_database": len(refusals),
            "dagster/column_schema": TableSchema(
                columns=[TableColumn(name, type_name) for name, (type_name, _) in columns.items()]
            ),
        }

    def load_input(self, context: InputContext, table_slice: TableSlice, connection) -> Landing:
        raise NotImplementedError("raw tables load as DataFrames")

    @property
    def supported_types(self) -> Sequence[type]:
        return [Landing]


class _LoomDbIOManager(DbIOManager):
    """Tables are named `<flow>_<stage>` after the asset key `[flow, stage]` (DESIGN §2)."""

    def _get_table_slice(self, context, output_context) -> TableSlice:
        table_slice = super()._get_table_slice(context, output_context)
        return table_slice._replace(table="_".join(context.asset_key.path), schema="public")


class HypertableIOManager(ConfigurableIOManagerFactory):
    """Writes each asset's window to its table: DELETE of the window + COPY, in one transaction."""

    database_url: str | None = None  # None: DATABASE_URL, read when used

    def create_io_manager(self, context) -> DbIOManager:
        return _LoomDbIOManager(
            type_handlers=[DataFrameHandler(), LandingHandler()],
            db_client=PostgresClient(resolve_database_url(self.database_url)),
            database="loom",
            io_manager_name="HypertableIOManager",
            default_load_type=pd.DataFrame,
        )


def offsets_metadata(ranges: Iterable[OffsetRange]) -> dict[str, str]:
    """`topic/partition -> [start, end)`; a range of windows is contiguous, so it is one range."""
    spans: dict[str, tuple[int, int]] = {}
    for r in ranges:
        key = f"{r.topic}/{r.partition}"
        start, end = spans.get(key, (r.start, r.end))
        spans[key] = (min(start, r.start), max(end, r.end))
    return {key: f"[{start}, {end})" for key, (start, end) in sorted(spans.items())}
