"""Housekeeping jobs: retention on the native-partition path, and pruning Dagster's own records."""

from datetime import UTC, datetime, timedelta

from dagster import (
    DefaultScheduleStatus,
    In,
    Nothing,
    OpExecutionContext,
    Out,
    RunsFilter,
    ScheduleDefinition,
    job,
    op,
)

from loom_assets.erasure import referenced_blobs
from loom_assets.resources.blobs import BlobStore, unreferenced
from loom_assets.resources.warehouse import Warehouse
from loom_assets.run_logs import RUN_LOG_CONFIG
from loom_assets.settings import settings

# Dagster's event log grows by hundreds of MB a day at one run per window per flow
# (docs/architecture.md#housekeeping).
KEEP_RUNS_FOR = timedelta(days=7)


@op(description="Drop expired daily partitions (native path; TimescaleDB uses its own policies), "
                "and offset-log and geocode-cache entries older than retention.", out=Out(Nothing))
def drop_expired_partitions(context: OpExecutionContext, warehouse: Warehouse) -> None:
    retention = settings().retention
    with warehouse.connect() as conn:
        dropped = conn.execute("SELECT loom_drop_expired_partitions()").fetchone()[0]
        log = conn.execute(
            "DELETE FROM loom_offset_log WHERE window_end < now() - %s "
            # keep each partition's newest entry: the next window starts where it ended
            "AND (flow, topic, partition, window_start) NOT IN ("
            " SELECT DISTINCT ON (flow, topic, partition) flow, topic, partition, window_start"
            " FROM loom_offset_log ORDER BY flow, topic, partition, window_start DESC)",
            (retention,),
        ).rowcount
        # Addresses nobody asked for within retention; a later lookup caches them afresh.
        cache = conn.execute("DELETE FROM geocode_cache WHERE last_used_at < now() - %s", (retention,)).rowcount
    context.log.info(f"dropped {dropped} expired partitions, {log} offset-log entries and "
                     f"{cache} unused geocode-cache entries")


@op(description="Delete blobs no table row refers to any more (after retention or erasure).",
    ins={"after_retention": In(Nothing)})
def sweep_blobs(context: OpExecutionContext, warehouse: Warehouse, blobs: BlobStore) -> None:
    with warehouse.connect() as conn:
        referenced = referenced_blobs(conn)
    removed = blobs.delete(unreferenced(blobs, referenced))
    context.log.info(f"removed {removed} unreferenced blobs ({len(referenced)} referenced)")


@op(description="Delete finished Dagster runs (and their event logs) older than a week.")
def prune_dagster_runs(context: OpExecutionContext) -> None:
    before = datetime.now(UTC) - KEEP_RUNS_FOR
    records = context.instance.get_run_records(RunsFilter(created_before=before), limit=5000)
    pruned = 0
    for record in records:
        if record.dagster_run.is_finished:
            context.instance.delete_run(record.dagster_run.run_id)
            pruned += 1
    context.log.info(f"pruned {pruned} runs created before {before:%Y-%m-%d}")


@job(description="Daily retention and pruning.", config=RUN_LOG_CONFIG)
def housekeeping_job():
    sweep_blobs(drop_expired_partitions())
    prune_dagster_runs()


housekeeping_schedule = ScheduleDefinition(job=housekeeping_job, cron_schedule="23 3 * * *",
                                           execution_timezone="UTC", default_status=DefaultScheduleStatus.RUNNING)
