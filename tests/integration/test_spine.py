"""The spine end to end: Loom-v2 messages on a real broker → `loom process` → rows in every
table of the light flows, traceable to topic/partition/offset, and idempotent re-runs."""

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pandas as pd
import psycopg
import pytest
from click.testing import CliRunner
from confluent_kafka import Producer

from loom_assets.cli import main

pytestmark = pytest.mark.integration

DEVICE = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"


def _ts(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def flat(at: datetime, **payload) -> bytes:
    """The REST envelope (docs/messages.md#rest-envelope)."""
    return json.dumps({
        "schema_version": "1.0", "device_id": DEVICE, "recorded_at": _ts(at),
        "timestamp": _ts(at + timedelta(milliseconds=300)), "message_id": str(uuid.uuid4()),
        "trace_id": str(uuid.uuid4()), "services_encountered": ["ingestion-api", "kafka-producer"], **payload,
    }).encode()


def nested(at: datetime, message_type: str, **data) -> bytes:
    """The unified route's envelope (docs/messages.md#unified-envelope): no recorded_at, message_id
    or trace_id."""
    return json.dumps({
        "schema_version": "1.0", "device_id": DEVICE, "message_type": message_type,
        "data": {"timestamp": _ts(at), **data}, "metadata": {}, "timestamp": None,
    }).encode()


def produce(bootstrap: str, messages: list[tuple[str, bytes]], key: bytes = DEVICE.encode()) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 64 * 1024 * 1024})
    failed = []
    for topic, value in messages:
        producer.produce(topic, value=value, key=key, timestamp=time.time_ns() // 1_000_000,
                         on_delivery=lambda error, _: failed.append(error) if error else None)
    assert producer.flush(30) == 0
    assert not failed, failed


def light_flow_messages(now: datetime) -> list[tuple[str, bytes]]:
    t = now - timedelta(minutes=2)
    return [
        ("os.events.app_lifecycle.raw", flat(t, app_identifier="com.slack.Slack", app_name="Slack", event_type="launch")),
        ("os.events.app_lifecycle.raw", flat(t + timedelta(seconds=1), app_identifier="com.slack.Slack", event_type="foreground")),
        ("os.events.app_lifecycle.raw", flat(t + timedelta(seconds=61), app_identifier="com.slack.Slack",
                                             event_type="background", duration_seconds=60)),
        ("os.events.app_lifecycle.raw", nested(t + timedelta(seconds=70), "app_lifecycle",
                                               app_identifier="com.unknown.thing", event_type="crash")),
        ("device.sensor.power.raw", flat(t, battery_level=50.0, is_charging=True, power_source="charging")),
        ("device.sensor.power.raw", flat(t + timedelta(seconds=60), battery_level=51.0, is_charging=True, power_source="charging")),
        ("device.state.power.raw", nested(t + timedelta(seconds=90), "power_state", battery_level=9.0, is_charging=False)),
        ("device.network.wifi.raw", flat(t, ssid="Starbucks WiFi", signal_strength=-50, frequency=2412, security="open",
                                         connected=True)),
        ("device.sensor.gps.raw", flat(t + timedelta(seconds=20), latitude=37.7599, longitude=-122.4148, accuracy=10.0)),
    ]


def invoke(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def table(url: str, name: str, order: str = "source_topic, source_partition, source_offset") -> pd.DataFrame:
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT * FROM {name} ORDER BY {order}")
        return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])


def test_messages_land_in_every_table_traceable_to_their_offsets(loom_env):
    now = datetime.now(UTC)
    messages = light_flow_messages(now)
    produce(loom_env["bootstrap"], messages)

    output = invoke("process", "--through-now")

    # The flow jobs log JSON lines that carry the run's partition (for log shippers).
    log = next(json.loads(line) for line in output.splitlines()
               if line.startswith("{") and "app_lifecycle" in line and "records read" in line)
    assert log["dagster_meta"]["job_tags"]["dagster/partition"]

    url = loom_env["database_url"]
    raw = table(url, "app_lifecycle_raw")
    assert len(raw) == 4
    assert set(raw["source_topic"]) == {"os.events.app_lifecycle.raw"}
    assert raw[["source_partition", "source_offset"]].drop_duplicates().shape[0] == 4
    assert raw["device_id"].eq(DEVICE).all()
    # The nested envelope has no message_id: one is derived from the record's place in the log.
    assert raw["message_id"].notna().all()
    # Event times survive to the microsecond (the wire format has them to the microsecond).
    sent = sorted(pd.Timestamp(_ts(now - timedelta(minutes=2) + timedelta(seconds=s))) for s in (0, 1, 61, 70))
    assert sorted(raw["recorded_at"]) == sent

    enriched = table(url, "app_lifecycle_enriched")
    assert len(enriched) == 4
    assert enriched.set_index("app_identifier")["app_category"].to_dict()["com.unknown.thing"] == "unknown"
    assert enriched["is_crash"].sum() == 1
    closing = enriched[enriched["event_type"] == "background"].iloc[0]
    assert closing["foreground_seconds"] == pytest.approx(60, abs=1)
    assert enriched["model_version"].str.startswith("1+categories").all()

    power = table(url, "power_state_enriched")
    assert set(power["source_topic"]) == {"device.sensor.power.raw", "device.state.power.raw"}
    assert power.sort_values("recorded_at")["battery_state"].tolist()[-1] == "critical"
    assert len(table(url, "power_state_patterns", order="pattern_type")) > 0

    wifi = table(url, "network_events_enriched")
    assert wifi["network_category"].tolist() == ["public"]
    correlated = table(url, "network_events_location_correlated")
    assert correlated["latitude"].tolist() == [pytest.approx(37.7599)]

    # Each row traces back to exactly the Kafka record it came from.
    from confluent_kafka import Consumer, TopicPartition

    row = raw.iloc[0]
    consumer = Consumer({"bootstrap.servers": loom_env["bootstrap"], "group.id": "trace-check"})
    consumer.assign([TopicPartition(row["source_topic"], int(row["source_partition"]), int(row["source_offset"]))])
    record = consumer.poll(10)
    consumer.close()
    assert json.loads(record.value())["message_id"] == row["message_id"]

    # The materialization metadata holds the offset ranges.
    from dagster import AssetKey, DagsterInstance

    event = DagsterInstance.get().get_latest_materialization_event(AssetKey(["app_lifecycle", "raw"]))
    metadata = event.asset_materialization.metadata
    ranges = metadata["offsets"].value
    assert sum(int(r.split(",")[1].strip(" )")) - int(r.split(",")[0].strip("[ ")) for r in ranges.values()) == 4
    assert metadata["dagster/row_count"].value == 4
    assert metadata["dagster/table_name"].value == "public.app_lifecycle_raw"
    columns = {c.name for c in metadata["dagster/column_schema"].value.columns}
    assert {"source_topic", "source_partition", "source_offset", "ingested_at", "app_identifier"} <= columns
    assert (metadata["rows"].value, metadata["errors"].value) == (4, 0)

    # The consumer group committed the landed ends, so Kafka lag tools see Loom.
    status = json.loads(invoke("status", "--json"))
    app = next(s for s in status if s["flow"] == "app_lifecycle")
    assert app["lag"] == 0
    assert app["tables"] == {"app_lifecycle_raw": 4, "app_lifecycle_enriched": 4}
    assert "app_lifecycle_enriched" in invoke("status")


def test_rerunning_a_window_leaves_identical_rows(loom_env):
    now = datetime.now(UTC)
    produce(loom_env["bootstrap"], light_flow_messages(now))
    invoke("process", "--through-now")
    url = loom_env["database_url"]
    tables = ["app_lifecycle_raw", "app_lifecycle_enriched", "power_state_enriched", "network_events_enriched"]
    volatile = ["ingested_at", "processed_at"]
    before = {t: table(url, t).drop(columns=volatile, errors="ignore") for t in tables}

    with psycopg.connect(url) as conn:
        window = conn.execute(
            "SELECT window_start FROM loom_offset_log WHERE flow = 'app_lifecycle' AND end_offset > start_offset"
        ).fetchone()[0]
    from loom_assets import definitions
    from loom_assets.windows import partition_key
    from dagster import DagsterInstance

    for flow in definitions.FLOWS:
        job = definitions.defs.resolve_job_def(flow.job.name)
        with psycopg.connect(url) as conn:
            windows = [w for (w,) in conn.execute(
                "SELECT DISTINCT window_start FROM loom_offset_log WHERE flow = %s AND end_offset > start_offset",
                (flow.name,))]
        for w in windows:
            assert job.execute_in_process(partition_key=partition_key(w), instance=DagsterInstance.get()).success
    after = {t: table(url, t).drop(columns=volatile, errors="ignore") for t in tables}
    for t in tables:
        pd.testing.assert_frame_equal(before[t], after[t], check_dtype=False)
    assert window is not None
