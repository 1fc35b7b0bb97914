"""One sensor factory: each flow's sensor plans closed windows into the offset log, then asks
for their runs (DESIGN §1, §3). The log is the state; the cursor only says what was last seen."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dagster import DefaultSensorStatus, RunRequest, SensorEvaluationContext, SkipReason, sensor

from loom_assets.flows.base import Flow
from loom_assets.resources.kafka import KafkaResource
from loom_assets.resources.warehouse import Warehouse
from loom_assets.settings import settings
from loom_assets.windows import OffsetRange, partition_key, plan_hash, plan_ranges, window_of

# Bounds the work of one tick after a long pause; the next tick goes on where this one stopped.
MAX_WINDOWS_PER_TICK = 48
# Windows planned this recently are asked for again each tick: run keys make that a no-op,
# and a run lost between planning and requesting (a daemon crash) is requested after all.
REQUEST_AGAIN_WITHIN = timedelta(minutes=30)


@dataclass(frozen=True)
class PlannedWindow:
    start: datetime
    ranges: tuple[OffsetRange, ...]

    @property
    def records(self) -> int:
        return sum(r.count for r in self.ranges)

    @property
    def run_key(self) -> str:
        return f"{partition_key(self.start)}:{plan_hash(self.ranges)}"


def plan_closed_windows(flow: Flow, kafka: KafkaResource, warehouse: Warehouse, now: datetime,
                        through_now: bool = False) -> list[PlannedWindow]:
    """Plan every window of `flow` that has closed (plus grace) since the last planned one.

    `through_now` also plans the window in progress, up to the high watermark of this moment
    (for headless catch-up and tests: its later messages simply land in the next window).
    """
    size, grace = flow.window, settings().window_grace
    last_start, previous_ends = warehouse.last_planned(flow.name)
    newest = window_of(now, size) if through_now else window_of(now - grace, size) - size
    tps = kafka.partitions(flow.topics)
    if not tps or (last_start is not None and last_start + size > newest):
        return []
    marks = kafka.watermarks(tps)
    lows = {tp: low for tp, (low, _) in marks.items()}
    highs = {tp: high for tp, (_, high) in marks.items()}
    if last_start is not None:
        start = last_start + size
    else:
        # The first plan starts at the oldest record's window (within retention), so a backlog
        # spreads over the windows of its own time instead of landing in one.
        oldest = kafka.oldest_timestamp(lows, highs)
        start = newest if oldest is None else min(newest, max(window_of(oldest, size),
                                                              window_of(now - settings().retention, size)))
    windows = []
    while start <= newest and len(windows) < MAX_WINDOWS_PER_TICK:
        windows.append(start)
        start += size
    # A window still open (through_now) has no timestamp lookup: it ends at the high watermark.
    lookups = kafka.offsets_at(tps, [w + size for w in windows if w + size <= now])
    planned = []
    for window in windows:
        ranges = plan_ranges(previous_ends, lows, highs, lookups.get(window + size, {}))
        planned.append(PlannedWindow(window, tuple(ranges)))
        previous_ends = {(r.topic, r.partition): r.end for r in ranges}
    warehouse.record_plans(flow.name, size, [(w.start, w.ranges) for w in planned])
    return planned


def run_requests(flow: Flow, warehouse: Warehouse, now: datetime, planned: list[PlannedWindow]) -> list[RunRequest]:
    """Run requests for the windows just planned and those planned recently, if they hold
    records; the run key (window + plan hash) makes a repeated request a no-op."""
    since = window_of(now - max(REQUEST_AGAIN_WITHIN, 2 * flow.window), flow.window)
    recent = warehouse.planned_ranges(flow.name, since, now + flow.window)
    windows = {w.start: w for w in planned}
    windows.update((start, PlannedWindow(start, tuple(ranges))) for start, ranges in recent.items())
    return [
        RunRequest(partition_key=partition_key(w.start), run_key=w.run_key, tags={"loom/flow": flow.name})
        for _, w in sorted(windows.items())
        if w.records > 0
    ]


def window_sensor(flow: Flow):
    @sensor(
        name=f"{flow.name}_windows",
        job=flow.job,
        minimum_interval_seconds=10,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Plans each closed {flow.name} window into the offset log and requests its run.",
    )
    def _sensor(context: SensorEvaluationContext, kafka: KafkaResource, warehouse: Warehouse):
        now = datetime.now(UTC)
        planned = plan_closed_windows(flow, kafka, warehouse, now)
        requests = run_requests(flow, warehouse, now, planned)
        if planned:
            context.update_cursor(partition_key(planned[-1].start))
        if not requests:
            return SkipReason(f"no new offsets ({len(planned)} windows planned)")
        return requests

    return _sensor
