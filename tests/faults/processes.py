"""Loom processes a fault scenario can kill, and ways to see where they are in PostgreSQL."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Every process started here, so a test that fails midway leaves none running (conftest).
started: list[subprocess.Popen] = []


def loom(*args: str, log: Path) -> subprocess.Popen:
    """`loom ARGS` in a process group of its own (so a kill takes its children too), with the
    test's environment (DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS, DAGSTER_HOME)."""
    return python("from loom_assets.cli import main; main()", *args, log=log)


def python(code: str, *args: str, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        process = subprocess.Popen([sys.executable, "-c", code, *args], cwd=PROJECT_ROOT, stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    started.append(process)
    return process


def kill(process: subprocess.Popen) -> None:
    """SIGKILL the process and its group: no handler, no cleanup, as in a power cut."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


def finished(process: subprocess.Popen, log: Path, timeout: float) -> int:
    """The exit status, once it has exited (failing the test with the log's tail if it hangs)."""
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill(process)
        raise AssertionError(f"still running after {timeout} s:\n{log.read_text()[-3000:]}") from None


def backends(url: str, like: str) -> list[int]:
    """Pids of the server processes running a statement that matches `like` in `url`'s database."""
    with psycopg.connect(url, autocommit=True) as conn:
        return [pid for (pid,) in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE %s"
            " AND state <> 'idle' AND pid <> pg_backend_pid()", (like,))]


def wait_for(condition, timeout: float, what: str, interval: float = 0.02,
             process: subprocess.Popen | list[subprocess.Popen] | None = None,
             log: Path | list[Path] | None = None):
    """Poll `condition` until it is truthy; fail saying `what` did not happen (and why, when a
    process it waits on has exited: with that process's log)."""
    watched = process if isinstance(process, list) else [process] if process is not None else []
    logs = log if isinstance(log, list) else [log] * len(watched)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        for proc, proc_log in zip(watched, logs):
            if proc.poll() is not None:
                tail = proc_log.read_text()[-3000:] if proc_log else ""
                raise AssertionError(f"{what}: a process exited ({proc.returncode}) first\n{tail}")
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout} s")


def waiting_on_locks(url: str) -> int:
    """Sessions of `url`'s database waiting for a lock (a table's or an advisory one)."""
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE NOT l.granted AND a.datname = current_database()"
        ).fetchone()[0]
