"""Benchmark of the day page: time to first render and the latency of its API calls.

Run from the repository root:

    .venv/bin/python bench/day.py [--hours 12] [--people 10] [--screenshot docs/day.png]

What it does, against services it starts itself (an embedded PostgreSQL and a Kafka broker in a
temporary LOOM_HOME, stopped at the end):

1. Replays the demo person's phone and laptop over `--hours` of yesterday (from 07:00, their
   local time) with event timestamps, as the devices would have sent them, and processes every
   flow as `loom dev`'s first start does (`process_backlog`: ranged runs of the windows).
2. **One person's day**: serves the page (`loom_assets.day`) and measures, in Debian's Chromium
   driven by Playwright, the time from navigation to the page's first full render (timeline, map
   and plots drawn: `body[data-ready]`), median and worst of 5 fresh pages; then p50/p95 of 20
   calls of each API (timeline, map, plots, devices, search).
3. **Ten people's devices**: copies the processed rows of every stage table to `--people - 1`
   more phone/laptop pairs (new device ids; the same rows, so the load is real-shaped), then
   measures again for one person's devices (`device=` filter) and for all of them.

Targets (printed, never asserted): first render ≤ 1 s for one person's day.
`--screenshot PATH` also writes a screenshot of the one-person page (the README shows it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode
from urllib.request import urlopen

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TZ = "America/Los_Angeles"  # the demo person's


def lived_day(hours: float):
    """Fresh services, the demo's `hours` of yesterday from 07:00 local, processed. Returns the
    services, the database URL and the day's local midnight."""
    from confluent_kafka import Producer
    from dagster import DagsterInstance

    from loom_assets import definitions, demo
    from loom_assets.cli import topic_specs
    from loom_assets.dev import add_demo_regions
    from loom_assets.processing import process_backlog
    from loom_assets.embedded import services
    from loom_assets.resources.warehouse import apply_migrations
    from loom_assets.settings import settings

    stack = services.start_dev_services(settings())
    os.environ.update(stack.environment)
    url = stack.environment["DATABASE_URL"]
    apply_migrations(url)
    definitions.resources()["kafka"].create_topics(topic_specs())
    add_demo_regions(url)
    day = (datetime.now(UTC) - timedelta(days=1)).astimezone(demo.LOCAL_TZ).date()
    midnight = datetime(day.year, day.month, day.day, tzinfo=demo.LOCAL_TZ)
    producer = Producer({"bootstrap.servers": stack.environment["KAFKA_BOOTSTRAP_SERVERS"], "linger.ms": 50})
    t0 = time.monotonic()
    sent = demo.replay(producer, demo.demo_messages(midnight + timedelta(hours=7), hours * 60, devices=2),
                       speed=None, event_timestamps=True, progress=False)
    print(f"replayed {sent} messages in {time.monotonic() - t0:.0f} s", flush=True)
    t0 = time.monotonic()
    # As `loom dev`'s first start processes its catch-up: ranged runs, two at a time.
    if not process_backlog(DagsterInstance.get(), definitions.FLOWS, datetime.now(UTC), echo=lambda line: None):
        raise SystemExit("some runs failed (see the Dagster run logs)")
    print(f"processed in {time.monotonic() - t0:.0f} s", flush=True)
    return stack, url, midnight


def copy_people(url: str, people: int) -> list[str]:
    """Copy every device's rows of every Loom table to `people - 1` more people (new device ids)."""
    import psycopg

    with psycopg.connect(url) as conn:
        devices = [r[0] for r in conn.execute("SELECT DISTINCT device_id FROM location_raw UNION "
                                              "SELECT DISTINCT device_id FROM app_lifecycle_raw")]
        tables = [r[0] for r in conn.execute("SELECT table_name FROM loom_timeseries ORDER BY table_name")]
        for n in range(1, people):
            mapping = {d: str(uuid.uuid5(uuid.NAMESPACE_URL, f"loom-bench-day:{n}:{d}")) for d in devices}
            for table in tables:
                columns = [r[0] for r in conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = %s AND column_name <> "
                    "'device_id' AND is_generated = 'NEVER' ORDER BY ordinal_position", (table,))]
                if not conn.execute("SELECT 1 FROM information_schema.columns WHERE table_name = %s AND "
                                    "column_name = 'device_id'", (table,)).fetchone():
                    continue
                # Kafka positions are unique per raw table: the copies' lie far beyond the real ones.
                values = ", ".join(f"source_offset + {n} * 1000000000000" if c == "source_offset" else f'"{c}"'
                                   for c in columns)
                names = ", ".join(f'"{c}"' for c in columns)
                for old, new in mapping.items():
                    conn.execute(f'INSERT INTO {table} (device_id, {names}) SELECT %s, {values} FROM {table} '
                                 'WHERE device_id = %s', (new, old))
        conn.execute("ANALYZE")
    return devices


def render_times(base: str, query: str, runs: int = 5, screenshot: str | None = None) -> list[float]:
    from tests.integration.browser import open_page

    times = []
    for run in range(runs):
        with open_page(f"{base}/?{query}", timezone=TZ) as page:
            times.append(float(page.evaluate("document.body.dataset.renderMs")) / 1000)
            if screenshot and run == 0:
                page.wait_for_timeout(1000)  # thumbnails
                page.screenshot(path=screenshot, full_page=True)
    return times


def api_latency(base: str, path: str, params: dict, calls: int = 20) -> tuple[float, float]:
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        with urlopen(f"{base}/api/{path}?{urlencode(params, doseq=True)}", timeout=120) as response:
            response.read()
        times.append(time.perf_counter() - t0)
    times.sort()
    return statistics.median(times), times[max(0, round(0.95 * len(times)) - 1)]


def measure(label: str, base: str, params: dict, screenshot: str | None = None) -> None:
    renders = render_times(base, urlencode(params, doseq=True), screenshot=screenshot)
    print(f"\n{label}: first render median {statistics.median(renders):.2f} s, worst {max(renders):.2f} s "
          f"(target ≤ 1 s for one person's day)")
    for path, extra in (("timeline", {}), ("map", {}), ("plots", {}), ("devices", {}),
                        ("search", {"q": "storage migration"})):
        p50, p95 = api_latency(base, path, {**params, **extra})
        print(f"  /api/{path:<9} p50 {p50 * 1000:6.0f} ms   p95 {p95 * 1000:6.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=12.0, help="hours of the demo day to replay (from 07:00)")
    parser.add_argument("--people", type=int, default=10, help="people for the second measurement (1: skip it)")
    parser.add_argument("--screenshot", help="also write a screenshot of the one-person page here")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="loom-bench-day-")
    os.environ.update({"LOOM_HOME": home, "DAGSTER_HOME": home, "LOOM_WINDOW_GRACE_SECONDS": "0"})
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    (Path(home) / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())

    from loom_assets import day as day_page
    from loom_assets.ports import free_port

    stack, url, midnight = lived_day(args.hours)
    server = day_page.server(url, port=free_port(), dagster_url="http://127.0.0.1:3000", tile_url="")
    day_page.serve_in_background(server)
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{server.config.port}"
    params = {"date": midnight.date().isoformat(), "tz": TZ}
    measure("one person's day (2 devices)", base, params, args.screenshot)
    if args.screenshot:
        print(f"wrote {args.screenshot}")
    if args.people > 1:
        t0 = time.monotonic()
        devices = copy_people(url, args.people)
        print(f"\ncopied the rows to {args.people - 1} more people in {time.monotonic() - t0:.0f} s")
        measure(f"one person's devices among {args.people} people", base, {**params, "device": devices})
        measure(f"all {args.people * len(devices)} devices of {args.people} people", base, params)
    server.should_exit = True
    stack.stop()


if __name__ == "__main__":
    main()
