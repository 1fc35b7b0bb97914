"""Calendar fetcher (docs/flows/calendar.md#fetcher): ICS URLs and CalDAV accounts → one message per
occurrence on `external.calendar.events.raw`, in Loom v2's nested envelope
(docs/messages.md#fetcher-envelopes).

Accounts use Loom v2's variable names, i = 1 … LOOM_CALENDAR_MAX_ACCOUNTS (10):
`LOOM_ICAL_URL_i` (webcal:// is fetched as https://) takes precedence over `LOOM_CALDAV_URL_i`,
`LOOM_CALDAV_USERNAME_i`, `LOOM_CALDAV_PASSWORD_i`; `LOOM_CALENDAR_NAME_i` (or Loom v2's
`LOOM_CALDAV_NAME_i`) names it, `LOOM_CALENDAR_EMAIL_i` is the owner's address (default: a
CalDAV username that is an address), `LOOM_CALENDAR_DISABLED_i=true` (or `LOOM_CALDAV_DISABLED_i`)
turns it off.

Every fetch reads the whole sync range (30 days back to 60 ahead), expands recurring events with
`recurring_ical_events` (one message per occurrence, event_id = UID + the occurrence's original
start), skips invitations the owner declined, and publishes only what changed: the cursor holds
the content hash of every occurrence published within the range. An occurrence that disappears
from the range while its start is still inside it (deleted, or declined after it was published)
is published once more with status `cancelled` (or `declined`), so the events table does not keep
a meeting that no longer happens; an occurrence that merely ages out of the range is forgotten.
"""

import hashlib
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import icalendar
import orjson
import recurring_ical_events

from loom_assets.fetchers.base import Fetched, FetchResult, content_hash
from loom_assets.settings import settings

SOURCE = "calendar"
TOPIC = "external.calendar.events.raw"
USER_AGENT = "loom-calendar-fetcher/1.0"
HTTP_TIMEOUT_S = (10, 30)  # connect, read (docs/flows/calendar.md#fetcher)
# docs/flows/calendar.md#fetcher: an event without DTEND lasts an hour (RFC 5545 would make it instantaneous).
DEFAULT_DURATION = timedelta(hours=1)
# Properties whose breakage makes an event impossible to place in time.
TIME_PROPERTIES = {"DTSTART", "DTEND", "DURATION", "RRULE", "RDATE", "EXDATE", "RECURRENCE-ID"}
CURSOR_VERSION = 1
BROKEN = "unreadable"  # the occurrence part of the event id of a series that could not be read


@dataclass(frozen=True)
class CalendarAccount:
    name: str
    index: int
    owner_email: str | None = None
    ical_url: str | None = None
    caldav_url: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def accounts(environ: Mapping[str, str] = os.environ) -> list[CalendarAccount]:
    """The configured accounts (see the module docstring), in index order."""
    def get(name: str, i: int) -> str | None:
        value = environ.get(f"{name}_{i}", "").strip()
        return value or None

    found: list[CalendarAccount] = []
    limit = int(environ.get("LOOM_CALENDAR_MAX_ACCOUNTS") or settings().calendar_max_accounts)
    for i in range(1, limit + 1):
        ical, caldav = get("LOOM_ICAL_URL", i), get("LOOM_CALDAV_URL", i)
        disabled = (get("LOOM_CALENDAR_DISABLED", i) or get("LOOM_CALDAV_DISABLED", i) or "").lower() == "true"
        if disabled or not (ical or caldav):
            continue
        username = None if ical else get("LOOM_CALDAV_USERNAME", i)
        email = get("LOOM_CALENDAR_EMAIL", i) or (username if username and "@" in username else None)
        found.append(CalendarAccount(
            name=get("LOOM_CALENDAR_NAME", i) or get("LOOM_CALDAV_NAME", i) or f"calendar-{i}",
            index=i,
            owner_email=email.lower() if email else None,
            ical_url=re.sub(r"^webcal://", "https://", ical, flags=re.I) if ical else None,
            caldav_url=None if ical else caldav,
            username=username,
            password=None if ical else get("LOOM_CALDAV_PASSWORD", i),
        ))
    names = [a.name for a in found]
    if len(set(names)) != len(names):
        # The name keys the account's cursor: two accounts with one name would share it.
        raise ValueError(f"calendar account names must differ (LOOM_CALENDAR_NAME_<i>): {names}")
    return found


# -- sources ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CalendarFeed:
    """One calendar's iCalendar data: a whole ICS feed, or a CalDAV calendar's objects."""

    calendar_id: str
    calendar_name: str
    source_url: str | None
    calendars: list[icalendar.Calendar]


def _without_secrets(url: str) -> str:
    """The URL without user info, query or path: a private ICS address carries its key in the
    path (Google's /private-<key>/basic.ics), and messages must not spread it."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.hostname or "", "", "", ""))


def ics_feed(account: CalendarAccount) -> CalendarFeed:
    import requests

    response = requests.get(account.ical_url, timeout=HTTP_TIMEOUT_S, headers={"User-Agent": USER_AGENT})
    response.raise_for_status()
    calendar = icalendar.Calendar.from_ical(response.content)
    name = str(calendar.get("X-WR-CALNAME") or account.name)
    return CalendarFeed(
        calendar_id="ics-" + hashlib.sha256(account.ical_url.encode()).hexdigest()[:16],
        calendar_name=name, source_url=_without_secrets(account.ical_url), calendars=[calendar],
    )


def caldav_feeds(account: CalendarAccount, start: datetime, end: datetime) -> Iterator[CalendarFeed]:
    """Every calendar of the account's principal, its objects with an occurrence in [start, end).

    The objects are asked for unexpanded (masters with their RRULE, overrides, time zones) and
    expanded here like an ICS feed: servers expand differently (or not at all), and an expanded
    occurrence no longer says how it recurs.
    """
    import caldav

    with caldav.DAVClient(url=account.caldav_url, username=account.username, password=account.password,
                          timeout=HTTP_TIMEOUT_S[1], headers={"User-Agent": USER_AGENT}) as client:
        for calendar in client.principal().calendars():
            objects = calendar.search(start=start, end=end, event=True, expand=False)
            url = str(calendar.url)
            yield CalendarFeed(
                calendar_id=_without_userinfo(url),
                calendar_name=calendar.get_display_name() or account.name,
                source_url=_without_secrets(url),
                calendars=[o.icalendar_instance for o in objects],
            )


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


# -- expansion -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Occurrence:
    event_id: str
    start: datetime
    data: dict[str, Any]
    declined: bool = False  # the owner declined: published only to withdraw an earlier version
    broken: bool = False    # unreadable: published as is so landing records it as an error


def occurrences(calendar: icalendar.Calendar, start: datetime, end: datetime, *, owner_email: str | None,
                context: Mapping[str, Any]) -> list[Occurrence]:
    """Every occurrence of the calendar's events overlapping [start, end), one per recurrence.

    Normalised as docs/flows/calendar.md#fetcher says: no DTEND (nor DURATION) → start + 1 h; a
    date-only DTSTART is an all-day event from midnight UTC (RFC 5545: one day when it has no end);
    floating times are UTC. An event series whose time properties cannot be read becomes one
    `broken` occurrence carrying its iCalendar text, so it lands as an error row instead of
    vanishing. `context` (calendar id and name, account) goes into every message.
    """
    timezones = list(calendar.walk("VTIMEZONE"))
    series: dict[str, list[icalendar.Event]] = {}
    for event in calendar.walk("VEVENT"):
        series.setdefault(str(event.get("UID") or _uid_of(event)), []).append(event)
    found: list[Occurrence] = []
    for uid, events in series.items():
        errors = [f"{prop}: {message}" for event in events for prop, message in event.errors if prop in TIME_PROPERTIES]
        try:
            if errors:
                raise ValueError("; ".join(errors))
            found += _series_occurrences(uid, events, timezones, start, end, owner_email, context)
        except Exception as error:  # noqa: BLE001 - any failure of one series is that series' error row
            found.append(_broken(uid, events, error, context))
    return found


def _uid_of(event: icalendar.Event) -> str:
    """A stable id for an event without UID (RFC 5545 requires one; some exports omit it)."""
    return "nouid-" + hashlib.sha256(event.to_ical()).hexdigest()[:16]


def _series_occurrences(uid: str, events: list[icalendar.Event], timezones: list, start: datetime,
                        end: datetime, owner_email: str | None, context: Mapping[str, Any]) -> list[Occurrence]:
    one = icalendar.Calendar()
    for component in timezones:
        one.add_component(component)
    master_rule = None
    for event in events:
        event = _with_end(event)
        if event.get("RRULE") and event.get("RECURRENCE-ID") is None:
            master_rule = event["RRULE"].to_ical().decode()
        one.add_component(event)
    found = []
    for occurrence in recurring_ical_events.of(one).between(start, end):
        data = _occurrence_data(uid, occurrence, master_rule, owner_email, context)
        found.append(Occurrence(data["event_id"], _as_utc(occurrence["DTSTART"].dt), data,
                                declined=_declined(occurrence, owner_email)))
    return found


def _with_end(event: icalendar.Event) -> icalendar.Event:
    """A timed event without DTEND or DURATION gets DURATION 1 h (docs/flows/calendar.md#fetcher)."""
    if "DTEND" in event or "DURATION" in event or not isinstance(event["DTSTART"].dt, datetime):
        return event
    event = icalendar.Event.from_ical(event.to_ical())  # a copy: the caller's calendar stays as read
    event.add("DURATION", DEFAULT_DURATION)
    return event


def _occurrence_data(uid: str, event: icalendar.Event, rule: str | None, owner_email: str | None,
                     context: Mapping[str, Any]) -> dict[str, Any]:
    dtstart = event["DTSTART"].dt
    all_day = not isinstance(dtstart, datetime)
    recurrence = event.get("RECURRENCE-ID")
    original = recurrence.dt if recurrence is not None else dtstart
    end = event.get("DTEND")
    attendees = [_attendee(a) for a in _as_list(event.get("ATTENDEE"))]
    return {
        "event_id": f"{uid}/{_id_time(original)}",
        "uid": uid,
        "recurrence_id": _iso(original) if rule or recurrence is not None else None,
        **context,
        "owner_email": owner_email,
        "title": _text(event.get("SUMMARY")),
        "description": _text(event.get("DESCRIPTION")),
        "location": _text(event.get("LOCATION")),
        "start_time": _iso(dtstart),
        "end_time": _iso(end.dt) if end is not None else None,
        "all_day": all_day,
        "timezone": None if all_day else _zone_name(dtstart.tzinfo),
        "recurring_rule": rule,
        "status": (str(event.get("STATUS")).lower() if event.get("STATUS") else "confirmed"),
        "organizer": _address(event.get("ORGANIZER")),
        "attendees": attendees,
        "sequence": int(event.get("SEQUENCE")) if event.get("SEQUENCE") is not None else None,
        "last_modified": _iso(event["LAST-MODIFIED"].dt) if event.get("LAST-MODIFIED") else None,
    }


def _broken(uid: str, events: list[icalendar.Event], error: Exception, context: Mapping[str, Any]) -> Occurrence:
    text = "".join(e.to_ical().decode("utf-8", "replace") for e in events)
    raw_start = events[0].get("DTSTART")
    data = {
        "event_id": f"{uid}/{BROKEN}", "uid": uid, **context,
        "title": _text(events[0].get("SUMMARY")),
        # As written: landing refuses it and keeps this message (with `ics`) as the error's original.
        "start_time": raw_start.to_ical().decode() if hasattr(raw_start, "to_ical") else None,
        "ics": text,
        "fetch_error": f"{type(error).__name__}: {error}",
    }
    return Occurrence(data["event_id"], datetime.now(UTC), data, broken=True)


def _declined(event: icalendar.Event, owner_email: str | None) -> bool:
    if not owner_email:
        return False
    return any(_address(a) == owner_email and str(a.params.get("PARTSTAT", "")).upper() == "DECLINED"
               for a in _as_list(event.get("ATTENDEE")))


def _attendee(value) -> dict[str, Any]:
    params = getattr(value, "params", {})
    return {
        "email": _address(value),
        "name": params.get("CN"),
        "partstat": str(params.get("PARTSTAT", "NEEDS-ACTION")).lower(),
        "role": str(params.get("ROLE", "REQ-PARTICIPANT")).lower(),
        "cutype": str(params.get("CUTYPE", "INDIVIDUAL")).lower(),
    }


def _address(value) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return (text[7:] if text.lower().startswith("mailto:") else text).lower() or None


def _as_list(value) -> list:
    return [] if value is None else value if isinstance(value, list) else [value]


def _text(value) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


def _as_utc(value: date | datetime) -> datetime:
    if not isinstance(value, datetime):
        return datetime.combine(value, time(), UTC)  # docs/flows/calendar.md#fetcher: date-only → midnight UTC
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(value: date | datetime) -> str:
    return _as_utc(value).isoformat().replace("+00:00", "Z")


def _id_time(value: date | datetime) -> str:
    """The occurrence part of an event id: 20260105 (all day) or 20260105T080000Z."""
    if not isinstance(value, datetime):
        return value.strftime("%Y%m%d")
    return _as_utc(value).strftime("%Y%m%dT%H%M%SZ")


def _zone_name(zone: tzinfo | None) -> str:
    """The IANA name of an event's zone, else its offset (a custom VTIMEZONE); floating: UTC."""
    if zone is None or zone in (UTC, timezone.utc):
        return "UTC"
    key = getattr(zone, "key", None) or getattr(zone, "zone", None)
    if key:
        return str(key)
    offset = datetime.now(zone).utcoffset() or timedelta()
    minutes = int(offset.total_seconds() // 60)
    return f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


# -- what to publish ---------------------------------------------------------------------------------
def _hash(data: Mapping[str, Any]) -> str:
    return content_hash(orjson.dumps(dict(data), option=orjson.OPT_SORT_KEYS).decode())


def device_id(calendar_name: str) -> str:
    """Loom v2's device id for a calendar: calendar-fetcher-<name lower-cased, spaces → ->."""
    return "calendar-fetcher-" + calendar_name.strip().lower().replace(" ", "-")


def changes(found: Iterable[tuple[str, Occurrence]], cursor: Mapping[str, Any],
            range_start: datetime) -> tuple[list[Fetched], dict[str, Any]]:
    """The messages to publish for `found` ((device id, occurrence) pairs) given the cursor of
    the last fetch, and the new cursor: {"occurrences": {event_id: [hash, start, device]}}."""
    previous: dict[str, list] = dict(cursor.get("occurrences", {})) if cursor.get("version") == CURSOR_VERSION else {}
    current: dict[str, list] = {}
    messages: list[Fetched] = []
    seen: set[str] = set()
    for device, occ in found:
        seen.add(occ.event_id)
        data = dict(occ.data)
        if occ.declined:
            if occ.event_id not in previous:
                continue  # declined before we ever published it: nothing to withdraw
            data["status"] = "declined"
        digest = _hash(data)
        current[occ.event_id] = [digest, _iso(occ.start), device]
        if previous.get(occ.event_id, [None])[0] != digest:
            messages.append(Fetched(key=occ.event_id, device_id=device, timestamp=occ.start,
                                    data={**data, "content_hash": digest}, content_hash=digest))
    for event_id, (_, start, device) in previous.items():
        if event_id in seen or event_id.endswith(f"/{BROKEN}") or datetime.fromisoformat(start) < range_start:
            continue  # still there, aged out of the sync range, or never an event
        data = {"event_id": event_id, "uid": event_id.rsplit("/", 1)[0], "start_time": start, "status": "cancelled"}
        digest = _hash(data)
        messages.append(Fetched(key=event_id, device_id=device, timestamp=datetime.fromisoformat(start),
                                data={**data, "content_hash": digest}, content_hash=digest))
    return messages, {"version": CURSOR_VERSION, "occurrences": current}


def fetch(account: CalendarAccount, cursor: dict[str, Any], now: datetime) -> FetchResult:
    """Every occurrence in the account's sync range; only new or changed ones are published."""
    s = settings()
    start, end = now - timedelta(days=s.calendar_days_past), now + timedelta(days=s.calendar_days_future)
    feeds = [ics_feed(account)] if account.ical_url else list(caldav_feeds(account, start, end))
    found: list[tuple[str, Occurrence]] = []
    for feed in feeds:
        context = {"calendar_id": feed.calendar_id, "calendar_name": feed.calendar_name,
                   "account_name": account.name, "source_url": feed.source_url}
        for calendar in feed.calendars:
            found += [(device_id(feed.calendar_name), occ)
                      for occ in occurrences(calendar, start, end, owner_email=account.owner_email, context=context)]
    return FetchResult(*changes(found, cursor, start))


def fetch_cron(minutes: int) -> str:
    """LOOM_CALENDAR_FETCH_INTERVAL_MINUTES (docs/flows/calendar.md#fetcher: 30) as a cron schedule."""
    if 0 < minutes < 60 and 60 % minutes == 0:
        return f"*/{minutes} * * * *"
    if minutes % 60 == 0 and 24 % (minutes // 60) == 0:
        return f"0 */{minutes // 60} * * *"
    raise ValueError(f"LOOM_CALENDAR_FETCH_INTERVAL_MINUTES={minutes}: use a divisor of 60 or whole hours dividing 24")
