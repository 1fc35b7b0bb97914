"""Erasing a device: every row that names it, in every table, the blobs only those rows held,
and a record that keeps landing from bringing its messages back from Kafka."""

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from loom_assets.resources.blobs import BlobStore


@dataclass(frozen=True)
class Erasure:
    device_id: str
    erased_through: datetime
    rows: dict[str, int]  # table -> rows deleted
    blobs_removed: int


def device_tables(conn: psycopg.Connection) -> list[str]:
    """Every table (not a partition or chunk) of the schema with a `device_id` column."""
    return [name for (name,) in conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid"
        " WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')"
        " AND NOT c.relispartition AND a.attname = 'device_id' AND NOT a.attisdropped"
        " AND c.relname <> 'erased_devices' ORDER BY c.relname")]


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


def erase_device(conn: psycopg.Connection, blobs: BlobStore, device_id: str) -> Erasure:
    """Delete the device's rows everywhere in one transaction, then the blobs no other row
    shares (content-addressed: another device's identical photo keeps its blob)."""
    with conn.transaction():
        through = conn.execute("SELECT now()").fetchone()[0]
        held = referenced_blobs(conn, device_id)
        rows = {}
        for table in device_tables(conn):
            deleted = conn.execute(sql.SQL("DELETE FROM {} WHERE device_id = %s").format(sql.Identifier(table)),
                                   (device_id,)).rowcount
            if deleted:
                rows[table] = deleted
        conn.execute(
            "INSERT INTO erased_devices (device_id, erased_through) VALUES (%s, %s)"
            " ON CONFLICT (device_id) DO UPDATE SET erased_through = EXCLUDED.erased_through, erased_at = now()",
            (device_id, through))
        still_used = referenced_blobs(conn, among=held) if held else set()
    removed = blobs.delete(held - still_used)
    return Erasure(device_id, through, rows, removed)


def erased_devices(conn: psycopg.Connection) -> dict[str, datetime]:
    """device_id -> the time up to which its data was erased."""
    return dict(conn.execute("SELECT device_id, erased_through FROM erased_devices").fetchall())
