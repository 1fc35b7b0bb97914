"""Bad input loses nothing, and every offset lands in exactly one window."""

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from loom_assets.events import PAYLOAD_MODELS
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


# -- a record costs only itself ---------------------------------------------------------------
def _with_deep_metadata(value: bytes, depth: int = 1000) -> bytes:
    """`value` (a flat envelope) with metadata nested `depth` levels: json.dumps cannot make it."""
    return value[:-1] + b', "metadata": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}"


def _mixed_window(now: datetime) -> dict[str, tuple[str, list[bytes], dict[bytes, str]]]:
    """Per flow: its topic, good records, and bad records with the error type each must get."""
    from tests.integration.test_spine import nested

    app = "os.events.app_lifecycle.raw"
    wifi = "device.network.wifi.raw"
    hn = "external.hackernews.activity.raw"
    long_id = "d" * 10_000
    story = {"story_id": 41800001, "type": "liked_story", "title": "A story", "score": 12}
    return {
        "app_lifecycle": (app, [flat(now, app_identifier="com.ok", event_type="launch"),
                                flat(now, app_identifier="com.ok", event_type="background")], {
            flat(now, app_identifier="com.nul\u0000", event_type="launch"): "invalid_text",
            flat(now, app_identifier="com.ok", event_type="launch", metadata={"k\u0000": 1}): "invalid_text",
            json.dumps({**json.loads(flat(now, app_identifier="a", event_type="launch")),
                        "recorded_at": 10**20}).encode(): "timestamp_out_of_range",
            json.dumps({**json.loads(flat(now, app_identifier="a", event_type="launch")),
                        "recorded_at": "2300-01-01T00:00:00Z"}).encode(): "timestamp_out_of_range",
            _with_deep_metadata(flat(now, app_identifier="com.deep", event_type="launch")): "too_deeply_nested",
            json.dumps({**json.loads(flat(now, app_identifier="a", event_type="launch")),
                        "device_id": long_id}).encode(): "id_too_long",
        }),
        "network_events": (wifi, [nested(now, "wifi", ssid="Home", connected=True, channel=6),
                                  nested(now, "wifi", ssid="", connected=False)], {
            nested(now, "wifi", ssid="\u0000\u0000\u0000", connected=True): "invalid_text",
            nested(now, "wifi", ssid="Home", connected=True, metadata={"note": "x\u0000"}): "invalid_text",
            nested(now, "wifi", ssid="Home", connected=True, channel=2**40): "integer_out_of_range",
            json.dumps({**json.loads(nested(now, "wifi", ssid="Home", connected=True)),
                        "device_id": "phone\u0000"}).encode(): "invalid_text",
        }),
        "hackernews": (hn, [flat(now, **story), flat(now, **{**story, "story_id": 41800002})], {
            # An integer past 64 bits, as the API would send it: json.dumps cannot.
            flat(now, **story)[:-1] + b', "comment_count": 123456789012345678901234567890}': "integer_out_of_range",
            flat(now, **{**story, "score": 2**40}): "integer_out_of_range",
            flat(now, **{**story, "title": "nul\u0000"}): "invalid_text",
            flat(now, **{**story, "created_at": "9999-01-01T00:00:00Z"}): "timestamp_out_of_range",
        }),
    }


def test_a_window_mixing_good_and_unstorable_records_lands_on_the_first_attempt(loom_env):
    from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus

    from loom_assets import definitions
    from loom_assets.sensors.kafka_windows import plan_closed_windows, run_requests

    now = datetime.now(UTC) - timedelta(minutes=1)
    flows = _mixed_window(now)
    for topic, good, bad in flows.values():
        produce(loom_env["bootstrap"], [(topic, v) for v in [good[0], *bad, good[1]]])

    invoke("process", "--through-now", "--flow", "app_lifecycle")
    invoke("process", "--through-now", "--flow", "network_events")
    # The Hacker News stages read the web and load an embedding model: only its raw landing runs.
    flow, resources = definitions.flow_named("hackernews"), definitions.resources()
    instance = DagsterInstance.get()
    plan_closed_windows(flow, resources["kafka"], resources["warehouse"], datetime.now(UTC), through_now=True)
    job = definitions.defs.resolve_job_def(flow.job.name).get_subset(asset_selection={flow.key("raw")})
    for request in run_requests(flow, resources["kafka"], resources["warehouse"], datetime.now(UTC)):
        assert job.execute_in_process(partition_key=request.partition_key, instance=instance,
                                      raise_on_error=False).success

    url = loom_env["database_url"]
    errors = table(url, "processing_errors")
    for name, (topic, good, bad) in flows.items():
        rows = table(url, f"{name}_raw")
        flow_errors = errors[errors["flow"] == name]
        with psycopg.connect(url) as conn:
            planned_count = conn.execute(
                "SELECT sum(end_offset - start_offset) FROM loom_offset_log WHERE flow = %s", (name,)
            ).fetchone()[0]
        assert len(rows) == len(good), name
        assert len(rows) + len(flow_errors) == planned_count == len(good) + len(bad), name
        assert {bytes(v): t for v, t in zip(flow_errors["original_value"], flow_errors["error_type"])} == bad

    # Every run succeeded on its first attempt: data errors are never retried.
    runs = instance.get_runs()
    assert runs and all(run.status == DagsterRunStatus.SUCCESS for run in runs)
    for run in runs:
        assert not instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY)
        assert not instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_FAILURE)

    # Each error row was announced once on its flow's error topic.
    for name, (_, _, bad) in flows.items():
        assert sorted(_error_topic(loom_env["bootstrap"], name, expect=len(bad))) == sorted(bad), name


def _error_topic(bootstrap: str, flow: str, expect: int, wait_s: float = 30) -> list[bytes]:
    """The values on `flow`'s error topic: `expect` of them (waiting up to `wait_s`), then two
    seconds more for any repeats."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"errors-{flow}-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([f"processing.errors.{flow}"])
    values: list[bytes] = []
    deadline = datetime.now(UTC) + timedelta(seconds=wait_s)
    quiet_until = None
    while datetime.now(UTC) < deadline and (quiet_until is None or datetime.now(UTC) < quiet_until):
        message = consumer.poll(0.5)
        if message is not None and not message.error():
            values.append(message.value())
        if len(values) >= expect and quiet_until is None:
            quiet_until = datetime.now(UTC) + timedelta(seconds=2)
    consumer.close()
    return values


def test_rows_postgresql_refuses_become_error_rows_and_the_rest_of_the_window_lands(loom_env):
    """Validation should leave nothing for PostgreSQL to refuse; if it does, bisecting the COPY
    finds the refused rows and the rest land in the same transaction."""
    import secrets

    from loom_assets.events import Record
    from loom_assets.resources.warehouse import copy_refusing, table_columns
    from loom_assets.stages.landing import land, refused

    window = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
    records = [(window, Record(TOPIC, 0, i, b"k", flat(window, app_identifier=f"app.{i}", event_type="launch"),
                               None, {})) for i in range(12)]
    landing = land("app_lifecycle", [TOPIC], records, window, 10**6)
    rows = landing.rows
    rows["metadata"] = rows["metadata"].astype(object)
    deep: dict = {}
    cursor = deep
    for _ in range(2000):
        cursor["a"] = {}
        cursor = cursor["a"]
    rows.loc[1, "app_identifier"] = "nul\u0000"                  # invalid byte sequence (22021)
    rows.loc[4, "event_type"] = "explode"                        # check constraint (23514)
    rows.at[7, "metadata"] = deep                                 # RecursionError dumping jsonb
    rows.loc[10, "device_id"] = secrets.token_urlsafe(8000)      # index row too large (54000)

    with psycopg.connect(loom_env["database_url"]) as conn:
        with conn.transaction():
            refusals = copy_refusing(conn, "app_lifecycle_raw", rows, table_columns(conn, "app_lifecycle_raw"))
        landed = conn.execute("SELECT source_offset FROM app_lifecycle_raw ORDER BY source_offset").fetchall()

    assert sorted(refusals) == [1, 4, 7, 10]
    assert [offset for (offset,) in landed] == [0, 2, 3, 5, 6, 8, 9, 11]
    after = refused(landing, refusals)
    assert after.errors["source_offset"].tolist() == [1, 4, 7, 10]
    assert set(after.errors["error_type"]) == {"refused_by_database"}
    assert after.errors["original_value"].tolist() == [records[i][1].value for i in (1, 4, 7, 10)]
    assert after.rows["source_offset"].tolist() == [offset for (offset,) in landed]


@pytest.fixture
def migrated_database(postgres):
    from loom_assets.embedded.postgres import create_database
    from loom_assets.resources.warehouse import apply_migrations

    url = create_database(postgres.uri, f"loom_fuzz_{datetime.now(UTC):%H%M%S%f}")
    apply_migrations(url)
    return url


@pytest.mark.parametrize("topic", sorted(PAYLOAD_MODELS))
def test_postgresql_stores_every_row_that_validation_lets_through(migrated_database, topic):
    """Fuzzed windows of every raw topic, COPYed into the real table: validation must leave
    PostgreSQL nothing to refuse (bisection is only a safety net)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from loom_assets import definitions
    from loom_assets.events import Record
    from loom_assets.resources.warehouse import copy_refusing, table_columns
    from loom_assets.stages.landing import land, store_blobs
    from tests.unit.test_decoding_properties import VALID_PAYLOADS, flat, mangled_bytes, mutated_body, to_bytes

    flow = next(f for f in definitions.FLOWS if topic in f.topics)
    table_name = f"{flow.name}_raw"
    window = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
    landed = []

    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def window_lands(data):
        values = [to_bytes(flat(dict(VALID_PAYLOADS[topic])))]
        values += [data.draw(mangled_bytes(to_bytes(data.draw(mutated_body(topic))))) for _ in range(data.draw(st.integers(1, 6)))]
        records = [(window, Record(topic, 0, i, None, v, int(window.timestamp() * 1000), {})) for i, v in enumerate(values)]
        landing = land(flow.name, flow.topics, records, window, 10**6)
        rows = store_blobs(landing.rows, flow.topics, lambda data: "blob://fuzz")
        with psycopg.connect(migrated_database) as conn:
            transaction = conn.transaction(force_rollback=True)
            with transaction:
                refusals = copy_refusing(conn, table_name, rows, table_columns(conn, table_name))
        assert refusals == {}, [(landing.records[i].value, reason) for i, reason in refusals.items()]
        landed.append(len(rows))

    window_lands()
    assert sum(landed) >= len(landed)  # every example landed at least its valid seed



def test_the_error_topic_hears_of_a_windows_errors_only_after_its_rows_commit(loom_env):
    """The window's write is held on a lock: while it waits, nothing is on the error topic."""
    import threading

    now = datetime.now(UTC) - timedelta(minutes=1)
    bad = [b"{not json", flat(now, app_identifier="nul\u0000", event_type="launch")]
    produce(loom_env["bootstrap"], [(TOPIC, flat(now, app_identifier="com.ok", event_type="launch")),
                                    *((TOPIC, v) for v in bad)])
    url = loom_env["database_url"]
    outcome: dict = {}
    with psycopg.connect(url) as holder:
        holder.execute("LOCK TABLE app_lifecycle_raw IN ACCESS EXCLUSIVE MODE")
        run = threading.Thread(target=lambda: outcome.setdefault(
            "output", invoke("process", "--through-now", "--flow", "app_lifecycle")))
        run.start()
        with psycopg.connect(url, autocommit=True) as watcher:
            waiting = 0
            deadline = datetime.now(UTC) + timedelta(seconds=60)
            while not waiting and datetime.now(UTC) < deadline:
                waiting = watcher.execute(
                    "SELECT count(*) FROM pg_locks WHERE relation = 'app_lifecycle_raw'::regclass AND NOT granted"
                ).fetchone()[0]
        assert waiting, "the window's write never reached the locked table"
        assert _error_topic(loom_env["bootstrap"], "app_lifecycle", expect=1, wait_s=5) == []
        holder.rollback()  # releases the lock
    run.join(timeout=120)
    assert "output" in outcome, "loom process did not finish"
    assert len(table(url, "app_lifecycle_raw")) == 1
    assert sorted(_error_topic(loom_env["bootstrap"], "app_lifecycle", expect=len(bad))) == sorted(bad)


def test_landing_a_window_again_announces_none_of_its_errors_twice(loom_env):
    from dagster import DagsterInstance

    from loom_assets import definitions

    now = datetime.now(UTC) - timedelta(minutes=1)
    bad = [b"{not json", flat(now, app_identifier="nul\u0000", event_type="launch")]
    produce(loom_env["bootstrap"], [(TOPIC, flat(now, app_identifier="com.ok", event_type="launch")),
                                    *((TOPIC, v) for v in bad)])
    invoke("process", "--through-now", "--flow", "app_lifecycle")
    url = loom_env["database_url"]
    first = table(url, "processing_errors")
    assert first["published_at"].notna().all() and len(first) == len(bad)

    instance = DagsterInstance.get()
    (window,) = {run.tags["dagster/partition"] for run in instance.get_runs()}
    flow = definitions.flow_named("app_lifecycle")
    job = definitions.defs.resolve_job_def(flow.job.name).get_subset(asset_selection={flow.key("raw")})
    assert job.execute_in_process(partition_key=window, instance=instance).success

    again = table(url, "processing_errors")
    assert sorted(map(bytes, again["original_value"])) == sorted(bad)
    assert again["published_at"].tolist() == first["published_at"].tolist()
    assert sorted(_error_topic(loom_env["bootstrap"], "app_lifecycle", expect=len(bad))) == sorted(bad)


def test_every_payload_field_in_an_integer_column_is_checked_against_its_range(migrated_database):
    """Binary COPY would keep the low 32 bits of a larger integer: each payload field whose raw
    column is `integer` or `smallint` must carry that range (`Int32`) in its model."""
    from loom_assets import definitions
    from loom_assets.events import payload_columns
    from loom_assets.resources.warehouse import table_columns
    from loom_assets.storable import BIGINT, INTEGER, stored_fields

    ranges = {"integer": INTEGER, "smallint": (-(2**15), 2**15 - 1)}
    checked = 0
    with psycopg.connect(migrated_database) as conn:
        for topic, versions in PAYLOAD_MODELS.items():
            flow = next(f for f in definitions.FLOWS if topic in f.topics)
            columns = table_columns(conn, f"{flow.name}_raw")
            stored = stored_fields(versions[1])
            for name in payload_columns(topic):
                sql_type = columns.get(name, ("",))[0]
                if sql_type in ranges:
                    low, high = stored[name].integer_range if name in stored else BIGINT
                    assert ranges[sql_type][0] <= low and high <= ranges[sql_type][1], f"{topic} {name} ({sql_type})"
                    checked += 1
    assert checked >= 15  # width/height/file_size, sample_rate, channel, score, …


def test_an_integer_too_large_for_its_column_is_refused_never_truncated(migrated_database):
    import pandas as pd

    from loom_assets.resources.warehouse import copy_refusing, table_columns

    window = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
    rows = pd.DataFrame({
        "window_start": [window] * 3, "device_id": ["d"] * 3, "recorded_at": [window] * 3,
        "schema_version": ["1.0"] * 3, "message_id": ["m0", "m1", "m2"], "source_topic": ["t"] * 3,
        "source_partition": [0] * 3, "source_offset": [0, 1, 2], "ingested_at": [window] * 3,
        "connected": [True] * 3, "channel": pd.array([6, 2**32 + 7, None], dtype=object),
    })
    with psycopg.connect(migrated_database) as conn:
        with conn.transaction():
            refusals = copy_refusing(conn, "network_events_raw", rows, table_columns(conn, "network_events_raw"))
        stored = conn.execute("SELECT source_offset, channel FROM network_events_raw ORDER BY source_offset").fetchall()
    assert list(refusals) == [1] and "out of range for integer" in refusals[1]
    assert stored == [(0, 6), (2, None)]
