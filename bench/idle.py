"""What `loom dev` costs when nothing happens: CPU of its whole process tree, per process.

Run from the repository root:

    .venv/bin/python bench/idle.py [--minutes 5] [--settle 240] [--demo] [--checkout DIR]

Starts `loom dev` (by default `--no-demo`: no new data) on a fresh LOOM_HOME in a temporary
folder, waits until Dagster answers and then `--settle` seconds more (the first sensor ticks,
the code server's start), then reads the CPU time of every process in the tree each second
for `--minutes`: PostgreSQL, Kafka, Dagster's webserver, daemon and code server, run workers,
`loom dev` itself. Prints the share of one core of the whole tree and of each kind of process
(a process that starts and ends between two reads is missed: run workers live seconds, so at
most their last second is). With `--demo` the demo producer runs too, live (the home is
marked as one the demo ran in before, so there is no catch-up of a whole day first).

Target (docs/performance.md): the whole tree at most 5 % of one core with no new data.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]

# A process's kind, from the start of its command line (the rest holds paths and JSON).
PYTHON_KINDS = (
    ("dagster api grpc", "code server"),
    ("dagster code-server", "code server"),
    ("dagster._daemon", "daemon"),
    ("dagster_webserver", "webserver"),
    ("dagster dev", "dagster dev"),
    ("execute_run", "run worker"),
    ("loom_assets.cli", "loom dev"),
)


def kind_of(process: psutil.Process) -> str:
    try:
        args = process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "other"
    if not args:
        return "other"
    program = Path(args[0]).name
    if program == "java":
        return "kafka"
    if program.startswith("postgres"):
        return "postgres"
    start = " ".join(args[1:5])
    return next((kind for marker, kind in PYTHON_KINDS if marker in start), "other")


def tree(root: psutil.Process, home: str) -> list[psutil.Process]:
    """`loom dev`'s processes, and those of its home that left its tree (PostgreSQL detaches)."""
    try:
        processes = {p.pid: p for p in [root, *root.children(recursive=True)]}
    except psutil.NoSuchProcess:
        return []
    for process in psutil.process_iter(["cmdline"]):
        if process.pid not in processes and home in " ".join(process.info["cmdline"] or []):
            processes[process.pid] = process
            processes.update((child.pid, child) for child in process.children(recursive=True))
    return list(processes.values())


def cpu_seconds(process: psutil.Process) -> float | None:
    try:
        times = process.cpu_times()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return times.user + times.system


def wait_for_dagster(port: int, loom: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if loom.poll() is not None:
            raise SystemExit(f"`loom dev` exited with {loom.returncode} before Dagster answered")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                return
        except OSError:
            time.sleep(2)
    raise SystemExit(f"Dagster did not answer on port {port} within {timeout:.0f} s")


def measure(root: psutil.Process, home: str, seconds: float) -> dict[str, float]:
    """CPU seconds per kind of process over `seconds`, from each process's first to last read."""
    first: dict[int, float] = {}
    last: dict[int, float] = {}
    kinds: dict[int, str] = {}
    end = time.monotonic() + seconds
    initial = True
    while True:
        for process in tree(root, home):
            used = cpu_seconds(process)
            if used is None:
                continue
            if process.pid not in first:
                # A process already running counts from now; one started since, from zero.
                first[process.pid] = used if initial else 0.0
                kinds[process.pid] = kind_of(process)
            last[process.pid] = used
        initial = False
        if time.monotonic() >= end:
            break
        time.sleep(1)
    spent: dict[str, float] = defaultdict(float)
    for pid, used in last.items():
        spent[kinds[pid]] += used - first[pid]
    return dict(spent)


@contextmanager
def loom_dev(home: str, port: int, demo: bool, checkout: Path = ROOT, ready_timeout: float = 300):
    """`loom dev` of `checkout` on the fresh `home` (ports `port` and `port + 1`) until the block
    ends; yields its process once Dagster answers. Stopped as Ctrl-C would stop it."""
    env = {**os.environ, "LOOM_HOME": home, "PYTHONPATH": str(checkout)}
    for name in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "DAGSTER_HOME"):
        env.pop(name, None)
    command = [sys.executable, "-m", "loom_assets.cli", "dev", "--port", str(port), "--day-port", str(port + 1)]
    if demo:
        # Live from now: a home the demo ran in before skips the catch-up of a whole day.
        from loom_assets.demo.session import DemoStart, mark_started

        mark_started(Path(home), DemoStart(None, datetime.now(UTC)))
    else:
        command.append("--no-demo")
    with open(Path(home) / "loom-dev.log", "w") as log:
        loom = subprocess.Popen(command, cwd=checkout, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            wait_for_dagster(port, loom, timeout=ready_timeout)
            yield loom
        finally:
            os.killpg(loom.pid, signal.SIGTERM)
            try:
                loom.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(loom.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--settle", type=float, default=240,
                        help="seconds after Dagster answers (Kafka's JIT warm-up takes minutes)")
    parser.add_argument("--demo", action="store_true", help="run the demo producer too")
    parser.add_argument("--port", type=int, default=3300)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--checkout", type=Path, default=ROOT,
                        help="run the `loom_assets` of this checkout (to compare with an earlier commit)")
    args = parser.parse_args()

    seconds = args.minutes * 60
    with tempfile.TemporaryDirectory(prefix="loom-idle-") as home:
        with loom_dev(home, args.port, args.demo, args.checkout.resolve(),
                      ready_timeout=300) as loom:
            print(f"Dagster is up; settling {args.settle:.0f} s", flush=True)
            time.sleep(args.settle)
            spent = measure(psutil.Process(loom.pid), home, seconds)
    total = sum(spent.values())
    share = {kind: 100 * used / seconds for kind, used in spent.items()}
    print(f"`loom dev`{' with the demo' if args.demo else ', no new data'}, {args.minutes:g} min: "
          f"{100 * total / seconds:.1f} % of one core (target ≤ {15 if args.demo else 5} %)")
    for kind, percent in sorted(share.items(), key=lambda item: -item[1]):
        print(f"  {kind:12s} {percent:5.1f} %")
    if args.json:
        args.json.write_text(json.dumps({"total_percent": 100 * total / seconds, "percent": share,
                                         "minutes": args.minutes, "demo": args.demo}, indent=2))


if __name__ == "__main__":
    main()
