"""DataFrame <-> PostgreSQL: binary COPY of a frame into a table (refused rows found by bisecting),
and query results back as frames with UTC times."""

from collections.abc import Mapping
from datetime import datetime

import numpy as np
import pandas as pd
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql


def read_frame(rows: list[tuple], columns: list[str]) -> pd.DataFrame:
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

