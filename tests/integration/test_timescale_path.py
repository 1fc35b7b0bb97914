"""The TimescaleDB path of the `sql/` migrations, for real, and the native-partition fallback.

TimescaleDB: a real PostgreSQL + TimescaleDB server where one is installed
(`loom_assets.embedded.timescale_server`: `LOOM_TEST_TIMESCALEDB_BIN` or `make timescaledb`),
else PGlite built with TimescaleDB 2.23 (`loom_assets.embedded.timescale`); one server for the
module, either way. PGlite's limits shape the tests that run on both: one connection at a time
(every connection here is closed before the next opens), no background workers (policies are
run with `CALL run_job(..)`; the real server runs without them too), no COPY FROM STDIN (rows go
in with small parameterised INSERTs). Tests that write through COPY need the real server.

`apply_migrations` keeps yoyo to a single connection, closed on return, so it runs as shipped.

Native: the embedded PostgreSQL (no timescaledb extension) with a database of its own.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import psycopg
from psycopg import sql
import pytest

from loom_assets.embedded.postgres import create_database
from loom_assets.resources.warehouse import SQL_DIR, apply_migrations, copy_frame

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".loom" / "cache"
MIGRATIONS = sorted(p.name.removesuffix(".sql") for p in SQL_DIR.glob("*.sql"))

# The tables' own numbers where sql/ departs from the defaults (chunk 1 day, compression
# after 7 days segmented by device_id, retention 30 days).
# docs/flows/network_events.md#retention (network), docs/flows/motion.md#retention (motion: hourly
# chunks, compressed after a day, kept 7 days; the significant-motion table chunks by 7 days),
# docs/flows/location.md#retention (location), a year of visits, and raw media kept 7 days,
# compressed after one (docs/flows/audio.md#retention).
HOUR, DAY, WEEK = timedelta(hours=1), timedelta(days=1), timedelta(days=7)
MONTH, YEAR = timedelta(days=30), timedelta(days=365)
CHUNK_INTERVAL = {"network_events_enriched": WEEK, "network_events_location_correlated": WEEK,
                  "motion_raw": HOUR, "motion_windows": HOUR, "motion_activities": HOUR,
                  "motion_significant_motion": WEEK, "calendar_raw": WEEK, "calendar_events": WEEK,
                  # one HNSW index per chunk: a search scans every chunk's
                  **{f"{flow}_embeddings": WEEK for flow in ("email", "calendar", "hackernews", "audio",
                                                             "screenshot_ocr")}}
RETENTION = {"network_events_enriched": timedelta(days=90), "network_events_location_correlated": timedelta(days=90),
             "motion_raw": WEEK, "motion_windows": WEEK, "motion_activities": WEEK,
             "audio_raw": WEEK, "screenshot_ocr_raw": WEEK, "camera_vision_raw": WEEK,
             "audio_transcripts": timedelta(days=90),
             "location_georegions": timedelta(days=90), "location_geocoded": timedelta(days=90),
             "location_places": timedelta(days=365),
             "email_raw": YEAR, "email_messages": YEAR, "email_embeddings": YEAR,
             "calendar_raw": timedelta(days=90), "calendar_events": timedelta(days=90),
             "calendar_embeddings": timedelta(days=90), "hackernews_raw": timedelta(days=180),
             "hackernews_items": timedelta(days=180), "hackernews_embeddings": timedelta(days=180),
             "audio_embeddings": timedelta(days=90)}
COMPRESS_AFTER = {"network_events_enriched": timedelta(days=30),
                  "network_events_location_correlated": timedelta(days=30),
                  "motion_raw": DAY, "motion_windows": DAY, "motion_activities": DAY,
                  "audio_raw": DAY, "screenshot_ocr_raw": DAY, "camera_vision_raw": DAY,
                  "audio_transcripts": timedelta(days=14), "audio_embeddings": timedelta(days=14),
                  "email_raw": MONTH, "email_messages": MONTH, "email_embeddings": MONTH,
                  "calendar_raw": MONTH, "calendar_events": None, "calendar_embeddings": None,
                  "hackernews_embeddings": MONTH}
SEGMENT_BY = {"processing_errors": "flow"}
TIME_COLUMN = {"processing_errors": "window_start", "power_state_patterns": "window_start",
               "calendar_events": "start_time"}


def noon(day: date) -> datetime:
    """Midday UTC of `day`: far from day boundaries whatever the session time zone."""
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


def today() -> date:
    return datetime.now(UTC).date()


@contextlib.contextmanager
def connect(uri: str) -> Iterator[psycopg.Connection]:
    """One short-lived autocommit connection (PGlite serves one client at a time). PGlite keeps
    one backend session for every client, so psycopg's automatic prepared statements
    (`_pg3_0`, ...) of an earlier client would clash: none are made here."""
    with psycopg.connect(uri, autocommit=True, connect_timeout=20, prepare_threshold=None) as conn:
        yield conn


def raw_row(table: str, device: str, recorded_at: datetime, offset: int, **payload) -> dict:
    """A raw landing row: the envelope columns plus `payload`."""
    return {
        "window_start": recorded_at.replace(second=0, microsecond=0), "device_id": device,
        "recorded_at": recorded_at, "received_at": recorded_at, "schema_version": "1.0",
        "message_id": str(uuid.uuid4()), "trace_id": None, "source_topic": f"test.{table}",
        "source_partition": 0, "source_offset": offset, "ingested_at": datetime.now(UTC),
        "metadata": None, **payload,
    }


def app_row(device: str, recorded_at: datetime, offset: int) -> dict:
    return raw_row("app_lifecycle_raw", device, recorded_at, offset,
                   app_identifier="com.slack.Slack", app_name="Slack", event_type="launch",
                   duration_seconds=None)


def insert(conn: psycopg.Connection, table: str, rows: list[dict]) -> None:
    """Parameterised single-row INSERTs (no COPY: it crashes PGlite)."""
    for row in rows:
        statement = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            sql.Identifier(table),
            sql.SQL(", ").join(map(sql.Identifier, row)),
            sql.SQL(", ").join(sql.Placeholder() * len(row)),
        )
        conn.execute(statement, list(row.values()))


def job_id(conn: psycopg.Connection, table: str, proc: str) -> int:
    rows = conn.execute(
        "SELECT job_id FROM timescaledb_information.jobs WHERE hypertable_name = %s AND proc_name = %s",
        (table, proc),
    ).fetchall()
    assert len(rows) == 1, f"{table}: {len(rows)} {proc} jobs"
    return rows[0][0]


# --------------------------------------------------------------------------- TimescaleDB


@pytest.fixture(scope="module")
def timescale() -> Iterator[dict]:
    """One TimescaleDB server, migrated once; the first migration run's result is kept for the
    idempotence test. `server` is the server's own URI (a real server can make more databases)
    or None on PGlite (in memory, npm packages cached in .loom/cache/timescale)."""
    from loom_assets.embedded.timescale_server import start_timescaledb, timescaledb_bin

    bin_dir = timescaledb_bin()
    if bin_dir is not None:
        data_dir = Path(tempfile.mkdtemp(prefix="loom-tsdb-"))
        server = start_timescaledb(bin_dir, data_dir)
        try:
            uri = create_database(server.uri, "loom_timescale")
            yield {"uri": uri, "first": apply_migrations(uri), "server": server.uri}
        finally:
            server.stop()
            shutil.rmtree(data_dir, ignore_errors=True)
        return
    if shutil.which("node") is None:
        pytest.skip("no TimescaleDB: `make timescaledb`, or install Node.js 20+ for PGlite")
    from loom_assets.embedded.timescale import start_timescale

    pglite = start_timescale(CACHE / "timescale")
    try:
        first = apply_migrations(pglite.uri)
        yield {"uri": pglite.uri, "first": first, "server": None}
    finally:
        pglite.stop()


def test_migrations_apply_on_timescaledb_and_a_second_run_applies_nothing(timescale):
    assert timescale["first"] == MIGRATIONS
    assert apply_migrations(timescale["uri"]) == []
    with connect(timescale["uri"]) as conn:
        assert conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        applied = [r[0] for r in conn.execute("SELECT migration_id FROM _yoyo_migration ORDER BY migration_id")]
    assert applied == MIGRATIONS


def test_every_timeseries_table_is_a_hypertable_with_its_chunks_compression_and_retention(timescale):
    with connect(timescale["uri"]) as conn:
        registered = {r[0]: r[1:] for r in conn.execute(
            "SELECT table_name, storage, time_column, retention, compress_after FROM loom_timeseries")}
        hypertables = dict(conn.execute(
            "SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables"
            " WHERE hypertable_schema = current_schema()").fetchall())
        dimensions = {r[0]: r[1:] for r in conn.execute(
            "SELECT hypertable_name, column_name, time_interval FROM timescaledb_information.dimensions"
            " WHERE dimension_type = 'Time'")}
        segment_by = {}
        for table, column in conn.execute(
                "SELECT hypertable_name, attname FROM timescaledb_information.compression_settings"
                " WHERE segmentby_column_index IS NOT NULL ORDER BY segmentby_column_index"):
            segment_by.setdefault(table, []).append(column)
        order_by = {}
        for table, column, ascending in conn.execute(
                "SELECT hypertable_name, attname, orderby_asc FROM timescaledb_information.compression_settings"
                " WHERE orderby_column_index IS NOT NULL ORDER BY orderby_column_index"):
            order_by.setdefault(table, []).append((column, ascending))
        jobs = {(r[0], r[1]): r[2] for r in conn.execute(
            "SELECT hypertable_name, proc_name, config FROM timescaledb_information.jobs"
            " WHERE proc_name IN ('policy_compression', 'policy_retention')")}

    assert {"processing_errors", "app_lifecycle_raw", "app_lifecycle_enriched",
            "network_events_location_correlated"} <= set(registered)
    assert set(hypertables) == set(registered)
    for table, (storage, time_column, retention, compress_after) in registered.items():
        assert storage == "hypertable", table
        assert time_column == TIME_COLUMN.get(table, "recorded_at"), table
        assert retention == RETENTION.get(table, timedelta(days=30)), table
        assert compress_after == COMPRESS_AFTER.get(table, timedelta(days=7)), table
        assert dimensions[table] == (time_column, CHUNK_INTERVAL.get(table, timedelta(days=1))), table
        drop = jobs[(table, "policy_retention")]
        assert pd.Timedelta(drop["drop_after"]) == retention, (table, drop)
        if compress_after is None:  # docs/flows/calendar.md#retention: calendar events are not compressed
            assert hypertables[table] is False and (table, "policy_compression") not in jobs, table
            continue
        assert hypertables[table] is True, f"{table}: compression not enabled"
        assert segment_by[table] == [SEGMENT_BY.get(table, "device_id")], table
        # Writing a window deletes it by window_start: batches are ordered by window first.
        assert order_by[table] == ([("window_start", False)] if time_column == "window_start"
                                   else [("window_start", True), (time_column, False)]), table
        compress = jobs[(table, "policy_compression")]
        assert pd.Timedelta(compress["compress_after"]) == compress_after, (table, compress)
    assert len(jobs) == 2 * len(registered) - sum(c is None for *_, c in registered.values())


def test_latest_view_shows_only_the_newest_model_version_per_window(timescale):
    """`_latest` shows each window's rows of the version Loom recorded as written last for it
    (loom_stage_windows), not the newest `processed_at` nor the greatest name."""
    device = str(uuid.uuid4())
    now = datetime.now(UTC).replace(microsecond=0)
    first, second = now - timedelta(hours=2), now - timedelta(hours=1)

    def row(window: datetime, version: str, processed_at: datetime, offset: int) -> dict:
        return {
            "window_start": window, "device_id": device, "recorded_at": window + timedelta(seconds=5),
            "model_version": version, "source_topic": "test.app", "source_partition": 0,
            "source_offset": offset, "app_identifier": "com.slack.Slack", "event_type": "launch",
            "app_category": "communication", "category_source": "bundle_id", "session_open": True,
            "is_crash": False, "processed_at": processed_at,
        }

    with connect(timescale["uri"]) as conn:
        versioned = {r[0] for r in conn.execute(
            "SELECT t.table_name FROM loom_timeseries t JOIN information_schema.columns c"
            " ON c.table_name = t.table_name AND c.table_schema = current_schema()"
            " WHERE c.column_name = 'model_version'")}
        everything = {r[0] for r in conn.execute("SELECT table_name FROM loom_timeseries")}
        views = {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.views WHERE table_schema = current_schema()")}
        insert(conn, "app_lifecycle_enriched", [
            # The first window: v1 written an hour ago, then reprocessed as v2 just now.
            row(first, "v1", now - timedelta(hours=1), 1),
            row(first, "v1", now - timedelta(hours=1), 2),
            row(first, "v2", now, 1),
            # The second window: "v2" is written before "v1" — newest write wins, not the name.
            row(second, "v2", now - timedelta(minutes=30), 3),
            row(second, "v1", now - timedelta(minutes=10), 3),
            row(second, "v1", now - timedelta(minutes=10), 4),
        ])
        # What the IO manager records with each write: the version written last per window.
        for window, version in ((first, "v2"), (second, "v1")):
            conn.execute("INSERT INTO loom_stage_windows (table_name, window_start, model_version, rows)"
                         " VALUES ('app_lifecycle_enriched', %s, %s, 1) ON CONFLICT (table_name, window_start)"
                         " DO UPDATE SET model_version = EXCLUDED.model_version", (window, version))
        latest = conn.execute(
            "SELECT window_start, model_version, source_offset FROM app_lifecycle_enriched_latest"
            " WHERE device_id = %s ORDER BY window_start, source_offset", (device,)).fetchall()
        total = conn.execute(
            "SELECT count(*) FROM app_lifecycle_enriched WHERE device_id = %s", (device,)).fetchone()[0]

    assert {"app_lifecycle_enriched", "power_state_enriched", "power_state_patterns",
            "network_events_enriched", "network_events_location_correlated"} <= versioned
    assert {f"{t}_latest" for t in versioned} <= views
    assert not {f"{t}_latest" for t in everything - versioned} & views
    assert total == 6  # every version is kept side by side
    assert latest == [(first, "v2", 1), (second, "v1", 3), (second, "v1", 4)]


def test_retention_policy_drops_old_chunks_and_keeps_today(timescale):
    device = str(uuid.uuid4())
    old, recent, current = noon(today() - timedelta(days=40)), noon(today() - timedelta(days=10)), datetime.now(UTC)
    with connect(timescale["uri"]) as conn:
        insert(conn, "app_lifecycle_raw",
               [app_row(device, old, 1), app_row(device, recent, 2), app_row(device, current, 3)])
        assert conn.execute(
            "SELECT count(*) FROM app_lifecycle_raw WHERE device_id = %s", (device,)).fetchone()[0] == 3
        conn.execute("CALL run_job(%s)", (job_id(conn, "app_lifecycle_raw", "policy_retention"),))
        left = [r[0] for r in conn.execute(
            "SELECT source_offset FROM app_lifecycle_raw WHERE device_id = %s ORDER BY source_offset", (device,))]
        oldest_chunk = conn.execute(
            "SELECT min(range_start) FROM timescaledb_information.chunks WHERE hypertable_name = 'app_lifecycle_raw'"
        ).fetchone()[0]
    assert left == [2, 3]  # 40 days old: gone; 10 days old and today: kept
    assert oldest_chunk >= datetime.now(UTC) - timedelta(days=31)


def test_compression_policy_compresses_week_old_chunks_which_stay_readable(timescale):
    device = str(uuid.uuid4())
    old, current = noon(today() - timedelta(days=10)), datetime.now(UTC)
    power = {"battery_level": 42.5, "is_charging": False, "power_source": "battery",
             "lid_closed": None, "thermal_state": "nominal"}
    with connect(timescale["uri"]) as conn:
        insert(conn, "power_state_raw", [
            raw_row("power_state_raw", device, old, 1, **power),
            raw_row("power_state_raw", device, current, 2, **power),
        ])
        conn.execute("CALL run_job(%s)", (job_id(conn, "power_state_raw", "policy_compression"),))
        chunks = conn.execute(
            "SELECT range_start, range_end, is_compressed FROM timescaledb_information.chunks"
            " WHERE hypertable_name = 'power_state_raw' ORDER BY range_start").fetchall()
        rows = conn.execute(
            "SELECT source_offset, recorded_at, battery_level, power_source FROM power_state_raw"
            " WHERE device_id = %s ORDER BY source_offset", (device,)).fetchall()
    by_range = {(start, end): compressed for start, end, compressed in chunks}
    old_chunk = [c for (start, end), c in by_range.items() if start <= old < end]
    current_chunk = [c for (start, end), c in by_range.items() if start <= current < end]
    assert old_chunk == [True], chunks
    assert current_chunk == [False], chunks
    assert rows == [(1, old, 42.5, "battery"), (2, current, 42.5, "battery")]


def test_time_bucket_by_hour_on_a_raw_table(timescale):
    device = str(uuid.uuid4())
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    at = [hour + timedelta(minutes=5), hour + timedelta(minutes=55), hour + timedelta(hours=1, minutes=30),
          hour + timedelta(hours=2, minutes=1), hour + timedelta(hours=2, minutes=2)]
    network = {"ssid": "Loom", "bssid": None, "signal_strength": -50, "frequency": 5180.0, "channel": 36,
               "security": "wpa2", "connected": True, "ip_address": None}
    with connect(timescale["uri"]) as conn:
        insert(conn, "network_events_raw",
               [raw_row("network_events_raw", device, t, i, **network) for i, t in enumerate(at)])
        buckets = conn.execute(
            "SELECT time_bucket('1 hour', recorded_at) AS hour, count(*) FROM network_events_raw"
            " WHERE device_id = %s GROUP BY 1 ORDER BY 1", (device,)).fetchall()
    assert buckets == [(hour, 2), (hour + timedelta(hours=1), 1), (hour + timedelta(hours=2), 2)]


def test_embedding_tables_search_by_vector_and_text_on_timescaledb_even_compressed(timescale):
    """`loom_create_embedding_table` (sql/0010, run for audio_embeddings by sql/0015) on the
    TimescaleDB path: a hypertable with the HNSW and GIN indexes, searched with `loom search`'s
    own SQL, also once its old chunk is compressed."""
    import numpy as np

    from loom_assets.search import Table, ranked_hits

    device, version = str(uuid.uuid4()), "1+all-MiniLM-L6-v2"
    now = datetime.now(UTC).replace(microsecond=0)
    axis = lambda i: [1.0 if j == i else 0.0 for j in range(384)]  # noqa: E731 - unit vectors
    row = lambda at, sid, body, vector: {  # noqa: E731
        "window_start": at.replace(minute=0, second=0), "device_id": device, "recorded_at": at, "source_id": sid,
        "title": None, "body": body, "embedding": str(vector), "model_version": version}
    with connect(timescale["uri"]) as conn:
        indexes = " ".join(r[0] for r in conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'audio_embeddings'"))
        assert conn.execute("SELECT count(*) FROM timescaledb_information.hypertables"
                            " WHERE hypertable_name = 'audio_embeddings'").fetchone()[0] == 1
        insert(conn, "audio_embeddings", [
            row(now - timedelta(days=30), "seg-old", "water the tomato plants tonight", axis(0)),
            row(now, "seg-new", "pick up the dry cleaning", axis(1)),
            row(now, "seg-other", "call the plumber about the boiler", axis(2)),
        ])
        conn.execute("CALL run_job(%s)", (job_id(conn, "audio_embeddings", "policy_compression"),))
        compressed = conn.execute(
            "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'audio_embeddings'"
            " AND is_compressed").fetchone()[0]
        table = Table("audio", "audio_embeddings", 384)
        by_vector = ranked_hits(conn, "nothing in common", np.array(axis(0), dtype=np.float32),
                                "all-MiniLM-L6-v2", [table])
        by_text = ranked_hits(conn, "plumber boiler", np.array(axis(3), dtype=np.float32),
                              "all-MiniLM-L6-v2", [table])
    assert "USING hnsw (embedding vector_cosine_ops)" in indexes and "USING gin (to_tsvector(" in indexes
    assert compressed == 1  # the month-old chunk (audio embeddings compress after 14 days)
    assert [h.source_id for h in by_vector][:1] == ["seg-old"] and by_vector[0].similarity == pytest.approx(1.0)
    assert [h.source_id for h in by_text] == ["seg-other"] and "«plumber»" in by_text[0].snippet


def test_tables_made_after_the_migrations_order_compressed_batches_by_window_first(timescale):
    with connect(timescale["uri"]) as conn:
        conn.execute("SELECT loom_create_timeseries('loom_later_table', 'window_start timestamptz NOT NULL,"
                     " device_id text NOT NULL, started_at timestamptz NOT NULL', 'started_at')")
        order_by = conn.execute(
            "SELECT attname, orderby_asc FROM timescaledb_information.compression_settings"
            " WHERE hypertable_name = 'loom_later_table' AND orderby_column_index IS NOT NULL"
            " ORDER BY orderby_column_index").fetchall()
    assert order_by == [("window_start", True), ("started_at", False)]


WINDOW = timedelta(minutes=15)
# Low enough that decompressing the whole chunk (96 windows x 210 rows) fails, high enough for
# the batches (1000 rows each) that hold one window.
DECOMPRESSION_LIMIT = 5000


def rewrite_window(url: str, table: str, start: datetime, rows: pd.DataFrame) -> None:
    """Write one window as the IO manager does (DELETE of the window, then COPY, in one
    transaction), under a low limit on the tuples one DML transaction may decompress."""
    from dagster import TimeWindow, build_output_context
    from dagster._core.storage.db_io_manager import TablePartitionDimension, TableSlice

    from loom_assets.resources.warehouse import PostgresClient

    client = PostgresClient(url)
    window = TableSlice(table=table, schema="public", partition_dimensions=[
        TablePartitionDimension(partition_expr="window_start", partitions=TimeWindow(start, start + WINDOW))])
    with client.connect(None, window) as conn:
        conn.execute(f"SET LOCAL timescaledb.max_tuples_decompressed_per_dml_transaction = {DECOMPRESSION_LIMIT}")
        client.delete_table_slice(build_output_context(), window, conn)
        copy_frame(conn, table, rows)


def tuples_decompressed(url: str, table: str, start: datetime) -> int:
    """What deleting the window would decompress (rolled back, with no limit)."""
    with psycopg.connect(url) as conn:
        conn.execute("SET LOCAL timescaledb.max_tuples_decompressed_per_dml_transaction = 0")
        (plan,) = conn.execute(sql.SQL(
            "EXPLAIN (ANALYZE, FORMAT JSON) DELETE FROM {} WHERE window_start >= %s AND window_start < %s"
        ).format(sql.Identifier(table)), (start, start + WINDOW)).fetchone()[0]
        conn.rollback()
    return plan["Plan"].get("Tuples decompressed", 0)


def test_rerunning_a_window_of_a_compressed_chunk_decompresses_only_its_batches(timescale, tmp_path):
    """A database from before sql/0019 (batches ordered by event time alone) cannot re-run a
    window of a compressed day under the limit: the DELETE decompresses the whole chunk. After
    0019 it decompresses the batches of that window only, and the re-run leaves the same rows."""
    if timescale["server"] is None:
        pytest.skip("COPY needs a real TimescaleDB server (PGlite has none): `make timescaledb`")
    table, device = "app_lifecycle_raw", str(uuid.uuid4())
    url = create_database(timescale["server"], f"loom_orderby_{uuid.uuid4().hex[:10]}")
    before = tmp_path / "sql"
    before.mkdir()
    for migration in SQL_DIR.glob("*.sql"):
        if migration.name < "0019":
            shutil.copy(migration, before)
    assert apply_migrations(url, before)[-1] == "0018.error-publication"

    # A day old enough to compress (raw tables: after 7 days), 96 windows of 210 rows whose event
    # times fall anywhere in the day (a backlog uploaded late, a device clock off), so ordered
    # by event time every batch holds rows of every window.
    day = datetime.combine(today() - timedelta(days=10), datetime.min.time(), tzinfo=UTC)
    windows = [day + i * WINDOW for i in range(96)]
    rows = pd.DataFrame([{**app_row(device, day + timedelta(seconds=n * 7919 % 86400), n),
                          "window_start": windows[n % 96]} for n in range(96 * 210)])
    target = windows[40]
    rerun = rows[rows["window_start"] == target].reset_index(drop=True)

    def stored() -> list[tuple]:
        with connect(url) as conn:
            return conn.execute(sql.SQL("SELECT * FROM {} ORDER BY source_offset").format(sql.Identifier(table))).fetchall()

    def per_window() -> dict[datetime, int]:
        with connect(url) as conn:
            return dict(conn.execute(sql.SQL("SELECT window_start, count(*) FROM {} GROUP BY 1").format(
                sql.Identifier(table))).fetchall())

    def chunk() -> tuple[str, bool, str]:
        """The day's chunk: its name, whether it is compressed, its batches' orderby."""
        with connect(url) as conn:
            return conn.execute(
                "SELECT c.chunk_schema || '.' || c.chunk_name, c.is_compressed, s.orderby"
                " FROM timescaledb_information.chunks c LEFT JOIN timescaledb_information.chunk_compression_settings s"
                " ON s.chunk = format('%%I.%%I', c.chunk_schema, c.chunk_name)::regclass"
                " WHERE c.hypertable_name = %s", (table,)).fetchone()

    with psycopg.connect(url) as conn:
        copy_frame(conn, table, rows)
    with connect(url) as conn:
        conn.execute("CALL run_job(%s)", (job_id(conn, table, "policy_compression"),))
    name, compressed, order_by = chunk()
    assert compressed and order_by == "recorded_at DESC"
    everything, counts = stored(), per_window()
    assert len(everything) == len(rows) and set(counts.values()) == {210}

    old_cost = tuples_decompressed(url, table, target)
    with pytest.raises(psycopg.Error, match="tuple decompression limit exceeded"):
        rewrite_window(url, table, target, rerun)
    assert stored() == everything  # the failed write was rolled back

    assert apply_migrations(url) == [m for m in MIGRATIONS if m >= "0019"]
    assert chunk() == (name, True, "window_start,recorded_at DESC")
    new_cost = tuples_decompressed(url, table, target)
    rewrite_window(url, table, target, rerun)
    rewrite_window(url, table, target, rerun)  # and once more, now that the chunk is partly compressed

    assert per_window() == counts
    assert stored() == everything
    with connect(url) as conn:
        # Other windows' rows stay in their compressed batches: the rows outside them are the
        # window's own and the rest of the (at most two) batches it shared.
        uncompressed = conn.execute(sql.SQL("SELECT count(*) FROM ONLY {}").format(
            sql.Identifier(*name.split(".")))).fetchone()[0]
    assert old_cost == len(rows)
    assert new_cost <= 2000 and uncompressed <= 2000, (new_cost, uncompressed)


# --------------------------------------------------------------------------- native PostgreSQL


@pytest.fixture(scope="module")
def native_url() -> Iterator[str]:
    """A migrated database on the embedded PostgreSQL (no timescaledb extension). As root the
    server runs as another user, so its data lives under mkdtemp(), not pytest's tmp_path."""
    from loom_assets.embedded.postgres import start_postgres

    data_dir = Path(tempfile.mkdtemp(prefix="loom-native-"))
    server = start_postgres(data_dir / "postgres")
    try:
        url = create_database(server.uri, f"loom_native_{uuid.uuid4().hex[:10]}")
        assert apply_migrations(url) == MIGRATIONS
        yield url
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def partition_of(conn: psycopg.Connection, table: str, offset: int) -> list[str]:
    return [r[0] for r in conn.execute(
        sql.SQL("SELECT tableoid::regclass::text FROM {} WHERE source_offset = %s").format(
            sql.Identifier(table)), (offset,))]


def test_native_partitions_without_timescaledb(native_url):
    table = "app_lifecycle_raw"
    device = str(uuid.uuid4())
    day = today()
    future = day + timedelta(days=5)
    expired = day - timedelta(days=35)
    name = lambda d: f"{table}_p{d:%Y%m%d}"  # noqa: E731

    with psycopg.connect(native_url) as conn:
        storages = {r[0] for r in conn.execute("SELECT storage FROM loom_timeseries")}
        assert storages == {"native"}
        assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'").fetchone()[0] == 0

        # Today's rows: copy_frame makes the day's partition first.
        assert copy_frame(conn, table, pd.DataFrame([app_row(device, noon(day), 1),
                                                     app_row(device, datetime.now(UTC), 2)])) == 2
        # 40 days old, and 5 days ahead (device clock skew): no partition is made for them.
        copy_frame(conn, table, pd.DataFrame([app_row(device, noon(day - timedelta(days=40)), 3)]))
        copy_frame(conn, table, pd.DataFrame([app_row(device, noon(future), 4)]))
        # An expired day that has a partition of its own.
        conn.execute("SELECT loom_ensure_day_partition(%s, %s)", (table, expired))
        insert(conn, table, [app_row(device, noon(expired), 5)])
        conn.commit()

        assert partition_of(conn, table, 1) == [name(day)]
        assert partition_of(conn, table, 2) == [name(day)]
        assert partition_of(conn, table, 3) == [f"{table}_default"]
        assert partition_of(conn, table, 4) == [f"{table}_default"]
        assert partition_of(conn, table, 5) == [name(expired)]

        # Retention: the expired partition is dropped, the expired straggler deleted.
        assert conn.execute("SELECT loom_drop_expired_partitions()").fetchone()[0] >= 1
        conn.commit()
        assert conn.execute("SELECT to_regclass(%s)", (name(expired),)).fetchone()[0] is None
        assert partition_of(conn, table, 3) == []
        assert partition_of(conn, table, 5) == []
        assert partition_of(conn, table, 1) == [name(day)]
        assert partition_of(conn, table, 4) == [f"{table}_default"]

        # The future day's partition, once made, takes its row out of the default partition.
        conn.execute("SELECT loom_ensure_day_partition(%s, %s)", (table, future))
        conn.commit()
        assert partition_of(conn, table, 4) == [name(future)]
        assert conn.execute(f"SELECT count(*) FROM {table}_default").fetchone()[0] == 0
        left = [r[0] for r in conn.execute(
            f"SELECT source_offset FROM {table} WHERE device_id = %s ORDER BY 1", (device,))]
        assert left == [1, 2, 4]
