"""The offset log's rows and the statements every writer of it shares: its tail (where the next
window starts), appending plans with the gaps that explain them, and marking windows landed.
The `Warehouse` resource reads and updates the log through these; planning and the raw write
call them inside their own transactions."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from loom_assets.offsets import OffsetRange

# A window asked for this many times without landing is shown as failing (it is still asked for).
FAILING_AFTER_REQUESTS = 3


@dataclass(frozen=True)
class LogTail:
    """Where `flow`'s next window starts: its last planned window and each partition's end."""

    last_start: datetime | None
    last_end: datetime | None
    ends: dict[tuple[str, int], int]


@dataclass
class UnlandedWindow:
    start: datetime
    ranges: list[OffsetRange]
    requests: int
    requested_at: datetime | None


@dataclass(frozen=True)
class OffsetGap:
    """Offsets between two planned ranges of a partition that no window holds: Kafka deleted them
    before they were planned (`expired`), or the topic was recreated (`topic_reset`)."""

    topic: str
    partition: int
    from_offset: int
    to_offset: int
    reason: str

    @property
    def records(self) -> int:
        return max(0, self.to_offset - self.from_offset)


def log_tail(conn: psycopg.Connection, flow: str) -> LogTail:
    last_start, last_end = conn.execute(
        "SELECT window_start, window_end FROM loom_offset_log WHERE flow = %s ORDER BY window_start DESC LIMIT 1",
        (flow,),
    ).fetchone() or (None, None)
    ends = conn.execute(
        "SELECT DISTINCT ON (topic, partition) topic, partition, end_offset"
        " FROM loom_offset_log WHERE flow = %s ORDER BY topic, partition, window_start DESC",
        (flow,),
    ).fetchall()
    return LogTail(last_start, last_end, {(t, p): end for t, p, end in ends})


def insert_plans(conn: psycopg.Connection, flow: str, size: timedelta,
                 plans: Sequence[tuple[datetime, Sequence[OffsetRange]]], gaps: Sequence[OffsetGap] = ()) -> None:
    """Gaps first: the log accepts a range that does not start at its partition's previous end
    only where a gap row says why."""
    first = min((start for start, _ in plans), default=None)
    with conn.cursor() as cur:
        if gaps and first is not None:
            cur.executemany(
                "INSERT INTO loom_offset_gaps (flow, topic, partition, from_offset, to_offset, window_start, reason)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                [(flow, g.topic, g.partition, g.from_offset, g.to_offset, first, g.reason) for g in gaps],
            )
        cur.executemany(
            "INSERT INTO loom_offset_log"
            " (flow, window_start, window_end, topic, partition, start_offset, end_offset, landed_at)"
            # A window without records has nothing to land: it counts as landed when planned.
            " VALUES (%s, %s, %s, %s, %s, %s, %s, CASE WHEN %s THEN now() END)",
            [(flow, start, start + size, r.topic, r.partition, r.start, r.end, r.count == 0)
             for start, ranges in plans for r in ranges],
        )


def mark_landed(conn: psycopg.Connection, flow: str, start: datetime, end: datetime, run_id: str) -> None:
    """In the raw write's transaction: the windows in [start, end) have landed."""
    conn.execute(
        "UPDATE loom_offset_log SET landed_at = now(), landed_by = %s, landed_xid = pg_current_xact_id()"
        " WHERE flow = %s AND window_start >= %s AND window_start < %s AND lost_at IS NULL",
        (run_id, flow, start, end),
    )
