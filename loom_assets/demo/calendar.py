"""The demo person's calendar, published on ``external.calendar.events.raw`` as Loom's calendar
fetcher publishes it (docs/flows/calendar.md#message-fields, in the nested envelope of
docs/messages.md#fetcher-envelopes): a daily standup at work, coffee at the coffee shop's time,
a call in the evening. Each day's events are published at its local midnight, and at the start
of a replay that begins during the day (``on_start``), so a replayed day has its events.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from typing import Any

import orjson

from loom_assets.demo.constants import CALENDAR_TOPIC
from loom_assets.demo.day import DayPlan, _local
from loom_assets.demo.messages import DemoMessage
from loom_assets.demo.people import LOCAL_TZ, DemoDevice

ZONE = "America/Los_Angeles"  # the person's, docs/flows/calendar.md#message-fields: `timezone`
OFFICE = "Ferry Building, San Francisco, CA 94111"  # WORK's address (demo/people.py)
COFFEE_SHOP_ADDRESS = "1 Market St at Drumm St, San Francisco, CA 94105"  # COFFEE_SHOP (demo/people.py)
TEAM = ("dana@example.com", "priya@example.com", "marco@example.com")
MUM = "mum@example.org"
FETCHER_HEADERS = (("producer_service", b"loom-fetcher"),)  # fetchers/base.py: publish()


def owner_email(person: int) -> str:
    return f"person{person}@example.com"


def calendar_name(person: int) -> str:
    return f"Demo person {person + 1}"


def fetcher_device_id(person: int) -> str:
    """As fetchers/calendar.py's `device_id`: calendar-fetcher-<name lower-cased, spaces → ->."""
    return "calendar-fetcher-" + calendar_name(person).lower().replace(" ", "-")


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _id_time(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _attendee(email: str, name: str | None = None) -> dict[str, Any]:
    return {"email": email, "name": name, "partstat": "accepted", "role": "req-participant",
            "cutype": "individual"}


def _round(t: datetime, minutes: int, up: bool) -> datetime:
    step = timedelta(minutes=minutes)
    epoch = datetime(2000, 1, 1, tzinfo=timezone.utc)
    n, rest = divmod(t - epoch, step)
    return epoch + (n + (1 if up and rest else 0)) * step


def day_events(plan: DayPlan, day: date) -> list[dict[str, Any]]:
    """The occurrences of the local `day`, each as the fetcher's `data` (fetchers/calendar.py's
    `_occurrence_data`, in its field order), in start order."""
    person, me = plan.person, owner_email(plan.person)
    context = {"calendar_id": f"demo-person-{person}", "calendar_name": calendar_name(person),
               "account_name": calendar_name(person), "source_url": None}

    def event(uid: str, title: str, start: datetime, end: datetime, *, description: str | None = None,
              location: str | None = None, rule: str | None = None, organizer: str = me,
              attendees: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
        return {
            "event_id": f"{uid}/{_id_time(start)}", "uid": uid,
            "recurrence_id": _iso(start) if rule else None, **context,
            "owner_email": me, "title": title, "description": description, "location": location,
            "start_time": _iso(start), "end_time": _iso(end), "all_day": False, "timezone": ZONE,
            "recurring_rule": rule, "status": "confirmed", "organizer": organizer,
            "attendees": list(attendees), "sequence": 0, "last_modified": None,
        }

    events = []
    work = [s for s in plan.segments_of(day) if s.activity == "work"]
    standup = _local(day, 9.5)
    # The demo person goes to work every day of the plan: a standup whenever they are there.
    if any(s.start <= standup < s.end for s in work):
        team = tuple(_attendee(a) for a in TEAM) + (_attendee(me),)
        events.append(event(f"demo-standup-{person}@loom.example", "Daily standup", standup,
                            standup + timedelta(minutes=15), location=f"Work: {OFFICE}", rule="FREQ=DAILY",
                            description="What we did yesterday, what we do today, what blocks us.",
                            organizer=TEAM[0], attendees=team))
    coffee = next((s for s in plan.segments_of(day) if s.activity == "coffee"), None)
    if coffee is not None:
        events.append(event(f"demo-coffee-{person}-{plan.planned_date(day).isoformat()}@loom.example",
                            "Coffee with Dana", _round(coffee.start, 5, up=False), _round(coffee.end, 5, up=True),
                            location=COFFEE_SHOP_ADDRESS, description="Catch up about the storage migration.",
                            attendees=(_attendee(TEAM[0], "Dana"), _attendee(me))))
    call = _local(day, 20.0)
    if plan.at(call).activity == "evening":
        events.append(event(f"demo-call-{person}-{plan.planned_date(day).isoformat()}@loom.example",
                            "Call with Mum", call, call + timedelta(minutes=20),
                            description="Sunday dinner plans.", attendees=(_attendee(MUM, "Mum"), _attendee(me))))
    return events


def content_hash(data: dict[str, Any]) -> str:
    """fetchers/calendar.py's `_hash`: SHA-256 of the data as sorted JSON."""
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()


def calendar_message(person: int, data: dict[str, Any], published_at: datetime) -> DemoMessage:
    """The fetcher's message for one occurrence (fetchers/base.py's `envelope`): key = event id,
    envelope timestamp = the occurrence's start; `published_at` is the Kafka timestamp."""
    digest = content_hash(data)
    body = {
        "schema_version": "v1",
        "device_id": fetcher_device_id(person),
        "timestamp": data["start_time"],
        "message_id": digest,
        "content_hash": digest,
        "data": {**data, "content_hash": digest},
        "metadata": {},
    }
    return DemoMessage(CALENDAR_TOPIC, data["event_id"].encode(), orjson.dumps(body), published_at,
                       FETCHER_HEADERS)


def calendar_stream(
    device: DemoDevice, plan: DayPlan, seed: int, start: datetime, end: datetime, on_start: bool = True
) -> Iterator[DemoMessage]:
    """The person's events of each local day, published at its midnight, or at `start` for the
    day a replay starts in (`on_start`). Only the person's first device (the phone) publishes."""
    if device.index != 2 * device.person:
        return
    day, last = start.astimezone(LOCAL_TZ).date(), end.astimezone(LOCAL_TZ).date()
    while day <= last:
        midnight = _local(day, 0)
        at = midnight if midnight >= start else (start if on_start else None)
        if at is not None and start <= at < end:
            for data in day_events(plan, day):
                yield calendar_message(plan.person, data, at)
        day += timedelta(days=1)
