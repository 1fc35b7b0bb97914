"""Faults of the runs themselves: a run killed mid-write, the same window written by two runs at
once, and `loom process` planning beside the sensor's planner."""

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from tests.conftest import prepare_loom_env
from tests.faults.harness import app_events, assert_invariants, produce_fast, tally
from tests.faults.processes import backends, finished, kill, loom, wait_for
from tests.integration.test_spine import invoke

pytestmark = pytest.mark.integration

FLOW = "app_lifecycle"
LARGE_WINDOW = 100_000


@pytest.fixture
def env(postgres, kafka_broker, tmp_path, monkeypatch):
    return prepare_loom_env(postgres, kafka_broker.bootstrap_servers, monkeypatch, tmp_path, flows=(FLOW,))


def test_a_run_killed_while_writing_a_large_window_lands_it_once_when_resumed(env, tmp_path, fault_outcome):
    produced = produce_fast(env["bootstrap"], app_events(LARGE_WINDOW, datetime.now(UTC)))
    url = env["database_url"]

    log = tmp_path / "killed.log"
    run = loom("process", "--through-now", "--flow", FLOW, log=log)
    copying = wait_for(lambda: backends(url, f"COPY %{FLOW}_raw%"), timeout=180,
                       what="the window's COPY", process=run, log=log)
    kill(run)
    # The server notices the dead client and rolls its transaction back: nothing half-written.
    wait_for(lambda: not set(copying) & set(backends(url, "%")), timeout=30, what="the COPY's rollback")
    with psycopg.connect(url) as conn:
        assert conn.execute(f"SELECT count(*) FROM {FLOW}_raw").fetchone()[0] == 0

    invoke("process", "--through-now", "--flow", FLOW)

    counted = fault_outcome(f"`loom process` SIGKILLed during the COPY of a {LARGE_WINDOW:,}-record window",
                            tally(url, FLOW, produced), "`loom process` again (the window is re-requested)")
    assert (counted.records, counted.lost, counted.duplicated) == (LARGE_WINDOW, 0, 0)
    assert_invariants(url, [FLOW])
