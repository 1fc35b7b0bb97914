"""Synthetic device events in the real Loom v2 wire formats (for ``loom replay --demo`` / ``loom dev``).

One simulated person per phone/laptop pair lives a San Francisco work day: asleep and at home,
a drive to work, work, an afternoon at a coffee shop near the office (the laptop tethers to the
phone's hotspot there after a while), back to work, a drive home, an evening at home.

Devices (index ``i``; kinds cycle Android phone, MacBook, iPhone, MacBook; person = ``i // 2``;
envelopes as in docs/messages.md#envelopes, rates as in docs/messages.md#sampling-rates):

==========================  =====================================  ===========================
topic                       envelope                               who / rate
==========================  =====================================  ===========================
os.events.app_lifecycle.raw flat REST                              all; bursts, ≈0.5 ev/s at
                                                                   full activity
device.sensor.power.raw     flat REST (``POST /sensor/power``)     phones; every 60 s
device.state.power.raw      unified ``power_state``                laptops; every 10 s
device.network.wifi.raw     flat REST                              all; every 120 s while
                                                                   connected
device.sensor.gps.raw       flat REST                              phones; every 30 s
device.sensor.accelerometer flat REST (x, y, z m/s², gravity       phones; 50 Hz moving,
.raw                        included)                              10 Hz still
device.image.screenshot.raw flat REST (PNG rendered with Pillow)   laptops; every 5 min open
device.image.camera.raw     flat REST (JPEG of scikit-image's      phones; now and then at the
                            photos)                                coffee shop and at home
==========================  =====================================  ===========================

The accelerometer follows the same day as the GPS: the phone lies still (and is picked up now
and then), walks with its person, climbs the office stairs, rides in the car's mount. At 50 Hz
while moving and 10 Hz while still a phone sends ~1 M samples a day (~12 msg/s on average,
50 msg/s at most); the default demo (one phone) stays under ~55 msg/s, two phones under ~105.

Generation is pure and reproducible: every (device, topic) stream has its own
``random.Random`` seeded from ``seed``, and the day plan depends only on seed, person and
date, so ``demo_messages(start, minutes, devices, seed)`` always yields the same bytes.
Only :func:`replay` talks to Kafka (through a producer handed in by the caller).
"""

from __future__ import annotations

import base64
import bisect
import copy
import heapq
import io
import json
import logging
import math
import random
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import cached_property, lru_cache
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Wire-format constants
# --------------------------------------------------------------------------------------------

APP_LIFECYCLE_TOPIC = "os.events.app_lifecycle.raw"  # docs/flows/app_lifecycle.md#kafka-topics
SENSOR_POWER_TOPIC = "device.sensor.power.raw"  # docs/flows/power_state.md: what POST /sensor/power publishes to
STATE_POWER_TOPIC = "device.state.power.raw"  # docs/messages.md#unified-envelope: type power_state
WIFI_TOPIC = "device.network.wifi.raw"  # docs/flows/network_events.md
GPS_TOPIC = "device.sensor.gps.raw"  # docs/flows/location.md
ACCELEROMETER_TOPIC = "device.sensor.accelerometer.raw"  # docs/flows/motion.md
SCREENSHOT_TOPIC = "device.image.screenshot.raw"  # docs/flows/screenshot_ocr.md
CAMERA_TOPIC = "device.image.camera.raw"  # docs/flows/camera_vision.md

DEMO_TOPICS: tuple[str, ...] = (
    APP_LIFECYCLE_TOPIC,
    SENSOR_POWER_TOPIC,
    STATE_POWER_TOPIC,
    WIFI_TOPIC,
    GPS_TOPIC,
    ACCELEROMETER_TOPIC,
    SCREENSHOT_TOPIC,
    CAMERA_TOPIC,
)

SCHEMA_VERSION = "1.0"  # docs/messages.md#rest-envelope, docs/messages.md#unified-envelope
SERVICES_ENCOUNTERED = ("ingestion-api", "kafka-producer")  # docs/messages.md#rest-envelope
PRODUCER_SERVICE = "ingestion-api"  # docs/messages.md#rest-envelope
POWER_STATE_MESSAGE_TYPE = "power_state"  # docs/messages.md#unified-envelope → device.state.power.raw
# Server receive time (`timestamp`) trails the client's `recorded_at` by network + API latency.
RECEIVE_LATENCY_MS = (60.0, 650.0)

# --------------------------------------------------------------------------------------------
# Rates
# --------------------------------------------------------------------------------------------

GPS_INTERVAL_S = 30.0  # docs/messages.md#sampling-rates GPS: 30 s
MOBILE_POWER_INTERVAL_S = 60.0  # docs/messages.md#sampling-rates battery: 60 s
LAPTOP_POWER_INTERVAL_S = 10.0  # docs/messages.md#sampling-rates: laptops every 10 s
WIFI_INTERVAL_S = 120.0  # docs/messages.md#sampling-rates network: 120 s (only while connected)
# Loom v2 sized the flow at 2 ev/s (peak x10). We average 0.5 ev/s per device at full activity
# (intensity 1.0, see ACTIVITY_INTENSITY), in screen-on bursts of ~0.6 ev/s with quieter gaps.
APP_EVENTS_PER_S = 0.5
TIMER_JITTER_S = (-0.3, 0.7)  # periodic client timers fire a little late, sometimes early

# --------------------------------------------------------------------------------------------
# Places, people and devices
# --------------------------------------------------------------------------------------------

UUID_RE = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"  # docs/messages.md#rest-envelope

try:  # the person lives in San Francisco; their day is planned in local time
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    LOCAL_TZ: Any = ZoneInfo("America/Los_Angeles")
except ZoneInfoNotFoundError:  # pragma: no cover - no tz database: fixed PDT offset
    LOCAL_TZ = timezone(timedelta(hours=-7), "PDT")


@dataclass(frozen=True)
class Place:
    name: str
    lat: float
    lon: float
    altitude: float  # metres above sea level
    accuracy_m: tuple[float, float]  # typical GPS accuracy range there (indoors is worse)


# docs/flows/location.md#georegions: Home 37.7599,-122.4148; Work 37.7955,-122.3937.
HOME = Place("home", 37.7599, -122.4148, 22.0, (8.0, 20.0))
WORK = Place("work", 37.7955, -122.3937, 6.0, (12.0, 30.0))
COFFEE_SHOP = Place("coffee_shop", 37.7936, -122.3966, 8.0, (6.0, 18.0))  # Market & Drumm
# The demo person's georegions (docs/flows/location.md#georegions: Home 100 m, Work 150 m), which `loom dev`
# adds to an empty georegions table so enter/exit/dwell events and region visits show.
DEMO_REGIONS = (("Home", "home", HOME, 100.0), ("Work", "work", WORK, 150.0))

# Drive from the Mission to the Embarcadero (South Van Ness, Howard St, Beale St), ~5 km.
COMMUTE_ROUTE: tuple[tuple[float, float], ...] = (
    (HOME.lat, HOME.lon),
    (37.7652, -122.4196),
    (37.7748, -122.4193),
    (37.7786, -122.4130),
    (37.7890, -122.3998),
    (37.7933, -122.3958),
    (WORK.lat, WORK.lon),
)
COFFEE_WALK: tuple[tuple[float, float], ...] = (
    (WORK.lat, WORK.lon),
    (37.7944, -122.3948),
    (COFFEE_SHOP.lat, COFFEE_SHOP.lon),
)
DRIVE_SPEED_MPS = (10.0, 15.0)  # cruising between lights (36-54 km/h)
WALK_SPEED_MPS = (1.2, 1.5)

# What each device kind does per activity, 0..1 (scales APP_EVENTS_PER_S and battery drain).
# A laptop at intensity 0 has its lid closed (in a bag or asleep).
ACTIVITY_INTENSITY: dict[str, dict[str, float]] = {
    "phone": {"sleep": 0.05, "morning": 0.7, "drive": 0.15, "walk": 0.5, "work": 0.3,
              "coffee": 0.4, "evening": 0.8},
    "laptop": {"sleep": 0.0, "morning": 0.0, "drive": 0.0, "walk": 0.0, "work": 1.0,
               "coffee": 1.0, "evening": 0.4},
}

DEVICE_KINDS = ("android", "macbook", "iphone", "macbook")  # cycled over device indexes


@dataclass(frozen=True)
class DemoDevice:
    index: int
    device_id: str
    kind: str  # android | iphone | macbook

    @property
    def person(self) -> int:
        return self.index // 2

    @property
    def family(self) -> str:
        return "laptop" if self.kind == "macbook" else "phone"


def demo_devices(devices: int = 2, seed: int = 0) -> list[DemoDevice]:
    """The demo devices: fixed lowercase UUIDv4 ids derived from ``seed`` (docs/messages.md#rest-envelope)."""
    out = []
    for i in range(devices):
        rng = random.Random(f"loom-demo-device:{seed}:{i}")
        device_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        out.append(DemoDevice(i, device_id, DEVICE_KINDS[i % len(DEVICE_KINDS)]))
    return out


# --------------------------------------------------------------------------------------------
# Messages and envelopes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoMessage:
    topic: str
    key: bytes  # device_id as UTF-8 (docs/messages.md#rest-envelope: Kafka key = device_id)
    value: bytes  # UTF-8 JSON exactly as Loom v2 produces it
    timestamp: datetime  # event time (UTC); the Kafka message timestamp when replaying at speed
    headers: tuple[tuple[str, bytes], ...]  # trace_id, services_encountered, producer_service


def format_datetime(dt: datetime) -> str:
    """Pydantic v2 JSON datetime (docs/messages.md#rest-envelope): ``2024-06-27T12:00:00.123000Z``.

    Like pydantic, a value with zero microseconds has no fraction (``2024-06-27T12:00:00Z``).
    """
    dt = dt.astimezone(timezone.utc)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if dt.microsecond:
        text += f".{dt.microsecond:06d}"
    return text + "Z"


def _uuid4(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _headers(trace_id: str) -> tuple[tuple[str, bytes], ...]:
    return (
        ("trace_id", trace_id.encode()),
        ("services_encountered", ",".join(SERVICES_ENCOUNTERED).encode()),
        ("producer_service", PRODUCER_SERVICE.encode()),
    )


def _to_ms(dt: datetime) -> datetime:
    """Client clocks (Dart/Swift) report milliseconds."""
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


def rest_message(
    topic: str, device_id: str, recorded_at: datetime, payload: dict[str, Any], rng: random.Random
) -> DemoMessage:
    """A flat REST envelope (docs/messages.md#rest-envelope) followed by the payload fields
    (docs/messages.md#payload-fields)."""
    recorded_at = _to_ms(recorded_at)
    received = recorded_at + timedelta(milliseconds=rng.uniform(*RECEIVE_LATENCY_MS))
    trace_id = _uuid4(rng)
    return _flat_message(topic, device_id, recorded_at, received, _uuid4(rng), trace_id, payload)


def _flat_message(
    topic: str,
    device_id: str,
    recorded_at: datetime,
    received: datetime,
    message_id: str,
    trace_id: str,
    payload: dict[str, Any],
) -> DemoMessage:
    body = {
        "schema_version": SCHEMA_VERSION,
        "device_id": device_id,
        "recorded_at": format_datetime(recorded_at),
        "timestamp": format_datetime(received),
        "message_id": message_id,
        "trace_id": trace_id,
        "services_encountered": list(SERVICES_ENCOUNTERED),
        **payload,
    }
    return DemoMessage(topic, device_id.encode(), json.dumps(body).encode(), recorded_at,
                       _headers(trace_id))


def unified_message(
    topic: str,
    device_id: str,
    message_type: str,
    recorded_at: datetime,
    data: dict[str, Any],
    rng: random.Random,
) -> DemoMessage:
    """The unified ``POST /ingest/message`` envelope (docs/messages.md#unified-envelope): no
    recorded_at, message_id or trace_id in the body and ``timestamp: null``; the trace id travels
    only in the headers."""
    recorded_at = _to_ms(recorded_at)
    trace_id = _uuid4(rng)
    body = {
        "schema_version": SCHEMA_VERSION,
        "device_id": device_id,
        "message_type": message_type,
        "data": data,
        "metadata": {},
        "timestamp": None,
    }
    return DemoMessage(topic, device_id.encode(), json.dumps(body).encode(), recorded_at,
                       _headers(trace_id))


# --------------------------------------------------------------------------------------------
# Geometry and travel
# --------------------------------------------------------------------------------------------

EARTH_RADIUS_M = 6371000.0  # docs/flows/location.md#georegions haversine radius


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    x = math.sin(dl) * math.cos(p2)
    y = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(x, y)) % 360.0


def _offset(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    dlat = north_m / EARTH_RADIUS_M
    dlon = east_m / (EARTH_RADIUS_M * math.cos(math.radians(lat)))
    return lat + math.degrees(dlat), lon + math.degrees(dlon)


def travel_profile(
    rng: random.Random,
    length_m: float,
    speed_mps: tuple[float, float],
    stop_every_m: tuple[float, float],
    wait_s: tuple[float, float],
    accel: float,
    decel: float,
) -> list[float]:
    """Distance covered after each whole second of a trip with stops (lights, crossings)."""
    out, d, v = [0.0], 0.0, 0.0
    next_stop = rng.uniform(*stop_every_m)
    target = rng.uniform(*speed_mps)
    while d < length_m:
        stop_at = min(next_stop, length_m)
        remaining = stop_at - d
        v = min(target, v + accel, math.sqrt(2 * decel * remaining))
        d = min(d + v, stop_at)
        out.append(d)
        if d >= stop_at and stop_at < length_m:  # stopped at a light / stop sign / crossing
            v = 0.0
            if rng.random() < 0.6:
                out.extend([d] * int(rng.uniform(*wait_s)))
            next_stop = d + rng.uniform(*stop_every_m)
            target = rng.uniform(*speed_mps)
    return out


@dataclass(frozen=True)
class Path:
    points: tuple[tuple[float, float], ...]

    @cached_property
    def cumulative(self) -> list[float]:
        cum = [0.0]
        for (a, b), (c, d) in zip(self.points, self.points[1:]):
            cum.append(cum[-1] + haversine_m(a, b, c, d))
        return cum

    @property
    def length(self) -> float:
        return self.cumulative[-1]

    def locate(self, dist: float) -> tuple[float, float, float]:
        """(lat, lon, heading) ``dist`` metres along the path."""
        cum = self.cumulative
        i = min(max(bisect.bisect_right(cum, dist) - 1, 0), len(self.points) - 2)
        (a, b), (c, d) = self.points[i], self.points[i + 1]
        f = 0.0 if cum[i + 1] == cum[i] else (dist - cum[i]) / (cum[i + 1] - cum[i])
        f = min(max(f, 0.0), 1.0)
        return a + (c - a) * f, b + (d - b) * f, bearing_deg(a, b, c, d)

    def reversed(self) -> Path:
        return Path(tuple(reversed(self.points)))


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


# --------------------------------------------------------------------------------------------
# Topic generators. Each yields DemoMessages of one device, ordered by event time.
# --------------------------------------------------------------------------------------------


def _stream_rng(seed: int, device: DemoDevice, topic: str) -> random.Random:
    return random.Random(f"loom-demo:{seed}:{device.index}:{topic}")


def _ticks(rng: random.Random, start: datetime, end: datetime, interval_s: float) -> Iterator[datetime]:
    """Periodic client timer with a random phase and a little jitter."""
    t = start + timedelta(seconds=rng.uniform(0, interval_s))
    while t < end:
        yield t
        t += timedelta(seconds=interval_s + rng.uniform(*TIMER_JITTER_S))


# ---- apps ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class App:
    app_id: str
    name: str | None  # app_name is optional (docs/messages.md#payload-fields); obscure apps may not report one
    weight: float  # how often this person uses it
    category: str | None = None  # Android ApplicationInfo category label (docs/flows/app_lifecycle.md#categories)
    contexts: tuple[str, ...] = ()  # activities where the app is used much more


ANDROID_APPS = (
    App("com.whatsapp", "WhatsApp", 10, "SOCIAL"),
    App("com.google.android.gm", "Gmail", 7, "PRODUCTIVITY", ("work",)),
    App("com.android.chrome", "Chrome", 8),
    App("com.Slack", "Slack", 6, "PRODUCTIVITY", ("work", "coffee")),
    App("com.microsoft.teams", "Microsoft Teams", 3, "PRODUCTIVITY", ("work",)),
    App("com.spotify.music", "Spotify", 4, "AUDIO", ("drive", "walk")),
    App("com.google.android.apps.maps", "Maps", 2, "MAPS", ("drive", "walk")),
    App("com.instagram.android", "Instagram", 6, "SOCIAL", ("evening", "morning")),
    App("com.google.android.youtube", "YouTube", 4, "VIDEO", ("evening",)),
    App("com.reddit.frontpage", "Reddit", 4, "SOCIAL", ("evening", "coffee")),
    App("org.telegram.messenger", "Telegram", 2, "SOCIAL"),
    App("com.google.android.apps.messaging", "Messages", 4),
    App("com.google.android.calendar", "Calendar", 2, "PRODUCTIVITY", ("work", "morning")),
    App("com.nytimes.android", "NYTimes", 2, "NEWS", ("morning",)),
    App("com.google.android.GoogleCamera", "Camera", 1, "IMAGE"),
    App("com.supercell.clashroyale", "Clash Royale", 2, "GAME", ("evening",)),
    App("com.duolingo", "Duolingo", 1),
    App("io.homeassistant.companion.android", "Home Assistant", 1, None, ("evening", "morning")),
    App("com.termux", "Termux", 0.5),
    App("net.acme.fieldkit.debug", None, 0.3),
)
IOS_APPS = (
    App("net.whatsapp.WhatsApp", "WhatsApp", 10),
    App("com.apple.MobileSMS", "Messages", 8),
    App("com.apple.mobilesafari", "Safari", 8),
    App("com.tinyspeck.chatlyio", "Slack", 6, None, ("work", "coffee")),
    App("com.microsoft.skype.teams", "Microsoft Teams", 3, None, ("work",)),
    App("com.google.Gmail", "Gmail", 6, None, ("work",)),
    App("com.spotify.client", "Spotify", 4, None, ("drive", "walk")),
    App("com.apple.Maps", "Maps", 2, None, ("drive", "walk")),
    App("com.burbn.instagram", "Instagram", 6, None, ("evening", "morning")),
    App("com.google.ios.youtube", "YouTube", 3, None, ("evening",)),
    App("com.apple.mobilecal", "Calendar", 2, None, ("work", "morning")),
    App("com.apple.camera", "Camera", 1),
    App("com.strava.stravaride", "Strava", 0.5),
    App("de.twoknights.tinyapp", None, 0.3),
)
MACOS_APPS = (
    App("com.apple.Safari", "Safari", 6),
    App("com.google.Chrome", "Google Chrome", 9),
    App("com.tinyspeck.slackmacgap", "Slack", 9),
    App("com.microsoft.teams2", "Microsoft Teams", 4, None, ("work",)),
    App("com.microsoft.VSCode", "Visual Studio Code", 9, None, ("work", "coffee")),
    App("com.apple.Terminal", "Terminal", 6, None, ("work", "coffee")),
    App("com.apple.mail", "Mail", 3),
    App("com.apple.finder", "Finder", 3),
    App("us.zoom.xos", "zoom.us", 2, None, ("work",)),
    App("com.figma.Desktop", "Figma", 2, None, ("work",)),
    App("notion.id", "Notion", 3),
    App("com.spotify.client", "Spotify", 2),
    App("com.apple.iCal", "Calendar", 2, None, ("work",)),
    App("com.1password.1password", "1Password", 1),
    App("com.postmanlabs.mac", "Postman", 1, None, ("work",)),
    App("com.lwouis.alt-tab-macos", "AltTab", 0.5),
    App("local.build.loom-menubar", None, 0.3),
)
APPS_BY_KIND = {"android": ANDROID_APPS, "iphone": IOS_APPS, "macbook": MACOS_APPS}

CONTEXT_BOOST = 4.0  # weight multiplier for apps typical of the current activity
P_RETURN_TO_PREVIOUS = 0.35  # ping-pong between two apps
P_TERMINATE = 0.12  # user swipes away / quits after backgrounding
P_CRASH = 0.01  # per foreground session (brief: ~1 %)
MAX_RUNNING = {"phone": 6, "laptop": 12}  # the OS (phone) or the user (laptop) drops the oldest
# Time in the foreground: lognormal, median 1 s with a heavy tail (10 % over 4.7 s, 1 % over
# 16 s), so a burst runs at ~0.8 ev/s and quiet gaps bring the average down to the target.
FOREGROUND_MEDIAN_S = {"phone": 1.0, "laptop": 1.0}
FOREGROUND_SIGMA = 1.2
BURST_MEDIAN_S = {"phone": 45.0, "laptop": 240.0}  # screen-on / at-keyboard spells
BURST_SIGMA = 0.8


class _AppSimulator:
    """Coherent app sessions: launch → foreground → background (→ terminate), rare crashes."""

    def __init__(self, device: DemoDevice, plan: DayPlan, rng: random.Random, start: datetime):
        self.device, self.plan, self.rng = device, plan, rng
        self.apps = APPS_BY_KIND[device.kind]
        self.running: dict[str, datetime] = {}  # app_id -> launch time
        self.last_used: dict[str, datetime] = {}
        self.out: list[tuple[datetime, dict[str, Any]]] = []
        for app in rng.sample(self.apps, 4):  # apps already running before the demo starts
            self.running[app.app_id] = start - timedelta(seconds=rng.uniform(600, 8 * 3600))
            self.last_used[app.app_id] = self.running[app.app_id]

    def _event(self, t: datetime, app: App, event_type: str, duration: float | None = None):
        metadata = {"category": app.category} if app.category else {}
        self.out.append((t, {
            "app_identifier": app.app_id,
            "app_name": app.name,
            "event_type": event_type,
            "duration_seconds": None if duration is None else int(round(duration)),
            "metadata": metadata,
        }))

    def _pick(self, t: datetime, current: App | None, previous: App | None) -> App:
        if previous is not None and previous is not current and self.rng.random() < P_RETURN_TO_PREVIOUS:
            return previous
        activity = self.plan.at(t).activity
        candidates = [a for a in self.apps if a is not current]
        weights = [a.weight * (CONTEXT_BOOST if activity in a.contexts else 1.0) for a in candidates]
        return self.rng.choices(candidates, weights)[0]

    def _bring_to_front(self, t: datetime, app: App) -> tuple[datetime, datetime]:
        if app.app_id not in self.running:
            if len(self.running) >= MAX_RUNNING[self.device.family]:
                self._drop_oldest(t)
            self.running[app.app_id] = t
            self._event(t, app, "launch")
            t += timedelta(seconds=self.rng.uniform(0.3, 2.5))  # cold start
        self._event(t, app, "foreground")
        return t, t

    def _drop_oldest(self, t: datetime) -> None:
        oldest = min(self.running, key=lambda a: self.last_used.get(a, self.running[a]))
        launched = self.running.pop(oldest)
        if self.device.family == "laptop":  # the user quits it (a phone OS kills silently)
            app = next(a for a in self.apps if a.app_id == oldest)
            self._event(t, app, "terminate", (t - launched).total_seconds())

    def _leave(self, t: datetime, app: App, since: datetime) -> datetime:
        """End a foreground session: background (maybe then terminate), or crash.
        Returns the time of the last event emitted."""
        self.last_used[app.app_id] = t
        if self.rng.random() < P_CRASH:
            self._event(t, app, "crash")
            self.running.pop(app.app_id, None)
            return t
        self._event(t, app, "background", (t - since).total_seconds())
        if self.rng.random() < P_TERMINATE:
            t += timedelta(seconds=self.rng.uniform(0.5, 4.0))
            launched = self.running.pop(app.app_id, since)
            self._event(t, app, "terminate", (t - launched).total_seconds())
        return t

    def burst(self, t: datetime, until: datetime) -> datetime:
        """One screen-on spell of app switching starting at ``t``; returns when it ended."""
        family = self.device.family
        current = previous = None
        since = t
        while True:
            nxt = self._pick(t, current, previous)
            if current is not None:
                t = self._leave(t, current, since)
                t += timedelta(seconds=self.rng.uniform(0.2, 1.2))
            previous, current = current, nxt
            t, since = self._bring_to_front(t, current)
            dwell = self.rng.lognormvariate(math.log(FOREGROUND_MEDIAN_S[family]), FOREGROUND_SIGMA)
            t += timedelta(seconds=min(dwell, 900.0))
            if t >= until:
                break
        return self._leave(t, current, since)


def app_lifecycle_stream(
    device: DemoDevice, plan: DayPlan, seed: int, start: datetime, end: datetime
) -> Iterator[DemoMessage]:
    """``os.events.app_lifecycle.raw`` (flat REST, docs/messages.md#payload-fields): bursts of app
    switching whose long-run average is ``APP_EVENTS_PER_S × intensity`` of the current activity."""
    rng = _stream_rng(seed, device, APP_LIFECYCLE_TOPIC)
    sim = _AppSimulator(device, plan, rng, start)
    family = device.family
    t = start + timedelta(seconds=rng.uniform(0, 60))  # a first burst right away
    while t < end:
        intensity = plan.intensity(family, t)
        if intensity <= 0:  # lid closed: wait for the next segment where the device is used
            nxt = plan.next_active(family, t)
            if nxt is None or nxt >= end:
                break
            t = nxt + timedelta(seconds=rng.uniform(5, 120))
            continue
        seg_end = plan.at(t).end
        length = rng.lognormvariate(math.log(BURST_MEDIAN_S[family]), BURST_SIGMA)
        until = min(t + timedelta(seconds=min(length, 1800.0)), seg_end)
        n_before = len(sim.out)
        burst_end = sim.burst(t, until)
        n_events = len(sim.out) - n_before
        for ts, payload in sorted(sim.out, key=lambda e: e[0]):
            if start <= ts < end:
                yield rest_message(APP_LIFECYCLE_TOPIC, device.device_id, ts, payload, rng)
        sim.out.clear()
        # Quiet gap sized so that events / (burst + gap) averages the target rate.
        burst_s = (burst_end - t).total_seconds()
        gap = max(n_events / (APP_EVENTS_PER_S * intensity) - burst_s, 3.0) * rng.uniform(0.5, 1.5)
        t = burst_end + timedelta(seconds=gap)


# ---- power -----------------------------------------------------------------------------------

# docs/flows/power_state.md#battery-state: thresholds are low_battery 20 and critical_battery 10:
# users plug in somewhere around there (a fresh draw each time), so both thresholds get crossed now
# and then.
PLUG_IN_BELOW = (8.0, 30.0)
CHARGE_HOLD_LEVEL = 80.0  # optimised/adaptive charging holds at 80 %
CHARGE_RATE = {"phone": (45.0, 60.0), "laptop": (30.0, 45.0)}  # %/h below 80 % (brief: 30-60)
# Drain %/h = base + per_intensity × intensity (brief: ~5-15 %/h in use); lid closed: standby.
DRAIN = {"phone": (3.0, 10.0), "laptop": (5.0, 9.0)}
PHONE_STANDBY_DRAIN = 0.8  # %/h, asleep on the nightstand
LAPTOP_STANDBY_DRAIN = 0.4  # %/h, lid closed
NAV_EXTRA_DRAIN = 4.0  # %/h, GPS navigation + screen while driving
THERMAL_LIMITS = ((35.0, "nominal"), (39.0, "fair"), (43.0, "serious"))  # else "critical"


class _Battery:
    """Battery level, plugged state and temperature of one device."""

    def __init__(self, device: DemoDevice, plan: DayPlan, rng: random.Random):
        self.device, self.plan, self.rng = device, plan, rng
        self.family = device.family
        self.level = rng.uniform(45, 85)
        self.charge_rate = rng.uniform(*CHARGE_RATE[self.family])
        self.plugged = False
        self.top_up = False  # plugged in because the battery ran low
        self.plug_below = rng.uniform(*PLUG_IN_BELOW)
        self.overnight = False  # laptop: plugged in at bedtime
        self.activity = ""
        self.temp = 28.0

    def _wants_power(self, activity: str) -> bool:
        if activity != self.activity:  # a new part of the day
            self.overnight = activity == "sleep" and (self.overnight or self.level < 60)
            self.activity = activity
        if not self.top_up and self.level < self.plug_below and activity in ("morning", "work", "evening"):
            self.top_up = True  # (no socket at the coffee shop or on the road)
        if self.top_up and (self.level >= 90 or activity in ("drive", "walk")):
            self.top_up = False
            self.plug_below = self.rng.uniform(*PLUG_IN_BELOW)
        if self.family == "phone":
            return activity == "sleep" or self.top_up
        return activity == "work" or self.overnight or self.top_up

    def _holds(self, t: datetime, activity: str) -> bool:
        """Adaptive charging: phone overnight until ~05:30; MacBook on the desk all day."""
        if self.level < CHARGE_HOLD_LEVEL:
            return False
        local = t.astimezone(LOCAL_TZ)
        if self.family == "phone":
            return activity == "sleep" and (local.hour >= 22 or local.hour + local.minute / 60 < 5.5)
        return activity == "work"

    def step(self, t: datetime, dt_s: float) -> None:
        seg = self.plan.at(t)
        intensity = ACTIVITY_INTENSITY[self.family][seg.activity]
        self.plugged = self._wants_power(seg.activity)
        if intensity > 0:
            base, per = DRAIN[self.family]
            drain = base + per * intensity + (NAV_EXTRA_DRAIN if seg.activity == "drive" else 0.0)
        else:
            drain = PHONE_STANDBY_DRAIN if self.family == "phone" else LAPTOP_STANDBY_DRAIN
        drain *= self.rng.uniform(0.8, 1.2)
        self.state = "discharging"
        rate = -drain
        if self.plugged:
            if self.level >= 99.5:
                self.state, rate = "full", 0.0
            elif self._holds(t, seg.activity):
                self.state, rate = "connectedNotCharging", 0.0
            else:
                taper = 1.0 if self.level < 80 else max(0.12, (100.0 - self.level) / 20.0)
                self.state, rate = "charging", self.charge_rate * taper - 0.3 * drain
        self.level = min(100.0, max(0.0, self.level + rate * dt_s / 3600.0))
        target = 27.0 + 7.0 * intensity + (4.0 if self.state == "charging" else 0.0)
        if seg.activity == "drive" and self.family == "phone":
            target += 3.0  # dashboard mount in the sun
        self.temp += (target - self.temp) * min(1.0, dt_s / 600.0) + self.rng.gauss(0, 0.15)

    @property
    def thermal_state(self) -> str:
        for limit, name in THERMAL_LIMITS:
            if self.temp < limit:
                return name
        return "critical"

    def voltage(self) -> float:
        if self.family == "phone":
            v = 3.55 + 0.75 * self.level / 100.0
        else:
            v = 11.4 + 1.6 * self.level / 100.0
        return round(v + (0.08 if self.state == "charging" else 0.0) + self.rng.gauss(0, 0.01), 3)


BATTERY_WARMUP = timedelta(hours=12)  # simulate before `start` so the level fits the time of day


def _battery_readings(
    device: DemoDevice, plan: DayPlan, seed: int, topic: str, start: datetime, end: datetime,
    interval_s: float,
) -> Iterator[tuple[datetime, _Battery, random.Random]]:
    rng = _stream_rng(seed, device, topic)
    battery = _Battery(device, plan, rng)
    prev: datetime | None = None
    for t in _ticks(rng, start - BATTERY_WARMUP, end, interval_s):
        battery.step(t, interval_s if prev is None else (t - prev).total_seconds())
        prev = t
        if t >= start:
            yield t, battery, rng


def mobile_power_stream(
    device: DemoDevice, plan: DayPlan, seed: int, start: datetime, end: datetime
) -> Iterator[DemoMessage]:
    """``device.sensor.power.raw``: flat ``POST /sensor/power`` (docs/flows/power_state.md) every 60 s.
    ``battery_level`` is a float in the model; phones have no lid (``lid_closed: null``)."""
    for t, b, rng in _battery_readings(device, plan, seed, SENSOR_POWER_TOPIC, start, end,
                                       MOBILE_POWER_INTERVAL_S):
        payload = {
            "battery_level": float(round(b.level)),
            "is_charging": b.state == "charging",
            "power_source": b.state,
            "lid_closed": None,
            "thermal_state": b.thermal_state,
        }
        yield rest_message(SENSOR_POWER_TOPIC, device.device_id, t, payload, rng)


def laptop_power_stream(
    device: DemoDevice, plan: DayPlan, seed: int, start: datetime, end: datetime
) -> Iterator[DemoMessage]:
    """``device.state.power.raw``: unified ``power_state`` (docs/messages.md#unified-envelope) every
    10 s (docs/messages.md#sampling-rates). ``data`` holds what the client sends: the DB columns
    (docs/flows/power_state.md; ``temperature_celsius`` is the field migration 043 maps to
    battery_temperature) plus the client's reading time, since the unified body's own ``timestamp``
    is null."""
    for t, b, rng in _battery_readings(device, plan, seed, STATE_POWER_TOPIC, start, end,
                                       LAPTOP_POWER_INTERVAL_S):
        lid_closed = plan.intensity("laptop", t) <= 0
        data = {
            "battery_level": int(round(b.level)),
            "is_charging": b.state == "charging",
            "is_plugged_in": b.plugged,
            "power_source": b.state,
            "lid_closed": lid_closed,
            "thermal_state": b.thermal_state,
            "temperature_celsius": round(b.temp, 1),
            "voltage": b.voltage(),
            "timestamp": format_datetime(_to_ms(t)),
        }
        yield unified_message(STATE_POWER_TOPIC, device.device_id, POWER_STATE_MESSAGE_TYPE, t,
                              data, rng)


# ---- wifi ------------------------------------------------------------------------------------

MOBILE_SIGNAL_DBM = -50  # docs/flows/network_events.md#enriched: mobile WiFi readings carry a constant -50
UNKNOWN_SSID = "<unknown ssid>"  # docs/flows/network_events.md#enriched: Android without location permission
ANDROID_PLACEHOLDER_BSSID = "02:00:00:00:00:00"  # what Android reports alongside it
P_UNKNOWN_SSID = 0.03
HOTSPOT_AFTER = 0.4  # share of the coffee-shop stay before the laptop tethers to the phone


@dataclass(frozen=True)
class AccessPoint:
    bssid: str
    frequency: int  # MHz: 2412… (2.4 GHz) or 5180… (5 GHz)

    @property
    def channel(self) -> int:
        f = self.frequency
        return (f - 2407) // 5 if f < 5000 else (f - 5000) // 5


@dataclass(frozen=True)
class Network:
    ssid: str
    security: str
    access_points: tuple[AccessPoint, ...]  # several at work (roaming)
    ip_pattern: str  # DHCP range, "{}" = a random octet
    laptop_dbm: tuple[float, float]  # mean and spread of a laptop's RSSI there

    def lease(self, rng: random.Random) -> str:
        return self.ip_pattern.format(*(rng.randrange(2, 254) for _ in range(self.ip_pattern.count("{}"))))


def _mac(rng: random.Random, oui: str) -> str:
    return oui + "".join(f":{rng.randrange(256):02x}" for _ in range(3))


def _networks(seed: int, person: int) -> dict[str, Network]:
    """The person's networks: home (dual-band), office (4 APs), coffee shop, phone hotspot."""
    rng = random.Random(f"loom-demo-wifi:{seed}:{person}")
    home_5ghz = _mac(rng, "a4:2b:b0")
    home_2ghz = home_5ghz[:-1] + f"{int(home_5ghz[-1], 16) ^ 1:x}"  # the router's other radio
    office = tuple(AccessPoint(_mac(rng, "70:3a:0e"), f) for f in (5180, 5220, 5745, 5805))
    if DEVICE_KINDS[(2 * person) % len(DEVICE_KINDS)] == "iphone":
        hotspot = "Sam\u2019s iPhone"  # iOS names the hotspot after the device
    else:
        hotspot = "Pixel_7823" if person == 0 else f"Pixel_{rng.randrange(1000, 9999)}"
    return {
        "home": Network(f"Valencia-{rng.randrange(10, 99)}", "WPA2",
                        (AccessPoint(home_5ghz, 5180), AccessPoint(home_2ghz, 2437)),
                        "192.168.1.{}", (-52, 6)),
        "work": Network("AcmeCorp", "WPA2-Enterprise", office, "10.20.{}.{}", (-61, 7)),
        "coffee": Network("Starbucks WiFi", "Open", (AccessPoint(_mac(rng, "00:1a:1e"), 2437),),
                          "172.31.{}.{}", (-72, 5)),
        "hotspot": Network(hotspot, "WPA2", (AccessPoint(_mac(rng, "da:a1:19"), 2412),),
                           "192.168.43.{}", (-39, 3)),
    }


def _network_for(device: DemoDevice, plan: DayPlan, t: datetime) -> tuple[str, int] | None:
    """(network key, access point index) the device is on at ``t``, or None if not connected."""
    seg = plan.at(t)
    if seg.place is None:
        return None  # on the road: phone on cellular, laptop in the bag
    if seg.place is COFFEE_SHOP:
        tethered = t >= seg.start + (seg.end - seg.start) * HOTSPOT_AFTER
        if device.family == "laptop":
            return ("hotspot", 0) if tethered else ("coffee", 0)
        return None if tethered else ("coffee", 0)  # a phone sharing its hotspot leaves WiFi
    if seg.place is WORK:
        return "work", 0 if device.family == "laptop" else 1  # desk vs. pocket (nearest AP)
    if device.family == "phone" and seg.activity == "sleep":
        return "home", 1  # 2.4 GHz radio reaches the bedroom better
    return "home", 0


def wifi_stream(
    device: DemoDevice, plan: DayPlan, seed: int, start: datetime, end: datetime
) -> Iterator[DemoMessage]:
    """``device.network.wifi.raw`` (flat, docs/messages.md#payload-fields) every 120 s while
    connected (docs/messages.md#sampling-rates). Phones report the constant -50 dBm
    (docs/flows/network_events.md#enriched); the laptop reports a real RSSI. iOS cannot read
    frequency/channel; Android sometimes hides the SSID (``<unknown ssid>``)."""
    rng = _stream_rng(seed, device, WIFI_TOPIC)
    nets = _networks(seed, device.person)
    leases: dict[tuple[str, date], str] = {}  # a fresh DHCP lease per network and day …
    home_ip = nets["home"].lease(rng)  # … except at home, where it stays put
    for t in _ticks(rng, start, end, WIFI_INTERVAL_S):
        where = _network_for(device, plan, t)
        if where is None:
            continue
        key, ap_index = where
        net = nets[key]
        if len(net.access_points) > 2 and rng.random() < 0.12:  # roamed to another AP
            ap_index = rng.randrange(len(net.access_points))
        ap = net.access_points[ap_index]
        if key == "home":
            ip = home_ip
        else:
            ip = leases.setdefault((key, t.astimezone(LOCAL_TZ).date()), net.lease(rng))
        ssid, bssid = net.ssid, ap.bssid
        frequency: float | None = float(ap.frequency)  # a float in the REST model (docs/messages.md#payload-fields)
        channel: int | None = ap.channel
        if device.kind == "iphone":  # iOS exposes neither
            frequency = channel = None
        elif device.kind == "android" and rng.random() < P_UNKNOWN_SSID:
            ssid, bssid = UNKNOWN_SSID, ANDROID_PLACEHOLDER_BSSID
        if device.family == "laptop":
            signal = int(round(rng.gauss(*net.laptop_dbm)))
        else:
            signal = MOBILE_SIGNAL_DBM
        payload = {
            "ssid": ssid,
            "bssid": bssid,
            "signal_strength": signal,
            "frequency": frequency,
            "channel": channel,
            "security": net.security,
            "connected": True,
            "ip_address": ip,
        }
        yield rest_message(WIFI_TOPIC, device.device_id, t, payload, rng)


# ---- gps -------------------------------------------------------------------------------------

GPS_ACCURACY_M = (5.0, 30.0)  # brief: accuracy 5-30 m
OUTDOOR_ACCURACY_M = (5.0, 12.0)  # open sky


def gps_stream(
    device: DemoDevice, plan: DayPlan, seed: int, start: datetime, end: datetime
) -> Iterator[DemoMessage]:
    """``device.sensor.gps.raw`` (flat, docs/messages.md#payload-fields: latitude, longitude,
    altitude, accuracy, heading, speed) every 30 s (docs/messages.md#sampling-rates). Stationary
    fixes wander within their accuracy."""
    rng = _stream_rng(seed, device, GPS_TOPIC)
    for t in _ticks(rng, start, end, GPS_INTERVAL_S):
        seg = plan.at(t)
        lat, lon, alt, speed, heading = seg.position(t)
        if seg.place is not None:
            accuracy = rng.uniform(*seg.place.accuracy_m)
            speed = abs(rng.gauss(0, 0.15))
        else:
            accuracy = rng.uniform(*OUTDOOR_ACCURACY_M)
            speed = max(0.0, speed + rng.gauss(0, 0.3))
            heading = (heading + rng.gauss(0, 4)) % 360
        accuracy = min(max(accuracy, GPS_ACCURACY_M[0]), GPS_ACCURACY_M[1])
        lat, lon = _offset(lat, lon, rng.gauss(0, accuracy / 2), rng.gauss(0, accuracy / 2))
        payload = {
            "latitude": round(lat, 7),
            "longitude": round(lon, 7),
            "altitude": round(alt + rng.gauss(0, 3), 1),
            "accuracy": round(accuracy, 1),
            "heading": round(heading, 1) if speed >= 0.5 else 0.0,  # no bearing when still
            "speed": round(speed, 2),
        }
        yield rest_message(GPS_TOPIC, device.device_id, t, payload, rng)


# ---- accelerometer ---------------------------------------------------------------------------
#
# What the phone feels, as a function of absolute time: every segment of the day is cut into
# *bouts* (resting in one orientation, being handled, walking or climbing stairs, riding in the
# car), each a vectorised signal of the time since it began. Samples sit on a 50 Hz grid anchored
# at the Unix epoch and sensor noise and message ids are drawn per UTC minute, so any window
# of the day yields exactly the samples of a longer window that contains it (``loom dev`` makes
# an hour at a time).

ACCEL_MOVING_HZ = 50  # docs/flows/motion.md#windows: 50 Hz, as the step counter assumes
ACCEL_STILL_HZ = 10  # docs/messages.md#sampling-rates accelerometer interval: 100 ms
GRAVITY = 9.80665  # m/s², standard gravity
_ACCEL_STEP_US = 1_000_000 // ACCEL_MOVING_HZ  # the 20 ms grid
_STILL_EVERY = ACCEL_MOVING_HZ // ACCEL_STILL_HZ  # while still, every 5th grid point (100 ms)
_ACCEL_BLOCK = 60 * ACCEL_MOVING_HZ  # grid points per UTC minute: noise and ids are drawn per block
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

ACCEL_NOISE = (0.02, 0.05)  # m/s² white sensor noise per axis (brief: 0.02-0.05), per device
ACCEL_BIAS = 0.03  # m/s² spread of the per-axis calibration offset
CADENCE_HZ = (1.7, 2.0)  # steps/s, per person (brief: 1.7-2.0)
STEP_VERTICAL = (2.0, 3.0)  # m/s² peak of the vertical step fundamental, per person (brief: 2-4)
# Gait waveform: peak amplitude of each harmonic of the stride frequency (2 = the step frequency)
# relative to the vertical step fundamental, per body axis (forward, left, up). Measured as the
# median over UCI HAPT's walking and walking-upstairs windows (phone on the waist, 30 people):
# walking has a strong 1.5x-step component (left and right steps differ), stairs a stronger
# half-step sway and push-off. HAPT stairs: 0.9x the cadence, 1.3x the vertical step.
GAIT_HARMONICS: dict[str, tuple[dict[int, float], ...]] = {
    "walk": ({1: 0.18, 2: 0.64, 3: 0.17, 4: 0.37, 5: 0.23, 6: 0.36},
             {1: 0.34, 2: 0.14, 3: 0.14, 4: 0.09, 5: 0.17, 6: 0.09},
             {1: 0.08, 2: 1.0, 3: 0.40, 4: 0.27, 5: 0.19, 6: 0.35}),
    "stairs": ({1: 0.35, 2: 0.36, 3: 0.11, 4: 0.23, 5: 0.11, 6: 0.08},
               {1: 0.32, 2: 0.21, 3: 0.08, 4: 0.12},
               {1: 0.13, 2: 1.0, 3: 0.12, 4: 0.25, 5: 0.11, 6: 0.23}),
}
STAIRS_CADENCE, STAIRS_VERTICAL = 0.9, 1.3
HEEL_STRIKE = (1.0, 2.0)  # m/s² peak of the jolt as a foot lands
HEEL_PHASE = 0.2  # of a step cycle
STEP_ASYMMETRY = (0.05, 0.12)  # left vs right step strength (+-)
GAIT_IRREGULARITY = (0.4, 0.7)  # m/s² RMS of the non-periodic part of walking, per axis
POCKET_SWING_RAD = (0.05, 0.12)  # a phone in a trouser pocket pitches with the hip, per stride
WALK_GATE_MPS = 0.8  # GPS speed (m/s) at which the gait has its full amplitude
# Pick-ups per hour of each activity (~20/h x the phone's ACTIVITY_INTENSITY, fewer at night);
# a few of them (P_SHAKE) are shakes.
HANDLINGS_PER_H = {"sleep": 0.4, "morning": 14.0, "work": 7.0, "coffee": 10.0, "evening": 14.0}
P_SHAKE = 0.02
HANDLING_TRANSIENT = (1.0, 3.0)  # m/s² peak of a pick-up's / put-down's jolt (brief: 1-3)
SHAKE_PEAK = (4.0, 6.5)  # m/s², below the 8 m/s² that docs/flows/motion.md#significant-motion reads as a fall
DRIVE_MAX_ACCEL = 3.0  # m/s², longitudinal and lateral (brief: <= 3)
ROAD_VIBRATION = (0.05, 0.02)  # m/s² RMS (vertical) = idle + per m/s of speed: ~0.3 at 45 km/h
BUMPS_PER_M = 1 / 400.0  # potholes, manhole covers, speed bumps

_Z = np.array([0.0, 0.0, 1.0])


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def _rot_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _orientation(up, yaw: float) -> np.ndarray:
    """World→phone rotation (``a_phone = R @ a_world``; world x forward, y left, z up) of a phone
    that sees world-up along ``up`` (phone frame), turned by ``yaw`` about the vertical."""
    up = _unit(up)
    c = float(_Z @ up)
    if c < -0.999999:
        r0 = np.diag([1.0, -1.0, -1.0])
    else:
        vx, vy, vz = np.cross(_Z, up)
        k = np.array([[0.0, -vz, vy], [vz, 0.0, -vx], [-vy, vx, 0.0]])
        r0 = np.eye(3) + k + k @ k / (1.0 + c)
    return r0 @ _rot_z(yaw)


def _placement(rng: random.Random, where: str) -> np.ndarray:
    """A phone orientation: on a table (screen up, sometimes down), in a trouser pocket while
    sitting (about flat on the thigh) or standing (upright), or held in the hand."""
    yaw = rng.uniform(0, 2 * math.pi)
    if where == "table":
        up = (rng.gauss(0, 0.03), rng.gauss(0, 0.03), 1.0 if rng.random() < 0.85 else -1.0)
    elif where == "sitting_pocket":
        up = (rng.gauss(0, 0.3), rng.gauss(0, 0.3), rng.choice((1.0, -1.0)))
    elif where == "pocket":
        up = (rng.gauss(0, 0.2), rng.choice((1.0, -1.0)), rng.gauss(0, 0.2))
    else:  # hand: screen toward the face, ~40° from vertical
        up = (rng.gauss(0, 0.1), math.sin(0.7), math.cos(0.7))
    return _orientation(up, yaw)


def _resting_place(rng: random.Random, activity: str) -> np.ndarray:
    if activity == "sleep" or rng.random() < 0.75:
        return _placement(rng, "table")
    return _placement(rng, "sitting_pocket")


def _car_placement(rng: random.Random) -> np.ndarray:
    if rng.random() < 0.7:  # in a dashboard/vent mount, screen toward the driver, leaning back
        beta = rng.uniform(0.1, 0.4)
        ey = np.array([math.sin(beta), 0.0, math.cos(beta)])  # top edge: up, tilted forward
        ez = np.array([-math.cos(beta), 0.0, math.sin(beta)])  # screen: back to the driver
        r = np.array([np.cross(ey, ez), ey, ez])
        if rng.random() < 0.3:  # landscape
            r = _rot_z(rng.choice((1, -1)) * math.pi / 2) @ r
        return r @ _rot_z(rng.uniform(-0.3, 0.3))  # mount turned toward the driver
    return _orientation((rng.gauss(0, 0.15), rng.gauss(0, 0.15), 1.0), rng.uniform(0, 2 * math.pi))


def _smooth(values: np.ndarray, sigma: float, pad: str) -> np.ndarray:
    """Gaussian smoothing of a 1 Hz series (``sigma`` in samples)."""
    half = int(3 * sigma) + 1
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    padded = np.pad(values, half, mode=pad)
    return np.convolve(padded, kernel / kernel.sum(), mode="valid")


def _slerp(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per-sample spherical interpolation between unit vectors ``a`` and ``b`` ((n, 3) or (3,))."""
    a = np.broadcast_to(a, (len(w), 3))
    b = np.broadcast_to(b, (len(w), 3))
    cos = np.clip((a * b).sum(axis=1), -1.0, 1.0)
    omega = np.arccos(cos)
    sin = np.sin(omega)
    safe = sin > 1e-6
    fa = np.where(safe, np.sin((1 - w) * omega) / np.where(safe, sin, 1.0), 1 - w)
    fb = np.where(safe, np.sin(w * omega) / np.where(safe, sin, 1.0), w)
    out = fa[:, None] * a + fb[:, None] * b
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _pulse(s: np.ndarray, t0: float, length: float) -> np.ndarray:
    """sin² window over [t0, t0 + length): 0 at both ends, so bouts join without jumps."""
    x = (s - t0) / length
    return np.where((x >= 0) & (x < 1), np.sin(np.pi * np.clip(x, 0, 1)) ** 2, 0.0)


def _random_direction(rng: random.Random) -> np.ndarray:
    return _unit([rng.gauss(0, 1) for _ in range(3)])


class _Bout:
    """A stretch of one kind of motion; ``signal(s, jolts)`` is the specific force (gravity
    included, phone frame, m/s², (n, 3)) at ``s`` seconds after ``start_us``; ``jolts`` is
    white noise (n, 3) for the irregular part of body and road motion."""

    kind = ""
    moving = True  # sampled at ACCEL_MOVING_HZ (else ACCEL_STILL_HZ)

    def __init__(self, start_us: int, end_us: int):
        self.start_us, self.end_us = start_us, end_us

    def signal(self, s: np.ndarray, jolts: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class _Rest(_Bout):
    """Lying still in one orientation; in a pocket, breathing rocks it a little."""

    kind, moving = "still", False

    def __init__(self, start_us: int, end_us: int, orientation: np.ndarray, rng: random.Random):
        super().__init__(start_us, end_us)
        self.gravity = GRAVITY * orientation[:, 2]
        on_table = abs(orientation[2, 2]) > 0.98
        self.breath = 0.0 if on_table else rng.uniform(0.01, 0.03)
        self.breath_dir = _random_direction(rng)
        self.breath_hz, self.breath_phase = rng.uniform(0.2, 0.3), rng.uniform(0, 2 * math.pi)

    def signal(self, s, jolts):
        out = np.broadcast_to(self.gravity, (len(s), 3)).copy()
        if self.breath:
            wave = self.breath * np.sin(2 * math.pi * self.breath_hz * s + self.breath_phase)
            out += wave[:, None] * self.breath_dir
        return out


class _Handling(_Bout):
    """Picked up, held and put down: gravity turns from ``before`` to the hand and on to
    ``after`` (phone-frame up vectors), with a jolt at pick-up and put-down, a slow wobble while
    held and, rarely, a shake."""

    kind = "handling"

    def __init__(self, start_us, end_us, before, after, rng: random.Random, shake: bool = False):
        super().__init__(start_us, end_us)
        self.duration = (end_us - start_us) / 1e6
        self.before, self.after = before, after
        self.hand = _placement(rng, "hand")[:, 2]
        self.turn = min(1.2, 0.3 * self.duration)  # seconds to lift / to put down
        self.jolts = [(t0, self.turn, rng.uniform(*HANDLING_TRANSIENT), rng.uniform(1.5, 3.5),
                       rng.uniform(0, 2 * math.pi), _random_direction(rng))
                      for t0 in (0.0, self.duration - self.turn)]
        self.wobble = (rng.uniform(0.1, 0.4), rng.uniform(0.8, 2.0), rng.uniform(0, 2 * math.pi),
                       _random_direction(rng))
        self.shake = None
        if shake:
            length = rng.uniform(0.6, 1.5)
            self.kind = "shake"
            axis = _unit([rng.gauss(0, 0.2), 1.0, rng.gauss(0, 0.2)])  # along the phone's length
            self.shake = (self.duration / 2 - length / 2, length, rng.uniform(*SHAKE_PEAK),
                          rng.uniform(4.0, 6.0), axis)

    def signal(self, s, jolts):
        lift = _smoothstep(s / self.turn)
        drop = _smoothstep((s - (self.duration - self.turn)) / self.turn)
        direction = _slerp(_slerp(self.before, self.hand, lift), self.after, drop)
        out = GRAVITY * direction
        for t0, length, peak, hz, phase, axis in self.jolts:
            jolt = peak * _pulse(s, t0, length) * np.sin(2 * math.pi * hz * (s - t0) + phase)
            out += jolt[:, None] * axis
        amp, hz, phase, axis = self.wobble
        held = _pulse(s, self.turn, max(self.duration - 2 * self.turn, 1e-3))
        out += (amp * held * np.sin(2 * math.pi * hz * s + phase))[:, None] * axis
        if self.shake is not None:
            t0, length, peak, hz, axis = self.shake
            out += (peak * _pulse(s, t0, length) * np.sin(2 * math.pi * hz * (s - t0)))[:, None] * axis
        return out


class _Gait(_Bout):
    """Walking with the phone in ``orientation``, sometimes on stairs.

    Body frame (forward, left, up): each axis is a sum of harmonics of the stride (half the step
    frequency) after ``GAIT_HARMONICS``, scaled per step (left and right feet differ), with a
    heel-strike jolt at each step, an irregular part, and a cadence that drifts by a few %. A
    phone in a trouser pocket also pitches with the hip at the stride frequency. A gate (0-1)
    scales it all: the GPS speed profile of a walk, or 1 s ramps in and out.
    """

    kind = "walk"

    def __init__(self, start_us, end_us, orientation, rng: random.Random, cadence: float,
                 vertical: float, swing: float, gate=None, ramp_in: float = 1.0):
        super().__init__(start_us, end_us)
        self.r = orientation
        self.duration = (end_us - start_us) / 1e6
        self.cadence = cadence * rng.uniform(0.97, 1.03)
        self.vertical = vertical * rng.uniform(0.9, 1.1)
        # (gait, axis) -> (stride multiples, amplitudes relative to the vertical step, phases)
        self.harmonics = {}
        for gait, axes in GAIT_HARMONICS.items():
            for axis, table in enumerate(axes):
                k = np.array(sorted(table), dtype=float)
                amp = np.array([table[int(x)] * rng.uniform(0.8, 1.2) for x in k])
                phase = np.array([rng.uniform(0, 2 * math.pi) for _ in k])
                self.harmonics[gait, axis] = (k, amp, phase)
        self.swing = (swing, rng.uniform(0, 2 * math.pi))
        self.heel = rng.uniform(*HEEL_STRIKE)
        self.irregular = rng.uniform(*GAIT_IRREGULARITY)
        # Steps are not a metronome: the cadence drifts by a few % over seconds.
        self.drift = [(rng.uniform(0.1, 0.5), rng.uniform(0, 2 * math.pi), rng.uniform(0.01, 0.03))
                      for _ in range(3)]
        self.gate, self.ramp_in, self.ramp_out = gate, ramp_in, 1.0
        self.origin_us = start_us  # the walk's time base: steps are counted from here
        self.stairs = (0.0, 0.0)  # seconds after origin_us spent on stairs
        steps = int((self.duration + 120) * self.cadence * 1.1) + 8  # (room to carry on)
        self.step_strength = np.random.default_rng(rng.getrandbits(64)).normal(1.0, 0.08, steps)
        limp = rng.uniform(*STEP_ASYMMETRY)
        self.step_strength[::2] *= 1 + limp
        self.step_strength[1::2] *= 1 - limp

    def carried_on(self, start_us: int, end_us: int, stairs: bool = False) -> _Gait:
        """The same walk going on over [start_us, end_us) (into the building, up the stairs),
        in step with this one, without its gate; it comes to a stop at the end unless stairs."""
        out = copy.copy(self)
        out.start_us, out.end_us = start_us, end_us
        out.duration = (end_us - start_us) / 1e6
        out.gate, out.ramp_in, out.ramp_out = None, 0.0, 0.0 if stairs else 1.0
        out.kind = "stairs" if stairs else "walk"
        if stairs:
            out.stairs = ((start_us - self.origin_us) / 1e6, (end_us - self.origin_us) / 1e6)
        return out

    def signal(self, s, jolts):
        u = s + (self.start_us - self.origin_us) / 1e6
        a, b = self.stairs
        climbing = np.clip(u - a, 0.0, b - a)  # seconds on the stairs so far
        steps = self.cadence * (u - (1 - STAIRS_CADENCE) * climbing)  # cumulative steps
        for hz, phase, depth in self.drift:  # (integral of cadence x depth x sin)
            w = 2 * math.pi * hz
            steps += self.cadence * depth * (np.cos(phase) - np.cos(w * u + phase)) / w
        stride_phase = math.pi * steps
        gate = np.ones_like(s) if self.gate is None else self.gate(s)
        if self.ramp_in:
            gate = gate * np.clip(s / self.ramp_in, 0, 1)
        if self.ramp_out:
            gate = gate * np.clip((self.duration - s) / self.ramp_out, 0, 1)
        # 0 walking .. 1 on the stairs, blended over the first and last step or so
        on_stairs = np.clip((u - a) / 0.6, 0, 1) * np.clip((b - u) / 0.6, 0, 1) if b > a else 0 * u
        strength = self.vertical * (1 + (STAIRS_VERTICAL - 1) * on_stairs)
        strength = strength * np.interp(steps - 0.5, np.arange(len(self.step_strength)), self.step_strength)
        body = np.empty((len(s), 3))
        for axis in range(3):
            waves = []
            for gait in ("walk", "stairs"):
                k, amp, phase = self.harmonics[gait, axis]
                waves.append(np.sin(np.outer(stride_phase, k) + phase) @ amp)
            body[:, axis] = strength * ((1 - on_stairs) * waves[0] + on_stairs * waves[1])
        # heel strike: a sharp, quickly damped jolt just before the vertical peak of each step
        since = np.mod(steps - HEEL_PHASE, 1.0) / self.cadence  # seconds since the last strike
        ringing = np.exp(-since / 0.05) * np.cos(2 * math.pi * 7.0 * since)
        strike = strength / self.vertical * self.heel * ringing
        body[:, 2] += strike
        body[:, 0] -= 0.5 * strike
        body = gate[:, None] * (body + self.irregular * jolts)
        body[:, 2] += GRAVITY
        theta = self.swing[0] * gate * np.sin(stride_phase + self.swing[1])
        cos, sin = np.cos(theta), np.sin(theta)  # the hip pitches about the lateral axis
        fx, fy, fz = body.T
        body = np.stack([fx * cos + fz * sin, fy, fz * cos - fx * sin], axis=1)
        return body @ self.r.T


class _Drive(_Bout):
    """Riding in the car along ``seg``'s speed profile: longitudinal acceleration is the
    derivative of the (smoothed) speed, lateral the centripetal v·dθ/dt in turns, plus
    engine/road vibration (10-20 Hz tones and broadband noise, growing with speed), the
    suspension's 1-3 Hz bounce and the odd bump."""

    kind = "drive"

    def __init__(self, start_us, end_us, seg: Segment, rng: random.Random):
        super().__init__(start_us, end_us)
        self.r = _car_placement(rng)
        prof = np.asarray(seg.profile, dtype=float)
        speed = _smooth(np.diff(prof), 1.0, "constant")  # m/s during each second
        self.t_mid = np.arange(len(speed)) + 0.5
        self.speed = speed
        self.a_lon = np.clip(np.gradient(speed), -DRIVE_MAX_ACCEL, DRIVE_MAX_ACCEL)
        assert seg.path is not None
        heading = np.unwrap(np.radians([seg.path.locate(d)[2] for d in prof]))
        yaw_rate = np.gradient(_smooth(heading, 2.0, "edge"))  # rad/s, clockwise (bearing)
        v_at = np.interp(np.arange(len(prof)), self.t_mid, speed)
        self.a_lat = np.clip(-v_at * yaw_rate, -DRIVE_MAX_ACCEL, DRIVE_MAX_ACCEL)  # left positive
        tones = np.array([[rng.uniform(10.0, 20.0), rng.uniform(0, 2 * math.pi), rng.uniform(0.5, 1.0)]
                          for _ in range(18)]).reshape(3, 6, 3)
        tones[:, :, 2] *= math.sqrt(2) / np.sqrt((tones[:, :, 2] ** 2).sum(axis=1, keepdims=True))
        self.tones = tones  # per axis: (Hz, phase, amplitude), unit RMS
        self.bounce = [(rng.uniform(1.2, 1.8), rng.uniform(0, 2 * math.pi)),
                       (rng.uniform(2.2, 3.0), rng.uniform(0, 2 * math.pi))]
        bumps = []
        for _ in range(int(prof[-1] * BUMPS_PER_M * rng.uniform(0.5, 1.5))):
            at = float(np.searchsorted(prof, rng.uniform(0, prof[-1])))
            bumps.append((at, rng.uniform(0.8, 2.0), rng.uniform(1.5, 2.2)))
        self.bumps = sorted(bumps)

    def signal(self, s, jolts):
        v = np.interp(s, self.t_mid, self.speed, left=0.0, right=0.0)
        a_lon = np.interp(s, self.t_mid, self.a_lon, left=0.0, right=0.0)
        a_lat = np.interp(s, np.arange(len(self.a_lat)), self.a_lat)
        rms = ROAD_VIBRATION[0] + ROAD_VIBRATION[1] * v
        vib = np.empty((len(s), 3))
        for axis, scale in enumerate((0.5, 0.5, 1.0)):  # the road shakes mostly vertically
            hz, phase, amp = self.tones[axis].T
            tonal = (amp * np.sin(2 * math.pi * np.outer(s, hz) + phase)).sum(axis=1)
            vib[:, axis] = scale * rms * 0.7 * (tonal + jolts[:, axis])
        moving = np.clip(v / 12.0, 0, 1.5)
        for hz, phase in self.bounce:
            vib[:, 2] += 0.15 * moving * np.sin(2 * math.pi * hz * s + phase)
        lo, hi = float(s[0]) - 2.0, float(s[-1])
        for at, peak, hz in self.bumps:
            if lo <= at <= hi:
                tau = s - at
                hit = tau >= 0
                vib[hit, 2] += peak * np.exp(-tau[hit] / 0.35) * np.sin(2 * math.pi * hz * tau[hit])
        body = np.stack([a_lon + vib[:, 0], a_lat + vib[:, 1], GRAVITY + vib[:, 2]], axis=1)
        return body @ self.r.T


def _us(dt: datetime) -> int:
    return (dt - _EPOCH) // timedelta(microseconds=1)


class _PhoneMotion:
    """The bouts of one phone's day (a plan of its person) and its samples per UTC minute."""

    def __init__(self, device: DemoDevice, plan: DayPlan, seed: int):
        self.device, self.plan, self.seed = device, plan, seed
        rng = _stream_rng(seed, device, ACCELEROMETER_TOPIC)
        self.noise_key = rng.getrandbits(64)
        self.noise = rng.uniform(*ACCEL_NOISE)
        self.bias = np.array([rng.gauss(0, ACCEL_BIAS) for _ in range(3)])
        person = random.Random(f"loom-demo-gait:{seed}:{device.person}")
        self.cadence = person.uniform(*CADENCE_HZ)
        self.step_vertical = person.uniform(*STEP_VERTICAL)
        self.segments = plan.segments
        self._starts = [_us(s.start) for s in self.segments]
        self._bouts: dict[int, list[_Bout]] = {}  # first segment index of a stay/trip -> bouts
        self._travel: dict[int, _Bout] = {}

    def _rng(self, seg: Segment, what: str) -> random.Random:
        return random.Random(f"loom-demo:{self.seed}:{self.device.index}:{ACCELEROMETER_TOPIC}:"
                             f"{what}:{seg.start.isoformat()}")

    def _hand(self, seg: Segment) -> np.ndarray:
        """How the phone is held when carried into the stay beginning with ``seg``."""
        return _placement(self._rng(seg, "hand"), "hand")

    def _gait(self, start_us: int, end_us: int, orientation, rng, swing=None, **kw) -> _Gait:
        if swing is None:
            swing = rng.uniform(*POCKET_SWING_RAD)
        return _Gait(start_us, end_us, orientation, rng, self.cadence, self.step_vertical, swing, **kw)

    def travel(self, i: int) -> _Bout:
        """The one bout of trip ``i`` (a walk or a drive), also asked for by the stays around it."""
        if i not in self._travel:
            seg = self.segments[i]
            rng = self._rng(seg, "trip")
            start, end = _us(seg.start), _us(seg.end)
            if seg.activity == "drive":
                self._travel[i] = _Drive(start, end, seg, rng)
            else:
                pocket = rng.random() < 0.7  # else in the hand or a bag: hardly any swing
                r = _placement(rng, "pocket" if pocket else "hand")
                speed = np.diff(np.asarray(seg.profile, dtype=float))
                gate_t = np.arange(len(speed)) + 0.5
                gate_v = np.clip(speed / WALK_GATE_MPS, 0.0, 1.0)
                gate_v[-2:] = 1.0  # (no stop at the door: the walk carries on into the stay)

                def gate(s, t=gate_t, g=gate_v):
                    return np.interp(s, t, g)

                swing = rng.uniform(*POCKET_SWING_RAD) if pocket else rng.uniform(0.02, 0.06)
                walk = self._gait(start, end, r, rng, swing=swing, gate=gate, ramp_in=0.5)
                walk.ramp_out = 0.0
                self._travel[i] = walk
        return self._travel[i]

    def _stay(self, i: int) -> tuple[int, int]:
        """First and last segment index of the stay (same activity at the same place) around ``i``."""
        segs = self.segments
        first = last = i
        same = lambda a, b: a.place is b.place and a.activity == b.activity  # noqa: E731
        while first > 0 and same(segs[first - 1], segs[i]):
            first -= 1
        while last + 1 < len(segs) and same(segs[last + 1], segs[i]):
            last += 1
        return first, last

    def bouts(self, i: int) -> tuple[int, list[_Bout]]:
        """(key, bouts) of the trip or stay that segment ``i`` belongs to."""
        if self.segments[i].place is None:  # a trip
            return i, [self.travel(i)]
        first, last = self._stay(i)
        if first not in self._bouts:
            self._bouts[first] = self._stay_bouts(first, last)
        return first, self._bouts[first]

    def _stay_bouts(self, first: int, last: int) -> list[_Bout]:
        """Arrive (out of the car or pocket, maybe a walk or stairs), rest with the odd pick-up,
        leave (pick up; to the car and into its mount, into the pocket, or into the hand)."""
        segs = self.segments
        seg = segs[first]
        prev = segs[first - 1] if first > 0 else None
        nxt = segs[last + 1] if last + 1 < len(segs) else None
        rng = self._rng(seg, "stay")
        start, end = _us(seg.start), _us(segs[last].end)
        sec = 1_000_000
        out: list[_Bout] = []
        t = start
        rest = _resting_place(rng, seg.activity)

        def handle(t0, seconds, before, after, shake=False):
            t1 = t0 + int(seconds * sec)
            out.append(_Handling(t0, t1, before[:, 2], after[:, 2], rng, shake))
            return t1

        def walk(t0, seconds, r, **kw):
            t1 = t0 + int(seconds * sec)
            out.append(self._gait(t0, t1, r, rng, **kw))
            return t1

        # arrival
        if prev is not None and prev.activity == "drive":
            mount, pocket = self.travel(first - 1).r, _placement(rng, "pocket")
            t = handle(t, rng.uniform(3, 5), mount, pocket)
            t = walk(t, rng.uniform(40, 150), pocket)  # from the car park
            t = handle(t, rng.uniform(3, 6), pocket, rest)
        elif prev is not None and prev.activity == "walk":
            trip = self.travel(first - 1)
            assert isinstance(trip, _Gait)
            if seg.place is WORK:  # up the stairs to the office
                t1 = t + int(rng.uniform(15, 30) * sec)
                trip = trip.carried_on(t, t1, stairs=True)
                out.append(trip)
                t = t1
            t1 = t + int(rng.uniform(5, 20) * sec)  # to the desk / the counter
            out.append(trip.carried_on(t, t1))
            t = handle(t1, rng.uniform(3, 6), trip.r, rest)
        else:  # carried in from the last place, in the hand
            t = handle(t, rng.uniform(2, 5), self._hand(seg), rest)
        # departure, planned backwards from the end
        tail: list[tuple[str, float, Any]] = []
        if nxt is not None and nxt.activity == "drive":
            pocket = _placement(rng, "pocket")
            tail = [("handle", rng.uniform(2, 4), pocket), ("walk", rng.uniform(30, 90), pocket),
                    ("handle", rng.uniform(3, 5), self.travel(last + 1).r)]
        elif nxt is not None and nxt.activity == "walk":
            tail = [("handle", rng.uniform(2, 4), self.travel(last + 1).r)]
        else:
            tail = [("handle", rng.uniform(2, 4), self._hand(nxt) if nxt else _placement(rng, "hand"))]
        leave = end - sum(int(seconds * sec) for _, seconds, _ in tail)
        # the stay: rest, now and then picked up (and put back, or somewhere else)
        per_s = HANDLINGS_PER_H[seg.activity] / 3600.0
        while True:
            at = t + int(rng.expovariate(per_s) * sec)
            held = 3.0 + min(rng.lognormvariate(math.log(10.0), 0.8), 90.0)
            if at + int(held * sec) > leave:
                break
            out.append(_Rest(t, at, rest, rng))
            after = rest if rng.random() < 0.5 else _resting_place(rng, seg.activity)
            t = handle(at, held, rest, after, shake=rng.random() < P_SHAKE)
            rest = after
        if leave > t:
            out.append(_Rest(t, leave, rest, rng))
        t = max(t, leave)
        before = rest
        for what, seconds, r in tail:
            if what == "handle":
                t = handle(t, seconds, before, r)
            else:
                t = walk(t, seconds, r)
            before = r
        out[-1].end_us = end  # (integer rounding of the tail)
        return out

    def block(self, b: int) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
        """Grid times (µs) and samples (n, 3) emitted in UTC minute ``b``, and that minute's RNG."""
        k = b * _ACCEL_BLOCK + np.arange(_ACCEL_BLOCK, dtype=np.int64)
        t_us = k * _ACCEL_STEP_US
        rng = np.random.default_rng([self.noise_key, b])
        noise = rng.standard_normal((_ACCEL_BLOCK, 3))
        jolts = rng.standard_normal((_ACCEL_BLOCK, 3))
        xyz = np.full((_ACCEL_BLOCK, 3), np.nan)
        moving = np.zeros(_ACCEL_BLOCK, dtype=bool)
        first = max(bisect.bisect_right(self._starts, int(t_us[0])) - 1, 0)
        last = max(bisect.bisect_right(self._starts, int(t_us[-1])) - 1, 0)
        seen = set()
        for i in range(first, last + 1):
            key, bouts = self.bouts(i)
            if key in seen:
                continue
            seen.add(key)
            for bout in bouts:
                lo, hi = np.searchsorted(t_us, (bout.start_us, bout.end_us))
                if lo >= hi:
                    continue
                s = (t_us[lo:hi] - bout.start_us) / 1e6
                xyz[lo:hi] = bout.signal(s, jolts[lo:hi])
                moving[lo:hi] = bout.moving
        xyz += self.bias + self.noise * noise
        emitted = moving | (k % _STILL_EVERY == 0)
        return t_us[emitted], xyz[emitted], rng


def _uuid4_strings(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` random UUIDv4 strings at once (a sample's message and trace ids)."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.tobytes().hex()
    return [f"{h[o:o + 8]}-{h[o + 8:o + 12]}-{h[o + 12:o + 16]}-{h[o + 16:o + 20]}-{h[o + 20:o + 32]}"
            for o in range(0, 32 * n, 32)]


def accelerometer_stream(
    device: DemoDevice, plan: DayPlan, seed: int, start: datetime, end: datetime
) -> Iterator[DemoMessage]:
    """``device.sensor.accelerometer.raw`` (flat REST, docs/messages.md#payload-fields: x, y, z in
    m/s², gravity included) of a phone: 50 Hz while it moves (walks, stairs, drives, pick-ups;
    docs/flows/motion.md#windows) and 10 Hz while it rests (docs/messages.md#sampling-rates),
    following the same day plan as the GPS. Laptops have none. Samples lie on a grid anchored at the
    Unix epoch and all randomness is drawn per day-plan segment or per UTC minute, so consecutive
    windows join seamlessly."""
    if device.family != "phone":
        return
    motion = _PhoneMotion(device, plan, seed)
    lo_us, hi_us = _us(start), _us(end)
    block_us = _ACCEL_BLOCK * _ACCEL_STEP_US
    for b in range(lo_us // block_us, -(-hi_us // block_us)):
        t_us, xyz, rng = motion.block(b)
        latency = rng.integers(int(RECEIVE_LATENCY_MS[0] * 1000), int(RECEIVE_LATENCY_MS[1] * 1000),
                               size=len(t_us))
        ids = _uuid4_strings(rng, 2 * len(t_us))
        for j, (t, (x, y, z), lat) in enumerate(zip(t_us.tolist(), xyz.tolist(), latency.tolist())):
            if not lo_us <= t < hi_us:
                continue
            recorded = _EPOCH + timedelta(microseconds=t)
            payload = {"x": round(x, 4), "y": round(y, 4), "z": round(z, 4)}
            yield _flat_message(ACCELEROMETER_TOPIC, device.device_id, recorded,
                                recorded + timedelta(microseconds=lat), ids[2 * j], ids[2 * j + 1],
                                payload)


# ---- screenshots and photos ------------------------------------------------------------------

SCREENSHOT_INTERVAL_S = 300.0  # a screen-capture client's default (Loom v2 expected one every 10 s;
# the demo keeps the OCR load of `loom dev` light)
SCREEN_SIZE = (1280, 800)
# What is on the laptop's screen, by activity: a window title and its lines of text.
SCREENS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "work": (
        ("Pull request 482: Retry failed uploads", (
            "Review comments on the upload retry change",
            "The backoff starts at 2 seconds and doubles up to one minute",
            "Please add a test for the network timeout case",
            "Deploy to staging after the release checklist is done")),
        ("Meeting notes: storage migration", (
            "Attendees: Dana, Priya, Marco",
            "Decision: move the archive bucket before December 15",
            "Action: Priya writes the rollback plan",
            "Questions go to storage-team@example.com")),
    ),
    "coffee": (
        ("Reading: How databases index text", (
            "A full text index maps each word to the rows holding it",
            "Vector search finds neighbours by meaning instead of words",
            "Hybrid ranking merges both lists into one")),
    ),
    "evening": (
        ("Recipe: Lentil soup", (
            "Two cups of red lentils and one chopped onion",
            "Simmer with cumin and garlic for twenty minutes",
            "Serve with lemon and fresh bread")),
    ),
}
PHOTO_INTERVAL_S = 600.0
P_PHOTO = 0.35  # per tick while a subject is at hand
# scikit-image's bundled photos stand in for what the camera sees, by activity.
PHOTO_SUBJECTS = {"coffee": ("coffee", "astronaut"), "evening": ("chelsea", "coffee"), "work": ("astronaut",)}


@lru_cache(maxsize=16)
def _screenshot_png(title: str, lines: tuple[str, ...]) -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", SCREEN_SIZE, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, SCREEN_SIZE[0], 48), fill=(236, 236, 236))
    draw.text((24, 10), title, fill="black", font=ImageFont.load_default(size=26))
    body = ImageFont.load_default(size=22)
    for i, line in enumerate(lines):
        draw.text((48, 110 + 44 * i), line, fill=(30, 30, 30), font=body)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


@lru_cache(maxsize=8)
def _photo_jpeg(subject: str) -> bytes:
    from PIL import Image
    from skimage import data

    out = io.BytesIO()
    Image.fromarray(getattr(data, subject)()).convert("RGB").save(out, format="JPEG", quality=85)
    return out.getvalue()


def screenshot_stream(
    device: DemoDevice, plan: DayPlan, seed: int, start: datetime, end: datetime
) -> Iterator[DemoMessage]:
    """``device.image.screenshot.raw`` (flat REST, docs/messages.md#payload-fields: base64 PNG,
    ``camera_type: screen``) of a laptop every 5 min while its lid is open: a window of text that
    fits the activity."""
    if device.family != "laptop":
        return
    rng = _stream_rng(seed, device, SCREENSHOT_TOPIC)
    for t in _ticks(rng, start, end, SCREENSHOT_INTERVAL_S):
        screens = SCREENS.get(plan.at(t).activity)
        if plan.intensity("laptop", t) <= 0 or not screens:
            continue
        png = _screenshot_png(*rng.choice(screens))
        yield rest_message(SCREENSHOT_TOPIC, device.device_id, t, {
            "image_data": base64.b64encode(png).decode(), "format": "png", "width": SCREEN_SIZE[0],
            "height": SCREEN_SIZE[1], "camera_type": "screen", "file_size": len(png)}, rng)


def camera_stream(
    device: DemoDevice, plan: DayPlan, seed: int, start: datetime, end: datetime
) -> Iterator[DemoMessage]:
    """``device.image.camera.raw`` (flat REST, docs/messages.md#payload-fields: base64 JPEG) of a
    phone: now and then a photo of what is at hand (a coffee, the cat, a colleague)."""
    if device.family != "phone":
        return
    rng = _stream_rng(seed, device, CAMERA_TOPIC)
    for t in _ticks(rng, start, end, PHOTO_INTERVAL_S):
        subjects = PHOTO_SUBJECTS.get(plan.at(t).activity)
        if not subjects or rng.random() >= P_PHOTO:
            continue
        jpeg = _photo_jpeg(rng.choice(subjects))
        yield rest_message(CAMERA_TOPIC, device.device_id, t, {
            "image_data": base64.b64encode(jpeg).decode(), "format": "jpeg", "camera_type": "rear",
            "file_size": len(jpeg)}, rng)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------

_STREAMS = {  # family -> (topic, generator)
    "phone": ((APP_LIFECYCLE_TOPIC, app_lifecycle_stream), (SENSOR_POWER_TOPIC, mobile_power_stream),
              (WIFI_TOPIC, wifi_stream), (GPS_TOPIC, gps_stream),
              (ACCELEROMETER_TOPIC, accelerometer_stream), (CAMERA_TOPIC, camera_stream)),
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
) -> Iterator[DemoMessage]:
    """Time-ordered messages for every demo topic (or only ``topics``).

    ``start`` is UTC (a naive value is taken as UTC, as Loom v2 does); messages cover
    ``[start, start + minutes)``. Device 0 is an Android phone, 1 a MacBook, 2 an iPhone, ...
    The same (start, minutes, devices, seed) always gives the same messages; the day's plan is
    drawn from its date, or from ``plan_date`` when given (see `DayPlan`).
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
        streams.extend(stream(device, plan, seed, start, end)
                       for topic, stream in _STREAMS[device.family] if topic in wanted)
    return heapq.merge(*streams, key=lambda m: m.timestamp)


def replay(
    producer,
    messages: Iterable[DemoMessage],
    speed: float | None,
    progress: bool = True,
    *,
    flush_timeout: float = 30.0,
    event_timestamps: bool | None = None,
) -> int:
    """Send ``messages`` with a configured confluent-kafka ``producer``.

    ``speed=None`` sends as fast as possible; ``speed=X`` sleeps so that X seconds of event time
    pass per second of wall time. The Kafka message timestamp is the event time when replaying
    at a speed (``event_timestamps`` overrides); as fast as possible it is left to the producer
    (now), which keeps brokers from rejecting future event times. Shows a tqdm bar, flushes with
    ``flush_timeout`` and returns the number of messages delivered (produced minus still queued).
    """
    from tqdm import tqdm

    if speed is not None and speed <= 0:
        raise ValueError("speed must be positive (or None for as fast as possible)")
    if event_timestamps is None:
        event_timestamps = speed is not None
    total = len(messages) if hasattr(messages, "__len__") else None
    sent = 0
    wall0: float | None = None
    event0: datetime | None = None
    with tqdm(total=total, unit="msg", desc="demo replay", disable=not progress) as bar:
        for msg in messages:
            if speed is not None:
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
