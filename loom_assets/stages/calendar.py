"""Calendar events (docs/flows/calendar.md#events): the newest version of each occurrence of a window,
with who is in it and what kind of meeting it is, when it is, how it recurs, and where it is.

Loom v2 named the labels (docs/flows/calendar.md#events: meeting_type 1:1 | team | external,
duration_category short | medium
| long, time_of_day morning | afternoon | evening) but no rules: `CalendarRules` states them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import timedelta, timezone
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd

from loom_assets.geo import Place, PlaceFinder
from loom_assets.stages.frames import typed_frame, with_columns


@dataclass(frozen=True)
class CalendarRules:
    """Every rule of the events stage, with its reason. Bump `version` when one changes."""

    version: str = "1"
    # Duration: ≤ 30 min is short (the 15/25/30-minute slots of calendar apps), ≤ 60 min medium
    # (45/50/60), longer is long (workshops, offsites). All-day events are "all_day".
    short_max_minutes: float = 30.0
    medium_max_minutes: float = 60.0
    # Time of day at the start, in the event's own time zone: morning 05:00–12:00, afternoon
    # 12:00–17:00, evening 17:00–05:00 (the night counts as the evening before). All-day: "all_day".
    morning_from_hour: int = 5
    afternoon_from_hour: int = 12
    evening_from_hour: int = 17
    # Meeting type, from the people on the invite (organizer included; rooms, resources and
    # people who declined excluded) other than the calendar's owner: nobody → "none"; anyone
    # outside the owner's mail domain (or `internal_domains`) → "external"; else one person →
    # "1:1", two or more → "team". Without the owner's address the organizer's domain is "ours".
    internal_domains: frozenset[str] = frozenset()
    # An event without an end lasts an hour (docs/flows/calendar.md#fetcher).
    default_duration_minutes: float = 60.0
    # Locations that are a video call, not a place: never geocoded.
    online_markers: tuple[str, ...] = (
        "zoom.us", "zoom meeting", "google meet", "meet.google.com", "microsoft teams", "teams.microsoft.com",
        "webex", "whereby", "jitsi", "skype", "gotomeeting", "facetime", "online", "virtual", "remote",
    )
    # Non-place locations people type.
    no_place: frozenset[str] = field(default_factory=lambda: frozenset({"tbd", "tba", "n/a", "none", "-", "?"}))

    @property
    def key(self) -> str:
        """The rules' part of the stage's code version (the domains are configuration)."""
        domains = ",".join(sorted(self.internal_domains))
        return f"rules{self.version}" + (f"-d{hashlib.sha256(domains.encode()).hexdigest()[:8]}" if domains else "")


class PlaceCacheLike(Protocol):
    def get(self, query: str) -> Place | None: ...
    def put(self, place: Place) -> None: ...


_TIME = "datetime64[us, UTC]"
EVENT_DTYPES: dict[str, str] = {
    "window_start": _TIME,
    "device_id": "str",
    "recorded_at": _TIME,          # the event's start (the envelope's timestamp)
    "source_topic": "str",
    "source_partition": "Int64",
    "source_offset": "Int64",
    "message_id": "str",
    "trace_id": "str",
    "event_id": "str",
    "uid": "str",
    "calendar_id": "str",
    "calendar_name": "str",
    "account_name": "str",
    "owner_email": "str",
    "title": "str",
    "description": "str",
    "location": "str",
    "start_time": _TIME,
    "end_time": _TIME,
    "all_day": "bool",
    "timezone": "str",
    "duration_minutes": "float64",
    "duration_category": "str",    # short | medium | long | all_day
    "time_of_day": "str",          # morning | afternoon | evening | all_day
    "recurring_rule": "str",
    "recurrence_pattern": "str",   # none | daily | weekly | biweekly | monthly | yearly | custom
    "recurrence_id": _TIME,
    "status": "str",               # confirmed | tentative | cancelled | declined
    "organizer": "str",
    "attendees": "object",         # [{email, name, partstat, role, cutype}]
    "attendee_count": "Int64",
    "meeting_type": "str",         # none | 1:1 | team | external
    "online_meeting_url": "str",
    "latitude": "float64",
    "longitude": "float64",
    "place_name": "str",
    "place_address": "str",
    "place_country_code": "str",
    "geocode_provider": "str",
    "geocode_cached": "boolean",
}
PLACE_COLUMNS = ("latitude", "longitude", "place_name", "place_address", "place_country_code",
                 "geocode_provider", "geocode_cached")

_URL = re.compile(r"https?://[^\s<>\"']+", re.I)
_RULE_PATTERNS = {"DAILY": "daily", "WEEKLY": "weekly", "MONTHLY": "monthly", "YEARLY": "yearly"}


def events(raw: pd.DataFrame, rules: CalendarRules) -> pd.DataFrame:
    """The window's newest version of each occurrence (per calendar device and event id, the
    last by offset: the fetcher keys messages by event id, so versions share a partition),
    enriched by `rules`. The place columns are left empty (see `with_places`)."""
    raw = with_columns(raw, [c for c in EVENT_DTYPES if c not in PLACE_COLUMNS])
    if raw.empty:
        return typed_frame([], EVENT_DTYPES)
    newest = (raw.sort_values(["source_partition", "source_offset"], kind="stable")
                 .drop_duplicates(["device_id", "event_id"], keep="last"))
    rows = [_enriched(row, rules) for row in newest.to_dict("records")]
    return typed_frame(rows, EVENT_DTYPES).sort_values(["start_time", "event_id"], kind="stable").reset_index(drop=True)


def _enriched(row: dict[str, Any], rules: CalendarRules) -> dict[str, Any]:
    start = pd.Timestamp(row["start_time"]).tz_convert("UTC")
    end = pd.Timestamp(row["end_time"]).tz_convert("UTC") if _present(row["end_time"]) else \
        start + timedelta(minutes=rules.default_duration_minutes)
    all_day = bool(row["all_day"]) if _present(row["all_day"]) else False
    minutes = (end - start).total_seconds() / 60
    owner = _email(row["owner_email"])
    attendees = normalised_attendees(row["attendees"])
    organizer = _email(row["organizer"])
    people = participants(attendees, organizer)
    return {
        **{c: row.get(c) for c in EVENT_DTYPES if c not in PLACE_COLUMNS},
        "recorded_at": row["recorded_at"],
        "start_time": start, "end_time": end, "all_day": all_day,
        "duration_minutes": minutes,
        "duration_category": "all_day" if all_day else duration_category(minutes, rules),
        "time_of_day": "all_day" if all_day else time_of_day(start, row["timezone"], rules),
        "recurrence_pattern": recurrence_pattern(row["recurring_rule"]),
        "status": str(row["status"]).lower() if _present(row["status"]) else "confirmed",
        "organizer": organizer,
        "owner_email": owner,
        "attendees": attendees,
        "attendee_count": len(people),
        "meeting_type": meeting_type(people, owner, organizer, rules),
        "online_meeting_url": online_meeting_url(row["location"], row["description"], rules),
    }


def _present(value: Any) -> bool:
    """Not None/NaN/NaT/NA (a list or dict is present)."""
    if value is None:
        return False
    if isinstance(value, (list, dict, str)):
        return True
    return not pd.isna(value)


def _email(value: Any) -> str | None:
    if not _present(value):
        return None
    text = str(value).strip()
    text = text[7:] if text.lower().startswith("mailto:") else text
    return text.lower() or None


def normalised_attendees(value: Any) -> list[dict[str, Any]]:
    """Attendees as [{email, name, partstat, role, cutype}], from the fetcher's dicts or Loom v2's
    bare addresses (which say nothing of acceptance: "needs-action")."""
    if not isinstance(value, list):
        return []
    found = []
    for item in value:
        if isinstance(item, str):
            item = {"email": item}
        if not isinstance(item, dict):
            continue
        found.append({
            "email": _email(item.get("email")),
            "name": item.get("name") or None,
            "partstat": str(item.get("partstat") or "needs-action").lower(),
            "role": str(item.get("role") or "req-participant").lower(),
            "cutype": str(item.get("cutype") or "individual").lower(),
        })
    return found


def participants(attendees: list[dict[str, Any]], organizer: str | None) -> set[str]:
    """The people on the invite: attendees who are people (not rooms or resources) and did not
    decline, plus the organizer."""
    people = {a["email"] for a in attendees
              if a["email"] and a["cutype"] not in ("room", "resource") and a["partstat"] != "declined"}
    return people | ({organizer} if organizer else set())


def _domain(email: str | None) -> str | None:
    return email.rsplit("@", 1)[1] if email and "@" in email else None


def meeting_type(people: set[str], owner: str | None, organizer: str | None, rules: CalendarRules) -> str:
    others = people - {owner} if owner else people - {organizer}
    if not others:
        return "none"
    ours = {d for d in (_domain(owner) or _domain(organizer),) if d} | set(rules.internal_domains)
    if ours and any(_domain(p) not in ours for p in others):
        return "external"
    return "1:1" if len(others) == 1 else "team"


def duration_category(minutes: float, rules: CalendarRules) -> str:
    if minutes <= rules.short_max_minutes:
        return "short"
    return "medium" if minutes <= rules.medium_max_minutes else "long"


def event_zone(name: Any) -> timezone | ZoneInfo:
    """The event's own time zone: an IANA name, a "+01:00" offset (custom VTIMEZONE), else UTC."""
    if isinstance(name, str) and name:
        match = re.fullmatch(r"([+-])(\d\d):(\d\d)", name)
        if match:
            minutes = int(match[2]) * 60 + int(match[3])
            return timezone(timedelta(minutes=minutes if match[1] == "+" else -minutes))
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return timezone.utc


def time_of_day(start: pd.Timestamp, zone: Any, rules: CalendarRules) -> str:
    hour = start.tz_convert(event_zone(zone)).hour
    if rules.morning_from_hour <= hour < rules.afternoon_from_hour:
        return "morning"
    if rules.afternoon_from_hour <= hour < rules.evening_from_hour:
        return "afternoon"
    return "evening"


def recurrence_pattern(rule: Any) -> str:
    """From the series' RRULE: FREQ with INTERVAL 1 names it (weekly with INTERVAL 2 is
    "biweekly"); any other interval or frequency is "custom"; no rule is "none"."""
    if not _present(rule) or not str(rule).strip():
        return "none"
    parts = dict(p.split("=", 1) for p in str(rule).upper().removeprefix("RRULE:").split(";") if "=" in p)
    frequency, interval = parts.get("FREQ"), parts.get("INTERVAL", "1")
    if frequency == "WEEKLY" and interval == "2":
        return "biweekly"
    if frequency in _RULE_PATTERNS and interval == "1":
        return _RULE_PATTERNS[frequency]
    return "custom"


def is_online(location: Any, rules: CalendarRules) -> bool:
    text = str(location).casefold()
    return bool(_URL.search(text)) or any(marker in text for marker in rules.online_markers)


def online_meeting_url(location: Any, description: Any, rules: CalendarRules) -> str | None:
    """The first video-call link in the location, else in the description."""
    for text in (location, description):
        if _present(text):
            for url in _URL.findall(str(text)):
                if any(marker in url.casefold() for marker in rules.online_markers if "." in marker):
                    return url.rstrip(".,;)")
    return None


def geocodable(location: Any, rules: CalendarRules) -> str | None:
    """The location text worth geocoding: not blank, not a placeholder, not a video call."""
    if not _present(location):
        return None
    text = " ".join(str(location).split())
    if not text or text.casefold() in rules.no_place or is_online(text, rules):
        return None
    return text


def with_places(events: pd.DataFrame, finder: PlaceFinder, cache: PlaceCacheLike, rules: CalendarRules) -> pd.DataFrame:
    """`events` with their location geocoded (text → place), each distinct text once: from the
    cache, else from `finder` (then cached, found or not)."""
    if events.empty:
        return events
    places: dict[str, tuple[Place, bool]] = {}
    for text in events["location"].map(lambda v: geocodable(v, rules)).dropna().unique():
        cached = cache.get(text)
        if cached is None:
            cached, hit = finder.geocode(text), False
            cache.put(cached)
        else:
            hit = True
        places[text] = (cached, hit)
    rows = []
    for location in events["location"]:
        text = geocodable(location, rules)
        place, hit = places.get(text, (None, None)) if text else (None, None)
        if place is None:
            rows.append({})
            continue
        rows.append({
            "latitude": place.latitude, "longitude": place.longitude, "place_name": place.name,
            "place_address": place.address, "place_country_code": place.country_code,
            "geocode_provider": place.provider, "geocode_cached": hit,
        })
    found = typed_frame(rows, {c: EVENT_DTYPES[c] for c in PLACE_COLUMNS})
    return events.drop(columns=list(PLACE_COLUMNS)).reset_index(drop=True).join(found)[list(EVENT_DTYPES)]


def embedding_text(events: pd.DataFrame) -> pd.Series:
    """What is embedded per event (docs/flows/calendar.md#embeddings: title, description, location,
    attendees). Cancelled and declined events are not embedded (nothing to find them for)."""
    def text(row: dict[str, Any]) -> str:
        if row["status"] in ("cancelled", "declined"):
            return ""
        people = ", ".join(
            f"{a['name']} <{a['email']}>" if a.get("name") and a.get("email")
            else (a.get("name") or a.get("email") or "")
            for a in (row["attendees"] if isinstance(row["attendees"], list) else [])
        ).strip(", ")
        parts = [row["title"], row["description"],
                 f"Location: {row['location']}" if _present(row["location"]) else None,
                 f"Attendees: {people}" if people else None]
        return "\n".join(str(p).strip() for p in parts if _present(p) and str(p).strip())

    if events.empty:
        return pd.Series([], dtype="object")
    return pd.Series([text(r) for r in events.to_dict("records")], index=events.index, dtype="object")
