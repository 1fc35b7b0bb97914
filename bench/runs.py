"""What a light run costs: the CPU of importing the definitions and of one app_lifecycle window
run in a process of its own, as the daemon's run worker is.

Run from the repository root:

    .venv/bin/python bench/runs.py [--repeat 5] [--compare DIR]

Starts a real Apache Kafka broker and an embedded PostgreSQL (bench/landing.py's services),
produces 10 app-lifecycle events and lands their window once with `loom process`. Then, each
`--repeat` times, in a fresh Python process, reads its CPU time (user + system, from the
kernel's accounting of the finished child):

- `python -c "import loom_assets.definitions"`;
- `dagster job execute -m loom_assets.definitions -j app_lifecycle_job --tags
  '{"dagster/partition": …}'`: the window run again (a re-run deletes and reloads its rows),
  loading the code and running the flow's own job in-process as a run worker does.

Prints the medians. `--compare DIR` measures another checkout's `loom_assets` (an earlier
commit) the same way, interleaved with this one. Targets (docs/performance.md): import ≤ 1 s,
the run ≤ 1.5 s of CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.landing import ROOT, bench_services, event_value  # noqa: E402 - needs the repository root on sys.path


def child_cpu(command: list[str], checkout: Path) -> float:
    """CPU seconds (user + system) of `command` run to completion with `checkout`'s code."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, cwd=checkout, env={**os.environ, "PYTHONPATH": str(checkout)}, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--compare", type=Path, help="another checkout to measure the same way")
    args = parser.parse_args()
    checkouts = {"this checkout": ROOT, **({f"{args.compare}": args.compare.resolve()} if args.compare else {})}
    python = sys.executable
    dagster = str(Path(python).with_name("dagster"))

    with bench_services("loom-bench-runs-"):
        import random

        from confluent_kafka import Producer

        from loom_assets.cli import topic_specs
        from loom_assets.definitions import resources
        from loom_assets.resources.warehouse import apply_migrations
        from loom_assets.windows import partition_key, window_of, window_size

        apply_migrations(os.environ["DATABASE_URL"])
        resources()["kafka"].create_topics(topic_specs())
        now = datetime.now(UTC)
        producer = Producer({"bootstrap.servers": os.environ["KAFKA_BOOTSTRAP_SERVERS"]})
        rng = random.Random(7)
        for i in range(10):
            device = f"bench-device-{i % 2}"
            producer.produce("os.events.app_lifecycle.raw", key=device.encode(), value=event_value(rng, device, now))
        producer.flush(30)
        subprocess.run([python, "-m", "loom_assets.cli", "process", "--flow", "app_lifecycle", "--through-now"],
                       cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        key = partition_key(window_of(now, window_size("app_lifecycle")))
        commands = {
            "import the definitions": [python, "-c", "import loom_assets.definitions"],
            "one-window run": [dagster, "job", "execute", "-m", "loom_assets.definitions", "-j", "app_lifecycle_job",
                               "--tags", json.dumps({"dagster/partition": key})],
        }
        spent: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.repeat):  # interleaved, so that a busy moment weighs on all alike
            for what, command in commands.items():
                for name, checkout in checkouts.items():
                    spent.setdefault((what, name), []).append(child_cpu(command, checkout))
    for (what, name), seconds in spent.items():
        print(f"{what:24s} {name:30s} median {statistics.median(seconds):.2f} s of CPU "
              f"(min {min(seconds):.2f}, max {max(seconds):.2f}, n={len(seconds)})")


if __name__ == "__main__":
    main()
