"""Which version of each stage wrote each window, and the state stages carry across windows
(docs/architecture.md#versions-and-state).

`loom_stage_windows` holds one row per (stage table, window): the version written last, its row
count, and for a stage that carries state, a digest of the state the window read. It is written
in the transaction that writes the window's rows, so it can never disagree with them.
"""

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
import psycopg
from psycopg import sql

from loom_assets.resources.pg_copy import read_frame

# Columns that say how a row was made, not what it holds: equal states differ only in these.
BOOKKEEPING_COLUMNS = ("model_version", "processed_at", "window_start")


@dataclass(frozen=True)
class Carry:
    """The state a stage carries from window to window: its own rows of earlier windows, each
    window's newest version (so the first window after a version change continues from the
    previous version's state). `per`: the last row per these columns; empty: every row of the
    lookback. `lookback` (event time) bounds the scan. `table`: the state is not the stage's rows
    but what it leaves in a carry table of its own (`StageOutput.carry`, keyed by window_start):
    a window reads the rows left by the windows of the `lookback` before it."""

    per: tuple[str, ...] = ("device_id",)
    lookback: timedelta = timedelta(days=2)
    time_column: str = "recorded_at"
    table: str | None = None

    def as_metadata(self) -> dict:
        return {"per": list(self.per), "lookback_seconds": self.lookback.total_seconds(),
                "time_column": self.time_column, "table": self.table}

    @classmethod
    def from_metadata(cls, metadata: Mapping) -> "Carry":
        return cls(tuple(metadata["per"]), timedelta(seconds=metadata["lookback_seconds"]), metadata["time_column"],
                   metadata.get("table"))


@dataclass
class StageOutput:
    """What a stage writes for its window(s), in one transaction: its rows, its error rows (under
    `error_source`, `<flow>/<stage>`), the carry it leaves in `carry_table` for the next window,
    and the digest of the state it read."""

    rows: pd.DataFrame
    errors: pd.DataFrame | None = None
    error_source: str | None = None
    carry: pd.DataFrame | None = None
    carry_table: str | None = None
    state_read: str | None = None
    read_snapshot: str | None = None


def carried_state(conn: psycopg.Connection, table: str, carry: Carry, before: datetime) -> pd.DataFrame:
    """The state a window starting at `before` reads: the current rows (`<table>_latest`) of the
    windows before it, within the lookback (or, with a carry table, what they left in it)."""
    if carry.table is not None:
        statement = sql.SQL("SELECT * FROM {t} c WHERE window_start >= %(since)s AND window_start < %(before)s"
                            " ORDER BY c").format(t=sql.Identifier(carry.table))
        with conn.cursor() as cur:
            cur.execute(statement, {"before": before, "since": before - carry.lookback})
            return read_frame(cur.fetchall(), [d.name for d in cur.description])
    time = sql.Identifier(carry.time_column)
    view = sql.Identifier(f"{table}_latest")
    where = sql.SQL("window_start < %(before)s AND {time} >= %(since)s").format(time=time)
    if carry.per:
        keys = sql.SQL(", ").join(map(sql.Identifier, carry.per))
        statement = sql.SQL("SELECT DISTINCT ON ({keys}) * FROM {view} WHERE {where}"
                            " ORDER BY {keys}, {time} DESC, window_start DESC").format(
            keys=keys, view=view, where=where, time=time)
    else:
        statement = sql.SQL("SELECT * FROM {view} WHERE {where} ORDER BY {time}, window_start").format(
            view=view, where=where, time=time)
    with conn.cursor() as cur:
        cur.execute(statement, {"before": before, "since": before - carry.lookback})
        return read_frame(cur.fetchall(), [d.name for d in cur.description])


def state_digest(state: pd.DataFrame, carry: Carry) -> str:
    """A digest of what a state holds (not of the version or window that wrote it), the same for
    the same rows in any order."""
    content = state.drop(columns=[c for c in BOOKKEEPING_COLUMNS if c in state.columns])
    order = [c for c in (*carry.per, carry.time_column) if c in content.columns]
    if order and not content.empty:
        content = content.sort_values(order, kind="stable")
    text = content.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%S.%f%z")
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def record_windows(conn: psycopg.Connection, table: str, starts: Sequence[datetime], rows: pd.DataFrame,
                   version: str, run_id: str | None, carry: Carry | None = None,
                   first_state: str | None = None, read_snapshot: str | None = None) -> list[datetime]:
    """Record that `version` wrote `starts` (every window of the slice, those with no rows too),
    in the caller's transaction. For a stage that carries state, record the digest of the state
    each window read (`first_state` for the first, as the stage read it; the later windows' from
    the rows just written), then check the next window already written after the slice: if the
    state it would read now differs from what it read, mark it stale, so it is run again.
    Returns the windows marked stale."""
    counts = rows["window_start"].value_counts() if "window_start" in rows and not rows.empty else pd.Series(dtype=int)
    counted = {pd.Timestamp(k): int(v) for k, v in counts.items()}
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO loom_stage_windows (table_name, window_start, model_version, rows, run_id, read_snapshot)"
            " VALUES (%s, %s, %s, %s, %s, %s::pg_snapshot) ON CONFLICT (table_name, window_start) DO UPDATE SET"
            " model_version = EXCLUDED.model_version, rows = EXCLUDED.rows, run_id = EXCLUDED.run_id,"
            " read_snapshot = EXCLUDED.read_snapshot, written_at = now(), state_read = NULL, state_stale = false",
            [(table, start, version, counted.get(pd.Timestamp(start), 0), run_id, read_snapshot) for start in starts],
        )
    if carry is None or not starts:
        return []
    digests = [(first_state if i == 0 and first_state else state_digest(carried_state(conn, table, carry, start), carry),
                table, start) for i, start in enumerate(sorted(starts))]
    with conn.cursor() as cur:
        cur.executemany("UPDATE loom_stage_windows SET state_read = %s WHERE table_name = %s AND window_start = %s",
                        digests)
    return mark_next_if_changed(conn, table, carry, max(starts))


def mark_next_if_changed(conn: psycopg.Connection, table: str, carry: Carry, after: datetime) -> list[datetime]:
    """Mark the first window written after `after` stale if the state it would read now is not
    the state it read (an earlier window was rewritten with other results)."""
    following = conn.execute(
        "SELECT window_start, state_read FROM loom_stage_windows WHERE table_name = %s AND window_start > %s"
        " AND window_start <= %s ORDER BY window_start LIMIT 1",
        (table, after, after + carry.lookback),
    ).fetchone()
    if following is None:
        return []
    start, read = following
    if read is not None and state_digest(carried_state(conn, table, carry, start), carry) == read:
        return []
    conn.execute("UPDATE loom_stage_windows SET state_stale = true WHERE table_name = %s AND window_start = %s",
                 (table, start))
    return [start]


def written_versions(conn: psycopg.Connection, table: str, since: datetime) -> dict[datetime, tuple[str, bool]]:
    """window start -> (the version written last, whether the state it read has changed since)."""
    return {start: (version, stale) for start, version, stale in conn.execute(
        "SELECT window_start, model_version, state_stale FROM loom_stage_windows"
        " WHERE table_name = %s AND window_start >= %s", (table, since)).fetchall()}


def unwritten_predecessors(conn: psycopg.Connection, flow: str, table: str, start: datetime,
                           lookback: timedelta) -> list[datetime]:
    """Earlier windows (within `lookback`) holding records that have not landed or that this
    stage has not written since: a window carrying state must wait for them."""
    return [w for (w,) in conn.execute(
        "SELECT DISTINCT l.window_start FROM loom_offset_log l WHERE l.flow = %(flow)s"
        " AND l.window_start >= %(since)s AND l.window_start < %(start)s"
        " AND l.end_offset > l.start_offset AND l.lost_at IS NULL"
        " AND (l.landed_at IS NULL OR (l.landed_at >= (SELECT at FROM loom_markers WHERE name = 'stage_windows')"
        "      AND NOT EXISTS (SELECT 1 FROM loom_stage_windows s WHERE s.table_name = %(table)s"
        "                      AND s.window_start = l.window_start)))"
        " ORDER BY l.window_start",
        {"flow": flow, "since": start - lookback, "start": start, "table": table},
    ).fetchall()]


@dataclass(frozen=True)
class UnfinishedWindow:
    """A landed window whose stages in `tables` must run (again), with how often it was asked for."""

    start: datetime
    tables: frozenset[str]
    requests: int
    requested_at: datetime | None


def unfinished_windows(conn: psycopg.Connection, flow: str, tables: Iterable[str],
                       since: datetime) -> list[UnfinishedWindow]:
    """Landed windows whose stages are not all written (a run died after landing its raw rows),
    or whose carried state changed since they were written."""
    rows = conn.execute(
        "SELECT l.window_start, array_agg(t.table_name ORDER BY t.table_name), min(l.requests), max(l.requested_at)"
        " FROM ("
        "  SELECT window_start, max(requests) AS requests, max(requested_at) AS requested_at"
        "  FROM loom_offset_log WHERE flow = %(flow)s AND window_start >= %(since)s GROUP BY window_start"
        "  HAVING bool_and(landed_at IS NOT NULL OR lost_at IS NOT NULL OR end_offset = start_offset)"
        "     AND sum(end_offset - start_offset) FILTER (WHERE lost_at IS NULL) > 0"
        "     AND min(landed_at) >= (SELECT at FROM loom_markers WHERE name = 'stage_windows')) l"
        " CROSS JOIN unnest(%(tables)s::text[]) AS t(table_name)"
        " LEFT JOIN loom_stage_windows s ON s.table_name = t.table_name AND s.window_start = l.window_start"
        " WHERE s.table_name IS NULL OR s.state_stale GROUP BY l.window_start ORDER BY l.window_start",
        {"flow": flow, "since": since, "tables": list(tables)},
    ).fetchall()
    return [UnfinishedWindow(start, frozenset(names), requests, requested_at)
            for start, names, requests, requested_at in rows]
