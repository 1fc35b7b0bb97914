"""Calendar: expansion of iCalendar data into occurrences (recurrence, exceptions, all-day events,
missing ends, declined invitations, time zones, broken events), what a fetch publishes, the
accounts from the environment, the enrichment rules and offline forward geocoding."""

from datetime import UTC, datetime

import icalendar
import pandas as pd
import pytest

from loom_assets.fetchers import calendar as fetcher
from loom_assets.resources.geocoder import OFFLINE_PROVIDER, MemoryPlaceCache, OfflineGeocoder, offline_place
from loom_assets.stages import calendar as stage

BERLIN_TZ = """BEGIN:VTIMEZONE
TZID:Europe/Berlin
BEGIN:STANDARD
DTSTART:19701025T030000
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:19700329T020000
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU
END:DAYLIGHT
END:VTIMEZONE
"""

EVENTS = """BEGIN:VEVENT
UID:standup-1
DTSTAMP:20260101T000000Z
DTSTART;TZID=Europe/Berlin:20260105T090000
DTEND;TZID=Europe/Berlin:20260105T091500
RRULE:FREQ=WEEKLY;COUNT=5
EXDATE;TZID=Europe/Berlin:20260112T090000
SUMMARY:Standup
ORGANIZER;CN=Alice:mailto:alice@example.com
ATTENDEE;PARTSTAT=ACCEPTED:mailto:alice@example.com
ATTENDEE;PARTSTAT=ACCEPTED;CN=Bob:mailto:bob@example.com
ATTENDEE;PARTSTAT=ACCEPTED:mailto:carol@example.com
END:VEVENT
BEGIN:VEVENT
UID:standup-1
DTSTAMP:20260101T000000Z
RECURRENCE-ID;TZID=Europe/Berlin:20260119T090000
DTSTART;TZID=Europe/Berlin:20260119T110000
DTEND;TZID=Europe/Berlin:20260119T111500
SUMMARY:Standup (moved)
ORGANIZER;CN=Alice:mailto:alice@example.com
ATTENDEE;PARTSTAT=ACCEPTED:mailto:alice@example.com
ATTENDEE;PARTSTAT=ACCEPTED;CN=Bob:mailto:bob@example.com
END:VEVENT
BEGIN:VEVENT
UID:holiday
DTSTAMP:20260101T000000Z
DTSTART;VALUE=DATE:20260110
SUMMARY:Holiday
END:VEVENT
BEGIN:VEVENT
UID:no-end
DTSTAMP:20260101T000000Z
DTSTART:20260111T150000Z
SUMMARY:Dentist
LOCATION:Zahnarztpraxis, Zürich
END:VEVENT
BEGIN:VEVENT
UID:with-duration
DTSTAMP:20260101T000000Z
DTSTART:20260113T150000Z
DURATION:PT2H
SUMMARY:Workshop
END:VEVENT
BEGIN:VEVENT
UID:declined
DTSTAMP:20260101T000000Z
DTSTART:20260114T100000Z
DTEND:20260114T110000Z
SUMMARY:Vendor pitch
ORGANIZER:mailto:sales@vendor.example
ATTENDEE;PARTSTAT=DECLINED:mailto:alice@example.com
END:VEVENT
BEGIN:VEVENT
UID:la-call
DTSTAMP:20260101T000000Z
DTSTART;TZID=America/Los_Angeles:20260115T150000
DTEND;TZID=America/Los_Angeles:20260115T153000
SUMMARY:Call with LA
LOCATION:https://zoom.us/j/123456
END:VEVENT
"""

BROKEN = """BEGIN:VEVENT
UID:broken
DTSTAMP:20260101T000000Z
DTSTART:2026011XT090000Z
SUMMARY:Broken
END:VEVENT
"""

START, END = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)
CONTEXT = {"calendar_id": "cal-1", "calendar_name": "Work", "account_name": "work", "source_url": None}


def calendar(events: str = EVENTS, timezones: str = BERLIN_TZ) -> icalendar.Calendar:
    return icalendar.Calendar.from_ical(
        f"BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//loom tests//EN\n{timezones}{events}END:VCALENDAR\n")


def expanded(events: str = EVENTS, owner: str | None = "alice@example.com") -> dict[str, fetcher.Occurrence]:
    found = fetcher.occurrences(calendar(events), START, END, owner_email=owner, context=CONTEXT)
    return {o.event_id: o for o in found}


# -- expansion ---------------------------------------------------------------------------------------
def test_a_weekly_series_expands_without_its_exdate_and_with_its_moved_occurrence():
    found = expanded()
    standups = sorted((o for o in found.values() if o.data["uid"] == "standup-1"), key=lambda o: o.start)
    # COUNT=5 from Jan 5, minus the EXDATE of Jan 12.
    assert [o.event_id for o in standups] == [
        "standup-1/20260105T080000Z", "standup-1/20260119T080000Z",
        "standup-1/20260126T080000Z", "standup-1/20260202T080000Z"]
    moved = found["standup-1/20260119T080000Z"]  # keeps the id of its original slot
    assert moved.data["title"] == "Standup (moved)"
    assert moved.data["start_time"] == "2026-01-19T10:00:00Z" and moved.data["end_time"] == "2026-01-19T10:15:00Z"
    assert moved.data["recurrence_id"] == "2026-01-19T08:00:00Z"
    assert {o.data["recurring_rule"] for o in standups} == {"FREQ=WEEKLY;COUNT=5"}
    assert {o.data["timezone"] for o in standups} == {"Europe/Berlin"}
    first = found["standup-1/20260105T080000Z"].data
    assert first["organizer"] == "alice@example.com"
    assert [a["email"] for a in first["attendees"]] == ["alice@example.com", "bob@example.com", "carol@example.com"]
    assert first["attendees"][1]["name"] == "Bob" and first["attendees"][1]["partstat"] == "accepted"


def test_a_date_only_event_is_all_day_from_midnight_utc():
    holiday = expanded()["holiday/20260110"]
    assert holiday.data["all_day"] is True and holiday.data["timezone"] is None
    assert holiday.data["start_time"] == "2026-01-10T00:00:00Z"
    assert holiday.data["end_time"] == "2026-01-11T00:00:00Z"  # RFC 5545: one day
    assert holiday.start == datetime(2026, 1, 10, tzinfo=UTC)


def test_a_missing_end_means_one_hour_and_a_duration_is_kept():
    found = expanded()
    assert found["no-end/20260111T150000Z"].data["end_time"] == "2026-01-11T16:00:00Z"
    assert found["with-duration/20260113T150000Z"].data["end_time"] == "2026-01-13T17:00:00Z"


def test_invitations_the_owner_declined_are_marked_and_others_see_them():
    assert expanded()["declined/20260114T100000Z"].declined
    assert not expanded(owner="bob@example.com")["declined/20260114T100000Z"].declined
    assert not expanded(owner=None)["declined/20260114T100000Z"].declined


def test_times_are_utc_and_the_event_keeps_its_own_zone():
    call = expanded()["la-call/20260115T230000Z"]
    assert call.data["start_time"] == "2026-01-15T23:00:00Z" and call.data["timezone"] == "America/Los_Angeles"


def test_a_series_with_an_unreadable_start_becomes_one_broken_message_and_the_rest_expand():
    found = expanded(EVENTS + BROKEN)
    broken = found["broken/unreadable"]
    assert broken.broken and "2026011XT090000Z" in broken.data["ics"]
    assert broken.data["start_time"] == "2026011XT090000Z"
    assert "DTSTART" in broken.data["fetch_error"]
    assert "standup-1/20260105T080000Z" in found


# -- what a fetch publishes ----------------------------------------------------------------------------
def publishable(events: str = EVENTS) -> list[tuple[str, fetcher.Occurrence]]:
    return [("calendar-fetcher-work", o) for o in expanded(events).values()]


def test_a_second_fetch_publishes_nothing_and_a_change_publishes_only_the_new_version():
    first, cursor = fetcher.changes(publishable(), {}, START)
    assert "declined/20260114T100000Z" not in {m.key for m in first}  # never published
    assert len(first) == 8
    assert all(m.timestamp == datetime.fromisoformat(m.data["start_time"]) for m in first)
    again, cursor = fetcher.changes(publishable(), cursor, START)
    assert again == []
    changed, _ = fetcher.changes(publishable(EVENTS.replace("SUMMARY:Dentist", "SUMMARY:Dentist (Dr. Weber)")),
                                 cursor, START)
    assert [(m.key, m.data["title"]) for m in changed] == [("no-end/20260111T150000Z", "Dentist (Dr. Weber)")]


def test_a_deleted_event_is_published_cancelled_once_and_an_aged_out_one_is_forgotten():
    _, cursor = fetcher.changes(publishable(), {}, START)
    without = EVENTS.replace("UID:holiday", "UID:holiday-renamed")
    messages, cursor = fetcher.changes(publishable(without), cursor, START)
    cancelled = [m for m in messages if m.data.get("status") == "cancelled"]
    assert [(m.key, m.data["start_time"]) for m in cancelled] == [("holiday/20260110", "2026-01-10T00:00:00Z")]
    assert fetcher.changes(publishable(without), cursor, START)[0] == []
    later = datetime(2026, 1, 12, tzinfo=UTC)  # the holiday and the dentist are now before the range
    aged = [(d, o) for d, o in publishable(without) if o.start >= later]
    messages, _ = fetcher.changes(aged, cursor, later)
    assert messages == []


def test_an_invitation_declined_after_it_was_published_is_withdrawn_once():
    accepted = EVENTS.replace("ATTENDEE;PARTSTAT=DECLINED:mailto:alice", "ATTENDEE;PARTSTAT=ACCEPTED:mailto:alice")
    _, cursor = fetcher.changes(publishable(accepted), {}, START)
    messages, cursor = fetcher.changes(publishable(), cursor, START)
    assert [(m.key, m.data["status"]) for m in messages] == [("declined/20260114T100000Z", "declined")]
    assert fetcher.changes(publishable(), cursor, START)[0] == []


def test_accounts_come_from_numbered_variables_ical_first():
    env = {
        "LOOM_ICAL_URL_1": "webcal://calendar.example.com/feed.ics", "LOOM_CALENDAR_NAME_1": "Holidays",
        "LOOM_CALDAV_URL_1": "https://ignored.example.com/",
        "LOOM_CALDAV_URL_3": "https://dav.example.com/", "LOOM_CALDAV_USERNAME_3": "Alice@Example.com",
        "LOOM_CALDAV_PASSWORD_3": "pw", "LOOM_CALDAV_NAME_3": "Work",
        "LOOM_ICAL_URL_4": "https://x.example.com/off.ics", "LOOM_CALENDAR_DISABLED_4": "true",
    }
    holidays, work = fetcher.accounts(env)
    assert (holidays.index, holidays.ical_url, holidays.caldav_url) == (
        1, "https://calendar.example.com/feed.ics", None)
    assert (work.name, work.caldav_url, work.owner_email, work.password) == (
        "Work", "https://dav.example.com/", "alice@example.com", "pw")
    assert "pw" not in repr(work)
    with pytest.raises(ValueError, match="names must differ"):
        fetcher.accounts({**env, "LOOM_CALDAV_NAME_3": "Holidays"})


def test_the_fetch_interval_becomes_a_cron_schedule():
    assert fetcher.fetch_cron(30) == "*/30 * * * *" and fetcher.fetch_cron(120) == "0 */2 * * *"
    with pytest.raises(ValueError):
        fetcher.fetch_cron(7)


# -- enrichment ----------------------------------------------------------------------------------------
RULES = stage.CalendarRules()


def raw_rows(occurrences, window=datetime(2026, 1, 1, tzinfo=UTC)) -> pd.DataFrame:
    rows = []
    for offset, occ in enumerate(occurrences):
        data = dict(occ.data)
        rows.append({"window_start": window, "device_id": "calendar-fetcher-work",
                     "recorded_at": pd.Timestamp(data["start_time"]), "source_topic": fetcher.TOPIC,
                     "source_partition": 0, "source_offset": offset, "message_id": f"m{offset}", "trace_id": None,
                     **data, "start_time": pd.Timestamp(data["start_time"]),
                     "end_time": pd.Timestamp(data["end_time"]) if data.get("end_time") else None})
    return pd.DataFrame(rows)


def enriched() -> pd.DataFrame:
    found = [o for o in expanded().values() if not o.declined]
    return stage.events(raw_rows(found), RULES).set_index("event_id")


def test_enrichment_labels_each_occurrence():
    rows = enriched()
    standup = rows.loc["standup-1/20260105T080000Z"]
    assert (standup.attendee_count, standup.meeting_type, standup.duration_category, standup.time_of_day,
            standup.recurrence_pattern) == (3, "team", "short", "morning", "weekly")
    moved = rows.loc["standup-1/20260119T080000Z"]
    assert (moved.attendee_count, moved.meeting_type, moved.time_of_day) == (2, "1:1", "morning")
    holiday = rows.loc["holiday/20260110"]
    assert (holiday.duration_category, holiday.time_of_day, holiday.meeting_type) == ("all_day", "all_day", "none")
    workshop = rows.loc["with-duration/20260113T150000Z"]
    assert (workshop.duration_minutes, workshop.duration_category) == (120.0, "long")
    # 23:00 UTC is 15:00 in Los Angeles, the event's own zone.
    call = rows.loc["la-call/20260115T230000Z"]
    assert call.time_of_day == "afternoon" and call.online_meeting_url == "https://zoom.us/j/123456"
    assert set(rows["status"]) == {"confirmed"}


@pytest.mark.parametrize(("attendees", "organizer", "owner", "internal", "expected"), [
    ([], None, "me@acme.com", (), "none"),
    (["me@acme.com"], "me@acme.com", "me@acme.com", (), "none"),
    (["me@acme.com", "bo@acme.com"], "me@acme.com", "me@acme.com", (), "1:1"),
    (["me@acme.com", "bo@acme.com", "cy@acme.com"], "me@acme.com", "me@acme.com", (), "team"),
    (["me@acme.com", "bo@partner.io"], "me@acme.com", "me@acme.com", (), "external"),
    (["me@acme.com", "bo@acme.de", "cy@acme.com"], "me@acme.com", "me@acme.com", ("acme.de",), "team"),
    # Rooms and people who declined are not in the meeting.
    ([{"email": "me@acme.com"}, {"email": "room1@resource.acme.com", "cutype": "room"},
      {"email": "x@other.org", "partstat": "declined"}], "me@acme.com", "me@acme.com", (), "none"),
    # Without the owner's address (Loom v2 messages), the organizer's domain is ours.
    (["bo@acme.com", "cy@acme.com"], "me@acme.com", None, (), "team"),
    (["bo@other.org"], "me@acme.com", None, (), "external"),
])
def test_meeting_type(attendees, organizer, owner, internal, expected):
    rules = stage.CalendarRules(internal_domains=frozenset(internal))
    people = stage.participants(stage.normalised_attendees(attendees), organizer)
    assert stage.meeting_type(people, owner, organizer, rules) == expected


@pytest.mark.parametrize(("minutes", "expected"), [(15, "short"), (30, "short"), (45, "medium"), (60, "medium"),
                                                   (61, "long"), (240, "long")])
def test_duration_category(minutes, expected):
    assert stage.duration_category(minutes, RULES) == expected


@pytest.mark.parametrize(("utc_time", "zone", "expected"), [
    ("2026-01-05T08:00:00Z", "Europe/Berlin", "morning"),     # 09:00
    ("2026-01-05T11:30:00Z", "Europe/Berlin", "afternoon"),   # 12:30
    ("2026-01-05T16:00:00Z", "Europe/Berlin", "evening"),     # 17:00
    ("2026-01-05T02:00:00Z", "Europe/Berlin", "evening"),     # 03:00, the night before
    ("2026-01-05T08:00:00Z", "+05:30", "afternoon"),          # 13:30 in a custom VTIMEZONE
    ("2026-01-05T08:00:00Z", "Not/AZone", "morning"),         # unknown zone: UTC
])
def test_time_of_day_is_in_the_events_own_zone(utc_time, zone, expected):
    assert stage.time_of_day(pd.Timestamp(utc_time), zone, RULES) == expected


@pytest.mark.parametrize(("rule", "expected"), [
    (None, "none"), ("FREQ=DAILY", "daily"), ("FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR", "daily"),
    ("FREQ=WEEKLY;BYDAY=MO", "weekly"), ("FREQ=WEEKLY;INTERVAL=2;BYDAY=TH", "biweekly"),
    ("RRULE:FREQ=MONTHLY;BYMONTHDAY=1", "monthly"), ("FREQ=YEARLY", "yearly"),
    ("FREQ=WEEKLY;INTERVAL=3", "custom"), ("FREQ=HOURLY", "custom"),
])
def test_recurrence_pattern(rule, expected):
    assert stage.recurrence_pattern(rule) == expected


def test_the_newest_version_of_an_occurrence_wins_and_loom_v2_shapes_are_read():
    first = {"event_id": "uid-1", "title": "Old title", "start_time": "2026-01-05T09:00:00Z",
             "end_time": "2026-01-05T10:00:00Z", "all_day": False}
    newer = {**first, "title": "New title", "attendees": ["Bo@Acme.com", "me@acme.com"],
             "organizer": "me@acme.com", "end_time": None}
    rows = stage.events(raw_rows([fetcher.Occurrence("uid-1", START, first),
                                  fetcher.Occurrence("uid-1", START, newer)]), RULES)
    assert len(rows) == 1
    row = rows.iloc[0]
    assert (row.title, row.attendee_count, row.meeting_type, row.duration_minutes, row.status) == (
        "New title", 2, "1:1", 60.0, "confirmed")
    assert row.attendees[0]["email"] == "bo@acme.com"


# -- geocoding -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "city", "country"), [
    ("Conference room 3, Berlin", "Berlin", "DE"),
    ("Alexanderplatz 1, 10178 Berlin, Germany", "Berlin", "DE"),
    ("Paris", "Paris", "FR"),                  # the big one of its namesakes
    ("Paris, Texas", "Paris", "US"),           # the namesake the text points at
    ("Zahnarztpraxis, Zürich", "Zurich", "CH"),  # accents folded
    ("New York City office", "New York City", "US"),
])
def test_offline_forward_geocoding_finds_the_city_named(text, city, country):
    place = offline_place(text)
    assert (place.city, place.country_code, place.provider) == (city, country, OFFLINE_PROVIDER)
    assert place.found and place.timezone


@pytest.mark.parametrize("text", ["Room 4.12", "mobile call", "tbd"])
def test_offline_forward_geocoding_finds_nothing_in_text_without_a_city(text):
    assert not offline_place(text).found


def test_locations_are_geocoded_once_per_text_and_video_calls_never():
    geocoder = OfflineGeocoder()
    calls = []

    class Counting:
        provider, provider_version = geocoder.provider, geocoder.provider_version

        def geocode(self, query):
            calls.append(query)
            return geocoder.geocode(query)

    cache = MemoryPlaceCache(geocoder.provider, geocoder.provider_version)
    frame = pd.concat([enriched().reset_index()] * 2, ignore_index=True)
    placed = stage.with_places(frame, Counting(), cache, RULES)
    assert calls == ["Zahnarztpraxis, Zürich"]
    dentist = placed[placed["event_id"] == "no-end/20260111T150000Z"]
    assert dentist["place_name"].tolist() == ["Zurich", "Zurich"]
    assert dentist["latitude"].iloc[0] == pytest.approx(47.37, abs=0.01)
    assert placed.loc[placed["event_id"] == "la-call/20260115T230000Z", "latitude"].isna().all()
    again = stage.with_places(frame, Counting(), cache, RULES)
    assert calls == ["Zahnarztpraxis, Zürich"] and again["geocode_cached"].dropna().all()


def test_embedding_text_holds_title_description_location_and_attendees_and_skips_cancelled():
    rows = enriched().reset_index()
    rows.loc[rows["event_id"] == "holiday/20260110", "status"] = "cancelled"
    texts = dict(zip(rows["event_id"], stage.embedding_text(rows)))
    assert texts["standup-1/20260105T080000Z"] == (
        "Standup\nAttendees: alice@example.com, Bob <bob@example.com>, carol@example.com")
    assert texts["no-end/20260111T150000Z"] == "Dentist\nLocation: Zahnarztpraxis, Zürich"
    assert texts["holiday/20260110"] == ""
