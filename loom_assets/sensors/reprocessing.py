"""Reprocessing: windows whose last materialization ran an older code version (a new model or
rules version) are run again, in chunks, never everything at once (DESIGN §3)."""

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from dagster import (
    AssetKey,
    DefaultScheduleStatus,
    AssetRecordsFilter,
    DagsterInstance,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from loom_assets.dagster_compat import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG, CODE_VERSION_TAG
from loom_assets.flows.base import Flow
from loom_assets.settings import settings
from loom_assets.windows import window_from_key

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

    @property
    def first(self) -> str:
        return self.windows[0]

    @property
    def last(self) -> str:
        return self.windows[-1]

    @property
    def tags(self) -> dict[str, str]:
        return {"loom/reprocess": "true", "loom/flow": self.flow}

    @property
    def range_tags(self) -> dict[str, str]:
        """Tags that make one run cover the whole chunk (what a single-run backfill launches)."""
        return {**self.tags, ASSET_PARTITION_RANGE_START_TAG: self.first, ASSET_PARTITION_RANGE_END_TAG: self.last}


def stale_windows(instance: DagsterInstance, flow: Flow, since: datetime,
                  forced: Collection[AssetKey] = ()) -> dict[str, set[AssetKey]]:
    """Partition key -> stage assets whose latest materialization of that window has another
    code version than the one deployed now, or that read a stage which has (flow stages are in
    dependency order, so staleness flows downstream). `forced` stages count as stale in every
    window they were materialized in: their inputs changed outside the code (new georegions)."""
    stale: dict[str, set[AssetKey]] = {}
    for stage in flow.stages:
        key = stage.key
        current = stage.code_versions_by_key[key]
        latest: dict[str, str | None] = {}
        cursor = None
        while True:
            result = instance.fetch_materializations(
                AssetRecordsFilter(asset_key=key, after_timestamp=since.timestamp()),
                limit=1000, cursor=cursor, ascending=True,
            )
            for record in result.records:
                if record.partition_key:
                    latest[record.partition_key] = record.asset_materialization.tags.get(CODE_VERSION_TAG)
            if not result.has_more:
                break
            cursor = result.cursor
        for window, version in latest.items():
            # Stale: computed by another version, or from an upstream stage that is itself stale.
            if version != current or key in forced or stage.dependency_keys & stale.get(window, set()):
                stale.setdefault(window, set()).add(key)
    return stale


def stale_chunks(instance: DagsterInstance, flow: Flow, since: datetime,
                 forced: Collection[AssetKey] = ()) -> list[StaleChunk]:
    """Stale windows grouped into runs of consecutive windows (≤ CHUNK_WINDOWS each)."""
    stale = stale_windows(instance, flow, since, forced)
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
    return StaleChunk(flow.name, tuple(windows), ordered)


def reprocess_schedule(flow: Flow):
    """Hourly: launch a few chunks of the flow's stale windows within retention (the run queue,
    with its `loom/reprocess` limit, paces them behind the live windows)."""

    @schedule(name=f"{flow.name}_reprocess", cron_schedule="17 * * * *", job=flow.job,
              default_status=DefaultScheduleStatus.RUNNING,
              description=f"Re-runs {flow.name} windows computed with an older model or rules version, in chunks.")
    def _schedule(context: ScheduleEvaluationContext):
        since = datetime.now(UTC) - settings().retention
        chunks = stale_chunks(context.instance, flow, since)[:CHUNKS_PER_TICK]
        if not chunks:
            return SkipReason("no stale windows")
        return [
            RunRequest(run_key=f"reprocess:{c.first}:{c.last}:{'+'.join(k.path[-1] for k in c.assets)}",
                       asset_selection=list(c.assets), tags=c.range_tags)
            for c in chunks
        ]

    return _schedule
