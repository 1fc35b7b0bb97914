"""Which windows are stale: own code version changed, or an upstream stage is stale."""

from datetime import UTC, datetime, timedelta

import pytest
from dagster import AssetMaterialization, DagsterInstance

from loom_assets.flows import power_state
from loom_assets.sensors.reprocessing import stale_chunks, stale_windows

FLOW = power_state.FLOW
ENRICHED, PATTERNS = (stage.key for stage in FLOW.stages)


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as instance:
        yield instance


def materialize(instance, key, window: str, version: str) -> None:
    instance.report_runless_asset_event(
        AssetMaterialization(asset_key=key, partition=window, tags={"dagster/code_version": version}))


def current(key) -> str:
    return next(s for s in FLOW.stages if s.key == key).code_versions_by_key[key]


def test_a_new_version_of_a_stage_makes_its_windows_and_their_downstream_stale(instance):
    since = datetime.now(UTC) - timedelta(days=1)
    materialize(instance, ENRICHED, "2026-11-24-06:00", "0+old")
    materialize(instance, PATTERNS, "2026-11-24-06:00", current(PATTERNS))
    materialize(instance, ENRICHED, "2026-11-24-06:15", current(ENRICHED))
    materialize(instance, PATTERNS, "2026-11-24-06:15", current(PATTERNS))
    assert stale_windows(instance, FLOW, since) == {"2026-11-24-06:00": {ENRICHED, PATTERNS}}


def test_the_latest_materialization_decides(instance):
    since = datetime.now(UTC) - timedelta(days=1)
    materialize(instance, ENRICHED, "2026-11-24-06:00", "0+old")
    materialize(instance, ENRICHED, "2026-11-24-06:00", current(ENRICHED))
    assert stale_windows(instance, FLOW, since) == {}


def test_stale_windows_are_chunked_into_runs_of_consecutive_windows(instance):
    since = datetime.now(UTC) - timedelta(days=1)
    for window in ("2026-11-24-06:00", "2026-11-24-06:15", "2026-11-24-07:00"):
        materialize(instance, PATTERNS, window, "0+old")
    chunks = stale_chunks(instance, FLOW, since)
    assert [(c.first, c.last) for c in chunks] == [("2026-11-24-06:00", "2026-11-24-06:15"),
                                                   ("2026-11-24-07:00", "2026-11-24-07:00")]
    assert chunks[0].assets == (PATTERNS,)
    assert chunks[0].range_tags["dagster/asset_partition_range_end"] == "2026-11-24-06:15"
