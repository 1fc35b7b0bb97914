"""The demo's phone speaks (espeak-ng clips as 2 s WAV chunks) and its person has a calendar
published as the calendar fetcher publishes it."""

import json
import shutil
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pytest

from loom_assets import demo
from loom_assets.demo import speech
from loom_assets.demo.calendar import COFFEE_SHOP_ADDRESS, calendar_stream
from loom_assets.events import decode
from loom_assets.stages.audio.decoding import decode_chunk

PLAN_DATE = date(2024, 6, 27)  # a fixed plan, whatever day the test runs
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def local(hour: float, day: date = PLAN_DATE) -> datetime:
    return (datetime(day.year, day.month, day.day, tzinfo=demo.LOCAL_TZ) + timedelta(hours=hour)).astimezone(timezone.utc)


def day_of(topics, devices=2, seed=0):
    return list(demo.demo_messages(local(0), 24 * 60, devices=devices, seed=seed, topics=topics))


@pytest.fixture
def fresh_espeak_lookup():
    """`espeak_program` looks for the program once per process: look again, before and after."""
    speech.espeak_program.cache_clear()
    yield
    speech.espeak_program.cache_clear()


@needs_espeak
def test_the_phone_speaks_each_clip_as_consecutive_2s_wav_chunks_of_speech():
    chunks = day_of([demo.AUDIO_TOPIC])
    phone = demo.demo_devices(2, 0)[0]
    assert {m.key.decode() for m in chunks} == {phone.device_id}
    bodies = [json.loads(m.value) for m in chunks]
    by_clip: dict[str, list] = {}
    for message, body in zip(chunks, bodies):
        by_clip.setdefault(body["file_id"].split("-")[0], []).append((message, body))
    assert set(by_clip) == {clip.name for clip in speech.CLIPS}
    plan = demo.DayPlan(0, 0, local(0), local(24))
    for name, clip_chunks in by_clip.items():
        first = clip_chunks[0][0].timestamp
        for k, (message, body) in enumerate(clip_chunks):
            assert body["chunk_number"] == k and message.timestamp == first + timedelta(seconds=2 * k)
            assert plan.at(message.timestamp).activity == next(c.activity for c in speech.CLIPS if c.name == name)
            assert decode(demo.AUDIO_TOPIC, message.value, partition=0, offset=0).payload.sample_rate == 16_000
            samples, rate = decode_chunk(body["data"], format=body["format"], sample_rate=body["sample_rate"],
                                         channels=body["channels"])
            assert rate == 16_000 and samples.size == 2 * 16_000
        loudness = [float(np.sqrt(np.mean(decode_chunk(b["data"], format="wav", sample_rate=None,
                                                            channels=None)[0] ** 2))) for _, b in clip_chunks]
        assert max(loudness) > 20 * speech.ROOM_NOISE  # a voice, well above the room
    standup = by_clip["standup"][0][0].timestamp.astimezone(demo.LOCAL_TZ)
    assert (standup.hour, standup.minute) in ((9, 31), (9, 32))
    assert chunks == day_of([demo.AUDIO_TOPIC])  # reproducible


@needs_espeak
def test_a_clip_split_between_two_spans_is_sent_whole_and_once():
    whole = list(demo.demo_messages(local(9.5), 10, devices=1, topics=[demo.AUDIO_TOPIC], plan_date=PLAN_DATE))
    assert len(whole) >= 8
    cut = whole[3].timestamp + timedelta(milliseconds=1)
    minutes = (cut - local(9.5)).total_seconds() / 60
    before = demo.demo_messages(local(9.5), minutes, devices=1, topics=[demo.AUDIO_TOPIC], plan_date=PLAN_DATE)
    after = demo.demo_messages(cut, 10 - minutes, devices=1, topics=[demo.AUDIO_TOPIC], plan_date=PLAN_DATE)
    assert [m.value for m in [*before, *after]] == [m.value for m in whole]


def test_without_espeak_ng_the_demo_warns_once_and_sends_no_audio(monkeypatch, tmp_path, fresh_espeak_lookup):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.warns(speech.MissingProgramWarning, match="espeak-ng is not installed"):
        messages = list(demo.demo_messages(local(9), 12 * 60, devices=2, topics=[demo.AUDIO_TOPIC, demo.GPS_TOPIC]))
    assert {m.topic for m in messages} == {demo.GPS_TOPIC}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once: not again
        assert not [m for m in demo.demo_messages(local(9), 60, topics=[demo.AUDIO_TOPIC])]


def test_calendar_messages_are_the_fetchers_and_pass_the_calendar_payload_model():
    messages = day_of([demo.CALENDAR_TOPIC], devices=4)
    assert all(m.timestamp == local(0) for m in messages)  # published at the local midnight
    people = {}
    for m in messages:
        record = decode(demo.CALENDAR_TOPIC, m.value, partition=0, offset=0)
        event = record.payload
        assert m.key == event.event_id.encode() and dict(m.headers) == {"producer_service": b"loom-fetcher"}
        assert record.recorded_at == event.start_time and record.device_id.startswith("calendar-fetcher-demo-person-")
        assert event.content_hash == record.message_id and event.status == "confirmed"
        people.setdefault(record.device_id, {})[event.title] = event
    assert len(people) == 2  # one calendar per person, published by the person's phone
    events = people["calendar-fetcher-demo-person-1"]
    assert set(events) == {"Daily standup", "Coffee with Dana", "Call with Mum"}
    standup = events["Daily standup"]
    assert (standup.start_time, standup.end_time) == (local(9.5), local(9.75))
    assert standup.location.startswith("Work") and standup.recurring_rule == "FREQ=DAILY"
    assert standup.event_id == f"{standup.uid}/{standup.start_time:%Y%m%dT%H%M%SZ}"
    plan = demo.DayPlan(0, 0, local(0), local(24))
    assert plan.at(standup.start_time).activity == "work"
    coffee = events["Coffee with Dana"]
    assert coffee.location == COFFEE_SHOP_ADDRESS
    sitting = next(s for s in plan.segments_of(PLAN_DATE) if s.activity == "coffee")
    assert coffee.start_time <= sitting.start < sitting.end <= coffee.end_time
    assert coffee.end_time - coffee.start_time < timedelta(minutes=90)
    assert plan.at(events["Call with Mum"].start_time).activity == "evening"
    assert messages == day_of([demo.CALENDAR_TOPIC], devices=4)  # reproducible


def test_a_replay_starting_during_a_day_publishes_its_events_at_its_start_unless_it_continues_one():
    start = local(10.25)
    two_days = list(demo.demo_messages(start, 24 * 60, devices=2, topics=[demo.CALENDAR_TOPIC]))
    assert [m.timestamp for m in two_days] == [start] * 3 + [local(24)] * 3
    continued = list(demo.demo_messages(start, 24 * 60, devices=2, topics=[demo.CALENDAR_TOPIC],
                                        calendar_on_start=False))
    assert [m.timestamp for m in continued] == [local(24)] * 3
    phone = demo.demo_devices(1, 0)[0]
    plan = demo.DayPlan(0, 0, start, start + timedelta(hours=1))
    assert list(calendar_stream(phone, plan, 0, start, start + timedelta(hours=1), on_start=False)) == []
