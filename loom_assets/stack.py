"""The running stack's address book: `loom dev` writes where its services are into
`LOOM_HOME/stack.json`, and `loom` commands in other terminals read it for what the environment
leaves unset (docs/architecture.md#the-stack-file).

The file holds the pid of `loom dev` (and that process's start time, so a reused pid does not
count), `DATABASE_URL`, `KAFKA_BOOTSTRAP_SERVERS` and the URLs of its web pages. It is written
atomically with mode 0600 (a `DATABASE_URL` may hold a password) and removed when `loom dev`
exits; a file whose process is gone is ignored.
"""

import json
import os
import tempfile
from collections.abc import Mapping, MutableMapping
from pathlib import Path

import psutil

STACK_FILE = "stack.json"
NO_DATABASE = ("no database: DATABASE_URL is not set and no `loom dev` is running for this LOOM_HOME; "
               "start `loom dev`, or point DATABASE_URL at PostgreSQL/TimescaleDB and run `loom migrate`")
# What the stack file gives a command, and the environment variable each one fills when unset.
ENVIRONMENT = {
    "DATABASE_URL": "DATABASE_URL",
    "KAFKA_BOOTSTRAP_SERVERS": "KAFKA_BOOTSTRAP_SERVERS",
    "dagster_url": "LOOM_DAGSTER_URL",
}


def stack_path(home: Path) -> Path:
    return home / STACK_FILE


def _started_at(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def write_stack(home: Path, services: Mapping[str, object]) -> Path:
    """Record `services` (name → address) as this process's stack, atomically and readable by
    its owner only. A later call replaces the whole file, so pass every service each time."""
    home.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    content = json.dumps({"pid": pid, "started_at": _started_at(pid), **services}, indent=2) + "\n"
    handle, temporary = tempfile.mkstemp(dir=home, prefix=".stack-", suffix=".json")  # mode 0600
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, stack_path(home))
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return stack_path(home)


def remove_stack(home: Path) -> None:
    """Remove the stack file if this process wrote it (another `loom dev` may own it now)."""
    path = stack_path(home)
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def _alive(stack: Mapping) -> bool:
    pid = stack.get("pid")
    if not isinstance(pid, int) or not psutil.pid_exists(pid):
        return False
    started, recorded = _started_at(pid), stack.get("started_at")
    # The same pid with another start time is another process that reused it.
    return started is None or recorded is None or abs(started - float(recorded)) < 1.0


def running_stack(home: Path) -> dict | None:
    """The stack of a live `loom dev` using `home`, or None (no file, unreadable, or its
    process is gone)."""
    try:
        stack = json.loads(stack_path(home).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stack if isinstance(stack, dict) and _alive(stack) else None


def apply_stack(home: Path, environ: MutableMapping[str, str] = os.environ) -> dict | None:
    """Fill the variables `environ` leaves unset (or empty) from the running stack: the
    environment always wins. Returns the stack used, if any."""
    stack = running_stack(home)
    if stack is None:
        return None
    for field, variable in ENVIRONMENT.items():
        if not environ.get(variable) and stack.get(field):
            environ[variable] = str(stack[field])
    return stack
