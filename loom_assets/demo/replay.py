"""The demo's public API: every device's messages of a time span, and replaying them to Kafka."""

from __future__ import annotations

import functools
import heapq
import logging
import time
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta, timezone
from typing import Any

from loom_assets.demo.accelerometer import accelerometer_stream
from loom_assets.demo.apps import app_lifecycle_stream
from loom_assets.demo.calendar import calendar_stream
from loom_assets.demo.constants import (
    ACCELEROMETER_TOPIC,
    APP_LIFECYCLE_TOPIC,
    AUDIO_TOPIC,
    CALENDAR_TOPIC,
    CAMERA_TOPIC,
    DEMO_TOPICS,
    GPS_TOPIC,
    SCREENSHOT_TOPIC,
    SENSOR_POWER_TOPIC,
    STATE_POWER_TOPIC,
    WIFI_TOPIC,
)
from loom_assets.demo.day import DayPlan
from loom_assets.demo.gps import gps_stream
from loom_assets.demo.media import camera_stream, screenshot_stream
from loom_assets.demo.messages import DemoMessage
from loom_assets.demo.people import demo_devices
from loom_assets.demo.power import laptop_power_stream, mobile_power_stream
from loom_assets.demo.speech import audio_stream
from loom_assets.demo.wifi import wifi_stream

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------

_STREAMS = {  # family -> (topic, generator)
    "phone": ((APP_LIFECYCLE_TOPIC, app_lifecycle_stream), (SENSOR_POWER_TOPIC, mobile_power_stream),
              (WIFI_TOPIC, wifi_stream), (GPS_TOPIC, gps_stream),
              (ACCELEROMETER_TOPIC, accelerometer_stream), (CAMERA_TOPIC, camera_stream),
              (AUDIO_TOPIC, audio_stream), (CALENDAR_TOPIC, calendar_stream)),
    "laptop": ((APP_LIFECYCLE_TOPIC, app_lifecycle_stream), (STATE_POWER_TOPIC, laptop_power_stream),
               (WIFI_TOPIC, wifi_stream), (SCREENSHOT_TOPIC, screenshot_stream)),
}


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def demo_messages(
    start: datetime,
    minutes: float,
    devices: int = 2,
    seed: int = 0,
    topics: Iterable[str] | None = None,
    plan_date: date | None = None,
    calendar_on_start: bool = True,
) -> Iterator[DemoMessage]:
    """Time-ordered messages for every demo topic (or only ``topics``).

    ``start`` is UTC (a naive value is taken as UTC, as Loom v2 does); messages cover
    ``[start, start + minutes)``. Device 0 is an Android phone, 1 a MacBook, 2 an iPhone, ...
    The same (start, minutes, devices, seed) always gives the same messages; the day's plan is
    drawn from its date, or from ``plan_date`` when given (see `DayPlan`). The calendar of the
    day ``start`` falls in is published at ``start`` unless ``calendar_on_start`` is false (a span
    that continues another, whose start already published it).
    """
    wanted = set(DEMO_TOPICS if topics is None else topics)
    if wanted - set(DEMO_TOPICS):
        raise ValueError(f"not demo topics: {sorted(wanted - set(DEMO_TOPICS))}")
    start = _utc(start)
    end = start + timedelta(minutes=minutes)
    plans: dict[int, DayPlan] = {}
    streams = []
    for device in demo_devices(devices, seed):
        if device.person not in plans:
            plans[device.person] = DayPlan(seed, device.person, start, end, plan_date)
        plan = plans[device.person]
        streams.extend(_stream(stream, calendar_on_start)(device, plan, seed, start, end)
                       for topic, stream in _STREAMS[device.family] if topic in wanted)
    return heapq.merge(*streams, key=lambda m: m.timestamp)


def _stream(stream, calendar_on_start: bool):
    return functools.partial(stream, on_start=calendar_on_start) if stream is calendar_stream else stream


def replay(
    producer,
    messages: Iterable[DemoMessage],
    speed: float | None,
    progress: bool = True,
    *,
    flush_timeout: float = 30.0,
    event_timestamps: bool | None = None,
    wall_clock: bool = False,
) -> int:
    """Send ``messages`` with a configured confluent-kafka ``producer``.

    ``speed=None`` sends as fast as possible; ``speed=X`` sleeps so that X seconds of event time
    pass per second of wall time. The Kafka message timestamp is the event time when replaying
    at a speed (``event_timestamps`` overrides); as fast as possible it is left to the producer
    (now), which keeps brokers from rejecting future event times. ``wall_clock`` sends each message
    when the clock reaches its event time (those already due at once), stamped with it: live, from
    an instant in the past without a gap. Shows a tqdm bar, flushes with
    ``flush_timeout`` and returns the number of messages delivered (produced minus still queued).
    """
    from tqdm import tqdm

    if speed is not None and speed <= 0:
        raise ValueError("speed must be positive (or None for as fast as possible)")
    if event_timestamps is None:
        event_timestamps = speed is not None or wall_clock
    total = len(messages) if hasattr(messages, "__len__") else None
    sent = 0
    wall0: float | None = None
    event0: datetime | None = None
    with tqdm(total=total, unit="msg", desc="demo replay", disable=not progress) as bar:
        for msg in messages:
            if wall_clock:
                while (wait := msg.timestamp.timestamp() - time.time()) > 0:
                    producer.poll(min(wait, 0.25))
            elif speed is not None:
                if event0 is None:
                    wall0, event0 = time.monotonic(), msg.timestamp
                due = wall0 + (msg.timestamp - event0).total_seconds() / speed
                while (wait := due - time.monotonic()) > 0:
                    producer.poll(min(wait, 0.25))  # serve delivery callbacks while waiting
            kwargs: dict[str, Any] = {"key": msg.key, "value": msg.value, "headers": list(msg.headers)}
            # The event time, or the time of sending (Python's clock, which Loom's windows use too).
            kwargs["timestamp"] = (int(msg.timestamp.timestamp() * 1000) if event_timestamps
                                   else time.time_ns() // 1_000_000)
            while True:
                try:
                    producer.produce(msg.topic, **kwargs)
                    break
                except BufferError:  # local queue full: let librdkafka drain it
                    producer.poll(0.5)
            producer.poll(0)
            sent += 1
            bar.update(1)
    remaining = producer.flush(flush_timeout)
    if remaining:
        log.warning("demo replay: %d of %d messages still queued after %.0f s flush",
                    remaining, sent, flush_timeout)
    return sent - (remaining or 0)
