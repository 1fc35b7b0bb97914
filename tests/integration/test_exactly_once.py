"""The offset log knows what landed, refuses what does not follow on, and recovers loudly:
failed windows are asked for again, and offsets Kafka's retention took are lost records or gaps,
said aloud, never silent. (tests/faults puts these and other faults through the whole stack.)"""

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from loom_assets.windows import OffsetRange, partition_key, window_of
from tests.integration.test_spine import flat, invoke, produce, table

pytestmark = pytest.mark.integration

TOPIC = "os.events.app_lifecycle.raw"


def _loom():
    from loom_assets import definitions

    resources = definitions.resources()
    return definitions.flow_named("app_lifecycle"), resources["kafka"], resources["warehouse"]


def _events(n: int, at: datetime | None = None, prefix: str = "app") -> list[tuple[str, bytes]]:
    at = at or datetime.now(UTC) - timedelta(minutes=1)
    return [(TOPIC, flat(at, app_identifier=f"{prefix}.{i}", event_type="launch")) for i in range(n)]


def _partition() -> int:
    """The partition the test device's key hashes to (the one test messages went to)."""
    kafka = _loom()[1]
    [partition] = [p for (_, p), (_, high) in kafka.watermarks(kafka.partitions([TOPIC])).items() if high]
    return partition


def _run(flow, key: str):
    from dagster import DagsterInstance

    from loom_assets import definitions

    job = definitions.defs.resolve_job_def(flow.job.name).get_subset(asset_selection={flow.key("raw")})
    return job.execute_in_process(partition_key=key, instance=DagsterInstance.get(), raise_on_error=False)


def _landed_and_errors(url: str, flow: str = "app_lifecycle") -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(f"SELECT count(*) FROM {flow}_raw").fetchone()[0] + conn.execute(
            "SELECT count(*) FROM processing_errors WHERE flow = %s", (flow,)).fetchone()[0]


def test_the_offset_log_refuses_a_range_that_does_not_follow_on(loom_env):
    _, _, warehouse = _loom()
    size, first = timedelta(minutes=5), datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
    warehouse.record_plans("app_lifecycle", size, [(first, [OffsetRange(TOPIC, 0, 0, 5)])])
    for start, range_ in [(first + size, OffsetRange(TOPIC, 0, 7, 9)),   # a hole
                          (first + size, OffsetRange(TOPIC, 0, 4, 9)),   # an overlap
                          (first - size, OffsetRange(TOPIC, 0, 5, 9))]:  # before the last window
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation):
            warehouse.record_plans("app_lifecycle", size, [(start, [range_])])
    # Where a gap row says why (retention deleted 5..6), the next range may start later.
    with psycopg.connect(loom_env["database_url"]) as conn:
        conn.execute("INSERT INTO loom_offset_gaps (flow, topic, partition, from_offset, to_offset, window_start, reason)"
                     " VALUES ('app_lifecycle', %s, 0, 5, 7, %s, 'expired')", (TOPIC, first + size))
    warehouse.record_plans("app_lifecycle", size, [(first + size, [OffsetRange(TOPIC, 0, 7, 9)])])
    assert warehouse.last_planned("app_lifecycle") == (first + size, {(TOPIC, 0): 9})


def test_a_raw_table_holds_each_kafka_position_once(loom_env):
    produce(loom_env["bootstrap"], _events(2))
    invoke("process", "--through-now", "--flow", "app_lifecycle")
    with psycopg.connect(loom_env["database_url"]) as conn, pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("INSERT INTO app_lifecycle_raw SELECT * FROM app_lifecycle_raw LIMIT 1")
    # A raw table made by a later migration has the key too.
    with psycopg.connect(loom_env["database_url"]) as conn:
        conn.execute("SELECT loom_create_raw_table('later_flow_raw', 'reading double precision')")
        assert conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'later_flow_raw_kafka_position'"
                            ).fetchone()[0].startswith("CREATE UNIQUE INDEX")


def test_a_window_that_fails_is_asked_for_again_with_a_backoff_and_shown_failing(loom_env):
    from loom_assets.processing import flow_status
    from loom_assets.sensors.kafka_windows import plan_closed_windows, run_requests

    flow, kafka, warehouse = _loom()
    produce(loom_env["bootstrap"], _events(3))
    now = datetime.now(UTC)
    [window] = [w for w in plan_closed_windows(flow, kafka, warehouse, now, through_now=True) if w.records]

    keys = []
    for attempt, at in enumerate([now, now + timedelta(minutes=1), now + timedelta(minutes=3),
                                  now + timedelta(minutes=7)], start=1):
        # Asked again too soon (or while its run is in flight): no request.
        if attempt > 1:
            assert run_requests(flow, kafka, warehouse, at - timedelta(seconds=1)) == []
        assert run_requests(flow, kafka, warehouse, at + timedelta(hours=2), in_flight=lambda: {partition_key(window.start)}) == []
        [request] = run_requests(flow, kafka, warehouse, at)
        assert request.partition_key == partition_key(window.start)
        assert request.tags["loom/attempt"] == str(attempt)
        assert request.tags.get("loom/failing") == ("true" if attempt > 3 else None)
        keys.append(request.run_key)
    assert len(set(keys)) == 4  # a new run key per attempt: the daemon runs each

    from dagster import DagsterInstance

    status = flow_status(DagsterInstance.get(), flow)
    assert (status["failing_windows"], status["unlanded_records"]) == (1, 3)
    assert status["lag"] == 3 + status["unplanned_records"]

    assert _run(flow, partition_key(window.start)).success
    # Landed, but its stage has not run (as when a run dies after landing): asked for, stages only.
    [stages] = run_requests(flow, kafka, warehouse, now + timedelta(days=1))
    assert (stages.partition_key, stages.asset_selection) == (partition_key(window.start), [flow.key("enriched")])
    from loom_assets import definitions

    assert definitions.defs.resolve_job_def(flow.job.name).execute_in_process(
        partition_key=stages.partition_key, asset_selection=stages.asset_selection, instance=DagsterInstance.get(),
        tags=stages.tags).success
    assert run_requests(flow, kafka, warehouse, now + timedelta(days=2)) == []
    status = flow_status(DagsterInstance.get(), flow)
    assert (status["failing_windows"], status["unlanded_records"], status["lag"]) == (0, 0, 0)


def test_a_second_loom_process_lands_the_window_the_first_failed(loom_env, monkeypatch):
    from loom_assets.resources import io_manager as warehouse_module

    produce(loom_env["bootstrap"], _events(4))
    original = warehouse_module.mark_landed

    def fails_after_the_copy(*args):
        raise Failure("the write failed after its COPY", allow_retries=False)

    monkeypatch.setattr(warehouse_module, "mark_landed", fails_after_the_copy)
    from click.testing import CliRunner
    from dagster import Failure

    from loom_assets.cli import main

    assert CliRunner().invoke(main, ["process", "--through-now", "--flow", "app_lifecycle"]).exit_code == 1
    assert _landed_and_errors(loom_env["database_url"]) == 0  # the write rolled back whole
    monkeypatch.setattr(warehouse_module, "mark_landed", original)
    invoke("process", "--flow", "app_lifecycle")
    assert _landed_and_errors(loom_env["database_url"]) == 4


def test_the_consumer_group_commits_only_the_landed_prefix(loom_env):
    from loom_assets.sensors.kafka_windows import plan_closed_windows

    flow, kafka, warehouse = _loom()
    start = window_of(datetime.now(UTC), flow.window) - 3 * flow.window  # windows of the past: runnable
    windows = []
    for batch in range(2):
        produce(loom_env["bootstrap"], _events(3, prefix=f"b{batch}"))
        windows += [w for w in plan_closed_windows(flow, kafka, warehouse, start + batch * flow.window, through_now=True)
                    if w.records]
    partition = _partition()
    first, second = windows

    def committed():
        return kafka.committed(flow.consumer_group, [(TOPIC, partition)])[(TOPIC, partition)]

    from loom_assets import definitions
    from dagster import DagsterInstance

    job = definitions.defs.resolve_job_def(flow.job.name).get_subset(asset_selection={flow.key("raw")})
    assert job.execute_in_process(partition_key=partition_key(second.start), instance=DagsterInstance.get()).success
    assert committed() is None  # the first window has not landed: committing 7 would skip it
    assert job.execute_in_process(partition_key=partition_key(first.start), instance=DagsterInstance.get()).success
    assert committed() == second.ranges[[r.partition for r in second.ranges].index(partition)].end


def test_a_run_reaching_past_the_planned_windows_fails_at_once_and_deletes_nothing(loom_env):
    from dagster import DagsterEventType

    from loom_assets.sensors.kafka_windows import plan_closed_windows

    flow, kafka, warehouse = _loom()
    produce(loom_env["bootstrap"], _events(2))
    current = window_of(datetime.now(UTC), flow.window)
    # Planned up to two windows ago; the window in progress is not planned yet.
    [planned] = plan_closed_windows(flow, kafka, warehouse, current - 2 * flow.window, through_now=True)
    assert _run(flow, partition_key(planned.start)).success
    before = table(loom_env["database_url"], "app_lifecycle_raw")
    assert len(before) == 2

    result = _run(flow, partition_key(current))
    assert not result.success
    failures = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    assert len(failures) == 1 and "not planned yet" in failures[0].step_failure_data.error.message
    assert not [e for e in result.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    assert table(loom_env["database_url"], "app_lifecycle_raw").equals(before)


def _delete_records(bootstrap: str, partition: int, before: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_records([TopicPartition(TOPIC, partition, before)]).values():
        future.result(timeout=30)


def test_records_kafka_dropped_before_they_landed_are_reported_lost_and_planning_records_the_gap(loom_env):
    from dagster import DagsterInstance

    from loom_assets.processing import flow_status
    from loom_assets.sensors.kafka_windows import plan_closed_windows, run_requests

    flow, kafka, warehouse = _loom()
    produce(loom_env["bootstrap"], _events(5))
    partition = _partition()
    now = window_of(datetime.now(UTC), flow.window) - 3 * flow.window  # windows of the past: runnable
    plan_closed_windows(flow, kafka, warehouse, now, through_now=True)
    _delete_records(loom_env["bootstrap"], partition, 5)  # planned, never landed, now gone
    messages = []
    assert run_requests(flow, kafka, warehouse, now, warn=messages.append) == []
    assert any("5 records LOST" in m for m in messages)

    produce(loom_env["bootstrap"], _events(4, prefix="later"))
    _delete_records(loom_env["bootstrap"], partition, 7)  # two never even planned
    later = now + flow.window
    planned = plan_closed_windows(flow, kafka, warehouse, later, through_now=True, warn=messages.append)
    assert any("retention deleted them first" in m for m in messages)
    assert sum(w.records for w in planned) == 2
    invoke("process", "--flow", "app_lifecycle")
    assert _landed_and_errors(loom_env["database_url"]) == 2

    status = flow_status(DagsterInstance.get(), flow)
    assert status["lost_records"] == 5
    assert [(g["offsets"], g["reason"]) for g in status["gaps"]] == [("[5, 7)", "expired")]
    assert status["lag"] == 0
    output = invoke("status")
    assert "5 record(s) LOST" in output and "gap" in output and "expired" in output


def test_after_a_window_size_change_planning_goes_on_on_the_new_grid(loom_env, monkeypatch):
    from loom_assets.sensors.kafka_windows import plan_closed_windows

    flow, kafka, warehouse = _loom()
    produce(loom_env["bootstrap"], _events(2))
    # A 5-minute window ending off the 15-minute grid.
    now = window_of(datetime.now(UTC), timedelta(minutes=15)) + timedelta(minutes=5)
    plan_closed_windows(flow, kafka, warehouse, now, through_now=True)
    produce(loom_env["bootstrap"], _events(3, prefix="later"))
    monkeypatch.setenv("LOOM_WINDOW_APP_LIFECYCLE_MINUTES", "15")
    messages = []
    planned = plan_closed_windows(flow, kafka, warehouse, now + timedelta(minutes=15), through_now=True,
                                  warn=messages.append)
    assert any("the window size is now" in m for m in messages)
    assert planned and all(w.start.minute % 15 == 0 for w in planned)
    assert sum(w.records for w in planned) == 3
