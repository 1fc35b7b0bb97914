"""A `loom dev` demo session: on a fresh home, a catch-up (the previous local day and today so
far, at once, stamped with event time) and then live events from exactly where it ended; on a
later start, live events only. A marker file under LOOM_HOME says a demo ran there before."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from loom_assets.demo.people import LOCAL_TZ

MARKER = "demo-session.json"
LIVE_CHUNK = timedelta(minutes=60)  # the live producer generates an hour of events at a time


@dataclass(frozen=True)
class DemoStart:
    """What `loom dev`'s demo does now: replay [catch_up_from, live_from) at once (when
    `catch_up_from` is set), then produce live from `live_from` on."""

    catch_up_from: datetime | None
    live_from: datetime

    @property
    def catch_up_minutes(self) -> float:
        return 0.0 if self.catch_up_from is None else (self.live_from - self.catch_up_from).total_seconds() / 60


def catch_up_start(now: datetime) -> datetime:
    """Local midnight at the start of the day before `now`'s local day, in UTC."""
    yesterday = now.astimezone(LOCAL_TZ).date() - timedelta(days=1)
    return datetime(yesterday.year, yesterday.month, yesterday.day, tzinfo=LOCAL_TZ).astimezone(timezone.utc)


def demo_start(home: Path, now: datetime) -> DemoStart:
    """A fresh home (no marker) catches up from yesterday's local midnight to `now` (to the
    millisecond, the demo's clock resolution); a home with a marker only goes on live from `now`."""
    now = now.astimezone(timezone.utc)
    live_from = now.replace(microsecond=now.microsecond // 1000 * 1000)
    if (home / MARKER).exists():
        return DemoStart(None, live_from)
    return DemoStart(catch_up_start(live_from), live_from)


def mark_started(home: Path, start: DemoStart) -> None:
    """Record that a demo ran here, before its catch-up is produced: a catch-up interrupted
    midway is not produced twice (no duplicate events), the next start just goes on live."""
    home.mkdir(parents=True, exist_ok=True)
    (home / MARKER).write_text(json.dumps({
        "catch_up_from": start.catch_up_from.isoformat() if start.catch_up_from else None,
        "live_from": start.live_from.isoformat()}) + "\n")


def live_spans(live_from: datetime, chunk: timedelta = LIVE_CHUNK):
    """Consecutive (start, minutes) spans from `live_from` on, each starting where the last ended."""
    start = live_from
    while True:
        yield start, chunk.total_seconds() / 60
        start += chunk


DEVICES, SEED = 2, 0  # `loom dev`'s demo: one person's phone and laptop


def produce_catch_up(producer, start: DemoStart, echo=print) -> int:
    """Replay [catch_up_from, live_from) as fast as the producer takes it, each message stamped
    with its event time (so every flow's first plan spreads it over the windows of its time)."""
    from loom_assets.demo.replay import demo_messages, replay

    began = time.monotonic()
    echo(f"replaying yesterday and today so far ({start.catch_up_from.astimezone(LOCAL_TZ):%a %H:%M} to "
         f"{start.live_from.astimezone(LOCAL_TZ):%a %H:%M} in San Francisco) …")
    messages = demo_messages(start.catch_up_from, start.catch_up_minutes, devices=DEVICES, seed=SEED)
    sent = replay(producer, messages, speed=None, event_timestamps=True, progress=False, flush_timeout=300)
    echo(f"replaying yesterday and today so far: {sent} messages produced in {time.monotonic() - began:.0f} s")
    return sent


def produce_live(producer_factory, live_from: datetime, calendar_on_start: bool = True) -> None:
    """Forever: events from `live_from` on, an hour at a time, each sent when the clock reaches
    its event time (those already due at once); `calendar_on_start`: publish the calendar of the
    first hour's day (false after a catch-up, which published it)."""
    from loom_assets.demo.replay import demo_messages, replay

    for i, (start, minutes) in enumerate(live_spans(live_from)):
        # Same seed: the same devices every hour, the next hour of their day each time.
        messages = demo_messages(start, minutes, devices=DEVICES, seed=SEED,
                                 calendar_on_start=calendar_on_start and i == 0)
        replay(producer_factory(), messages, speed=1.0, progress=False, wall_clock=True)
