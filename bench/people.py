"""People per machine: N devices' busiest demo hour through every flow, in event time.

Run from the repository root:

    .venv/bin/python bench/people.py [--devices 1,10,50,100,200] [--hour 8]

For each N, against fresh services (bench/landing.py's: a real Apache Kafka broker and an
embedded PostgreSQL in a temporary folder, stopped at the end):

1. Replays the hour from `--hour` (the demo person's local time, yesterday; 08:00 is the demo
   day's busiest: ~73,000 messages for a phone and a laptop, the morning walk's 50 Hz motion and
   the first screenshots) for N demo devices (phones and laptops in turn, every demo topic) with
   event timestamps, as `loom replay --demo --event-time` does, so each message lands in the
   window of its own time and the hour costs what real traffic costs.
2. Processes every flow as `loom dev`'s first start does (`process_backlog`: ranged runs, two
   worker processes) and prints, for the hour: event-seconds per wall-second overall (3600 / the
   wall time), per flow (3600 / the seconds its runs took) and per stage (3600 / its steps'
   seconds, from Dagster's step stats), and the run workers' peak memory (the largest RSS of
   any child process so far, as the kernel accounts it).

Target (docs/performance.md): ≥ 10× real time at 100 devices; the knee of the curve is where
the overall figure stops growing with N (fixed costs amortised) and starts to fall.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.landing import bench_services  # noqa: E402 - needs the repository root on sys.path

HOUR = 3600.0


def hour_start(local_hour: int) -> datetime:
    from loom_assets import demo

    day = (datetime.now(UTC) - timedelta(days=1)).astimezone(demo.LOCAL_TZ).date()
    return datetime(day.year, day.month, day.day, local_hour, tzinfo=demo.LOCAL_TZ)


def step_seconds(instance) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds per flow (its runs, start to end) and per stage (`flow/stage`: its steps)."""
    from dagster import DagsterRunStatus, RunsFilter

    flows: dict[str, float] = defaultdict(float)
    stages: dict[str, float] = defaultdict(float)
    for run in instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE])):
        flow = run.tags.get("loom/flow")
        if flow is None:
            continue
        record = instance.get_run_record_by_id(run.run_id)
        if record.start_time and record.end_time:
            flows[flow] += record.end_time - record.start_time
        for step in instance.get_run_step_stats(run.run_id):
            if step.start_time and step.end_time:
                stages[step.step_key.replace("__", "/")] += step.end_time - step.start_time
    return dict(flows), dict(stages)


def one(devices: int, local_hour: int) -> dict:
    with bench_services(f"loom-bench-people-{devices}-"):
        from confluent_kafka import Producer
        from dagster import DagsterInstance

        from loom_assets import definitions, demo
        from loom_assets.cli import topic_specs
        from loom_assets.dev import add_demo_regions
        from loom_assets.processing import process_backlog
        from loom_assets.resources.warehouse import apply_migrations
        from loom_assets.settings import settings

        url = settings().database_url
        apply_migrations(url)
        definitions.resources()["kafka"].create_topics(topic_specs())
        add_demo_regions(url)
        producer = Producer({"bootstrap.servers": settings().kafka_bootstrap_servers, "linger.ms": 50,
                             "queue.buffering.max.messages": 1_000_000})
        t0 = time.monotonic()
        sent = demo.replay(producer, demo.demo_messages(hour_start(local_hour), 60, devices=devices),
                           speed=None, event_timestamps=True, progress=False)
        produced = time.monotonic() - t0
        instance = DagsterInstance.get()
        t0 = time.monotonic()
        ok = process_backlog(instance, definitions.FLOWS, datetime.now(UTC), echo=lambda line: None)
        wall = time.monotonic() - t0
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        flows, stages = step_seconds(instance)
    return {"devices": devices, "messages": sent, "produced_s": produced, "wall_s": wall, "ok": ok,
            "flows": flows, "stages": stages, "peak_mib": peak_mib}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", default="1,10,50,100,200", help="comma-separated N")
    parser.add_argument("--hour", type=int, default=8, help="the hour's local start (the demo person's)")
    args = parser.parse_args()
    results = []
    for devices in (int(n) for n in args.devices.split(",")):
        result = one(devices, args.hour)
        results.append(result)
        print(f"\nN = {devices} devices: {result['messages']:,} messages (produced in {result['produced_s']:.0f} s), "
              f"processed in {result['wall_s']:.0f} s → {HOUR / result['wall_s']:.1f}× real time"
              f"{'' if result['ok'] else ' (SOME RUNS FAILED)'}; run workers' peak RSS {result['peak_mib']:.0f} MiB",
              flush=True)
        for flow, seconds in sorted(result["flows"].items(), key=lambda item: -item[1]):
            print(f"  {flow:16s} {HOUR / seconds:8.1f}× ({seconds:6.1f} s of runs)")
            for stage, spent in sorted(result["stages"].items()):
                if stage.startswith(f"{flow}/"):
                    print(f"    {stage:38s} {HOUR / spent:8.1f}× ({spent:6.1f} s)")
    print("\nN      messages   × real time")
    for result in results:
        print(f"{result['devices']:<6d} {result['messages']:>9,d}   {HOUR / result['wall_s']:8.1f}")


if __name__ == "__main__":
    main()
