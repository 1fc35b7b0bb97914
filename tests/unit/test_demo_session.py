"""`loom dev`'s demo session: what a fresh home replays at once, where live events take over,
and the marker that makes a later start go on live only."""

from datetime import UTC, datetime, timedelta

import pytest

from loom_assets import demo
from loom_assets.demo import session
from loom_assets.processing import BacklogRun, backlog_runs, next_backlog_run

NOW = datetime(2026, 12, 7, 20, 29, 32, 421987, tzinfo=UTC)  # Monday 12:29 in San Francisco


@pytest.mark.parametrize("now, yesterday_midnight", [
    (NOW, datetime(2026, 12, 6, 8, tzinfo=UTC)),  # PST: local midnight is 08:00 UTC
    (datetime(2026, 12, 7, 7, 59, tzinfo=UTC), datetime(2026, 12, 5, 8, tzinfo=UTC)),  # still Sunday there
    (datetime(2026, 3, 9, 16, tzinfo=UTC), datetime(2026, 3, 8, 8, tzinfo=UTC)),  # the day DST began
    (datetime(2026, 3, 10, 16, tzinfo=UTC), datetime(2026, 3, 9, 7, tzinfo=UTC)),  # PDT
])
def test_a_fresh_home_replays_the_previous_local_day_and_today_so_far(tmp_path, now, yesterday_midnight):
    start = session.demo_start(tmp_path, now)
    assert start.catch_up_from == yesterday_midnight
    assert start.live_from == now.replace(microsecond=now.microsecond // 1000 * 1000)
    assert start.catch_up_minutes == (start.live_from - yesterday_midnight).total_seconds() / 60


def test_a_home_with_the_marker_goes_on_live_from_now(tmp_path):
    home = tmp_path / "loom"
    first = session.demo_start(home, NOW)
    session.mark_started(home, first)  # before the catch-up: an interrupted one is not redone
    later = NOW + timedelta(days=2)
    assert session.demo_start(home, later) == session.DemoStart(None, later.replace(microsecond=421000))
    assert session.demo_start(tmp_path / "other", later).catch_up_from is not None


def test_live_spans_follow_on_exactly():
    spans = session.live_spans(NOW)
    (a, minutes_a), (b, _), (c, _) = next(spans), next(spans), next(spans)
    assert a == NOW and b == a + timedelta(minutes=minutes_a) and c - b == session.LIVE_CHUNK


def test_live_takes_over_at_the_instant_the_catch_up_ended_without_gap_or_duplicate(tmp_path):
    start = session.demo_start(tmp_path, NOW)
    topics = [demo.GPS_TOPIC, demo.WIFI_TOPIC, demo.CALENDAR_TOPIC]
    # The last two hours of the catch-up (its messages do not depend on where the span began
    # for these periodic streams' ends) and the first live hour.
    tail_from = start.live_from - timedelta(hours=2)
    caught = list(demo.demo_messages(tail_from, 120, devices=2, topics=topics))
    span, minutes = next(session.live_spans(start.live_from))
    live = list(demo.demo_messages(span, minutes, devices=2, topics=topics, calendar_on_start=False))
    assert caught and live
    assert max(m.timestamp for m in caught) < start.live_from <= min(m.timestamp for m in live)
    assert not {m.value for m in caught} & {m.value for m in live}
    # Today's calendar came with the catch-up (at its midnight), not again live.
    assert not [m for m in live if m.topic == demo.CALENDAR_TOPIC]
    whole = list(demo.demo_messages(start.catch_up_from, start.catch_up_minutes, devices=2,
                                    topics=[demo.CALENDAR_TOPIC]))
    midnights = sorted({m.timestamp for m in whole})
    assert midnights == [start.catch_up_from, start.catch_up_from + timedelta(days=1)]


class RecordingProducer:
    """Stands in for confluent-kafka's producer: keeps each message's timestamp, delivers all."""

    def __init__(self):
        self.produced = []

    def produce(self, topic, **kwargs):
        self.produced.append(kwargs["timestamp"])

    def poll(self, timeout=0):
        return 0

    def flush(self, timeout=None):
        return 0


def test_a_live_replay_sends_what_is_due_at_once_stamped_with_event_time():
    past = datetime.now(UTC) - timedelta(minutes=3)
    messages = list(demo.demo_messages(past, 2, devices=2, topics=[demo.GPS_TOPIC, demo.STATE_POWER_TOPIC]))
    producer = RecordingProducer()
    assert demo.replay(producer, messages, speed=1.0, progress=False, wall_clock=True) == len(messages)
    assert producer.produced == [int(m.timestamp.timestamp() * 1000) for m in messages]


def test_the_catch_up_is_produced_at_once_stamped_with_event_time_and_ends_before_live_begins():
    live_from = datetime(2024, 6, 27, 17, 0, 0, 123000, tzinfo=UTC)
    start = session.DemoStart(live_from - timedelta(minutes=3), live_from)
    producer, lines = RecordingProducer(), []
    sent = session.produce_catch_up(producer, start, echo=lines.append)
    expected = list(demo.demo_messages(start.catch_up_from, 3, devices=session.DEVICES, seed=session.SEED))
    assert sent == len(producer.produced) == len(expected) > 100
    assert producer.produced == [int(m.timestamp.timestamp() * 1000) for m in expected]
    assert max(producer.produced) < live_from.timestamp() * 1000
    assert lines[0].startswith("replaying yesterday and today so far (Thu 09:57 to Thu 10:00")
    assert lines[1].startswith(f"replaying yesterday and today so far: {sent} messages")


def test_a_backlog_runs_in_six_hour_cells_oldest_first_every_flow_in_its_order():
    five, hour = timedelta(minutes=5), timedelta(hours=1)
    midnight = datetime(2026, 12, 6, tzinfo=UTC)
    motion = [midnight + 3 * hour + i * five for i in range(12 * 9)]  # 03:00-11:55
    location = [midnight + 8 * hour]  # one window, 08:00
    runs = backlog_runs({"location": location, "motion": motion})
    assert runs == [
        BacklogRun("motion", midnight + 3 * hour, midnight + 6 * hour - five, midnight + 6 * hour),
        BacklogRun("location", midnight + 8 * hour, midnight + 8 * hour, midnight + 12 * hour),
        BacklogRun("motion", midnight + 6 * hour, midnight + 12 * hour - five, midnight + 12 * hour),
    ]
    covered = [s for s in motion if any(r.first <= s <= r.last for r in runs if r.flow == "motion")]
    assert covered == motion and backlog_runs({}) == []


def test_a_backlog_run_waits_for_its_flows_earlier_run_and_for_the_flows_it_reads():
    t = datetime(2026, 12, 6, tzinfo=UTC)
    cell = timedelta(hours=6)
    loc1, mot1, app1 = (BacklogRun(f, t, t, t + cell) for f in ("location", "motion", "app_lifecycle"))
    loc2, mot2 = (BacklogRun(f, t + cell, t + cell, t + 2 * cell) for f in ("location", "motion"))
    reads = {"motion": {"location"}}
    pending = [loc1, mot1, app1, loc2, mot2]
    assert next_backlog_run(pending, [], reads) == loc1
    assert next_backlog_run(pending[1:], [loc1], reads) == app1  # motion waits for location's cell
    assert next_backlog_run([mot1, loc2, mot2], [app1], reads) == mot1
    assert next_backlog_run([loc2, mot2], [mot1], reads) == loc2  # motion's next waits for its first
    assert next_backlog_run([mot2], [mot1], reads) is None
    assert next_backlog_run([mot2], [], reads) == mot2
