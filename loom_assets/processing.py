"""Headless operation: the sensors' plan/run loop in-process, status, and reprocessing.

`loom process` runs exactly what the daemon would: the same planning function the sensor
calls, then the flow's job for each window, with the sensor's run keys so nothing runs twice.
"""

import functools
import multiprocessing
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dagster import DagsterInstance
from psycopg import sql
from tqdm import tqdm

from loom_assets.dagster_compat import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    backfills,
    make_new_backfill_id,
)
from loom_assets.flows.base import Flow
from loom_assets.sensors.kafka_windows import plan_closed_windows, run_requests
from loom_assets.sensors.reprocessing import StaleChunk, stale_chunks
from loom_assets.settings import settings
from loom_assets.windows import partition_key, unplanned_records

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


# A backlog runs in ranges of this much event time: one run per range and flow instead of one
# per window (a 5-minute flow's day is 288 runs of ~4 s of Dagster's own work each).
BACKLOG_RANGE = timedelta(hours=6)
_GRID_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class BacklogRun:
    flow: str
    first: datetime  # the first and last window start of the run's range
    last: datetime
    until: datetime  # the end of the range's time cell: all flows are done to here after its runs


def backlog_runs(starts: Mapping[str, Sequence[datetime]], span: timedelta = BACKLOG_RANGE) -> list[BacklogRun]:
    """The ranged runs of a backlog: each flow's window starts (given in the flows' reading
    order) grouped by the cell of a `span` grid they start in, one run per flow and cell (the
    windows between without records go along, empty); in time order, every flow's run of a
    cell before the next cell's, so the oldest hours fill every table first."""
    runs = []
    for order, (flow, flow_starts) in enumerate(starts.items()):
        cells: dict[int, list[datetime]] = {}
        for start in flow_starts:
            cells.setdefault((start - _GRID_ORIGIN) // span, []).append(start)
        runs += [(cell, order, BacklogRun(flow, min(s), max(s), _GRID_ORIGIN + (cell + 1) * span))
                 for cell, s in cells.items()]
    return [run for _, _, run in sorted(runs, key=lambda r: r[:2])]


def next_backlog_run(pending: Sequence[BacklogRun], running: Collection[BacklogRun],
                     reads: Mapping[str, Collection[str]]) -> BacklogRun | None:
    """The first pending run that may start now: no run of its flow is running (a flow's ranges
    run in order, one at a time), and no run of a flow it reads (`reads`: flow -> the flows whose
    tables it reads by event time) up to the same time is still pending or running."""
    busy = {run.flow for run in running}
    waiting = [*pending, *running]
    for run in pending:
        if run.flow in busy:
            continue
        if any(other.flow in reads.get(run.flow, ()) and other.until <= run.until for other in waiting):
            busy.add(run.flow)  # and its later ranges wait too
            continue
        return run
    return None


@functools.cache
def _worker_instance() -> DagsterInstance:
    return DagsterInstance.get()  # DAGSTER_HOME, inherited from the process that started the worker


def _run_backlog_range(flow_name: str, first: datetime, last: datetime, instance: DagsterInstance | None = None):
    from loom_assets import definitions

    flow = definitions.flow_named(flow_name)
    result = definitions.defs.resolve_job_def(flow.job.name).execute_in_process(
        instance=instance or _worker_instance(), raise_on_error=False,
        tags={**flow.run_tags, "loom/backlog": "true", ASSET_PARTITION_RANGE_START_TAG: partition_key(first),
              ASSET_PARTITION_RANGE_END_TAG: partition_key(last)})
    return result.success, result.run_id


def process_backlog(instance: DagsterInstance, flows: Sequence[Flow], now: datetime,
                    echo: Callable[[str], None] = print, span: timedelta = BACKLOG_RANGE,
                    workers: int = 2) -> bool:
    """Plan every window up to `now` (as the sensor and `loom process --through-now` do), then
    land and process the windows not landed yet in ranged runs (`backlog_runs`: what a
    single-run backfill launches), recorded in the instance like any run: here (`workers` 1),
    or in that many worker processes opening the same instance (DAGSTER_HOME), so a flow with
    much data (motion) runs beside the others. For a long backlog, e.g. `loom dev`'s first demo
    day; the sensors go on from the windows after `now`'s. Returns False if a run failed."""
    _, res = _resources()
    kafka, warehouse = res["kafka"], res["warehouse"]
    starts = {}
    for flow in flows:
        # Through now: the windows in progress too (a day-long window of today would otherwise
        # wait for its end); what comes later lands in the windows after them.
        while plan_closed_windows(flow, kafka, warehouse, now, through_now=True, warn=echo):
            pass  # at most MAX_WINDOWS_PER_TICK windows per call
        starts[flow.name] = [w.start for w in warehouse.unlanded_windows(flow.name, since=now - settings().retention)]
    reads = {flow.name: {read.asset.path[0] for _, read in flow.reads} for flow in flows}
    pending, running = backlog_runs(starts, span), {}
    total, done_to, ok, began = len(pending), None, True, time.monotonic()
    pool = (ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
            if workers > 1 else None)
    try:
        while pending or running:
            while len(running) < workers and (run := next_backlog_run(pending, running.values(), reads)):
                pending.remove(run)
                running[pool.submit(_run_backlog_range, run.flow, run.first, run.last) if pool else
                        _completed(_run_backlog_range(run.flow, run.first, run.last, instance))] = run
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                run = running.pop(future)
                success, run_id = future.result()
                if not success:
                    ok = False
                    echo(f"{run.flow} {partition_key(run.first)} … {partition_key(run.last)}: run {run_id} failed")
            left = [*pending, *running.values()]
            reached = min(r.until for r in left) - span if left else now  # the earliest cell not done
            if reached != done_to:
                done_to = reached
                echo(f"backlog: every flow done to {min(reached, now):%a %H:%M} UTC "
                     f"({total - len(left)} of {total} runs, {time.monotonic() - began:.0f} s)")
    except BaseException:  # Ctrl-C, or a `kill` of `loom dev`: stop the workers' runs too
        for process in (pool._processes or {}).values() if pool else ():  # noqa: SLF001 - no public way
            process.terminate()
        raise
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    return ok


def _completed(value) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future


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
    backfill = backfills.PartitionBackfill.from_asset_partitions(
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
