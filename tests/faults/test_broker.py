"""A broker that dies under a run: killed and restarted mid-read, and gone for longer than the
read waits. The module's own broker is the one killed (and the one its scenarios use)."""

import threading
import time
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from dagster import DagsterEventType, DagsterInstance

from loom_assets.cli import main
from tests.conftest import prepare_loom_env
from tests.faults.harness import app_events, assert_invariants, produce_fast, tally

pytestmark = pytest.mark.integration

FLOW = "app_lifecycle"
TOPIC = "os.events.app_lifecycle.raw"
RECORDS = 20_000
# The read gives up after this long without progress (30 s in production): shortened so the
# outage below outlasts it without a long test.
READ_IDLE_TIMEOUT_S = 3.0


@pytest.fixture
def env(own_broker, postgres, tmp_path, monkeypatch):
    monkeypatch.setenv("LOOM_KAFKA_TIMEOUT_SECONDS", "2")
    return prepare_loom_env(postgres, own_broker.bootstrap_servers, monkeypatch, tmp_path, flows=(FLOW,))


def kill_broker(broker, down_s: float) -> threading.Thread:
    """SIGKILL the broker now; start it again (same data, same port) `down_s` later, in the
    background. Returns the thread restarting it; its `outage_s` is how long clients had no
    broker (the JVM's start included)."""
    killed = time.monotonic()
    broker._proc.kill()
    broker._proc.wait(timeout=30)
    broker.stop()

    def restart():
        time.sleep(down_s)
        broker.start()
        restarter.outage_s = time.monotonic() - killed

    restarter = threading.Thread(target=restart, name="broker-restart")
    restarter.start()
    return restarter


def fault_in_the_read(monkeypatch, after_records: int, fault):
    """Call `fault()` once, after the first window read (not the planner's) has yielded
    `after_records` records; the read then goes on."""
    from loom_assets.resources.kafka import KafkaResource

    read = KafkaResource.read
    state: dict = {}

    def faulty_read(self, ranges, group_id, idle_timeout_s=30.0):
        records = read(self, ranges, group_id, idle_timeout_s=READ_IDLE_TIMEOUT_S)
        if group_id == "loom-metadata" or state:
            yield from records
            return
        state["injected"] = fault() if after_records == 0 else None
        for i, record in enumerate(records, start=1):
            yield record
            if i == after_records:
                state["injected"] = fault()

    monkeypatch.setattr(KafkaResource, "read", faulty_read)
    return state


def process_until_it_lands(attempts: int = 2) -> list[int]:
    """`loom process` as an operator would run it: again if it failed. Returns the exit codes."""
    codes = []
    for _ in range(attempts):
        result = CliRunner().invoke(main, ["process", "--through-now", "--flow", FLOW])
        codes.append(result.exit_code)
        if result.exit_code == 0:
            break
    return codes


def window_with_bad_records(bootstrap: str) -> dict:
    """RECORDS app events and a few undecodable ones (so the run also publishes error messages)."""
    bad = [(TOPIC, None, b"{broken %d" % i) for i in range(10)]
    return produce_fast(bootstrap, [*app_events(RECORDS - len(bad), datetime.now(UTC)), *bad])


def test_a_broker_killed_mid_read_and_restarted_loses_and_doubles_nothing(env, own_broker, monkeypatch,
                                                                          fault_outcome):
    produced = window_with_bad_records(env["bootstrap"])
    state = fault_in_the_read(monkeypatch, RECORDS // 3, lambda: kill_broker(own_broker, down_s=1))

    codes = process_until_it_lands()
    state["injected"].join(timeout=120)
    assert own_broker.running

    assert codes[-1] == 0
    counted = fault_outcome("Broker SIGKILLed a third of the way through a window's read, restarted",
                            tally(env["database_url"], FLOW, produced),
                            "the consumer and the error topic's producer reconnect")
    assert (counted.records, counted.lost, counted.duplicated) == (RECORDS, 0, 0)
    assert_invariants(env["database_url"], [FLOW])


def test_a_broker_down_longer_than_the_read_waits_fails_the_attempt_and_a_retry_lands_it(
        env, own_broker, monkeypatch, fault_outcome):
    produced = window_with_bad_records(env["bootstrap"])
    # Before the first record: the consumer has fetched nothing, so the read must wait on the broker.
    # Started again at once: the JVM's start alone outlasts the read's timeout.
    state = fault_in_the_read(monkeypatch, 0, lambda: kill_broker(own_broker, down_s=0))

    codes = process_until_it_lands()
    state["injected"].join(timeout=120)
    assert state["injected"].outage_s > READ_IDLE_TIMEOUT_S
    assert codes == [0]
    instance = DagsterInstance.get()
    retries = [e for run in instance.get_runs()
               for e in instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY)]
    assert retries, "the outage never failed a read"

    counted = fault_outcome("Broker down longer than a read waits, before a window's first record",
                            tally(env["database_url"], FLOW, produced), "the raw step's retry policy")
    assert (counted.records, counted.lost, counted.duplicated) == (RECORDS, 0, 0)
    assert_invariants(env["database_url"], [FLOW])
