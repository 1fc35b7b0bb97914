"""A demo afternoon (the coffee walk, back to work, the drive home) through the location and
motion flows: the activities and visits `loom dev` shows are the ones the person lived; a demo
morning's standup through the calendar and audio flows."""

import shutil
from datetime import UTC, date, datetime, timedelta

import pytest
from confluent_kafka import Producer
from dagster import DagsterInstance

from loom_assets import demo
from loom_assets.definitions import flow_named
from loom_assets.processing import process_backlog
from tests.integration.test_spine import invoke, table

pytestmark = pytest.mark.integration

TOPICS = (demo.GPS_TOPIC, "device.sensor.accelerometer.raw")
# The afternoon lived is the one planned for this Tuesday, whatever day the test runs: the demo
# draws each day's plan from its date. The timestamps stay recent (yesterday's), within the
# topics' and tables' retention.
PLAN_DATE = date(2026, 11, 24)


def test_a_demo_afternoon_gives_the_activities_and_visits_lived(loom_env):
    # Yesterday 14:00-18:45 in San Francisco (the demo's day is planned in local time), as planned
    # for PLAN_DATE.
    day = (datetime.now(UTC) - timedelta(days=1)).astimezone(demo.LOCAL_TZ).date()
    start = datetime(day.year, day.month, day.day, 14, tzinfo=demo.LOCAL_TZ).astimezone(UTC)
    minutes = 285
    invoke("regions", "add", "Work", "--type", "work", "--lat", str(demo.WORK.lat), "--lon",
           str(demo.WORK.lon), "--radius", "150")
    producer = Producer({"bootstrap.servers": loom_env["bootstrap"], "linger.ms": 50})
    messages = demo.demo_messages(start, minutes, devices=1, topics=TOPICS, plan_date=PLAN_DATE)
    sent = demo.replay(producer, messages, speed=None, event_timestamps=True, progress=False)
    assert sent > 100_000
    # As `loom dev`'s first start processes its catch-up: ranged runs of the windows.
    assert process_backlog(DagsterInstance.get(), [flow_named("location"), flow_named("motion")], datetime.now(UTC))

    url = loom_env["database_url"]
    plan = demo.DayPlan(0, 0, start, start + timedelta(minutes=minutes), PLAN_DATE)
    activities = table(url, "motion_activities", order="recorded_at")
    assert len(activities) > 3000

    def lived(kind: str):
        """Activities of the windows wholly inside the plan's segments of this kind."""
        spans = [(s.start, s.end) for s in plan.segments if s.activity == kind and s.end > start]
        inside = activities["recorded_at"].apply(
            lambda t: any(a + timedelta(seconds=10) <= t <= b - timedelta(seconds=15) for a, b in spans))
        return activities[inside]["activity"].value_counts(normalize=True)

    assert lived("drive").get("vehicle", 0) >= 0.7
    assert lived("walk").get("walking", 0) + lived("walk").get("stairs", 0) >= 0.7
    assert lived("work").get("still", 0) >= 0.9
    assert lived("coffee").get("still", 0) >= 0.9

    visits = table(url, "location_places", order="arrived_at")
    places = visits["place_name"].tolist()
    # Work (a region), the coffee shop (its address), work again; home is still going on.
    assert places[:3] == ["Work", visits["place_name"].iloc[1], "Work"] and places[1] != "Work"
    assert visits["place_source"].tolist()[:3] == ["georegion", "geocoded", "georegion"]
    assert visits["visit_count_30d"].tolist()[:3] == [1, 1, 2]
    events = table(url, "location_georegions", order="recorded_at")
    assert {"enter", "exit", "dwell"} <= set(events["event_type"])


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_a_demo_morning_has_the_standup_in_the_calendar_and_in_what_was_said(loom_env):
    """Yesterday 09:20-09:50 in San Francisco: the calendar's "Daily standup" (published at the
    replay's start) and the person's standup words, through `loom process`."""
    day = (datetime.now(UTC) - timedelta(days=1)).astimezone(demo.LOCAL_TZ).date()
    start = datetime(day.year, day.month, day.day, 9, 20, tzinfo=demo.LOCAL_TZ).astimezone(UTC)
    producer = Producer({"bootstrap.servers": loom_env["bootstrap"], "message.max.bytes": 16 * 1024 * 1024})
    messages = list(demo.demo_messages(start, 30, devices=1, topics=[demo.AUDIO_TOPIC, demo.CALENDAR_TOPIC],
                                       plan_date=PLAN_DATE))
    assert demo.replay(producer, messages, speed=None, event_timestamps=True, progress=False) == len(messages)
    invoke("process", "--through-now", "--flow", "calendar")
    invoke("process", "--through-now", "--flow", "audio")

    url = loom_env["database_url"]
    events = table(url, "calendar_events", order="start_time")
    standup = events[events["title"] == "Daily standup"].iloc[0]
    assert standup["start_time"] == datetime(day.year, day.month, day.day, 9, 30, tzinfo=demo.LOCAL_TZ)
    assert standup["meeting_type"] == "team" and standup["attendee_count"] == 4
    said = " ".join(table(url, "audio_transcripts", order="recorded_at")["text"]).lower()
    # Whisper tiny.en hears espeak-ng well, if not every word (tests/integration/test_audio_flow.py).
    assert sum(word in said for word in ("standup", "upload", "retry", "migration", "blockers")) >= 3, said
    assert len(table(url, "processing_errors", order="source_offset")) == 0
