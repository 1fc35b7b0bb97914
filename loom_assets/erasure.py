"""Erasing a device: every row that names it, in every table, its error rows, the geocode cache
entries its fixes used, the blobs only its rows held, and a record (per Kafka partition, the
position it was erased at) that keeps landing from bringing its messages back from Kafka.

An erase and a write never interleave: the erase holds an exclusive advisory lock that every
write transaction of the IO manager takes shared, first, and the write re-checks erasure under
it, so a run that read its inputs before an erase writes none of the device's rows after it."""

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

import pandas as pd
import psycopg
from dagster import DagsterInvariantViolationError, InputContext
from psycopg import sql

from loom_assets.resources.blobs import BlobStore
from loom_assets.resources.geocoder import search_key
from loom_assets.resources.kafka import BrokerUnavailable, KafkaResource
from loom_assets.resources.stage_windows import StageOutput
from loom_assets.stages.landing import Landing, erased_mask, record_devices, without_erased

# One advisory lock (two-key form, as the planning lock): `loom erase` takes it exclusive, every
# write transaction of the IO manager takes it shared.
LOCK_KEY = "hashtext('loom.erasure'), 0"
# Tables that record erasures rather than hold a device's data.
ERASURE_TABLES = ("erased_devices", "erasure_positions")
# `loom erase` asks Kafka for its partitions' positions this many times before giving up.
WATERMARK_TRIES = 5
ERROR_KEY_COLUMNS = ("flow", "window_start", "source_topic", "source_partition", "source_offset")

# (run id, step key) -> when the step began reading its inputs (the database's clock): a stage's
# rows of a device erased after that were computed from data the erase removed. Taken by the
# step's write.
_read_at: dict[tuple[str, str], datetime] = {}


@dataclass(frozen=True)
class Erasure:
    device_id: str
    erased_at: datetime
    rows: dict[str, int]  # table -> rows deleted
    error_rows: int
    cache_entries: int  # geocode_cache (reverse) and geocode_search_cache (place texts)
    blobs_removed: int
    positions: dict[tuple[str, int], int]  # (topic, partition) -> first offset that lands again
    remaining: dict[str, int]  # table -> the device's rows counted again after the commit


def device_tables(conn: psycopg.Connection) -> list[str]:
    """Every table (not a partition or chunk) of the schema with a `device_id` column."""
    return [name for (name,) in conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid"
        " WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')"
        " AND NOT c.relispartition AND a.attname = 'device_id' AND NOT a.attisdropped"
        " AND c.relname <> ALL(%s) ORDER BY c.relname", (list(ERASURE_TABLES),))]


def blob_columns(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """(table, column) of every `*_uri` column of Loom's time-series tables."""
    return conn.execute(
        "SELECT c.table_name, c.column_name FROM information_schema.columns c"
        " JOIN loom_timeseries t USING (table_name) WHERE c.column_name LIKE '%%\\_uri'"
        " AND c.table_schema = current_schema()").fetchall()


def referenced_blobs(conn: psycopg.Connection, device_id: str | None = None,
                     among: set[str] | None = None) -> set[str]:
    """The blob URIs rows refer to (only the rows of `device_id`, and only URIs `among`, when given)."""
    uris: set[str] = set()
    for table, column in blob_columns(conn):
        where = sql.SQL("{} IS NOT NULL").format(sql.Identifier(column))
        params: tuple = ()
        if device_id is not None:
            where = sql.SQL("{} AND device_id = %s").format(where)
            params = (device_id,)
        if among is not None:
            where = sql.SQL("{} AND {} = ANY(%s)").format(where, sql.Identifier(column))
            params = (*params, list(among))
        uris.update(uri for (uri,) in conn.execute(
            sql.SQL("SELECT DISTINCT {} FROM {} WHERE {}").format(sql.Identifier(column), sql.Identifier(table), where),
            params))
    return uris


# -- the erase --------------------------------------------------------------------------------
def erase_device(conn: psycopg.Connection, blobs: BlobStore, device_id: str,
                 high_watermarks: Callable[[], Mapping[tuple[str, int], int]]) -> Erasure:
    """Delete the device's data everywhere in one transaction under the exclusive erasure lock,
    recording `high_watermarks()` (per partition of every raw topic, read under the lock) as
    where its records end; then the blobs no other row shares (content-addressed: another
    device's identical photo keeps its blob); then count the device's rows again."""
    with conn.transaction():
        conn.execute(f"SELECT pg_advisory_xact_lock({LOCK_KEY})")
        # After the lock: every write that read before this instant has committed already.
        at = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        positions = {tp: int(offset) for tp, offset in high_watermarks().items()}
        held = referenced_blobs(conn, device_id)
        # Before the rows naming them go: the cache entries its fixes and its events' places used.
        cache_entries = _delete_cache_entries(conn, device_id) + _delete_searches(conn, device_id)
        error_rows = _delete_error_rows(conn, device_id)
        rows = {}
        for table in device_tables(conn):
            deleted = conn.execute(sql.SQL("DELETE FROM {} WHERE device_id = %s").format(sql.Identifier(table)),
                                   (device_id,)).rowcount
            if deleted:
                rows[table] = deleted
        conn.execute(
            "INSERT INTO erased_devices (device_id, erased_through, erased_at) VALUES (%s, %s, %s)"
            " ON CONFLICT (device_id) DO UPDATE SET erased_through = EXCLUDED.erased_through,"
            " erased_at = EXCLUDED.erased_at",
            (device_id, at, at))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO erasure_positions (device_id, topic, partition, next_offset) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (device_id, topic, partition) DO UPDATE"
                " SET next_offset = greatest(erasure_positions.next_offset, EXCLUDED.next_offset)",
                [(device_id, topic, partition, offset) for (topic, partition), offset in sorted(positions.items())])
        still_used = referenced_blobs(conn, among=held) if held else set()
    removed = blobs.delete(held - still_used)
    with conn.transaction():
        left = remaining(conn, device_id)
    return Erasure(device_id, at, rows, error_rows, cache_entries, removed, positions, left)


def remaining(conn: psycopg.Connection, device_id: str) -> dict[str, int]:
    """The device's rows in every table that can hold them (table -> count, 0s included): its
    rows by `device_id`, its error rows by key or envelope too, the cache entries it used."""
    counts = {table: conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE device_id = %s")
                                  .format(sql.Identifier(table)), (device_id,)).fetchone()[0]
              for table in device_tables(conn) if table != "processing_errors"}
    counts["processing_errors"] = len(_error_rows_of(conn, device_id))
    counts["geocode_cache"] = len(_cache_entries_of(conn, device_id))
    return counts


def _error_rows_of(conn: psycopg.Connection, device_id: str) -> list[tuple]:
    """Keys (ERROR_KEY_COLUMNS) of the error rows whose record is the device's: by the row's
    `device_id`, the Kafka key, or the device id the JSON envelope names (a record that failed
    before its envelope was read has no `device_id`). Only bytes that hold the id, or a JSON
    escape that could spell it, are parsed."""
    key = device_id.encode()
    found = conn.execute(
        f"SELECT {', '.join(ERROR_KEY_COLUMNS)}, device_id, original_key, original_value FROM processing_errors"
        " WHERE device_id = %(d)s OR original_key = %(k)s OR (device_id IS NULL AND original_value IS NOT NULL"
        "  AND (position(%(k)s IN original_value) > 0 OR position(convert_to('\\u', 'UTF8') IN original_value) > 0))",
        {"d": device_id, "k": key}).fetchall()
    width = len(ERROR_KEY_COLUMNS)
    return [row[:width] for row in found
            if row[width] == device_id or device_id in record_devices(row[width + 1], row[width + 2])]


def _delete_error_rows(conn: psycopg.Connection, device_id: str) -> int:
    rows = _error_rows_of(conn, device_id)
    if rows:
        columns = list(zip(*rows, strict=True))
        conn.execute(
            "DELETE FROM processing_errors e USING unnest(%s::text[], %s::timestamptz[], %s::text[], %s::integer[],"
            " %s::bigint[]) AS u(flow, window_start, topic, partition, offset_)"
            " WHERE e.flow = u.flow AND e.window_start = u.window_start AND e.source_topic = u.topic"
            " AND e.source_partition = u.partition AND e.source_offset = u.offset_",
            [list(c) for c in columns])
    return len(rows)


def _cache_entries_of(conn: psycopg.Connection, device_id: str) -> list[int]:
    """The geocode cache entries the device's fixes wrote or reused: recorded when they did, and
    named by its geocoded rows (for entries from before that record was kept)."""
    return [cache_id for (cache_id,) in conn.execute(
        "SELECT id FROM geocode_cache WHERE id IN ("
        " SELECT cache_id FROM geocode_cache_devices WHERE device_id = %(d)s"
        " UNION SELECT cache_id FROM location_geocoded WHERE device_id = %(d)s AND cache_id IS NOT NULL)"
        " ORDER BY id", {"d": device_id})]


def _delete_cache_entries(conn: psycopg.Connection, device_id: str) -> int:
    """Delete every cache entry the device used, shared or not: an entry's point is where some
    fix was, possibly the device's own, and deleting a cache entry costs another device one lookup."""
    entries = _cache_entries_of(conn, device_id)
    if entries:
        conn.execute("DELETE FROM geocode_cache WHERE id = ANY(%s::bigint[])", (entries,))
    conn.execute("DELETE FROM geocode_cache_devices WHERE device_id = %s", (device_id,))
    return len(entries)


def _delete_searches(conn: psycopg.Connection, device_id: str) -> int:
    """Delete the forward-geocoding answers (`geocode_search_cache`, keyed by the place text) of
    the location texts in the device's rows (its calendar events), shared or not, as above."""
    texts: set[str] = set()
    for (table,) in conn.execute(
            "SELECT table_name FROM information_schema.columns WHERE table_schema = current_schema()"
            " AND column_name = 'location' AND data_type = 'text' AND table_name = ANY(%s)", (device_tables(conn),)):
        texts.update(text for (text,) in conn.execute(
            sql.SQL("SELECT DISTINCT location FROM {} WHERE device_id = %s AND location IS NOT NULL")
            .format(sql.Identifier(table)), (device_id,)))
    queries = sorted({search_key(text) for text in texts} - {""})
    return conn.execute("DELETE FROM geocode_search_cache WHERE query = ANY(%s::text[])", (queries,)).rowcount


def high_watermarks(kafka: KafkaResource, topics: Iterable[str], say: Callable[[str], None]
                    ) -> dict[tuple[str, int], int]:
    """The high watermark of every partition of `topics` now. A partition whose leader is moving
    answers "not leader" for a moment: asked again, a few times, a second apart."""
    def positions() -> dict[tuple[str, int], int]:
        return {tp: high for tp, (_low, high) in kafka.watermarks(kafka.partitions(topics)).items()}

    for _ in range(WATERMARK_TRIES - 1):
        try:
            return positions()
        except BrokerUnavailable as error:
            say(f"Kafka: {error}; asking again")
            time.sleep(1.0)
    return positions()


def report(done: Erasure) -> tuple[list[str], dict[str, int]]:
    """What `loom erase` prints of an erasure, and the tables where rows of the device remain."""
    lines = [f"{table:40} {count:8d} rows" for table, count in sorted(done.rows.items())]
    lines += [f"{'error rows (by device, key or envelope)':40} {done.error_rows:8d} rows",
              f"{'geocode cache entries':40} {done.cache_entries:8d} entries",
              f"{'blobs':40} {done.blobs_removed:8d} blobs",
              f"erased {sum(done.rows.values()) + done.error_rows} rows, {done.cache_entries} cache entries and "
              f"{done.blobs_removed} blobs of {done.device_id!r} at {done.erased_at:%Y-%m-%d %H:%M:%S %Z}",
              "its records in Kafka below these positions are skipped when a window is landed again "
              f"({len(done.positions)} partitions):"]
    lines += [f"  {topic}/{partition} below offset {offset}" for (topic, partition), offset in sorted(done.positions.items())]
    left = {table: n for table, n in done.remaining.items() if n}
    lines.append("counted again after the erase:")
    lines += [f"  {table:38} {done.remaining[table]:8d} rows of {done.device_id!r}"
              for table in sorted({*done.rows, "processing_errors", "geocode_cache"} | set(left))]
    return lines, left


# -- what writers check -----------------------------------------------------------------------
def erasure_positions(conn: psycopg.Connection) -> dict[str, dict[tuple[str, int], int]]:
    """device_id -> (topic, partition) -> the first offset of that partition not erased."""
    positions: dict[str, dict[tuple[str, int], int]] = {}
    for device_id, topic, partition, offset in conn.execute(
            "SELECT device_id, topic, partition, next_offset FROM erasure_positions"):
        positions.setdefault(device_id, {})[(topic, partition)] = offset
    return positions


def erased_at(conn: psycopg.Connection) -> dict[str, datetime]:
    """device_id -> when it was last erased."""
    return dict(conn.execute("SELECT device_id, erased_at FROM erased_devices").fetchall())


def hold_off_erasure(conn: psycopg.Connection, context) -> None:
    """First in each of the IO manager's transactions: no erase until it ends. Reading a step's
    input also notes when the step began reading (the earliest of its inputs)."""
    conn.execute(f"SELECT pg_advisory_xact_lock_shared({LOCK_KEY})")
    step = _reading_step(context)
    if step is not None and step not in _read_at:
        _read_at[step] = conn.execute("SELECT now()").fetchone()[0]


def keep_unerased(conn: psycopg.Connection, table: str, obj, context):
    """`obj` without what an erase removed after it was read, in the write's transaction (under
    the shared erasure lock): records of an erased device below its recorded positions, and a
    stage's rows of a device erased after the step began reading its inputs. A raw `Landing` is
    changed in place (its asset publishes the error rows left); a `StageOutput` comes back with
    its rows, error rows and carry filtered; a DataFrame comes back filtered."""
    if isinstance(obj, Landing):
        kept, dropped = without_erased(obj, erasure_positions(conn))
        obj.rows, obj.errors, obj.records = kept.rows, kept.errors, kept.records
        _log(context, table, dropped)
        return obj
    read_at = _read_at.pop(_writing_step(context), None)
    if isinstance(obj, StageOutput):
        return replace(
            obj, rows=_unerased_rows(conn, table, obj.rows, read_at, context),
            errors=None if obj.errors is None else without_erased_errors(conn, obj.errors),
            carry=None if obj.carry is None else _unerased_rows(conn, obj.carry_table, obj.carry, read_at, context))
    return _unerased_rows(conn, table, obj, read_at, context)


def _unerased_rows(conn: psycopg.Connection, table: str, obj: pd.DataFrame, read_at: datetime | None,
                   context) -> pd.DataFrame:
    if obj.empty or "device_id" not in obj.columns:
        return obj
    erased = erased_at(conn)
    if not erased:
        return obj
    # A step that read no input through the IO manager has no known read time: every erased
    # device's rows are dropped, the safe side.
    late = {d for d, at in erased.items() if read_at is None or at > read_at}
    dropped = obj["device_id"].isin(late)
    if {"source_topic", "source_partition", "source_offset"} <= set(obj.columns):
        dropped |= erased_mask(obj, erasure_positions(conn))
    if not dropped.any():
        return obj
    # The geocode cache entries the step wrote or reused for those devices while the erase ran
    # go with their rows.
    used = [int(i) for i in obj.loc[dropped, "cache_id"].dropna().unique()] if "cache_id" in obj.columns else []
    conn.execute("DELETE FROM geocode_cache WHERE id = ANY(%s::bigint[]) OR id IN (SELECT cache_id"
                 " FROM geocode_cache_devices WHERE device_id = ANY(%s::text[]))",
                 (used, sorted(set(obj.loc[dropped, "device_id"]))))
    _log(context, table, int(dropped.sum()))
    return obj[~dropped].reset_index(drop=True)


def without_erased_errors(conn: psycopg.Connection, errors: pd.DataFrame) -> pd.DataFrame:
    """A stage's error rows, in the caller's write transaction (taking the erasure lock shared),
    without those of erased devices' records below their positions."""
    conn.execute(f"SELECT pg_advisory_xact_lock_shared({LOCK_KEY})")
    positions = erasure_positions(conn)
    if errors.empty or not positions:
        return errors
    devices = [record_devices(k, v) for k, v in zip(errors.get("original_key", [None] * len(errors)),
                                                     errors.get("original_value", [None] * len(errors)), strict=True)]
    dropped = erased_mask(errors, positions, devices)
    return errors[~dropped].reset_index(drop=True) if dropped.any() else errors


def _reading_step(context) -> tuple[str, str] | None:
    """(run id, step key) of the step an input context loads for; None for an output, or for a
    context built outside a run (no step to note)."""
    if not isinstance(context, InputContext):
        return None
    try:
        step_context = context.step_context
    except DagsterInvariantViolationError:
        return None
    return step_context.run_id, step_context.step.key


def _writing_step(context) -> tuple[str, str] | None:
    """(run id, step key) of the step an output context writes for; None outside a run."""
    try:
        return context.run_id, context.step_key
    except DagsterInvariantViolationError:
        return None


def _log(context, table: str, dropped: int) -> None:
    if dropped:
        context.log.info(f"{table}: {dropped} row(s) of erased devices not written (erased after they were read)")
