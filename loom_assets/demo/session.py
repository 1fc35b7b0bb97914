"""A `loom dev` demo session: on a fresh home, a catch-up (the previous local day and today so
far, at once, stamped with event time) and then live events from exactly where it ended; on a
later start, live events only. A marker file under LOOM_HOME says a demo ran there before."""

from __future__ import annotations

import json
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
