"""What every fault scenario ends with: the exactly-once invariants over the whole database, a
tally of the scenario's own records, and the row it adds to docs/reliability.md."""

import json
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from confluent_kafka import Producer
from psycopg import sql

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"


# -- the invariants ------------------------------------------------------------------------------
def raw_tables(conn: psycopg.Connection) -> list[str]:
    """Every table holding one row per Kafka record: the catalog's `*_raw` tables (partitions
    and the native path's default partitions left out, their parent counts them)."""
    return [name for (name,) in conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
        " AND c.relname LIKE '%\\_raw'"
        " AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'source_offset')"
        " ORDER BY 1"
    )]


def landing_counts(conn: psycopg.Connection, flow: str) -> tuple[int, int, int]:
    """(raw rows, landing error rows, offsets planned) of `flow`; ranges the log records as lost
    (Kafka dropped them before they landed, said aloud) are not planned for landing any more."""
    rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(f"{flow}_raw"))).fetchone()[0]
    errors = conn.execute("SELECT count(*) FROM processing_errors WHERE flow = %s", (flow,)).fetchone()[0]
    planned = conn.execute(
        "SELECT coalesce(sum(end_offset - start_offset), 0) FROM loom_offset_log WHERE flow = %s AND lost_at IS NULL",
        (flow,),
    ).fetchone()[0]
    return rows, errors, int(planned)


def duplicate_positions(conn: psycopg.Connection) -> dict[str, int]:
    """Per raw table, the rows beyond the first at the same Kafka position."""
    found = {}
    for name in raw_tables(conn):
        # A recreated topic starts its offsets again: a position names a record within one
        # incarnation of the topic, counted by the `topic_reset` gaps before the row's window.
        extra = conn.execute(sql.SQL(
            "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM {} r"
            " GROUP BY source_topic, source_partition, source_offset, ("
            "  SELECT count(*) FROM loom_offset_gaps g WHERE g.reason = 'topic_reset' AND g.topic = r.source_topic"
            "   AND g.partition = r.source_partition AND g.window_start <= r.window_start)"
            " HAVING count(*) > 1) d"
        ).format(sql.Identifier(name))).fetchone()[0]
        if extra:
            found[name] = int(extra)
    return found


def overlapping_plans(conn: psycopg.Connection) -> list[tuple]:
    """Pairs of planned ranges (of any flow) that share an offset."""
    return conn.execute(
        "SELECT a.flow, a.topic, a.partition, a.window_start, a.start_offset, a.end_offset,"
        "       b.window_start, b.start_offset, b.end_offset"
        " FROM loom_offset_log a JOIN loom_offset_log b"
        "   ON a.flow = b.flow AND a.topic = b.topic AND a.partition = b.partition"
        "  AND a.window_start < b.window_start"
        " WHERE a.start_offset < b.end_offset AND b.start_offset < a.end_offset"
        "  AND NOT EXISTS (SELECT 1 FROM loom_offset_gaps g WHERE g.reason = 'topic_reset' AND g.flow = a.flow"
        "   AND g.topic = a.topic AND g.partition = a.partition"
        "   AND g.window_start > a.window_start AND g.window_start <= b.window_start)"
        " ORDER BY 1, 2, 3, 4"
    ).fetchall()


def assert_invariants(url: str, flows: tuple[str, ...] | list[str]) -> None:
    """(a) each flow's raw rows and landing errors add up to its planned offsets; (b) no Kafka
    position is twice in any raw table and no offset is in two planned ranges."""
    with psycopg.connect(url) as conn:
        counts = {flow: landing_counts(conn, flow) for flow in flows}
        duplicates = duplicate_positions(conn)
        overlaps = overlapping_plans(conn)
    unbalanced = {flow: f"{rows} rows + {errors} errors != {planned} planned"
                  for flow, (rows, errors, planned) in counts.items() if rows + errors != planned}
    assert not unbalanced, unbalanced
    assert not duplicates, f"rows at the same Kafka position: {duplicates}"
    assert not overlaps, f"offsets planned in two windows: {overlaps[:5]}"


# -- a scenario's own records ---------------------------------------------------------------------
@dataclass(frozen=True)
class Tally:
    """What became of the `records` a scenario produced: `lost` never became a row or an error
    row, `duplicated` became more than one."""

    records: int
    lost: int
    duplicated: int

    def __add__(self, other: "Tally") -> "Tally":
        return Tally(self.records + other.records, self.lost + other.lost, self.duplicated + other.duplicated)


def tally(url: str, flow: str, produced: dict[tuple[str, int], list[int]],
          since: datetime | None = None, until: datetime | None = None) -> Tally:
    """Count `flow`'s rows and landing error rows at the positions the scenario produced
    (topic, partition) -> offsets, in the windows from `since` until `until` (all by default)."""
    within = {"since": since or datetime(1970, 1, 1, tzinfo=UTC), "until": until or datetime(2200, 1, 1, tzinfo=UTC)}
    with psycopg.connect(url) as conn:
        positions = conn.execute(sql.SQL(
            "SELECT source_topic, source_partition, source_offset FROM {}"
            " WHERE window_start >= %(since)s AND window_start < %(until)s"
            " UNION ALL SELECT source_topic, source_partition, source_offset FROM processing_errors"
            " WHERE flow = %(flow)s AND window_start >= %(since)s AND window_start < %(until)s"
        ).format(sql.Identifier(f"{flow}_raw")), {"flow": flow, **within}).fetchall()
    seen: dict[tuple[str, int, int], int] = {}
    for position in positions:
        seen[position] = seen.get(position, 0) + 1
    records = lost = duplicated = 0
    for (topic, partition), offsets in produced.items():
        for offset in offsets:
            n = seen.get((topic, partition, offset), 0)
            records += 1
            lost += n == 0
            duplicated += max(0, n - 1)
    return Tally(records, lost, duplicated)


def produce_fast(bootstrap: str, messages, timestamp_ms: int | None = None) -> dict[tuple[str, int], list[int]]:
    """Produce (topic, key, value) messages in large compressed batches; returns the offsets
    they got per (topic, partition)."""
    offsets: dict[tuple[str, int], list[int]] = {}
    for topic, partition, offset in produce_values(bootstrap, messages, timestamp_ms):
        offsets.setdefault((topic, partition), []).append(offset)
    return {tp: sorted(o) for tp, o in offsets.items()}


def produce_values(bootstrap: str, messages, timestamp_ms: int | None = None) -> dict[tuple[str, int, int], bytes]:
    """Produce (topic, key, value) messages; returns each one's value by its Kafka position."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 1_000_000,
                         "compression.type": "lz4", "queue.buffering.max.messages": 1_000_000,
                         "message.max.bytes": 64 * 1024 * 1024})
    positions: dict[tuple[str, int, int], bytes] = {}
    failures: list[str] = []

    def delivered(error, message):
        if error is not None:
            failures.append(str(error))
        else:
            positions[(message.topic(), message.partition(), message.offset())] = message.value()

    stamp = timestamp_ms if timestamp_ms is not None else time.time_ns() // 1_000_000
    for topic, key, value in messages:
        while True:
            try:
                producer.produce(topic, value=value, key=key, timestamp=stamp, on_delivery=delivered)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(60) == 0 and not failures, failures[:3]
    return positions


DEVICES = [str(uuid.UUID(int=i + 1)) for i in range(4)]


def app_events(count: int, at: datetime, topic: str = "os.events.app_lifecycle.raw"):
    """`count` small, valid app_lifecycle messages from a few devices, made without json.dumps
    per message (100k of them in about a second)."""
    recorded = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    head = json.dumps({"schema_version": "1.0", "recorded_at": recorded, "timestamp": recorded,
                       "event_type": "foreground"})[:-1]
    for i in range(count):
        device = DEVICES[i % len(DEVICES)]
        yield topic, device.encode(), (
            f'{head}, "device_id": "{device}", "message_id": "{uuid.uuid4()}", "app_identifier": "com.app.{i % 97}"}}'
        ).encode()


# -- the reliability page -------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    """One row of docs/reliability.md."""

    scenario: str
    records: int
    lost: int
    duplicated: int
    recovered: str

    def as_dict(self) -> dict:
        return asdict(self)


HEADER = """# Reliability under faults

How Loom lands every Kafka offset exactly once:
- **The offset log** (`loom_offset_log`) plans each window's exact offset range per topic
  partition before its run is asked for. Planning holds a per-flow lock from reading the log to
  writing it, and the log refuses a range that does not start where its partition's previous
  range ended, unless a row of `loom_offset_gaps` says why: Kafka's retention deleted offsets
  before they were planned (`expired`), or the topic was recreated (`topic_reset`).
- **One writer per window**: a write locks its (table, window) for its transaction, then deletes
  and rewrites the window; each raw table has a unique key on the Kafka position (with its time
  column), so a second copy cannot commit by any path.
- **Asked for until landed**: the raw write sets `landed_at` in the same transaction; the sensor
  asks again, with a new run key and a backoff, for every window within retention that has not
  landed and has no run in flight, and tags it `loom/failing` after three attempts. Run
  monitoring fails runs whose process died. The consumer group commits only each partition's
  contiguous landed prefix.
- **Kafka's own anomalies are said aloud**: reads never jump to another offset
  (`auto.offset.reset=error`); a window whose offsets Kafka no longer holds is not landed again
  from less (the run fails without retries); records dropped before they landed are marked lost
  in the log, shown by `loom status` and the metrics; a record stamped far ahead does not stall
  the timestamp lookups (Loom's topics refuse it: `message.timestamp.after.max.ms`); after a
  window size change the next window starts on the new grid.
- **A record costs only itself**: see the README's "Raw landing".

The table below is written by the fault suite (`tests/faults`, run by `make test`) at the end of a
session that ran every fault scenario; do not edit it by hand. Each scenario injects one fault
into a real Apache Kafka broker, a real PostgreSQL and real `loom` processes, lets Loom recover
the way it would in production, then checks that every record it produced became exactly one row or one error row,
that each flow's rows and landing errors add up to its planned offsets, and that no Kafka position
is in a raw table twice or in two planned windows.

"Holds" is whether the scenario passed. A scenario that does not hold yet is listed with what it
lost or duplicated, so this page says what Loom guarantees today, not what it should. "Lost"
counts records that never became a row or an error row: where Kafka itself deleted records
before any run could read them, the scenario holds only if Loom reports exactly those as lost.

| Scenario | Records | Lost | Duplicated | Recovered by | Holds |
|---|---:|---:|---:|---|---|
"""


def render(rows: list[tuple[Outcome, bool]]) -> str:
    lines = [f"| {o.scenario} | {o.records:,} | {o.lost:,} | {o.duplicated:,} | {o.recovered} | "
             f"{'yes' if held else '**no**'} |" for o, held in rows]
    return HEADER + "\n".join(lines) + "\n"


def write_page(rows: list[tuple[Outcome, bool]], path: Path = DOC) -> bool:
    """Write the page if its content changed (so a re-run with the same outcomes leaves the file
    alone); returns whether it was written."""
    text = render(rows)
    if path.exists() and path.read_text() == text:
        return False
    path.write_text(text)
    return True
