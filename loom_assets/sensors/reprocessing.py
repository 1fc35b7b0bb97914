"""Reprocessing: windows last written by an older code version (a new model or rules version),
or whose carried state changed, are run again, in chunks, in window order, never everything
at once (docs/architecture.md#versions-and-state)."""

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from dagster import (
    AssetKey,
    DagsterInstance,
    DefaultScheduleStatus,
    RunRequest,
    RunsFilter,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from loom_assets.dagster_compat import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from loom_assets.flows.base import Flow
from loom_assets.resources.stage_windows import written_versions
from loom_assets.resources.warehouse import Warehouse
from loom_assets.sensors.kafka_windows import IN_FLIGHT
from loom_assets.settings import settings
from loom_assets.windows import partition_key, window_from_key

# One chunk is one single-run backfill: a day of 5-minute windows at most.
CHUNK_WINDOWS = 288
# The schedule launches at most this many chunks per evaluation.
CHUNKS_PER_TICK = 4


@dataclass(frozen=True)
class StaleChunk:
    """Consecutive stale windows of one flow, re-run together as one single-run backfill."""

    flow: str
    windows: tuple[str, ...]
    assets: tuple[AssetKey, ...]
    flow_tags: Mapping[str, str]

    @property
    def first(self) -> str:
        return self.windows[0]

    @property
    def last(self) -> str:
        return self.windows[-1]

    @property
    def tags(self) -> dict[str, str]:
        return {**self.flow_tags, "loom/reprocess": "true"}

    @property
    def range_tags(self) -> dict[str, str]:
        """Tags that make one run cover the whole chunk (what a single-run backfill launches)."""
        return {**self.tags, ASSET_PARTITION_RANGE_START_TAG: self.first, ASSET_PARTITION_RANGE_END_TAG: self.last}


def stale_windows(warehouse: Warehouse, flow: Flow, since: datetime,
                  forced: Collection[AssetKey] = ()) -> dict[str, set[AssetKey]]:
    """Partition key -> stage assets whose window was last written by another code version than
    the one deployed now, or whose carried state has changed since, or that read a stage which
    is stale (flow stages are in dependency order, so staleness flows downstream). `forced`
    stages count as stale in every window they were written in: their inputs changed outside
    the code (new georegions). Loom's own version table says it, so this holds for as long as
    the rows do, however short Dagster keeps its run history."""
    stale: dict[str, set[AssetKey]] = {}
    with warehouse.connect() as conn:
        for stage in flow.stages:
            key = stage.key
            current = stage.code_versions_by_key[key]
            written = written_versions(conn, stage.metadata_by_key[key]["table"], since)
            for start, (version, state_changed) in written.items():
                window = partition_key(start)
                if (version != current or state_changed or key in forced
                        or stage.dependency_keys & stale.get(window, set())):
                    stale.setdefault(window, set()).add(key)
    return stale


def stale_chunks(warehouse: Warehouse, flow: Flow, since: datetime,
                 forced: Collection[AssetKey] = ()) -> list[StaleChunk]:
    """Stale windows grouped into runs of consecutive windows (≤ CHUNK_WINDOWS each), in window
    order (a flow that carries state must reprocess them in order)."""
    stale = stale_windows(warehouse, flow, since, forced)
    chunks: list[StaleChunk] = []
    run: list[str] = []
    for window in sorted(stale, key=window_from_key):
        adjacent = run and window_from_key(window) - window_from_key(run[-1]) == flow.window
        if run and (not adjacent or len(run) >= CHUNK_WINDOWS):
            chunks.append(_chunk(flow, run, stale))
            run = []
        run.append(window)
    if run:
        chunks.append(_chunk(flow, run, stale))
    return chunks


def _chunk(flow: Flow, windows: Sequence[str], stale: dict[str, set[AssetKey]]) -> StaleChunk:
    keys = set().union(*(stale[w] for w in windows))
    # Keep the flow's stage order, so a stage runs after the stages it reads.
    ordered = tuple(s.key for s in flow.stages if s.key in keys)
    return StaleChunk(flow.name, tuple(windows), ordered, flow.run_tags)


def reprocess_schedule(flow: Flow):
    """Hourly: launch a few chunks of the flow's stale windows within retention, in window order
    (the run queue, with its `loom/reprocess` limit, paces them behind the live windows). A
    chunk overlapping a reprocess run of the flow still queued or running is not asked for again;
    one whose run failed is asked for again at the next tick."""

    @schedule(name=f"{flow.name}_reprocess", cron_schedule="17 * * * *", job=flow.job,
              default_status=DefaultScheduleStatus.RUNNING,
              description=f"Re-runs {flow.name} windows computed with an older model or rules version, in chunks.")
    def _schedule(context: ScheduleEvaluationContext, warehouse: Warehouse):
        since = datetime.now(UTC) - settings().retention
        busy = reprocessing_in_flight(context.instance, flow)
        chunks = [c for c in stale_chunks(warehouse, flow, since)
                  if not any(window_from_key(c.first) <= last and first <= window_from_key(c.last)
                             for first, last in busy)][:CHUNKS_PER_TICK]
        if not chunks:
            return SkipReason("no stale windows" if not busy else "no stale windows beside the reprocessing in flight")
        # A schedule's run keys hold within a tick (recovery of a failed tick), not across ticks.
        return [RunRequest(run_key=f"reprocess:{c.first}:{c.last}:{'+'.join(k.path[-1] for k in c.assets)}",
                           asset_selection=list(c.assets), tags=c.range_tags) for c in chunks]

    return _schedule


def reprocessing_in_flight(instance: DagsterInstance, flow: Flow) -> list[tuple[datetime, datetime]]:
    """The window ranges (first, last) of `flow`'s reprocess runs queued or running."""
    runs = instance.get_runs(RunsFilter(job_name=flow.job.name, statuses=IN_FLIGHT,
                                        tags={"loom/reprocess": "true"}))
    return [(window_from_key(run.tags[ASSET_PARTITION_RANGE_START_TAG]),
             window_from_key(run.tags[ASSET_PARTITION_RANGE_END_TAG]))
            for run in runs if ASSET_PARTITION_RANGE_START_TAG in run.tags]
