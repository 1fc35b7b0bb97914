"""`loom` in a second terminal finds the services of a running `loom dev` through its stack file,
and every expected failure is one line on stderr with a non-zero status, never a traceback
(docs/architecture.md#the-loom-command). Each command runs as its own process, as a user runs it."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.test_search import corpus_url  # noqa: F401 (a fixture: a database with hits)

pytestmark = pytest.mark.integration

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LOOM = [sys.executable, "-m", "loom_assets.cli"]
SERVICE_VARIABLES = ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "LOOM_DAGSTER_URL")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def loom(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*LOOM, *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def environment(home: Path, **variables: str) -> dict[str, str]:
    """The test's environment without the service variables (a fresh terminal), plus `variables`."""
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES}
    return {**env, "LOOM_HOME": str(home), **variables}


def assert_one_line_failure(result: subprocess.CompletedProcess, *expected: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert all(text in lines[0] for text in expected), lines[0]


@pytest.fixture
def fake_dev(tmp_path):
    """A process standing for `loom dev`: it writes the stack file as `loom dev` does and lives
    until stopped."""
    processes = []

    def start(home: Path, services: dict) -> subprocess.Popen:
        code = ("import json, pathlib, sys, time; from loom_assets.stack import write_stack;"
                "write_stack(pathlib.Path(sys.argv[1]), json.loads(sys.argv[2])); print('ready', flush=True);"
                "time.sleep(600)")
        process = subprocess.Popen([sys.executable, "-c", code, str(home), json.dumps(services)],
                                   cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
        processes.append(process)
        assert process.stdout.readline().strip() == "ready"
        return process

    yield start
    for process in processes:
        process.kill()
        process.wait()


def test_a_second_terminal_finds_the_running_stack(loom_env, fake_dev, corpus_url, tmp_path):  # noqa: F811
    home = tmp_path / "home"
    ui = "http://stack-ui.test:3999"
    dev = fake_dev(home, {"DATABASE_URL": loom_env["database_url"], "KAFKA_BOOTSTRAP_SERVERS": loom_env["bootstrap"],
                          "dagster_url": ui, "day_url": None})
    env = environment(home)

    status = loom("status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    assert "app_lifecycle" in {flow["flow"] for flow in json.loads(status.stdout)}
    added = loom("regions", "add", "Cafe", "--lat", "37.77", "--lon", "-122.42", env=env)
    assert added.returncode == 0, added.stderr
    assert [r["name"] for r in json.loads(loom("regions", "list", "--json", env=env).stdout)] == ["Cafe"]

    # The environment wins over the stack: search this database, with the stack's UI in the links.
    hits = loom("search", "XK7Q2P", "--json", env={**env, "DATABASE_URL": corpus_url}, timeout=300)
    assert hits.returncode == 0, hits.stderr
    assert json.loads(hits.stdout)[0]["url"].startswith(f"{ui}/assets/email/embeddings?partition=")
    mine = loom("search", "XK7Q2P", "--json", env={**env, "DATABASE_URL": corpus_url,
                                                   "LOOM_DAGSTER_URL": "http://mine.test"}, timeout=300)
    assert json.loads(mine.stdout)[0]["url"].startswith("http://mine.test/assets/")

    # A stack whose `loom dev` is gone is ignored: no database, said in one line.
    dev.kill()
    dev.wait()
    assert_one_line_failure(loom("status", env=env), "no database", "loom dev")


def test_no_database_configured_is_one_line(tmp_path):
    env = environment(tmp_path / "home")
    for args in (["status"], ["regions", "list"], ["search", "flight"], ["migrate"], ["process"],
                 ["reprocess", "--flow", "app_lifecycle", "--since", "2026-01-01"], ["erase", "--device", "d", "--yes"]):
        assert_one_line_failure(loom(*args, env=env), "no database", "DATABASE_URL")


def test_an_unreachable_database_is_one_line_without_its_password(loom_env, tmp_path):
    url = f"postgresql://loom:hunter2@127.0.0.1:{closed_port()}/loom"
    env = environment(tmp_path / "home", DATABASE_URL=url, KAFKA_BOOTSTRAP_SERVERS=loom_env["bootstrap"],
                      DAGSTER_HOME=str(loom_env["dagster_home"]))
    for args in (["status"], ["regions", "list"], ["search", "flight"], ["migrate"],
                 ["process", "--flow", "app_lifecycle"]):
        result = loom(*args, env=env)
        assert_one_line_failure(result, "PostgreSQL at", "Connection refused")
        assert "hunter2" not in result.stderr


def test_a_broker_that_is_down_fails_fast_in_one_line(loom_env, tmp_path):
    env = environment(tmp_path / "home", DATABASE_URL=loom_env["database_url"],
                      KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{closed_port()}", DAGSTER_HOME=str(loom_env["dagster_home"]))
    for args in (["status"], ["process"], ["topics", "create"], ["erase", "--device", "d", "--yes"],
                 ["replay", "--demo", "--minutes", "1"]):
        started = time.monotonic()
        assert_one_line_failure(loom(*args, env=env), "Kafka at 127.0.0.1:")
        # replay reaches the broker's timeout (LOOM_KAFKA_TIMEOUT_SECONDS, 5 s) plus start-up; the
        # others refuse before any broker call. A loaded machine adds seconds: the bound is loose.
        assert time.monotonic() - started < 20, args


@pytest.mark.parametrize(("args", "expected"), [
    (["process", "--flow", "nope"], "no flow 'nope'; flows: app_lifecycle"),
    (["reprocess", "--flow", "nope", "--since", "2026-01-01"], "no flow 'nope'"),
    (["reprocess", "--flow", "location", "--since", "2026-01-01", "--stage", "nope"], "location has no stage nope"),
    (["reprocess", "--flow", "location", "--since", "last week"], "--since 'last week'"),
    (["search", "flight", "--since", "last tuesday"], "--since 'last tuesday'"),
    (["search", "flight", "--flow", "fax"], "flow 'fax' has no embeddings table"),
    (["fetch", "fax"], "no fetcher 'fax'"),
    (["regions", "add", "Bad", "--lat", "95", "--lon", "0"], "is not a latitude/longitude"),
])
def test_unknown_names_and_bad_dates_are_one_line(loom_env, tmp_path, args, expected):
    env = environment(tmp_path / "home", DATABASE_URL=loom_env["database_url"],
                      KAFKA_BOOTSTRAP_SERVERS=loom_env["bootstrap"], DAGSTER_HOME=str(loom_env["dagster_home"]))
    assert_one_line_failure(loom(*args, env=env), expected)


def test_only_known_failures_are_shortened():
    """Anything else is a bug and keeps its traceback, to be fixed; a known failure wrapped by
    Dagster (`raise … from`) is still known."""
    import psycopg

    from loom_assets.cli_errors import expected_failure

    assert expected_failure(ZeroDivisionError("division by zero")) is None
    assert expected_failure(ValueError("not one of ours")) is None
    wrapped = RuntimeError("error while initializing resource warehouse")
    wrapped.__cause__ = psycopg.OperationalError("connection failed: Connection refused\n\tIs the server running?")
    assert "cannot be used: connection failed: Connection refused" in expected_failure(wrapped)
