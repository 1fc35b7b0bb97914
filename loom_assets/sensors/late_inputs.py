"""Stages that read another flow by event time, re-run when that flow's window lands after
they read it.

Motion windows are 5 minutes and location windows 15: the activities of 10:00–10:05 run at
10:05, before the GPS fixes of 10:00–10:15 have landed (at 10:15). Each stage window records the
database snapshot it read its inputs in, and each landing the transaction that landed it, so
"did this window see that landing?" is answered exactly, by PostgreSQL, even when the landing
commits while the stage is reading (a comparison of times would miss that race).
"""

from datetime import UTC, datetime, timedelta

from dagster import (
    AssetKey,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from loom_assets.dagster_compat import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from loom_assets.flows.base import Flow
from loom_assets.resources.warehouse import Warehouse
from loom_assets.settings import settings
from loom_assets.windows import partition_key


def unseen_landings(warehouse: Warehouse, source: Flow, table: str, since: datetime) -> list[tuple[datetime, str]]:
    """Windows of `table` (from `since`) whose inputs were read in a snapshot that does not see
    the landing of a `source` window of their time: (window start, the landings' transaction ids)."""
    with warehouse.connect() as conn:
        return conn.execute(
            "SELECT s.window_start, string_agg(DISTINCT l.landed_xid::text, ',')"
            " FROM loom_stage_windows s JOIN loom_offset_log l ON l.flow = %(source)s"
            "  AND l.landed_xid IS NOT NULL AND s.window_start >= l.window_start AND s.window_start < l.window_end"
            " WHERE s.table_name = %(table)s AND s.window_start >= %(since)s AND s.read_snapshot IS NOT NULL"
            "  AND NOT pg_visible_in_snapshot(l.landed_xid, s.read_snapshot)"
            " GROUP BY s.window_start ORDER BY s.window_start",
            {"source": source.name, "table": table, "since": since},
        ).fetchall()


def rerun_when_landed(source: Flow, target: Flow, stage: AssetKey):
    """After `source`'s raw windows land, re-run `target`'s `stage` for the windows of their time
    that read their inputs before the landing was visible (one ranged run per stretch of
    consecutive windows; its run key names the landings, so each is asked for once)."""
    table = "_".join(stage.path)

    @sensor(
        name=f"{target.name}_{stage.path[-1]}_after_{source.name}",
        job=target.job,
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=60,
        description=f"Re-runs {'/'.join(stage.path)} for windows computed before the "
                    f"{source.name} data of their time had landed.",
    )
    def _sensor(context: SensorEvaluationContext, warehouse: Warehouse):
        unseen = unseen_landings(warehouse, source, table, datetime.now(UTC) - settings().retention)
        if not unseen:
            return SkipReason(f"every {table} window saw the {source.name} windows of its time")
        return [
            RunRequest(
                run_key=f"{partition_key(first)}:{partition_key(last)}:{xids}",
                asset_selection=[stage],
                tags={**target.run_tags, "loom/late-input": source.name,
                      ASSET_PARTITION_RANGE_START_TAG: partition_key(first),
                      ASSET_PARTITION_RANGE_END_TAG: partition_key(last)},
            )
            for first, last, xids in _stretches(unseen, target.window)
        ]

    return _sensor


def _stretches(windows: list[tuple[datetime, str]], size: timedelta) -> list[tuple[datetime, datetime, str]]:
    """Consecutive windows as (first, last, their landings)."""
    stretches: list[tuple[datetime, datetime, str]] = []
    for start, xids in windows:
        if stretches and start - stretches[-1][1] == size:
            first, _, seen = stretches[-1]
            stretches[-1] = (first, start, ",".join(sorted(set(seen.split(",")) | set(xids.split(",")))))
        else:
            stretches.append((start, start, xids))
    return stretches
