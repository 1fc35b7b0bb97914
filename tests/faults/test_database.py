"""PostgreSQL stopped while a window is being written, then started again. The test's own
server is the one stopped."""

from datetime import UTC, datetime

import psycopg
import pytest
from dagster import DagsterEventType, DagsterInstance

from tests.conftest import prepare_loom_env
from tests.faults.harness import app_events, assert_invariants, produce_fast, tally
from tests.faults.processes import backends, finished, loom, wait_for

pytestmark = pytest.mark.integration

FLOW = "app_lifecycle"
RECORDS = 50_000


def test_postgresql_stopped_during_a_windows_copy_leaves_nothing_half_written(
        own_postgres, kafka_broker, tmp_path, monkeypatch, fault_outcome):
    env = prepare_loom_env(own_postgres, kafka_broker.bootstrap_servers, monkeypatch, tmp_path, flows=(FLOW,))
    url = env["database_url"]
    produced = produce_fast(env["bootstrap"], app_events(RECORDS, datetime.now(UTC)))

    log = tmp_path / "process.log"
    run = loom("process", "--through-now", "--flow", FLOW, log=log)
    wait_for(lambda: backends(url, f"COPY %{FLOW}_raw%"), timeout=180, what="the window's COPY", process=run,
             log=log)
    own_postgres.stop()  # a fast shutdown: sessions are ended, open transactions rolled back
    own_postgres.start()
    with psycopg.connect(url) as conn:
        # The run retries while the server is away: the window is all there or not at all.
        assert conn.execute(f"SELECT count(*) FROM {FLOW}_raw").fetchone()[0] in (0, RECORDS)
    assert finished(run, log, timeout=240) == 0, log.read_text()[-3000:]
    instance = DagsterInstance.get()
    assert any(instance.all_logs(r.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY) for r in instance.get_runs()), \
        "the outage never failed a write"

    counted = fault_outcome("PostgreSQL stopped during a window's COPY, started again", tally(url, FLOW, produced),
                            "the raw step's retry policy")
    assert (counted.records, counted.lost, counted.duplicated) == (RECORDS, 0, 0)
    assert_invariants(url, [FLOW])
