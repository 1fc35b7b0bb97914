"""Bad input loses nothing, and every offset lands in exactly one window."""

import json
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from tests.integration.test_spine import DEVICE, flat, invoke, produce, table

pytestmark = pytest.mark.integration

TOPIC = "os.events.app_lifecycle.raw"


def test_bad_records_go_to_errors_with_the_original_kept_and_the_window_completes(loom_env):
    now = datetime.now(UTC) - timedelta(minutes=1)
    good = flat(now, app_identifier="com.spotify.music", event_type="foreground")
    bad = {
        "malformed_json": b'{"device_id": "' + DEVICE.encode() + b'", "recorded_at": ',
        "validation_error": flat(now, app_identifier="com.spotify.music", event_type="foreground",
                                 duration_seconds="a long time"),
        "unsupported_schema_version": json.loads(flat(now, app_identifier="x", event_type="launch")) | {"schema_version": "2.0"},
        "payload_too_large": flat(now, app_identifier="com.big", event_type="launch", metadata={"blob": "x" * (50 * 1024 * 1024)}),
    }
    bad["unsupported_schema_version"] = json.dumps(bad["unsupported_schema_version"]).encode()
    produce(loom_env["bootstrap"], [(TOPIC, good), *((TOPIC, v) for v in bad.values()), (TOPIC, good)])

    invoke("process", "--through-now", "--flow", "app_lifecycle")

    url = loom_env["database_url"]
    raw = table(url, "app_lifecycle_raw")
    errors = table(url, "processing_errors")
    assert len(raw) == 2
    assert sorted(errors["error_type"]) == sorted(bad)
    for error_type, original in bad.items():
        row = errors[errors["error_type"] == error_type].iloc[0]
        assert bytes(row["original_value"]) == original
        assert row["error_message"]
    # Rows + errors add up to the offsets read.
    with psycopg.connect(url) as conn:
        planned = conn.execute(
            "SELECT sum(end_offset - start_offset) FROM loom_offset_log WHERE flow = 'app_lifecycle'"
        ).fetchone()[0]
    assert planned == len(raw) + len(errors) == 6

    # The error topic holds the same originals, the error in its headers.
    consumer = Consumer({"bootstrap.servers": loom_env["bootstrap"], "group.id": "errors-check",
                         "auto.offset.reset": "earliest", "fetch.max.bytes": 67108864,
                         "max.partition.fetch.bytes": 67108864, "receive.message.max.bytes": 68157440})
    consumer.subscribe(["processing.errors.app_lifecycle"])
    seen = {}
    deadline = datetime.now(UTC) + timedelta(seconds=30)
    while len(seen) < len(bad) and datetime.now(UTC) < deadline:
        message = consumer.poll(1)
        if message is not None and not message.error():
            headers = dict(message.headers())
            seen[headers["loom.error.type"].decode()] = message.value()
    consumer.close()
    assert seen == bad


def test_every_offset_lands_in_exactly_one_window(loom_env):
    """Three windows planned in turn, each after 7 more messages: contiguous ranges, no gaps."""
    from loom_assets import definitions
    from loom_assets.sensors.kafka_windows import plan_closed_windows

    flow = definitions.flow_named("app_lifecycle")
    resources = definitions.resources()
    bootstrap = loom_env["bootstrap"]
    start = datetime.now(UTC)
    for batch in range(3):
        produce(bootstrap, [(TOPIC, flat(start, app_identifier=f"app.{batch}.{i}", event_type="launch")) for i in range(7)])
        plan_closed_windows(flow, resources["kafka"], resources["warehouse"], start + batch * flow.window, through_now=True)

    with psycopg.connect(loom_env["database_url"]) as conn:
        log = conn.execute(
            "SELECT topic, partition, window_start, start_offset, end_offset FROM loom_offset_log"
            " WHERE flow = 'app_lifecycle' ORDER BY topic, partition, window_start"
        ).fetchall()
        per_window = conn.execute(
            "SELECT window_start, sum(end_offset - start_offset) FROM loom_offset_log"
            " WHERE flow = 'app_lifecycle' GROUP BY window_start ORDER BY window_start"
        ).fetchall()
    assert [int(n) for _, n in per_window] == [7, 7, 7]
    by_partition: dict = {}
    for topic, partition, _, first, last in log:
        by_partition.setdefault((topic, partition), []).append((first, last))
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "marks"})
    for tp, ranges in by_partition.items():
        low, high = consumer.get_watermark_offsets(TopicPartition(*tp), timeout=10)
        assert ranges[0][0] == low
        for (_, end), (next_start, _) in zip(ranges, ranges[1:]):
            assert end == next_start, f"gap or overlap in {tp}: {ranges}"
        assert ranges[-1][1] == high
    consumer.close()


def test_a_message_with_an_old_timestamp_lands_in_the_window_being_planned(loom_env):
    old = datetime.now(UTC) - timedelta(days=3)
    producer = Producer({"bootstrap.servers": loom_env["bootstrap"]})
    # Recorded three days ago, sent now (a phone that was offline): its Kafka timestamp is now.
    producer.produce(TOPIC, value=flat(old, app_identifier="com.late", event_type="launch"), key=DEVICE.encode(),
                     timestamp=time.time_ns() // 1_000_000)
    producer.flush(10)
    invoke("process", "--through-now", "--flow", "app_lifecycle")
    raw = table(loom_env["database_url"], "app_lifecycle_raw")
    assert len(raw) == 1
    assert abs(raw["recorded_at"].iloc[0] - old) < timedelta(seconds=1)
    assert datetime.now(UTC) - raw["window_start"].iloc[0] < timedelta(minutes=10)


def test_catching_up_splits_closed_windows_by_the_brokers_timestamp_lookup(loom_env):
    """After a pause, one tick plans every closed window; offsets_for_times cuts them."""
    from loom_assets import definitions
    from loom_assets.sensors.kafka_windows import plan_closed_windows
    from loom_assets.windows import OffsetRange, window_of

    flow = definitions.flow_named("app_lifecycle")
    resources = definitions.resources()
    now = datetime.now(UTC)
    latest = window_of(now, flow.window) - flow.window  # the newest closed window
    earlier = latest - flow.window
    producer = Producer({"bootstrap.servers": loom_env["bootstrap"]})
    for at, count in ((earlier, 3), (latest, 2)):
        for i in range(count):
            producer.produce(TOPIC, value=flat(at, app_identifier=f"a{i}", event_type="launch"), partition=0,
                             timestamp=int((at + timedelta(seconds=10 + i)).timestamp() * 1000))
    assert producer.flush(10) == 0
    # The log says the window before `earlier` ended at offset 0 everywhere.
    partitions = resources["kafka"].partitions([TOPIC])
    resources["warehouse"].record_plans(flow.name, flow.window,
                                        [(earlier - flow.window, [OffsetRange(t, p, 0, 0) for t, p in partitions])])

    planned = plan_closed_windows(flow, resources["kafka"], resources["warehouse"], now)

    assert [w.start for w in planned] == [earlier, latest]
    assert [w.records for w in planned] == [3, 2]
    assert [r for r in planned[0].ranges if r.count] == [OffsetRange(TOPIC, 0, 0, 3)]
    assert [r for r in planned[1].ranges if r.count] == [OffsetRange(TOPIC, 0, 3, 5)]
