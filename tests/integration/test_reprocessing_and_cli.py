"""Reprocessing after a rules-version bump, the Dagster CLI path, and the definitions snapshot."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from tests.integration.test_spine import flat, invoke, produce, table

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LOOM = [sys.executable, "-m", "loom_assets.cli"]
DAGSTER = [sys.executable, "-m", "dagster"]


def run(command: list[str], env_extra: dict[str, str] | None = None) -> str:
    env = {**os.environ, **(env_extra or {})}
    result = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def app_events(now: datetime) -> list[tuple[str, bytes]]:
    topic = "os.events.app_lifecycle.raw"
    return [
        (topic, flat(now, app_identifier="com.slack.Slack", event_type="foreground")),
        (topic, flat(now, app_identifier="com.spotify.music", event_type="foreground")),
    ]


@pytest.mark.integration
def test_bumping_the_category_mapping_reprocesses_beside_the_old_rows(loom_env, tmp_path):
    produced_at = datetime.now(UTC)
    produce(loom_env["bootstrap"], app_events(produced_at))
    invoke("process", "--through-now", "--flow", "app_lifecycle")
    url = loom_env["database_url"]
    first = table(url, "app_lifecycle_enriched")
    assert first["model_version"].unique().tolist() == ["1+categories1"]

    mapping = json.loads((PROJECT_ROOT / "loom_assets/stages/data/app_categories.json").read_text())
    mapping["version"] = "2"
    mapping["bundle_ids"]["com.slack.Slack"] = "productivity"
    path = tmp_path / "categories-v2.json"
    path.write_text(json.dumps(mapping))
    bumped = {"LOOM_APP_CATEGORIES_PATH": str(path)}

    since = produced_at.date().isoformat()  # not today's: the clock may have passed midnight since
    # The hourly schedule asks for the same stale window as one ranged run of the stage.
    evaluate = (
        "import json; from dagster import DagsterInstance, build_schedule_context;"
        "from loom_assets.definitions import defs, resources;"
        "schedule = defs.resolve_schedule_def('app_lifecycle_reprocess');"
        "context = build_schedule_context(instance=DagsterInstance.get(), resources={'warehouse': resources()['warehouse']});"
        "result = schedule.evaluate_tick(context);"
        "print(json.dumps([[k.to_user_string() for k in r.asset_selection] + [r.tags] for r in result.run_requests]))"
    )
    [[asset, tags]] = json.loads(run([sys.executable, "-c", evaluate], bumped).strip().splitlines()[-1])
    assert asset == "app_lifecycle/enriched"
    assert tags["dagster/asset_partition_range_start"] == tags["dagster/asset_partition_range_end"]
    assert tags["loom/reprocess"] == "true"

    # --submit queues a Dagster backfill of the stale windows for the daemon (and the UI).
    out = run([*LOOM, "reprocess", "--flow", "app_lifecycle", "--since", since, "--submit"], bumped)
    from dagster import AssetKey, DagsterInstance

    [backfill] = DagsterInstance.get().get_backfills()
    assert backfill.asset_selection == [AssetKey(["app_lifecycle", "enriched"])]
    assert backfill.tags["loom/reprocess"] == "true"
    assert "backfill" in out

    out = run([*LOOM, "reprocess", "--flow", "app_lifecycle", "--since", since], bumped)
    assert "1 stale windows" in out

    rows = table(url, "app_lifecycle_enriched")
    assert sorted(rows["model_version"].unique()) == ["1+categories1", "1+categories2"]
    assert len(rows) == 2 * len(first)
    latest = table(url, "app_lifecycle_enriched_latest")
    assert latest["model_version"].unique().tolist() == ["1+categories2"]
    assert latest.set_index("app_identifier").loc["com.slack.Slack", "app_category"] == "productivity"
    # The old version's rows are untouched, so the two can be compared before pruning.
    old = rows[rows["model_version"] == "1+categories1"].drop(columns="processed_at").reset_index(drop=True)
    pd.testing.assert_frame_equal(old, first.drop(columns="processed_at"), check_dtype=False)

    assert "no stale windows" in run([*LOOM, "reprocess", "--flow", "app_lifecycle", "--since", since], bumped)


@pytest.mark.integration
def test_dagster_asset_materialize_of_a_window_leaves_identical_rows(loom_env):
    produce(loom_env["bootstrap"], app_events(datetime.now(UTC)))
    invoke("process", "--through-now", "--flow", "app_lifecycle")
    url = loom_env["database_url"]
    before = {t: table(url, t).drop(columns=["ingested_at", "processed_at"], errors="ignore")
              for t in ("app_lifecycle_raw", "app_lifecycle_enriched")}
    with psycopg.connect(url) as conn:
        window = conn.execute(
            "SELECT window_start FROM loom_offset_log WHERE flow = 'app_lifecycle' AND end_offset > start_offset"
        ).fetchone()[0]
    from loom_assets.windows import partition_key

    run([*DAGSTER, "asset", "materialize", "-m", "loom_assets.definitions",
         "--select", "app_lifecycle/raw,app_lifecycle/enriched", "--partition", partition_key(window)])
    for name, frame in before.items():
        after = table(url, name).drop(columns=["ingested_at", "processed_at"], errors="ignore")
        pd.testing.assert_frame_equal(frame, after, check_dtype=False)


def test_dagster_definitions_validate_passes():
    out = run([*DAGSTER, "definitions", "validate", "-m", "loom_assets.definitions"])
    assert "Validation successful" in out or "successfully" in out.lower()


def test_the_definitions_match_their_snapshot():
    """Assets (keys, groups, partitions, code versions, upstream, pools), jobs (selection, tags),
    schedules and sensors: an accidental change shows up in review."""
    from loom_assets import definitions

    defs = definitions.defs
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        partitions = node.partitions_def
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "code_version": node.code_version,
            "partitions": partitions.get_cron_schedule() if partitions is not None else None,
            "upstream": sorted(k.to_user_string() for k in node.parent_keys),
            **({"pools": sorted(node.pools)} if node.pools else {}),
        }
    jobs = {}
    for job in sorted(defs.resolve_all_job_defs(), key=lambda j: j.name):
        if job.name.startswith("__"):
            continue
        selected = job.asset_layer.selected_asset_keys if job.asset_layer else set()
        jobs[job.name] = {"assets": sorted(k.to_user_string() for k in selected),
                          "tags": {k: v for k, v in sorted(job.tags.items()) if not k.startswith("dagster/")}}
    schedules = {s.name: {"cron": s.cron_schedule, "job": s.job_name}
                 for s in sorted(defs.schedules, key=lambda s: s.name)}
    sensors = {s.name: {"jobs": sorted(t.job_name for t in s.targets),
                        "minimum_interval_seconds": s.minimum_interval_seconds}
               for s in sorted(defs.sensors, key=lambda s: s.name)}
    snapshot = {"assets": assets, "jobs": jobs, "schedules": schedules, "sensors": sensors}
    expected_path = Path(__file__).with_name("definitions_snapshot.json")
    if os.environ.get("LOOM_UPDATE_SNAPSHOTS"):  # after an intended change: review the diff, commit
        expected_path.write_text(json.dumps(snapshot, indent=2, sort_keys=True) + "\n")
    assert expected_path.exists(), "no snapshot: run once with LOOM_UPDATE_SNAPSHOTS=1 and commit it"
    assert snapshot == json.loads(expected_path.read_text())


@pytest.mark.integration
def test_a_range_of_windows_backfills_in_one_run_each_row_in_its_own_window(loom_env):
    """Single-run backfill: one run reads every window's planned range and writes the range."""
    from loom_assets import definitions
    from loom_assets.windows import OffsetRange, partition_key, window_of

    flow = definitions.flow_named("app_lifecycle")
    warehouse = definitions.resources()["warehouse"]
    topic = "os.events.app_lifecycle.raw"
    now = datetime.now(UTC)
    produce(loom_env["bootstrap"], [(topic, flat(now, app_identifier=f"a{i}", event_type="launch")) for i in range(6)])
    # Plan two past windows by hand: offsets 0-2 in the first, 3-5 in the second.
    first = window_of(now, flow.window) - 3 * flow.window
    second = first + flow.window
    partition = next(p for (t, p) in definitions.resources()["kafka"].partitions([topic])
                     if definitions.resources()["kafka"].watermarks([(t, p)])[(t, p)][1] == 6)
    warehouse.record_plans(flow.name, flow.window, [(first, [OffsetRange(topic, partition, 0, 3)]),
                                                    (second, [OffsetRange(topic, partition, 3, 6)])])

    # A ranged run, as a backfill of up to RAW_WINDOWS_PER_RUN windows makes (the CLI's
    # --partition-range takes only single-run assets; the raw asset lands a few windows per run).
    from dagster import DagsterInstance
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    job = definitions.defs.resolve_job_def(flow.job.name).get_subset(
        asset_selection={flow.key("raw"), flow.key("enriched")})
    assert job.execute_in_process(instance=DagsterInstance.get(), tags={
        ASSET_PARTITION_RANGE_START_TAG: partition_key(first), ASSET_PARTITION_RANGE_END_TAG: partition_key(second)}).success

    raw = table(loom_env["database_url"], "app_lifecycle_raw")
    assert raw.groupby("window_start")["source_offset"].apply(list).to_dict() == {
        pd.Timestamp(first): [0, 1, 2], pd.Timestamp(second): [3, 4, 5]}
    enriched = table(loom_env["database_url"], "app_lifecycle_enriched")
    assert sorted(enriched["source_offset"]) == list(range(6))
    from dagster import AssetKey, DagsterInstance

    runs = DagsterInstance.get().get_runs()
    assert len(runs) == 1  # one run for the whole range
    materialized = DagsterInstance.get().get_materialized_partitions(AssetKey(["app_lifecycle", "raw"]))
    assert materialized == {partition_key(first), partition_key(second)}
    event = DagsterInstance.get().get_latest_materialization_event(AssetKey(["app_lifecycle", "raw"]))
    assert event.asset_materialization.metadata["offsets"].value == {f"{topic}/{partition}": "[0, 6)"}
