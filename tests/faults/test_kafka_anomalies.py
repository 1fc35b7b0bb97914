"""Kafka's own anomalies: offsets deleted by retention (after their window landed, and before),
a topic deleted and recreated, and a record stamped a year ahead."""

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource
from dagster import DagsterEventType, DagsterInstance

from loom_assets.windows import partition_key, window_of
from tests.conftest import prepare_loom_env, recreate_topics
from tests.faults.harness import app_events, assert_invariants, produce_fast, tally
from tests.integration.test_spine import invoke

pytestmark = pytest.mark.integration

FLOW = "app_lifecycle"
TOPIC = "os.events.app_lifecycle.raw"


@pytest.fixture
def env(postgres, kafka_broker, tmp_path, monkeypatch):
    return prepare_loom_env(postgres, kafka_broker.bootstrap_servers, monkeypatch, tmp_path, flows=(FLOW,))


def _loom():
    from loom_assets import definitions

    resources = definitions.resources()
    return definitions.flow_named(FLOW), resources["kafka"], resources["warehouse"]


def _delete_records(bootstrap: str, before: dict[tuple[str, int], int]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.delete_records([TopicPartition(t, p, offset) for (t, p), offset in before.items()])
    for future in futures.values():
        future.result(timeout=30)


def _plan_two_windows_ago():
    """Plan what the topics hold into a window of the past (so its partition can run)."""
    from loom_assets.sensors.kafka_windows import plan_closed_windows

    flow, kafka, warehouse = _loom()
    past = window_of(datetime.now(UTC), flow.window) - 2 * flow.window
    [window] = plan_closed_windows(flow, kafka, warehouse, past, through_now=True)
    return window


def test_a_landed_window_whose_offsets_kafka_deleted_is_not_landed_again_from_less(env, fault_outcome):
    """Re-landing used to turn 300 rows into 150 and report success."""
    from loom_assets import definitions

    url = env["database_url"]
    produced = produce_fast(env["bootstrap"], app_events(300, datetime.now(UTC)))
    window = _plan_two_windows_ago()
    invoke("process", "--flow", FLOW)
    _delete_records(env["bootstrap"], {tp: offsets[len(offsets) // 2] for tp, offsets in produced.items()})

    flow = definitions.flow_named(FLOW)
    result = definitions.defs.resolve_job_def(flow.job.name).execute_in_process(
        partition_key=partition_key(window.start), instance=DagsterInstance.get(), raise_on_error=False)

    counted = fault_outcome("A landed window run again after Kafka deleted half its offsets (`delete_records`)",
                            tally(url, FLOW, produced),
                            "the re-run fails at once, without retries, saying why; the raw table keeps the window")
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    assert "no longer holds" in failure.step_failure_data.error.message
    assert not [e for e in result.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    assert (counted.records, counted.lost, counted.duplicated) == (300, 0, 0)
    assert_invariants(url, [FLOW])


def test_records_kafka_deleted_before_they_landed_are_reported_lost_and_the_rest_land(env, fault_outcome):
    from loom_assets.processing import flow_status

    url = env["database_url"]
    produced = produce_fast(env["bootstrap"], app_events(400, datetime.now(UTC)))
    _plan_two_windows_ago()
    # One partition's planned records go before its window runs; the other partitions' stay.
    (gone, offsets), *kept = sorted(produced.items())
    assert kept
    _delete_records(env["bootstrap"], {gone: offsets[-1] + 1})
    later = produce_fast(env["bootstrap"], app_events(100, datetime.now(UTC)))

    output = invoke("process", "--flow", FLOW, "--through-now")

    counted = fault_outcome(
        "Planned records deleted by Kafka's retention (`delete_records`) before their window ran",
        tally(url, FLOW, produced) + tally(url, FLOW, later),
        "marked lost in the offset log, said by `loom process`, `loom status` and the metrics; "
        "the window's other partitions land")
    assert f"{len(offsets)} records LOST" in output
    assert (counted.records, counted.lost, counted.duplicated) == (500, len(offsets), 0)
    status = flow_status(DagsterInstance.get(), _loom()[0])
    assert (status["lost_records"], status["lag"]) == (len(offsets), 0)
    assert_invariants(url, [FLOW])


def test_a_topic_deleted_and_recreated_is_a_gap_and_its_new_records_land(env, fault_outcome):
    from loom_assets.cli import topic_specs

    url = env["database_url"]
    before = produce_fast(env["bootstrap"], app_events(300, datetime.now(UTC)))
    _plan_two_windows_ago()
    invoke("process", "--flow", FLOW)
    recreate_topics(env["bootstrap"], {TOPIC: topic_specs()[TOPIC]})
    after = produce_fast(env["bootstrap"], app_events(200, datetime.now(UTC) + timedelta(seconds=1)))

    output = invoke("process", "--flow", FLOW, "--through-now")

    with psycopg.connect(url) as conn:
        gaps = conn.execute("SELECT partition, to_offset, reason, window_start FROM loom_offset_gaps").fetchall()
    reset = min(g[3] for g in gaps)
    # The new topic's offsets start again at 0: its records are told apart by their windows.
    counted = fault_outcome("A topic deleted and recreated between windows",
                            tally(url, FLOW, before, until=reset) + tally(url, FLOW, after, since=reset),
                            "a `topic_reset` gap in the offset log, said aloud; planning starts again at the new offsets")
    assert "topic was recreated" in output
    assert {(p, to, reason) for p, to, reason, _ in gaps} == {(p, 0, "topic_reset") for (_, p) in before}
    assert (counted.records, counted.lost, counted.duplicated) == (500, 0, 0)
    assert_invariants(url, [FLOW])


def test_a_record_stamped_a_year_ahead_does_not_stall_planning(env, fault_outcome):
    url, now = env["database_url"], datetime.now(UTC)
    year_ahead_ms = int((now + timedelta(days=365)).timestamp() * 1000)
    # Loom's topics refuse it outright: the producer hears INVALID_TIMESTAMP.
    with pytest.raises(AssertionError, match="INVALID_TIMESTAMP|timestamp"):
        produce_fast(env["bootstrap"], app_events(1, now), timestamp_ms=year_ahead_ms)
    # A topic made without that limit takes it; the windows after it must still be planned.
    admin = AdminClient({"bootstrap.servers": env["bootstrap"]})
    limitless = ConfigResource("topic", TOPIC, set_config={"message.timestamp.after.max.ms": str(2**63 - 1)})
    for future in admin.alter_configs([limitless]).values():
        future.result(timeout=30)
    stamp = lambda minutes_ago: int((now - timedelta(minutes=minutes_ago)).timestamp() * 1000)  # noqa: E731
    produced = {}
    for count, stamp_ms in [(100, stamp(40)), (1, year_ahead_ms), (100, stamp(30)), (100, stamp(20))]:
        for tp, offsets in produce_fast(env["bootstrap"], app_events(count, now), timestamp_ms=stamp_ms).items():
            produced.setdefault(tp, []).extend(offsets)

    output = invoke("process", "--flow", FLOW)
    later = produce_fast(env["bootstrap"], app_events(50, now))
    invoke("process", "--flow", FLOW, "--through-now")

    counted = fault_outcome("A record stamped a year ahead, on a topic that takes it",
                            tally(url, FLOW, produced) + tally(url, FLOW, later),
                            "the window that reaches it is planned to the high watermark, said aloud "
                            "(Loom's own topics refuse such records: `message.timestamp.after.max.ms`)")
    assert "stamped more than" in output
    assert (counted.records, counted.lost, counted.duplicated) == (351, 0, 0)
    assert_invariants(url, [FLOW])
