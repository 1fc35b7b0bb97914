"""The window sensor as the daemon runs it, and the demo producer through the whole platform."""

from datetime import UTC, datetime, timedelta

import pytest
from dagster import DagsterInstance, RunRequest, build_sensor_context

from tests.integration.test_spine import flat, invoke, produce, table

pytestmark = pytest.mark.integration


def test_the_sensor_plans_before_requesting_and_asks_again_only_if_the_window_has_not_landed(loom_env, monkeypatch):
    from loom_assets import definitions
    from loom_assets.sensors import kafka_windows

    flow = definitions.flow_named("app_lifecycle")
    sensor = next(s for s in definitions.defs.sensors if s.name == "windows")
    produce(loom_env["bootstrap"], [("os.events.app_lifecycle.raw", flat(datetime.now(UTC), app_identifier="a",
                                                                         event_type="launch"))])
    # Evaluate as if the window in progress had just closed.
    later = datetime.now(UTC) + flow.window
    monkeypatch.setattr(kafka_windows, "datetime", type("Clock", (), {"now": staticmethod(lambda tz=None: later)}))

    def evaluate():
        with build_sensor_context(instance=DagsterInstance.get(), definitions=definitions.defs,
                                  resources=definitions.resources()) as context:
            result = sensor.evaluate_tick(context)
            return [r for r in result.run_requests if r.job_name == flow.job.name], result.cursor

    requests, cursor = evaluate()
    assert len(requests) == 1 and isinstance(requests[0], RunRequest)
    assert requests[0].run_key.startswith(requests[0].partition_key + ":")  # window + plan hash
    assert len(cursor) < 32  # the offset log is the state, not the cursor
    with definitions.resources()["warehouse"].connect() as conn:
        planned = conn.execute(
            "SELECT sum(end_offset - start_offset) FROM loom_offset_log WHERE flow = 'app_lifecycle'"
        ).fetchone()[0]
    assert planned == 1
    # Planned through its last closed window, the flow needs the broker again only once the next
    # window has closed (plus grace): a tick in between costs it one indexed query.
    warehouse = definitions.resources()["warehouse"]
    assert kafka_windows.due_flows(warehouse, [flow], later) == []
    next_close = warehouse.last_planned_end(flow.name) + flow.window + kafka_windows.settings().window_grace
    assert kafka_windows.due_flows(warehouse, [flow], next_close - timedelta(seconds=1)) == []
    assert kafka_windows.due_flows(warehouse, [flow], next_close) == [flow]
    # Asked for once; again only if it has not landed by the retry delay, under a new run key.
    assert evaluate()[0] == []
    retry_at = later + kafka_windows.retry_delay(1)
    monkeypatch.setattr(kafka_windows, "datetime", type("Clock", (), {"now": staticmethod(lambda tz=None: retry_at)}))
    [again], _ = evaluate()
    assert again.partition_key == requests[0].partition_key and again.run_key != requests[0].run_key
    assert again.tags["loom/attempt"] == "2"


def test_a_flow_whose_planning_fails_holds_no_other_flow_back(loom_env, monkeypatch):
    from loom_assets import definitions
    from loom_assets.sensors import kafka_windows

    app_lifecycle = definitions.flow_named("app_lifecycle")
    sensor = next(s for s in definitions.defs.sensors if s.name == "windows")
    produce(loom_env["bootstrap"], [("os.events.app_lifecycle.raw", flat(datetime.now(UTC), app_identifier="a",
                                                                         event_type="launch"))])
    later = datetime.now(UTC) + app_lifecycle.window
    monkeypatch.setattr(kafka_windows, "datetime", type("Clock", (), {"now": staticmethod(lambda tz=None: later)}))
    plan = kafka_windows.plan_closed_windows

    def refused_for_power_state(flow, *args, **kwargs):
        if flow.name == "power_state":
            raise RuntimeError("power_state's plan was refused")
        return plan(flow, *args, **kwargs)

    monkeypatch.setattr(kafka_windows, "plan_closed_windows", refused_for_power_state)

    def evaluate():
        with build_sensor_context(instance=DagsterInstance.get(), definitions=definitions.defs,
                                  resources=definitions.resources()) as context:
            return sensor.evaluate_tick(context).run_requests

    assert [r.job_name for r in evaluate()] == ["app_lifecycle_job"]
    # Nothing else to ask for: the tick fails with the error, for all to see.
    with pytest.raises(Exception, match="power_state's plan was refused"):
        evaluate()


def test_demo_events_land_in_every_table_without_errors(loom_env):
    invoke("replay", "--demo", "--minutes", "20", "--devices", "2")
    invoke("process", "--through-now")
    url = loom_env["database_url"]
    assert len(table(url, "processing_errors", order="source_offset")) == 0
    for name in ("app_lifecycle_raw", "app_lifecycle_enriched", "power_state_raw", "power_state_enriched",
                 "power_state_patterns", "network_events_raw", "network_events_enriched",
                 "network_events_location_correlated", "location_raw"):
        assert len(table(url, name, order="1")) > 0, name


def test_an_unpaced_replay_is_stamped_now_or_with_event_time_when_asked(loom_env):
    """`loom replay --event-time` sends the last N minutes as they were lived (each message in the
    window of its own time); without it they are stamped at sending."""
    from confluent_kafka import Consumer, TopicPartition

    def timestamps(since: dict[int, int]) -> tuple[list[datetime], dict[int, int]]:
        """The GPS topic's message timestamps from `since` (partition -> offset) until it is quiet,
        and the offsets after them."""
        consumer = Consumer({"bootstrap.servers": loom_env["bootstrap"], "group.id": "replay-stamps",
                             "enable.auto.commit": False})
        stamps, after = [], dict(since)
        try:
            consumer.assign([TopicPartition("device.sensor.gps.raw", p, since.get(p, 0)) for p in range(3)])
            while batch := consumer.consume(500, timeout=5):
                for message in batch:
                    stamps.append(datetime.fromtimestamp(message.timestamp()[1] / 1000, UTC))
                    after[message.partition()] = message.offset() + 1
        finally:
            consumer.close()
        return stamps, after

    before = datetime.now(UTC)
    invoke("replay", "--demo", "--minutes", "30", "--devices", "1", "--event-time")
    lived, highs = timestamps({})
    assert len(lived) >= 50  # a fix every 30 s
    assert max(lived) - min(lived) >= timedelta(minutes=29) and min(lived) >= before - timedelta(minutes=31)
    invoke("replay", "--demo", "--minutes", "30", "--devices", "1")
    sent, _ = timestamps(highs)
    assert len(sent) == len(lived) and max(sent) - min(sent) < timedelta(minutes=1)
