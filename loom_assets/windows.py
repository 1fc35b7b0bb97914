"""Ingestion windows: each flow's window size, its partitions, and window <-> Kafka offsets.

A partition is a window of ingestion time (UTC) and, once planned, an exact Kafka offset
range per topic partition (docs/reliability.md). Planning is a pure function here; the sensor feeds it
broker answers and writes its result to the offset log.
"""

import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

from dagster import TimeWindowPartitionsDefinition

from loom_assets.offsets import OffsetRange
from loom_assets.settings import window_override

PARTITION_FMT = "%Y-%m-%d-%H:%M"

# LOOM_WINDOW_<FLOW>_MINUTES overrides.
DEFAULT_WINDOWS: dict[str, timedelta] = {
    "audio": timedelta(minutes=5),
    "motion": timedelta(minutes=5),
    "app_lifecycle": timedelta(minutes=5),
    "screenshot_ocr": timedelta(minutes=5),
    "camera_vision": timedelta(minutes=15),
    "location": timedelta(minutes=15),
    "power_state": timedelta(minutes=15),
    "network_events": timedelta(hours=1),
    "email": timedelta(hours=1),
    "calendar": timedelta(days=1),
    "hackernews": timedelta(days=1),
}


def window_size(flow: str) -> timedelta:
    return window_override(flow) or DEFAULT_WINDOWS[flow]


def cron_for(size: timedelta) -> str:
    """The cron schedule whose ticks are the window boundaries (sizes must divide an hour or a day)."""
    minutes = int(size.total_seconds() // 60)
    if minutes < 60 and 60 % minutes == 0:
        return f"*/{minutes} * * * *" if minutes > 1 else "* * * * *"
    if minutes % 60 == 0 and 24 % (minutes // 60) == 0:
        hours = minutes // 60
        return f"0 */{hours} * * *" if hours < 24 else "0 0 * * *"
    raise ValueError(f"a window of {size} does not divide an hour or a day")


def partitions_start(now: datetime, retention: timedelta) -> datetime:
    """Partitions start on the first day of the month holding the retention horizon.

    So the start rolls forward with retention and an asset never shows more than about two
    months of windows (Dagster's UI slows past tens of thousands of partitions).
    """
    horizon = now - retention
    return datetime(horizon.year, horizon.month, 1, tzinfo=UTC)


def partitions_def(flow: str, retention: timedelta, now: datetime | None = None):
    """The flow's windows. `end_offset=1` makes the window in progress a partition too, so a
    window can be planned early (`loom process --through-now`) and shown while it fills."""
    return TimeWindowPartitionsDefinition(
        end_offset=1,
        start=partitions_start(now or datetime.now(UTC), retention),
        fmt=PARTITION_FMT,
        cron_schedule=cron_for(window_size(flow)),
        timezone="UTC",
    )


def window_of(instant: datetime, size: timedelta) -> datetime:
    """Start of the window holding `instant` (windows are aligned to the Unix epoch)."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + ((instant - epoch) // size) * size


def partition_key(window_start: datetime) -> str:
    return window_start.astimezone(UTC).strftime(PARTITION_FMT)


def window_from_key(key: str) -> datetime:
    return datetime.strptime(key, PARTITION_FMT).replace(tzinfo=UTC)


def window_at_or_after(instant: datetime, size: timedelta) -> datetime:
    """Start of the first window on `size`'s grid at or after `instant` (after a window size
    changes, the next window starts on the new grid)."""
    start = window_of(instant, size)
    return start if start == instant else start + size


def plan_ranges(
    previous_ends: Mapping[tuple[str, int], int],
    low_watermarks: Mapping[tuple[str, int], int],
    high_watermarks: Mapping[tuple[str, int], int],
    time_lookup: Mapping[tuple[str, int], int | None],
    stamped_ahead: Mapping[tuple[str, int], int | None] | None = None,
) -> list[OffsetRange]:
    """Plan one window's ranges: start where the previous window ended, end at the time lookup.

    `time_lookup` is the broker's answer to offsets_for_times(window end): the first offset at or
    after the end, or None when no message is that late (then the high watermark). A partition
    never planned before starts at its low watermark, so nothing on the topic is skipped; so does
    one whose previous end Kafka no longer holds (see `offset_gaps`). The end is clamped to
    [start, high watermark]: offsets only move forward, so no offset can land in two windows.

    `stamped_ahead` is the first offset stamped later than the near future. Kafka answers a
    time lookup with the first offset stamped at or after the time, so one record stamped far
    ahead answers every later lookup with its own offset, and the plan would stall there: a
    lookup that reaches it ends the window at the high watermark instead.
    """
    ahead = stamped_ahead or {}
    ranges = []
    for tp, high in sorted(high_watermarks.items()):
        low = low_watermarks.get(tp, 0)
        start = previous_ends.get(tp, low)
        if not low <= start <= high:
            start = low
        looked_up, future = time_lookup.get(tp), ahead.get(tp)
        # A broker without timestamp lookups (Tansu) answers 0: treat it as "up to now".
        if looked_up is None or looked_up < start or (future is not None and looked_up >= future):
            end = high
        else:
            end = min(looked_up, high)
        ranges.append(OffsetRange(tp[0], tp[1], start, max(start, end)))
    return ranges


def offset_gaps(previous_ends: Mapping[tuple[str, int], int], low_watermarks: Mapping[tuple[str, int], int],
                high_watermarks: Mapping[tuple[str, int], int]) -> list[tuple[str, int, int, int, str]]:
    """Partitions whose previous planned end Kafka no longer holds, as (topic, partition, previous
    end, new start, reason): retention deleted offsets before they were planned (`expired`), or
    the high watermark is below the previous end, so the topic was recreated (`topic_reset`)."""
    gaps = []
    for tp, end in sorted(previous_ends.items()):
        if tp not in high_watermarks:
            continue
        low, high = low_watermarks.get(tp, 0), high_watermarks[tp]
        if end > high:
            gaps.append((*tp, end, low, "topic_reset"))
        elif end < low:
            gaps.append((*tp, end, low, "expired"))
    return gaps


def unplanned_records(previous_ends: Mapping[tuple[str, int], int],
                      watermarks: Mapping[tuple[str, int], tuple[int, int]]) -> int:
    """Records Kafka holds past each partition's last planned end: the lag before planning."""
    return sum(max(0, high - max(low, previous_ends.get(tp, low))) for tp, (low, high) in watermarks.items())


def plan_hash(ranges: Iterable[OffsetRange]) -> str:
    text = ";".join(f"{r.topic}/{r.partition}:{r.start}-{r.end}" for r in sorted(ranges))
    return hashlib.sha1(text.encode()).hexdigest()[:12]
