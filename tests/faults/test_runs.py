"""Faults of the runs themselves: a run killed mid-write, the same window written by two runs at
once, and `loom process` planning beside the sensor's planner."""

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from dagster import DagsterInstance

from tests.conftest import prepare_loom_env
from tests.faults.harness import app_events, assert_invariants, produce_fast, tally
from tests.faults.processes import backends, finished, kill, loom, python, wait_for, waiting_on_locks
from tests.integration.test_spine import invoke

pytestmark = pytest.mark.integration

FLOW = "app_lifecycle"
TOPIC = "os.events.app_lifecycle.raw"
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
                            tally(url, FLOW, produced), "`loom process` again, which re-requests the window")
    assert (counted.records, counted.lost, counted.duplicated) == (LARGE_WINDOW, 0, 0)
    assert_invariants(url, [FLOW])


RUN_WINDOW = """
import sys
from dagster import DagsterInstance
from loom_assets import definitions
flow = definitions.flow_named(sys.argv[1])
job = definitions.defs.resolve_job_def(flow.job.name)
result = job.execute_in_process(partition_key=sys.argv[2], instance=DagsterInstance.get(), raise_on_error=False)
sys.exit(0 if result.success else 1)
"""


def test_the_same_window_run_twice_at_once_lands_once(env, tmp_path, fault_outcome):
    from loom_assets import definitions
    from loom_assets.sensors.kafka_windows import plan_closed_windows
    from loom_assets.windows import partition_key

    bad = [(TOPIC, None, b"{not json %d" % i) for i in range(20)]
    produced = produce_fast(env["bootstrap"], [*app_events(5_000, datetime.now(UTC)), *bad])
    resources = definitions.resources()
    (window,) = [w for w in plan_closed_windows(definitions.flow_named(FLOW), resources["kafka"],
                                                resources["warehouse"], datetime.now(UTC), through_now=True)
                 if w.records]
    url = env["database_url"]
    with psycopg.connect(url) as conn:
        # As for every window but the day's first, the day's partitions exist already (creating
        # one would order the two writes by chance).
        today = datetime.now(UTC).date()
        conn.execute("SELECT loom_ensure_day_partition(table_name, day) FROM loom_timeseries,"
                     " unnest(%s::date[]) AS day WHERE storage = 'native' AND table_name = ANY(%s)",
                     ([today - timedelta(days=1), today, today + timedelta(days=1)],
                      [f"{FLOW}_raw", "processing_errors"]))

    # The raw table is held until both runs wait on it, so their writes overlap for certain
    # rather than by luck of timing; then they race.
    logs = [tmp_path / f"run-{i}.log" for i in range(2)]
    DagsterInstance.get().get_runs(limit=1)  # its storage made once, not by both runs at once
    with psycopg.connect(url) as holder:
        holder.execute(f"LOCK TABLE {FLOW}_raw IN ACCESS EXCLUSIVE MODE")
        runs = [python(RUN_WINDOW, FLOW, partition_key(window.start), log=log) for log in logs]
        wait_for(lambda: waiting_on_locks(url) >= 2, timeout=120, what="both runs at the window's write",
                 interval=0.1, process=runs, log=logs)
        holder.rollback()
    statuses = [finished(run, log, timeout=180) for run, log in zip(runs, logs)]

    counted = fault_outcome("The same window run by two processes at once", tally(url, FLOW, produced),
                            "one writer per window")
    assert (counted.records, counted.lost, counted.duplicated) == (5_020, 0, 0)
    assert_invariants(url, [FLOW])
    # One run may fail on the other's rows (a unique key) as long as nothing is lost or doubled;
    # a re-run of the window must then succeed.
    if any(statuses):
        invoke("process", "--through-now", "--flow", FLOW)
        assert_invariants(url, [FLOW])


def test_loom_process_beside_a_running_planner_plans_every_offset_once(env, monkeypatch, fault_outcome):
    """The sensor's planner has read the log and the watermarks when its timestamp lookup stalls
    (a slow broker); `loom process` plans meanwhile from the log as it was, and writes its plan
    after the planner's. Records produced in between must land, once."""
    import threading

    from loom_assets import definitions
    from loom_assets.resources.kafka import KafkaResource
    from loom_assets.sensors.kafka_windows import plan_closed_windows
    from loom_assets.windows import window_of

    flow = definitions.flow_named(FLOW)
    resources = definitions.resources()
    # Records of the last closed window, so the sensor's planner has a window to plan.
    stamp = int((window_of(datetime.now(UTC), flow.window) - flow.window / 2).timestamp() * 1000)
    produced = produce_fast(env["bootstrap"], app_events(1_000, datetime.now(UTC) - flow.window), timestamp_ms=stamp)
    url = env["database_url"]

    # Each planner's timestamp lookup (between reading the log and writing its plan) waits for
    # its turn: the sensor's first, then `loom process`'s.
    lookup = KafkaResource.offsets_at
    turns = {"sensor": threading.Event(), "process": threading.Event()}
    arrived = {"sensor": threading.Event(), "process": threading.Event()}

    def stalled_lookup(self, tps, instants):
        who = "sensor" if threading.current_thread().name == "sensor" else "process"
        arrived[who].set()
        assert turns[who].wait(120), f"{who} never had its turn"
        return lookup(self, tps, instants)

    monkeypatch.setattr(KafkaResource, "offsets_at", stalled_lookup)
    outcomes: dict[str, object] = {}

    def sensor_tick():
        try:
            outcomes["sensor"] = plan_closed_windows(flow, resources["kafka"], resources["warehouse"],
                                                     datetime.now(UTC))
        except BaseException as error:  # reported by the test, not lost in the thread
            outcomes["sensor"] = error

    def process():
        try:
            outcomes["process"] = invoke("process", "--through-now", "--flow", FLOW)
        except BaseException as error:
            outcomes["process"] = error

    sensor = threading.Thread(target=sensor_tick, name="sensor")
    runner = threading.Thread(target=process, name="process")
    sensor.start()
    try:
        wait_for(arrived["sensor"].is_set, timeout=60, what="the sensor's lookup", interval=0.05)
        later = produce_fast(env["bootstrap"], app_events(500, datetime.now(UTC) - flow.window), timestamp_ms=stamp)
        runner.start()
        # Where planning is serialized, `loom process` waits for the planner instead (a lock).
        wait_for(lambda: arrived["process"].is_set() or waiting_on_locks(url) or "process" in outcomes,
                 timeout=60, what="`loom process` planning", interval=0.05)
        turns["sensor"].set()
        sensor.join(timeout=60)
    finally:
        for turn in turns.values():
            turn.set()
    runner.join(timeout=180)
    assert not isinstance(outcomes.get("sensor"), BaseException), outcomes["sensor"]
    assert isinstance(outcomes.get("process"), str), outcomes.get("process")

    for tp, offsets in later.items():
        produced[tp] = sorted([*produced.get(tp, []), *offsets])
    counted = fault_outcome("`loom process` planning while the sensor's planner is between reading and "
                            "writing the log", tally(url, FLOW, produced), "one planner per flow")
    assert (counted.records, counted.lost, counted.duplicated) == (1_500, 0, 0)
    assert_invariants(url, [FLOW])
