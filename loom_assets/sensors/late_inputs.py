"""Stages that read another flow by event time, re-run when that flow's window lands later.

Motion windows are 5 minutes and location windows 15: the activities of 10:00–10:05 run at
10:05, before the GPS fixes of 10:00–10:15 have landed (at 10:15). When they land, this sensor
re-runs the activities of the motion windows they cover that ran without them.
"""

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from loom_assets.dagster_compat import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from loom_assets.flows.base import Flow
from loom_assets.windows import partition_key, window_from_key

# Landed windows handled per tick (a catch-up lands up to 48 windows a tick).
BATCH = 100


def rerun_when_landed(source: Flow, target: Flow, stage: AssetKey):
    """After `source`'s raw windows land, re-run `target`'s `stage` for the windows they cover
    that were materialized before they landed (one ranged run per landed window)."""

    @sensor(
        name=f"{target.name}_{stage.path[-1]}_after_{source.name}",
        job=target.job,
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=60,
        description=f"Re-runs {'/'.join(stage.path)} for windows computed before the "
                    f"{source.name} data of their time had landed.",
    )
    def _sensor(context: SensorEvaluationContext):
        after = int(context.cursor) if context.cursor else None
        landed = context.instance.fetch_materializations(
            AssetRecordsFilter(asset_key=source.key("raw"), after_storage_id=after), limit=BATCH, ascending=True,
        ).records
        if not landed:
            return SkipReason(f"no new {source.name} window landed")
        requests = [r for r in (_rerun(context, source, target, stage, record) for record in landed) if r]
        context.update_cursor(str(landed[-1].storage_id))
        return requests or SkipReason(f"no {target.name} window ran before its {source.name} data landed")

    return _sensor


def _rerun(context, source: Flow, target: Flow, stage: AssetKey, landed) -> RunRequest | None:
    if landed.partition_key is None:
        return None
    start = window_from_key(landed.partition_key)
    windows, at = [], start
    while at < start + source.window:
        windows.append(partition_key(at))
        at += target.window
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=stage, asset_partitions=windows), limit=len(windows) * 20,
    ).records
    latest: dict[str, float] = {}
    for record in records:
        latest[record.partition_key] = max(latest.get(record.partition_key, 0.0), record.timestamp)
    early = sorted((w for w, ts in latest.items() if ts < landed.timestamp), key=window_from_key)
    if not early:
        return None
    return RunRequest(
        run_key=f"{landed.partition_key}:{landed.storage_id}",
        asset_selection=[stage],
        tags={"loom/flow": target.name, "loom/late-input": source.name,
              ASSET_PARTITION_RANGE_START_TAG: early[0], ASSET_PARTITION_RANGE_END_TAG: early[-1]},
    )
