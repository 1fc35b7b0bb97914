"""A person's day: the plan of segments (asleep, driving, at work, ...) the generators follow."""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from loom_assets.demo.people import (
    ACTIVITY_INTENSITY,
    COFFEE_SHOP,
    COFFEE_WALK,
    COMMUTE_ROUTE,
    DRIVE_SPEED_MPS,
    HOME,
    LOCAL_TZ,
    WALK_SPEED_MPS,
    WORK,
    Place,
)
from loom_assets.demo.travel import Path, _offset, travel_profile

# --------------------------------------------------------------------------------------------
# A person's day
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    start: datetime
    end: datetime
    activity: str  # sleep | morning | drive | work | walk | coffee | evening
    place: Place | None = None  # where the person stays (None while travelling)
    path: Path | None = None  # travel route
    profile: tuple[float, ...] = ()  # metres covered after each second of travel
    altitudes: tuple[float, float] = (0.0, 0.0)  # altitude at path start and end

    def position(self, t: datetime) -> tuple[float, float, float, float, float]:
        """(lat, lon, altitude, speed m/s, heading deg) at ``t``."""
        if self.place is not None:
            return self.place.lat, self.place.lon, self.place.altitude, 0.0, 0.0
        assert self.path is not None
        s = min(max((t - self.start).total_seconds(), 0.0), len(self.profile) - 1.0)
        i = min(int(s), len(self.profile) - 2)
        dist = self.profile[i] + (self.profile[i + 1] - self.profile[i]) * (s - i)
        speed = self.profile[i + 1] - self.profile[i]
        lat, lon, heading = self.path.locate(dist)
        frac = dist / self.path.length if self.path.length else 1.0
        alt = self.altitudes[0] + (self.altitudes[1] - self.altitudes[0]) * frac
        return lat, lon, alt, speed, heading


def _local(day: date, hours: float) -> datetime:
    midnight = datetime(day.year, day.month, day.day, tzinfo=LOCAL_TZ)
    return (midnight + timedelta(hours=hours)).astimezone(timezone.utc)


class DayPlan:
    """Where one person is and what they do, as segments covering [start, end)."""

    def __init__(self, seed: int, person: int, start: datetime, end: datetime, plan_date: date | None = None):
        """`plan_date`: live the local day of `start` as planned for that date (and the days
        around it likewise), so that a test can replay one fixed plan at recent timestamps."""
        self.seed, self.person = seed, person
        self.home = self._home(seed, person)
        self.commute = Path(((self.home.lat, self.home.lon),) + COMMUTE_ROUTE[1:])
        self.walk = Path(COFFEE_WALK)
        start_day = start.astimezone(LOCAL_TZ).date()
        self._plan_shift = (plan_date - start_day) if plan_date else timedelta(0)
        first = start_day - timedelta(days=1)
        last = end.astimezone(LOCAL_TZ).date() + timedelta(days=1)
        self.segments: list[Segment] = []
        day = first
        while day <= last:
            self.segments.extend(self._day(day))
            day += timedelta(days=1)
        self._starts = [s.start for s in self.segments]

    @staticmethod
    def _home(seed: int, person: int) -> Place:
        if person == 0:
            return HOME
        rng = random.Random(f"loom-demo-home:{seed}:{person}")
        lat, lon = _offset(HOME.lat, HOME.lon, rng.uniform(-900, 900), rng.uniform(-900, 900))
        return Place("home", round(lat, 6), round(lon, 6), HOME.altitude, HOME.accuracy_m)

    def _trip(
        self, rng: random.Random, t0: datetime, path: Path, activity: str, a: Place, b: Place
    ) -> Segment:
        if activity == "drive":
            prof = travel_profile(rng, path.length, DRIVE_SPEED_MPS, (250, 800), (10, 60), 2.0, 2.5)
        else:
            prof = travel_profile(rng, path.length, WALK_SPEED_MPS, (120, 250), (5, 40), 1.0, 1.0)
        end = t0 + timedelta(seconds=len(prof) - 1)
        return Segment(t0, end, activity, None, path, tuple(prof), (a.altitude, b.altitude))

    def _day(self, day: date) -> list[Segment]:
        planned = day + self._plan_shift
        rng = random.Random(f"loom-demo-plan:{self.seed}:{self.person}:{planned.isoformat()}")
        home = self.home
        wake = _local(day, 7.0 + rng.uniform(-0.3, 0.4))
        depart = _local(day, 8.3 + rng.uniform(-0.2, 0.3))
        coffee_break = _local(day, 14.5 + rng.uniform(-0.3, 0.3))
        coffee_minutes = rng.uniform(40, 70)
        leave_work = _local(day, 17.5 + rng.uniform(-0.2, 0.5))
        bed = _local(day, 23.2 + rng.uniform(-0.4, 0.5))

        segs = [Segment(_local(day, 0), wake, "sleep", home),
                Segment(wake, depart, "morning", home)]
        drive_in = self._trip(rng, depart, self.commute, "drive", home, WORK)
        walk_out = self._trip(rng, coffee_break, self.walk, "walk", WORK, COFFEE_SHOP)
        back = walk_out.end + timedelta(minutes=coffee_minutes)
        walk_back = self._trip(rng, back, self.walk.reversed(), "walk", COFFEE_SHOP, WORK)
        drive_home = self._trip(rng, leave_work, self.commute.reversed(), "drive", WORK, home)
        segs += [
            drive_in,
            Segment(drive_in.end, coffee_break, "work", WORK),
            walk_out,
            Segment(walk_out.end, back, "coffee", COFFEE_SHOP),
            walk_back,
            Segment(walk_back.end, leave_work, "work", WORK),
            drive_home,
            Segment(drive_home.end, bed, "evening", home),
            Segment(bed, _local(day + timedelta(days=1), 0), "sleep", home),
        ]
        return segs

    def planned_date(self, day: date) -> date:
        """The date whose plan the local ``day`` lives (its own, or shifted by ``plan_date``)."""
        return day + self._plan_shift

    def segments_of(self, day: date) -> list[Segment]:
        """The segments that start on the local ``day``."""
        return [s for s in self.segments if s.start.astimezone(LOCAL_TZ).date() == day]

    def at(self, t: datetime) -> Segment:
        i = bisect.bisect_right(self._starts, t) - 1
        return self.segments[max(i, 0)]

    def intensity(self, family: str, t: datetime) -> float:
        return ACTIVITY_INTENSITY[family][self.at(t).activity]

    def next_active(self, family: str, t: datetime) -> datetime | None:
        """Start of the next segment after ``t`` where ``family`` devices are in use."""
        i = bisect.bisect_right(self._starts, t)
        for seg in self.segments[i:]:
            if ACTIVITY_INTENSITY[family][seg.activity] > 0:
                return seg.start
        return None
