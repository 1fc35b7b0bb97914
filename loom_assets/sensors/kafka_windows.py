"""The window sensor: it plans each flow's closed windows into the offset log, then asks for
the runs of every window that has not landed or not finished yet (docs/reliability.md). The log
is the state."""

import logging
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from loom_assets.flows.base import Flow
from loom_assets.resources.kafka import KafkaResource
from loom_assets.resources.offset_log import (
    FAILING_AFTER_REQUESTS,
    OffsetGap,
    insert_plans,
    log_tail,
)
from loom_assets.resources.stage_windows import unfinished_windows
from loom_assets.resources.warehouse import Warehouse
from loom_assets.settings import settings
from loom_assets.windows import (
    OffsetRange,
    offset_gaps,
    partition_key,
    plan_hash,
    plan_ranges,
    window_at_or_after,
    window_from_key,
    window_of,
)

log = logging.getLogger(__name__)

# Bounds the work of one tick after a long pause; the next tick goes on where this one stopped.
MAX_WINDOWS_PER_TICK = 48
# A record stamped later than this ahead of now is an anomaly (a device clock far off): time
# lookups that reach it are not trusted (see `plan_ranges`).
STAMPED_AHEAD_AFTER = timedelta(hours=1)
# Landed windows with a stage unfinished are looked for this often (windows not landed yet, on
# every tick: an indexed lookup).
SWEEP_EVERY = timedelta(minutes=1)
# A window whose run failed is asked for again after 1, 2, 4 … minutes, at most hourly.
MAX_RETRY_DELAY = timedelta(hours=1)
IN_FLIGHT = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
             DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]


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
                        through_now: bool = False, warn: Callable[[str], None] = log.warning) -> list[PlannedWindow]:
    """Plan every window of `flow` that has closed (plus grace) since the last planned one.

    `through_now` also plans the window in progress, up to the high watermark of this moment
    (for headless catch-up and tests: its later messages simply land in the next window).
    Planning holds the flow's lock from reading the log's tail to writing the new plans, so two
    planners (the sensor, `loom process`) can neither overlap nor leave a gap.
    """
    size, grace = flow.window, settings().window_grace
    newest = window_of(now, size) if through_now else window_of(now - grace, size) - size
    with warehouse.planning(flow.name) as conn:
        tail = log_tail(conn, flow.name)
        start = None if tail.last_end is None else window_at_or_after(tail.last_end, size)
        if start is not None and start > newest:
            return []
        tps = kafka.partitions(flow.topics)
        if not tps:
            return []
        marks = kafka.watermarks(tps)
        lows = {tp: low for tp, (low, _) in marks.items()}
        highs = {tp: high for tp, (_, high) in marks.items()}
        if start is None:
            # The first plan starts at the oldest record's window (within retention), so a backlog
            # spreads over the windows of its own time instead of landing in one.
            oldest = kafka.oldest_timestamp(lows, highs)
            start = newest if oldest is None else min(newest, max(window_of(oldest, size),
                                                                  window_of(now - settings().retention, size)))
        elif start != tail.last_end:
            warn(f"{flow.name}: the window size is now {size}; the last window ended at {tail.last_end:%Y-%m-%d %H:%M}, "
                 f"so the next starts on the new grid at {start:%Y-%m-%d %H:%M} (its offsets follow on exactly)")
        windows = []
        while start <= newest and len(windows) < MAX_WINDOWS_PER_TICK:
            windows.append(start)
            start += size
        if not windows:
            return []
        # A window still open (through_now) has no timestamp lookup: it ends at the high watermark.
        ahead_of = now + STAMPED_AHEAD_AFTER
        lookups = kafka.offsets_at(tps, [w + size for w in windows if w + size <= now] + [ahead_of])
        stamped_ahead = lookups.pop(ahead_of, {})
        gaps = [OffsetGap(*gap) for gap in offset_gaps(tail.ends, lows, highs)]
        for gap in gaps:
            warn(f"{flow.name}: {gap.topic}/{gap.partition} offsets [{gap.from_offset}, {gap.to_offset}) were never "
                 f"planned: " + ("Kafka's retention deleted them first" if gap.reason == "expired"
                                 else "the high watermark is below the last planned end, so the topic was recreated"))
        previous_ends = tail.ends
        planned = []
        for window in windows:
            lookup = lookups.get(window + size, {})
            ranges = plan_ranges(previous_ends, lows, highs, lookup, stamped_ahead)
            for tp in _stalled_lookups(lookup, stamped_ahead):
                warn(f"{flow.name}: {tp[0]}/{tp[1]} offset {stamped_ahead[tp]} is stamped more than {STAMPED_AHEAD_AFTER} "
                     f"ahead, so timestamp lookups stop there: window {window:%Y-%m-%d %H:%M} takes the "
                     "partition up to its high watermark")
            planned.append(PlannedWindow(window, tuple(ranges)))
            previous_ends = {(r.topic, r.partition): r.end for r in ranges}
        insert_plans(conn, flow.name, size, [(w.start, w.ranges) for w in planned], gaps)
    return planned


def _stalled_lookups(lookup: dict, stamped_ahead: dict) -> list[tuple[str, int]]:
    return [tp for tp, offset in lookup.items()
            if offset is not None and stamped_ahead.get(tp) is not None and offset >= stamped_ahead[tp]]


def retry_delay(requests: int) -> timedelta:
    """How long after its latest request a window that has not landed is asked for again."""
    return min(MAX_RETRY_DELAY, timedelta(minutes=2 ** max(0, requests - 1)))


def windows_in_flight(instance, flow: Flow) -> set[str]:
    """Partition keys of `flow`'s runs queued or running now."""
    runs = instance.get_runs(RunsFilter(job_name=flow.job.name, statuses=IN_FLIGHT))
    return {run.tags.get("dagster/partition") for run in runs} - {None}


def run_requests(flow: Flow, kafka: KafkaResource, warehouse: Warehouse, now: datetime,
                 in_flight: Callable[[], Container[str]] = frozenset, backoff: bool = True,
                 warn: Callable[[str], None] = log.warning) -> list[RunRequest]:
    """Runs for every window within retention that holds records and has not finished: not
    landed, or landed with a stage not written (its run died after landing) or whose carried
    state has changed since; unless a run of it is in flight or (`backoff`) its last request is
    too recent. Each request has a run key of its own (window, plan or stages, attempt), so a
    window whose run failed or whose process died is asked for again, not forgotten. Ranges
    whose offsets Kafka dropped before they landed are marked lost, loudly, and the window's
    other ranges still land. `in_flight` gives the partition keys of runs queued or running
    (asked only when some window has not finished)."""
    since = now - settings().retention
    unlanded = warehouse.unlanded_windows(flow.name, since=since)
    with warehouse.connect() as conn:
        unfinished = unfinished_windows(conn, flow.name, flow.stage_tables, since) if flow.stages else []
    if not unlanded and not unfinished:
        return []
    running = in_flight()
    unheld = set(kafka.unheld(r for window in unlanded for r in window.ranges))
    requests, asked = [], []

    def ask(start: datetime, requests_so_far: int, requested_at: datetime | None, run_key: str,
            **request) -> None:
        key = partition_key(start)
        if key in running:
            return
        if backoff and requested_at is not None and now - requested_at < retry_delay(requests_so_far):
            return
        attempt = requests_so_far + 1
        tags = {**flow.run_tags, "loom/attempt": str(attempt),
                "dagster/max_runtime_seconds": str(settings().window_run_max_seconds)}
        if attempt > FAILING_AFTER_REQUESTS:
            tags["loom/failing"] = "true"
            warn(f"{flow.name} {key}: asked for again (attempt {attempt}); its earlier runs did not finish it")
        requests.append(RunRequest(job_name=flow.job.name, partition_key=key, run_key=f"{key}:{run_key}:{attempt}",
                                   tags=tags, **request))
        asked.append(start)

    for window in unlanded:
        gone = [r for r in window.ranges if r in unheld]
        if gone:
            reason = "; ".join(f"{r.topic}/{r.partition} [{r.start}, {r.end}) is no longer in Kafka" for r in gone)
            warn(f"{flow.name} {partition_key(window.start)}: {sum(r.count for r in gone)} records LOST before "
                 f"they landed: {reason}")
            warehouse.mark_lost(flow.name, window.start, gone, reason)
            if all(r in gone for r in window.ranges if r.count):
                continue
        ask(window.start, window.requests, window.requested_at, plan_hash(window.ranges))
    for window in unfinished:
        stages = flow.stages_from(window.tables)
        ask(window.start, window.requests, window.requested_at, "+".join(k.path[-1] for k in stages),
            asset_selection=stages)
    if asked:
        warehouse.mark_requested(flow.name, asked, now)
    # In window order: the run queue starts a flow's runs in the order asked, and a window
    # carrying state waits for the windows before it.
    return sorted(requests, key=lambda r: window_from_key(r.partition_key))


def due_flows(warehouse: Warehouse, flows: Sequence[Flow], now: datetime) -> list[Flow]:
    """The flows with a window closed (plus grace) since their last planned one, or none planned
    yet: only these need the broker and the planning lock this tick. A daily flow is due once a
    day, a 5-minute one every 5 minutes."""
    with warehouse.connect() as conn:
        ends = dict(conn.execute(
            "SELECT f, (SELECT window_end FROM loom_offset_log WHERE flow = f ORDER BY window_start DESC LIMIT 1)"
            " FROM unnest(%s::text[]) AS f", ([flow.name for flow in flows],)).fetchall())
    grace = settings().window_grace
    return [flow for flow in flows if ends.get(flow.name) is None or ends[flow.name] + flow.window + grace <= now]


def windows_sensor(flows: Sequence[Flow]):
    """One sensor for every flow, so that a tick with nothing to do is one evaluation and two
    indexed queries, not one evaluation per flow with broker round trips.

    Each tick plans the flows with a closed window (`due_flows`) and asks for the windows not
    landed yet; every `SWEEP_EVERY` it also looks for landed windows with a stage unfinished
    (a run died after landing, or carried state changed). The cursor holds only that sweep's time:
    the offset log is the state."""

    @sensor(
        name="windows",
        jobs=[flow.job for flow in flows],
        minimum_interval_seconds=10,
        default_status=DefaultSensorStatus.RUNNING,
        description="Plans each flow's closed windows into the offset log and requests the run of every window "
                    "not landed or not finished yet (again, with a backoff, after a failure).",
    )
    def _sensor(context: SensorEvaluationContext, kafka: KafkaResource, warehouse: Warehouse):
        now = datetime.now(UTC)
        swept_at = float(context.cursor) if context.cursor else None
        sweep = swept_at is None or not 0 <= now.timestamp() - swept_at < SWEEP_EVERY.total_seconds()
        planned, requests, failed = 0, [], []
        # One flow's failure (its planning refused, say) must not hold the other flows back: it is
        # logged as an error and the others' runs are still asked for; a tick that has nothing
        # else to ask for fails with it.
        for flow in due_flows(warehouse, flows, now):
            try:
                planned += len(plan_closed_windows(flow, kafka, warehouse, now, warn=context.log.warning))
            except Exception as error:
                context.log.exception(f"{flow.name}: planning failed; the next tick tries again")
                failed.append(error)
        unlanded = warehouse.flows_with_unlanded_windows(since=now - settings().retention)
        for flow in flows:
            if not (sweep or flow.name in unlanded):
                continue
            try:
                requests += run_requests(flow, kafka, warehouse, now,
                                         lambda flow=flow: windows_in_flight(context.instance, flow),
                                         warn=context.log.warning)
            except Exception as error:
                context.log.exception(f"{flow.name}: asking for its windows failed; the next tick tries again")
                failed.append(error)
        if failed and not requests:
            raise failed[0]
        if sweep and not failed:
            context.update_cursor(f"{now.timestamp():.3f}")
        if not requests:
            return SkipReason(f"nothing to land ({planned} windows planned)")
        return requests

    return _sensor
