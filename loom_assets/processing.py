"""Headless operation: the sensors' plan/run loop in-process, status, and reprocessing.

`loom process` runs exactly what the daemon would: the same planning function the sensor
calls, then the flow's job for each window, with the sensor's run keys so nothing runs twice.
"""

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from dagster import DagsterInstance
from psycopg import sql
from tqdm import tqdm

from loom_assets.dagster_compat import PartitionBackfill, make_new_backfill_id
from loom_assets.flows.base import Flow
from loom_assets.sensors.kafka_windows import plan_closed_windows, run_requests
from loom_assets.sensors.reprocessing import StaleChunk, stale_chunks
from loom_assets.windows import unplanned_records

RUN_KEY_TAG = "loom/run_key"


def _resources():
    from loom_assets import definitions

    return definitions.defs, definitions.resources()


def process_until_caught_up(instance: DagsterInstance, flows: Sequence[Flow], through_now: bool = False,
                            max_rounds: int = 20, echo: Callable[[str], None] = print) -> bool:
    """Plan and run windows until a round finds nothing left to land. Returns False if any run
    failed. A window an earlier run did not land is run again now, with no backoff, even if the
    instance shows a run of it in progress: that run's process may have died (a killed `loom
    process` leaves its run STARTED), and a second writer of a window waits for the first's lock
    and then rewrites the window whole."""
    defs, res = _resources()
    ok = True
    for flow in flows:
        job = defs.resolve_job_def(flow.job.name)
        for _ in range(max_rounds):
            now = datetime.now(UTC)
            plan_closed_windows(flow, res["kafka"], res["warehouse"], now, through_now=through_now, warn=echo)
            todo = run_requests(flow, res["kafka"], res["warehouse"], now, backoff=False, warn=echo)
            if not todo:
                break
            for request in tqdm(todo, desc=flow.name, unit="window", disable=len(todo) < 3):
                result = job.execute_in_process(
                    partition_key=request.partition_key,
                    asset_selection=request.asset_selection,
                    instance=instance,
                    tags={**request.tags, RUN_KEY_TAG: request.run_key},
                    raise_on_error=False,
                )
                if not result.success:
                    ok = False
                    echo(f"{flow.name} {request.partition_key}: run {result.run_id} failed")
            if not ok:
                break
    return ok


class UnknownStage(ValueError):
    """A stage name that the flow does not have (`loom reprocess --stage`)."""


def reprocess_flow(instance: DagsterInstance, flow: Flow, since: datetime, submit: bool = False,
                   echo: Callable[[str], None] = print, stages: Sequence[str] = (), max_rounds: int = 20) -> bool:
    """Re-run stale windows of `flow` chunk by chunk: here, one run per chunk, or (`submit`) as
    Dagster backfills that the daemon runs and the UI shows. `stages` are re-run in every window
    since, stale or not (and so are the stages reading them)."""
    defs, res = _resources()
    known = {s.key.path[-1]: s.key for s in flow.stages}
    unknown = [name for name in stages if name not in known]
    if unknown:
        raise UnknownStage(f"{flow.name} has no stage {', '.join(unknown)}; stages: {', '.join(known)}")
    warehouse = res["warehouse"]
    chunks = stale_chunks(warehouse, flow, since, forced={known[name] for name in stages})
    if not chunks:
        echo(f"{flow.name}: no stale windows since {since:%Y-%m-%d %H:%M}")
        return True
    if submit:
        echo(f"{flow.name}: {sum(len(c.windows) for c in chunks)} stale windows in {len(chunks)} chunk(s)")
        for chunk in chunks:
            echo(f"  backfill {submit_backfill(instance, defs, chunk)}: {chunk.first} … {chunk.last}")
        return True
    job = defs.resolve_job_def(flow.job.name)
    # Rewritten windows may change the state later windows read: those are stale in turn, and
    # run in the next round, until the state settles.
    for _ in range(max_rounds):
        echo(f"{flow.name}: {sum(len(c.windows) for c in chunks)} stale windows in {len(chunks)} chunk(s)")
        for chunk in tqdm(chunks, desc=f"reprocess {flow.name}", unit="chunk", disable=len(chunks) < 3):
            result = job.get_subset(asset_selection=set(chunk.assets)).execute_in_process(
                instance=instance, tags=chunk.range_tags, raise_on_error=False
            )
            if not result.success:
                echo(f"{flow.name} {chunk.first} … {chunk.last}: run {result.run_id} failed")
                return False
        chunks = stale_chunks(warehouse, flow, since)
        if not chunks:
            return True
    echo(f"{flow.name}: still stale after {max_rounds} rounds")
    return False


def submit_backfill(instance: DagsterInstance, defs, chunk: StaleChunk) -> str:
    """Queue `chunk` as a Dagster backfill (single-run: one run for its range of windows)."""
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=make_new_backfill_id(),
        asset_graph=defs.resolve_asset_graph(),
        partition_names=list(chunk.windows),
        asset_selection=list(chunk.assets),
        backfill_timestamp=time.time(),
        tags=chunk.tags,
        dynamic_partitions_store=instance,
        all_partitions=False,
        title=f"Reprocess {chunk.flow} {chunk.first} … {chunk.last}",
        description="Windows materialized with an older code version (model or rules).",
        run_config=None,
    )
    instance.add_backfill(backfill)
    return backfill.backfill_id


def flow_status(instance: DagsterInstance, flow: Flow) -> dict:
    """What `loom status` shows for one flow."""
    _, res = _resources()
    kafka, warehouse = res["kafka"], res["warehouse"]
    tps = kafka.partitions(flow.topics)
    marks = kafka.watermarks(tps)
    committed = kafka.committed(flow.consumer_group, tps) if tps else {}
    last_planned, ends = warehouse.last_planned(flow.name)
    landing = warehouse.landing_state(flow.name)
    # True lag: records planned but not landed, plus records on the topics not planned yet.
    unplanned = unplanned_records(ends, marks)
    landed = instance.get_latest_materialization_event(flow.key("raw"))
    tables = {}
    for key in [flow.key("raw"), *(s.key for s in flow.stages)]:
        table = "_".join(key.path)
        count = sql.SQL("SELECT count(*) AS n FROM {}").format(sql.Identifier(table))
        tables[table] = int(warehouse.query(count)["n"].iloc[0])
    errors = warehouse.query(
        "SELECT error_type, count(*) AS n FROM processing_errors WHERE flow = %s GROUP BY error_type", (flow.name,)
    )
    return {
        "flow": flow.name,
        "window": str(flow.window),
        "partitions": {
            f"{t}/{p}": {"low": low, "high": high, "committed": committed.get((t, p))}
            for (t, p), (low, high) in marks.items()
        },
        "lag": landing["unlanded_records"] + unplanned,
        "unlanded_records": landing["unlanded_records"],
        "unplanned_records": unplanned,
        "failing_windows": landing["failing_windows"],
        "lost_records": landing["lost_records"],
        "gaps": landing["gaps"],
        "last_planned": last_planned,
        "last_landed": landed.dagster_event.partition if landed and landed.dagster_event else None,
        "tables": tables,
        "errors": dict(zip(errors["error_type"], errors["n"].astype(int))) if not errors.empty else {},
    }
