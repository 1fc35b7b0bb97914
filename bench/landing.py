"""Benchmark of Loom's raw landing against a bare consume + COPY of the same data.

Run from the repository root:

    .venv/bin/python bench/landing.py [--events 200000] [--profile landing.prof]

What it does, all in one process against services it starts itself (a real Apache Kafka
broker and an embedded PostgreSQL, both in temporary folders, stopped at the end):

1. Applies the `sql/` migrations and creates `os.events.app_lifecycle.raw` (3 partitions).
2. Produces N small app-lifecycle events in the flat Loom v2 REST envelope (docs/messages.md#rest-envelope),
   with Kafka timestamps in the previous window, so that the window is closed.
3. **Loom raw landing**: plans the closed window with the sensor's own function
   (`plan_closed_windows`), then executes the `app_lifecycle/raw` asset of
   `app_lifecycle_job` for that partition through Dagster (`execute_in_process`, as
   `loom process` does). Events/s = N / wall time of that call. Checks the table holds N rows.
4. **Bare baseline** on the same records: a plain confluent-kafka consumer (all partitions
   from offset 0, `consume(5000)` until the planned end offsets), `json.loads` of each value
   and a psycopg 3 `COPY ... write_row` of the same columns into `bare_app_lifecycle_raw`
   (`LIKE app_lifecycle_raw` with its constraints and indexes, unpartitioned).
5. Prints both rates, the ratio loom/bare (target >= 0.5; printed, never asserted) and peak RSS.
6. **One-window run**: produces 10 events into the current window, plans it (through now),
   runs the full `app_lifecycle_job` (raw + enriched) for it 5 times and prints the median.

`--profile FILE` additionally runs Loom's landing under cProfile (a second, separate run of
the same partition after the timed one: a re-run deletes and reloads the window) and writes
the stats to FILE, printing the top functions.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import tempfile
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOPIC = "os.events.app_lifecycle.raw"
FLOW = "app_lifecycle"
PARTITIONS = 3

DEVICES = [str(uuid.UUID(int=random.Random(i).getrandbits(128), version=4)) for i in range(25)]
APPS = [
    ("com.microsoft.Word", "Word"), ("com.microsoft.Excel", "Excel"), ("com.microsoft.teams2", "Teams"),
    ("com.microsoft.VSCode", "Visual Studio Code"), ("com.tinyspeck.slackmacgap", "Slack"),
    ("com.google.Chrome", "Google Chrome"), ("com.apple.Safari", "Safari"), ("com.spotify.client", "Spotify"),
    ("com.apple.mail", "Mail"), ("com.apple.finder", "Finder"), ("us.zoom.xos", "zoom.us"),
    ("com.figma.Desktop", "Figma"), ("com.apple.Terminal", "Terminal"), ("com.netflix.Netflix", "Netflix"),
    ("com.whatsapp.WhatsApp", "WhatsApp"), ("org.mozilla.firefox", "Firefox"), ("com.notion.id", "Notion"),
    ("com.apple.Music", "Music"), ("com.valvesoftware.steam", "Steam"), ("com.example.inhouse", None),
]
EVENT_TYPES = ["launch", "foreground", "background", "terminate", "crash"]
EVENT_WEIGHTS = [10, 40, 40, 9, 1]


# -- helpers ----------------------------------------------------------------------------------
def _ts(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_value(rng: random.Random, device: str, at: datetime) -> bytes:
    """One app-lifecycle event in the flat REST envelope (as tests/integration/test_spine.flat)."""
    app_identifier, app_name = rng.choice(APPS)
    event_type = rng.choices(EVENT_TYPES, EVENT_WEIGHTS)[0]
    payload: dict = {"app_identifier": app_identifier, "event_type": event_type}
    if app_name is not None:
        payload["app_name"] = app_name
    if event_type == "background":
        payload["duration_seconds"] = round(rng.uniform(1, 1800), 3)
    return json.dumps({
        "schema_version": "1.0", "device_id": device, "recorded_at": _ts(at),
        "timestamp": _ts(at + timedelta(milliseconds=rng.randint(50, 900))),
        "message_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "trace_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "services_encountered": ["ingestion-api", "kafka-producer"], **payload,
    }).encode()


def produce(bootstrap: str, count: int, span_start: datetime, span: timedelta, kafka_ts: datetime | None,
            seed: int) -> None:
    """Produce `count` events recorded within [span_start, span_start + span), keyed by device.

    Values are built in chunks before producing (bounded memory); `kafka_ts` pins the records'
    CreateTime (None: the producer's clock)."""
    from confluent_kafka import Producer

    rng = random.Random(seed)
    producer = Producer({
        "bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 1_000_000,
        "queue.buffering.max.messages": 1_000_000, "compression.type": "lz4",
    })
    failures: list[str] = []

    def delivered(error, _message):
        if error is not None:
            failures.append(str(error))

    stamp = int(kafka_ts.timestamp() * 1000) if kafka_ts else 0
    step = span / max(count, 1)
    chunk = 50_000
    for first in range(0, count, chunk):
        batch = []
        for i in range(first, min(first + chunk, count)):
            device = DEVICES[rng.randrange(len(DEVICES))]
            batch.append((device.encode(), event_value(rng, device, span_start + step * i)))
        for key, value in batch:
            while True:
                try:
                    producer.produce(TOPIC, value=value, key=key, timestamp=stamp, on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
    remaining = producer.flush(120)
    if remaining or failures:
        raise RuntimeError(f"produce: {remaining} undelivered, errors {failures[:3]}")


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) so a phase's own peak can be read; Linux only."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _status_mib(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mib() -> float:
    """VmHWM (resettable) when available, else ru_maxrss (the whole process's peak)."""
    return _status_mib("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    return _status_mib("VmRSS") or float("nan")


def count_rows(url: str, table: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]


def start_broker(work: Path, attempts: int = 3):
    """Start the Apache Kafka broker, retrying: `kafka-storage format` rejects a random cluster
    id that starts with '-' (about 1 start in 64), which a fresh data folder avoids."""
    from loom_assets.embedded.kafka import start_local_broker

    for attempt in range(1, attempts + 1):
        try:
            return start_local_broker(work / f"kafka-{attempt}", prefer="apache",
                                      libs_dir=ROOT / ".loom" / "cache" / "kafka-libs")
        except Exception as error:  # noqa: BLE001 - retried, then re-raised
            if attempt == attempts:
                raise
            print(f"broker start failed ({type(error).__name__}); retrying", flush=True)
    raise AssertionError("unreachable")


# -- the bare baseline --------------------------------------------------------------------------
BARE_TABLE = "bare_app_lifecycle_raw"
BARE_COLUMNS = (
    "window_start", "device_id", "recorded_at", "received_at", "schema_version", "message_id", "trace_id",
    "source_topic", "source_partition", "source_offset", "ingested_at", "metadata",
    "app_identifier", "app_name", "event_type", "duration_seconds",
)


def bare_landing(bootstrap: str, url: str, ends: dict[tuple[str, int], int], window_start: datetime) -> int:
    """Consume every planned record, json.loads it, COPY the raw columns. Returns rows written."""
    import psycopg
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": "bench-bare", "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    consumer.assign([TopicPartition(t, p, 0) for (t, p) in ends])
    pending = {tp: end for tp, end in ends.items() if end > 0}
    ingested_at = datetime.now(UTC)
    written = 0
    statement = f"COPY {BARE_TABLE} ({', '.join(BARE_COLUMNS)}) FROM STDIN"
    with psycopg.connect(url) as conn, conn.cursor() as cur, cur.copy(statement) as copy:
        while pending:
            for message in consumer.consume(5000, timeout=1.0):
                if message.error():
                    raise RuntimeError(message.error())
                tp = (message.topic(), message.partition())
                offset = message.offset()
                if tp not in pending or offset >= pending[tp]:
                    continue
                body = json.loads(message.value())
                metadata = body.get("metadata")
                copy.write_row((
                    window_start, body["device_id"], body["recorded_at"], body.get("timestamp"),
                    body["schema_version"], body["message_id"], body.get("trace_id"),
                    tp[0], tp[1], offset, ingested_at, json.dumps(metadata) if metadata is not None else None,
                    body["app_identifier"], body.get("app_name"), body["event_type"], body.get("duration_seconds"),
                ))
                written += 1
                if offset + 1 >= pending[tp]:
                    del pending[tp]
    consumer.close()
    return written


# -- main ---------------------------------------------------------------------------------------


@contextmanager
def bench_services(prefix: str):
    """A real Apache Kafka broker and an embedded PostgreSQL in a temporary folder, with Loom's
    environment pointed at them (and a fresh Dagster instance); stopped and removed afterwards.
    Yields (work folder, database URL, broker). Import Loom only inside the block."""
    from loom_assets.embedded.postgres import create_database, start_postgres

    work = Path(tempfile.mkdtemp(prefix=prefix))
    broker = postgres = None
    try:
        t0 = time.monotonic()
        broker = start_broker(work)
        postgres = start_postgres(work / "postgres")
        url = create_database(postgres.uri, "loom_bench")
        dagster_home = work / "dagster"
        dagster_home.mkdir()
        shutil.copy(ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
        os.environ.update({
            "DATABASE_URL": url,
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "DAGSTER_HOME": str(dagster_home),
            "LOOM_HOME": str(work / "loom"),
            "LOOM_WINDOW_GRACE_SECONDS": "0",
        })
        print(f"services up in {time.monotonic() - t0:.1f}s (broker {broker.bootstrap_servers})", flush=True)
        yield work, url, broker
    finally:
        if broker is not None:
            broker.stop()
        if postgres is not None:
            postgres.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--small-runs", type=int, default=5)
    parser.add_argument("--profile", type=Path, default=None, help="also profile Loom's landing into this file")
    args = parser.parse_args()
    n = args.events

    with bench_services("loom-bench-") as (work, url, broker):
        # Loom itself is imported only now, with its environment in place.
        from dagster import AssetKey, DagsterInstance

        from loom_assets import definitions
        from loom_assets.resources.warehouse import apply_migrations
        from loom_assets.sensors.kafka_windows import plan_closed_windows
        from loom_assets.windows import partition_key, window_of

        apply_migrations(url)
        flow = definitions.flow_named(FLOW)
        kafka, warehouse = definitions.resources()["kafka"], definitions.resources()["warehouse"]
        kafka.create_topics({
            TOPIC: (PARTITIONS, {"max.message.bytes": str(64 * 1024 * 1024)}),
            flow.error_topic: (PARTITIONS, {}),
        })
        instance = DagsterInstance.get()
        job = definitions.defs.resolve_job_def(flow.job.name)
        raw_job = job.get_subset(asset_selection={AssetKey([FLOW, "raw"])})

        # -- 2. produce N events into the previous (closed) window -------------------------------
        now = datetime.now(UTC)
        previous = window_of(now, flow.window) - flow.window
        t0 = time.monotonic()
        produce(broker.bootstrap_servers, n, previous, flow.window - timedelta(seconds=1),
                kafka_ts=previous + timedelta(seconds=30), seed=1)
        produce_s = time.monotonic() - t0
        print(f"produced {n} events in {produce_s:.1f}s ({n / produce_s:,.0f}/s)", flush=True)

        # -- 3. Loom raw landing ----------------------------------------------------------------
        planned = [w for w in plan_closed_windows(flow, kafka, warehouse, datetime.now(UTC)) if w.records]
        if len(planned) != 1 or planned[0].records != n:
            raise RuntimeError(f"expected one window of {n} records, planned {[(w.start, w.records) for w in planned]}")
        big = planned[0]
        key = partition_key(big.start)
        ends = {(r.topic, r.partition): r.end for r in big.ranges}
        print(f"planned window {key}: {big.records} records in {len(big.ranges)} ranges", flush=True)

        reset_peak_rss()
        loom_rss_start = current_rss_mib()
        t0 = time.monotonic()
        result = raw_job.execute_in_process(partition_key=key, instance=instance, tags={"loom/flow": FLOW},
                                            raise_on_error=True)
        loom_s = time.monotonic() - t0
        loom_rss = peak_rss_mib()
        stats = instance.get_run_stats(result.run_id)
        run_s = (stats.end_time - stats.start_time) if stats.end_time and stats.start_time else float("nan")
        landed = count_rows(url, f"{FLOW}_raw")
        print(f"loom raw landing: {loom_s:.2f}s wall (run start->end {run_s:.2f}s), "
              f"app_lifecycle_raw has {landed} rows", flush=True)

        # -- 4. bare baseline -------------------------------------------------------------------
        import psycopg

        with psycopg.connect(url) as conn:
            conn.execute(f"CREATE TABLE {BARE_TABLE} (LIKE {FLOW}_raw INCLUDING DEFAULTS INCLUDING CONSTRAINTS"
                         " INCLUDING INDEXES)")
        reset_peak_rss()
        bare_rss_start = current_rss_mib()
        t0 = time.monotonic()
        bare_rows = bare_landing(broker.bootstrap_servers, url, ends, big.start)
        bare_s = time.monotonic() - t0
        bare_rss = peak_rss_mib()
        print(f"bare consume + COPY: {bare_s:.2f}s, {bare_rows} rows "
              f"({count_rows(url, BARE_TABLE)} in {BARE_TABLE})", flush=True)

        # -- optional: profile Loom's landing (a re-run of the same partition) -----------------
        if args.profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.enable()
            raw_job.execute_in_process(partition_key=key, instance=instance, tags={"loom/flow": FLOW})
            profiler.disable()
            profiler.dump_stats(str(args.profile))
            print(f"\nprofile written to {args.profile}; top functions by cumulative time:")
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)

        # -- 6. one-window runs (orchestration overhead) -----------------------------------------
        produce(broker.bootstrap_servers, 10, datetime.now(UTC) - timedelta(seconds=5), timedelta(seconds=5),
                kafka_ts=None, seed=2)
        small = [w for w in plan_closed_windows(flow, kafka, warehouse, datetime.now(UTC), through_now=True)
                 if w.records]
        if not small:
            raise RuntimeError("the 10 small events were not planned into a window")
        small_window = max(small, key=lambda w: w.records)
        small_key = partition_key(small_window.start)
        run_times = []
        for _ in range(args.small_runs):
            t0 = time.monotonic()
            job.execute_in_process(partition_key=small_key, instance=instance, tags={"loom/flow": FLOW},
                                   raise_on_error=True)
            run_times.append(time.monotonic() - t0)
        print(f"one-window runs of {small_key} ({small_window.records} records): "
              + ", ".join(f"{s:.2f}s" for s in run_times), flush=True)

        loom_rate, bare_rate = n / loom_s, bare_rows / bare_s
        print(
            f"\nlanding: {n} events\n"
            f"  loom raw landing     : {loom_rate:,.0f} events/s ({loom_s:.2f} s; run start->end {run_s:.2f} s)\n"
            f"  bare consume + COPY  : {bare_rate:,.0f} events/s ({bare_s:.2f} s)\n"
            f"  ratio loom/bare      : {loom_rate / bare_rate:.2f} (target >= 0.5)\n"
            f"  one-window run median: {statistics.median(run_times):.2f} s over {len(run_times)} runs\n"
            f"  peak RSS             : {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB "
            f"(whole process, ru_maxrss)\n"
            f"    loom landing phase : peak {loom_rss:,.0f} MiB (+{loom_rss - loom_rss_start:,.0f} over {loom_rss_start:,.0f})\n"
            f"    bare phase         : peak {bare_rss:,.0f} MiB (+{bare_rss - bare_rss_start:,.0f} over {bare_rss_start:,.0f})\n"
            f"  rows                 : app_lifecycle_raw {landed}, {BARE_TABLE} {bare_rows}"
        )


if __name__ == "__main__":
    main()
