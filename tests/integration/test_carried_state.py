"""State carried across windows (docs/architecture.md#versions-and-state): windows of a stateful
flow run in order, a re-run window re-runs the windows after it until the state stops changing,
a version change continues from the previous version's state, `_latest` follows Loom's version
table, and staleness outlives Dagster's run history."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import yaml
from confluent_kafka import Producer
from dagster import DagsterInstance, build_schedule_context

from loom_assets import definitions
from loom_assets.flows import app_lifecycle
from loom_assets.resources.stage_windows import record_windows
from loom_assets.sensors.kafka_windows import plan_closed_windows, run_requests
from loom_assets.sensors.reprocessing import stale_chunks
from loom_assets.windows import partition_key, window_of
from tests.integration.test_spine import DEVICE, flat, table

pytestmark = pytest.mark.integration

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FLOW = app_lifecycle.FLOW
TOPIC = FLOW.topics[0]
SLACK = "com.slack.Slack"
SPOTIFY = "com.spotify.music"


def produce_at(bootstrap: str, events: list[tuple[datetime, str, str]]) -> None:
    """App events stamped (payload and Kafka timestamp) at their own time, so each lands in the
    window of its time."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for at, app, event_type in events:
        producer.produce(TOPIC, key=DEVICE.encode(), value=flat(at, app_identifier=app, event_type=event_type),
                         timestamp=int(at.timestamp() * 1000))
    assert producer.flush(30) == 0


@pytest.fixture
def windows(loom_env):
    """Three closed 5-minute windows: Slack comes to the foreground in the first, Spotify in the
    second, and Slack goes to the background in the third (its session spans all three, through
    a window that holds none of its events). Planned, not run."""
    first = window_of(datetime.now(UTC) - timedelta(minutes=40), FLOW.window)
    produce_at(loom_env["bootstrap"], [
        (first + timedelta(minutes=1), SLACK, "foreground"),
        (first + timedelta(minutes=6), SPOTIFY, "foreground"),
        (first + timedelta(minutes=12), SLACK, "background"),
    ])
    res = definitions.resources()
    plan_closed_windows(FLOW, res["kafka"], res["warehouse"], datetime.now(UTC))
    return [first, first + FLOW.window, first + 2 * FLOW.window]


def run_window(start: datetime, asset_selection=None):
    job = definitions.defs.resolve_job_def(FLOW.job.name)
    return job.execute_in_process(partition_key=partition_key(start), asset_selection=asset_selection,
                                  instance=DagsterInstance.get(), raise_on_error=False, tags=FLOW.run_tags)


def follow_ups():
    """What the window sensor asks for now (no backoff), as (window, stages)."""
    res = definitions.resources()
    requests = run_requests(FLOW, res["kafka"], res["warehouse"], datetime.now(UTC), backoff=False)
    return [(r.partition_key, [k.to_user_string() for k in r.asset_selection or []]) for r in requests]


def run_follow_ups(limit: int = 10) -> int:
    """Run what the sensor asks for until it asks for nothing; returns the runs made."""
    runs = 0
    res = definitions.resources()
    while requests := run_requests(FLOW, res["kafka"], res["warehouse"], datetime.now(UTC), backoff=False):
        for request in requests:
            job = definitions.defs.resolve_job_def(FLOW.job.name)
            assert job.execute_in_process(partition_key=request.partition_key, asset_selection=request.asset_selection,
                                          instance=DagsterInstance.get(), tags=request.tags).success
            runs += 1
        assert runs <= limit, "the follow-ups did not settle"
    return runs


def sessions(url: str):
    rows = table(url, "app_lifecycle_enriched_latest", order="recorded_at")
    return rows[["app_identifier", "event_type", "session_id", "session_flag", "foreground_seconds",
                 "model_version"]]


def test_a_window_waits_for_the_window_before_it_then_continues_its_session(loom_env, windows):
    url = loom_env["database_url"]
    first, second, _ = windows
    early = run_window(second)
    assert not early.success
    failure = next(e for e in early.all_events if e.is_step_failure)
    assert "waits for earlier window" in failure.event_specific_data.error.message
    assert table(url, "app_lifecycle_enriched").empty  # nothing written out of order

    assert run_window(first).success
    # The window sensor asks for the second window's stage again (its raw rows have landed).
    assert (partition_key(second), ["app_lifecycle/enriched"]) in follow_ups()
    run_follow_ups()
    rows = sessions(url)
    background = rows.iloc[2]
    assert background["session_id"] == rows.iloc[0]["session_id"]  # the session opened in the first window
    assert background["session_flag"] is None
    assert background["foreground_seconds"] == pytest.approx(660.0)


def test_runs_of_a_stateful_flow_are_queued_one_at_a_time():
    """The run queue's limit of one run per `loom/ordered` value, and the tag on the flows whose
    stages carry state (their runs, the sensor's and the schedule's requests)."""
    for config in (PROJECT_ROOT / "dagster.yaml", PROJECT_ROOT / "deploy" / "dagster.yaml"):
        limits = yaml.safe_load(config.read_text())["concurrency"]["runs"]["tag_concurrency_limits"]
        assert {"key": "loom/ordered", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in limits
    ordered = {f.name for f in definitions.FLOWS if f.ordered}
    assert {"app_lifecycle", "power_state", "location", "motion", "audio", "screenshot_ocr", "camera_vision"} == ordered
    for flow in definitions.FLOWS:
        job = definitions.defs.resolve_job_def(flow.job.name)
        assert (job.tags.get("loom/ordered") == flow.name) == (flow.name in ordered)


def test_rerunning_a_window_reruns_the_windows_after_it_until_the_state_settles(loom_env, windows):
    url = loom_env["database_url"]
    first, second, third = windows
    assert run_window(first).success
    # The first window's rows were written wrong (an earlier bug): the second continues them.
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE app_lifecycle_enriched SET session_id = 'wrong' WHERE window_start = %s", (first,))
    assert run_window(second).success and run_window(third).success
    assert "wrong" in set(sessions(url)["session_id"])

    assert run_window(first).success  # right again: the state the second window read has changed
    assert follow_ups() == [(partition_key(second), ["app_lifecycle/enriched"])]
    # The second window (its rows are the same, but the state it passes on is not), then the third.
    assert run_follow_ups() == 2
    rows = sessions(url)
    assert "wrong" not in set(rows["session_id"])
    assert rows.iloc[2]["session_id"] == rows.iloc[0]["session_id"]

    assert run_window(first).success  # same result: nothing after it changes, nothing runs again
    assert follow_ups() == []


def test_a_version_change_continues_from_the_previous_versions_state(loom_env, windows, tmp_path):
    url = loom_env["database_url"]
    first, second, third = windows
    assert run_window(first).success
    mapping = json.loads((PROJECT_ROOT / "loom_assets/stages/data/app_categories.json").read_text())
    mapping["version"] = "2"
    mapping["bundle_ids"][SLACK] = "productivity"
    path = tmp_path / "categories-v2.json"
    path.write_text(json.dumps(mapping))
    bumped = {**os.environ, "LOOM_APP_CATEGORIES_PATH": str(path)}

    # The live windows after the change run at version 2 and read version 1's last state.
    result = subprocess.run([sys.executable, "-m", "loom_assets.cli", "process", "--flow", "app_lifecycle"],
                            cwd=PROJECT_ROOT, env=bumped, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rows = sessions(url)
    assert list(rows["model_version"]) == ["1+categories1", "1+categories2", "1+categories2"]
    background = rows.iloc[2]
    assert background["session_id"] == rows.iloc[0]["session_id"] and background["session_flag"] is None

    # Reprocessing the first window at version 2 changes the state after it (Slack's category):
    # the windows after it run again, in order, and the sessions stay as they were.
    since = (first - timedelta(minutes=1)).isoformat()
    result = subprocess.run([sys.executable, "-m", "loom_assets.cli", "reprocess", "--flow", "app_lifecycle",
                             "--since", since], cwd=PROJECT_ROOT, env=bumped, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "1 stale windows" in result.stdout
    after = sessions(url)
    assert set(after["model_version"]) == {"1+categories2"}
    assert list(after["session_id"]) == list(rows["session_id"])
    assert follow_ups() == []


def test_latest_shows_a_window_whose_newest_version_wrote_no_rows_as_empty(loom_env, windows):
    url = loom_env["database_url"]
    first, _, _ = windows
    assert run_window(first).success
    assert len(table(url, "app_lifecycle_enriched_latest")) == 1
    with psycopg.connect(url) as conn, conn.transaction():
        # What the IO manager records when a new version writes the window with no rows.
        record_windows(conn, "app_lifecycle_enriched", [first], table(url, "app_lifecycle_enriched").iloc[0:0],
                       "2+categories9", run_id=None)
    assert table(url, "app_lifecycle_enriched_latest").empty
    assert len(table(url, "app_lifecycle_enriched")) == 1  # the old version's rows are kept beside it


def test_staleness_outlives_dagsters_run_history(loom_env):
    """Windows written 30 days ago by an older version are stale after housekeeping has pruned
    Dagster's runs and events of them (the schedule finds them in Loom's own version table)."""
    url = loom_env["database_url"]
    now = datetime.now(UTC)
    days = [window_of(now - timedelta(days=d, hours=1), FLOW.window) for d in (29, 15, 8, 1)]
    with psycopg.connect(url) as conn, conn.transaction():
        record_windows(conn, "app_lifecycle_enriched", days, table(url, "app_lifecycle_enriched"), "0+old", None)
    instance = DagsterInstance.get()
    assert definitions.defs.resolve_job_def("housekeeping_job").execute_in_process(instance=instance).success

    chunks = stale_chunks(definitions.resources()["warehouse"], FLOW, now - timedelta(days=30))
    assert [c.first for c in chunks] == [partition_key(d) for d in days]
    schedule = definitions.defs.resolve_schedule_def("app_lifecycle_reprocess")
    with build_schedule_context(instance=instance, resources={"warehouse": definitions.resources()["warehouse"]}
                                ) as context:
        requests = schedule.evaluate_tick(context).run_requests
    assert [r.tags["dagster/asset_partition_range_start"] for r in requests] == [partition_key(d) for d in days]
    assert all(r.tags["loom/ordered"] == "app_lifecycle" for r in requests)


def test_the_reprocess_schedule_does_not_ask_again_for_a_chunk_in_flight(loom_env):
    url = loom_env["database_url"]
    now = datetime.now(UTC)
    days = [window_of(now - timedelta(days=d, hours=1), FLOW.window) for d in (3, 2)]
    with psycopg.connect(url) as conn, conn.transaction():
        record_windows(conn, "app_lifecycle_enriched", days, table(url, "app_lifecycle_enriched"), "0+old", None)
    instance = DagsterInstance.get()
    schedule = definitions.defs.resolve_schedule_def("app_lifecycle_reprocess")

    def asked() -> list[str]:
        with build_schedule_context(instance=instance,
                                    resources={"warehouse": definitions.resources()["warehouse"]}) as context:
            return [r.tags["dagster/asset_partition_range_start"] for r in schedule.evaluate_tick(context).run_requests]

    assert asked() == [partition_key(d) for d in days]
    first = asked()[0]
    job = definitions.defs.resolve_job_def(FLOW.job.name)
    instance.create_run_for_job(job, tags={"loom/reprocess": "true", **FLOW.run_tags,
                                           "dagster/asset_partition_range_start": first,
                                           "dagster/asset_partition_range_end": first})  # not started yet
    assert asked() == [partition_key(days[1])]


def test_a_stale_stage_makes_its_downstream_stale_and_chunks_follow_consecutive_windows(loom_env):
    from loom_assets.flows import power_state

    flow = power_state.FLOW
    enriched, patterns = (stage.key for stage in flow.stages)
    current = {s.key: s.code_versions_by_key[s.key] for s in flow.stages}
    url = loom_env["database_url"]
    at = window_of(datetime.now(UTC) - timedelta(days=1), flow.window)
    empty = table(url, "power_state_enriched").iloc[0:0]
    with psycopg.connect(url) as conn, conn.transaction():
        record_windows(conn, "power_state_enriched", [at], empty, "0+old", None)
        record_windows(conn, "power_state_enriched", [at + flow.window, at + 3 * flow.window], empty,
                       current[enriched], None)
        record_windows(conn, "power_state_patterns", [at, at + flow.window], empty, current[patterns], None)
        record_windows(conn, "power_state_patterns", [at + 3 * flow.window, at + 4 * flow.window], empty, "0+old", None)
    warehouse = definitions.resources()["warehouse"]
    chunks = stale_chunks(warehouse, flow, at - timedelta(hours=1))
    assert [(c.first, c.last, c.assets) for c in chunks] == [
        (partition_key(at), partition_key(at), (enriched, patterns)),  # patterns read the stale enriched rows
        (partition_key(at + 3 * flow.window), partition_key(at + 4 * flow.window), (patterns,)),
    ]
    assert chunks[1].range_tags["dagster/asset_partition_range_end"] == partition_key(at + 4 * flow.window)
