"""Synthetic device events in the real Loom v2 wire formats (for ``loom replay --demo`` / ``loom dev``).

One simulated person per phone/laptop pair lives a San Francisco work day: asleep and at home,
a drive to work, work, an afternoon at a coffee shop near the office (the laptop tethers to the
phone's hotspot there after a while), back to work, a drive home, an evening at home.

Devices (index ``i``; kinds cycle Android phone, MacBook, iPhone, MacBook; person = ``i // 2``):

==========================  =====================================  ===========================
topic                       envelope                               who / rate
==========================  =====================================  ===========================
os.events.app_lifecycle.raw flat REST (SPEC §2.1, §3)              all; bursts, ≈0.5 ev/s at
                                                                   full activity (SPEC §1.3)
device.sensor.power.raw     flat REST (``POST /sensor/power``)     phones; every 60 s (§5.6)
device.state.power.raw      unified ``power_state`` (§2.2)         laptops; every 10 s (§1.10)
device.network.wifi.raw     flat REST                              all; every 120 s while
                                                                   connected (§5.6)
device.sensor.gps.raw       flat REST                              phones; every 30 s (§5.6)
==========================  =====================================  ===========================

Generation is pure and reproducible: every (device, topic) stream has its own
``random.Random`` seeded from ``seed``, and the day plan depends only on seed, person and
date, so ``demo_messages(start, minutes, devices, seed)`` always yields the same bytes.
Only :func:`replay` talks to Kafka (through a producer handed in by the caller).
"""

from __future__ import annotations

import bisect
import heapq
import json
import logging
import math
import random
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import cached_property
from typing import Any

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Wire-format constants
# --------------------------------------------------------------------------------------------

APP_LIFECYCLE_TOPIC = "os.events.app_lifecycle.raw"  # SPEC §3 / §4.2
SENSOR_POWER_TOPIC = "device.sensor.power.raw"  # SPEC §1.10: what POST /sensor/power publishes to
STATE_POWER_TOPIC = "device.state.power.raw"  # SPEC §2.2: unified route, message_type power_state
WIFI_TOPIC = "device.network.wifi.raw"  # SPEC §1.11 / §3
GPS_TOPIC = "device.sensor.gps.raw"  # SPEC §1.2 / §3

DEMO_TOPICS: tuple[str, ...] = (
    APP_LIFECYCLE_TOPIC,
    SENSOR_POWER_TOPIC,
    STATE_POWER_TOPIC,
    WIFI_TOPIC,
    GPS_TOPIC,
)

SCHEMA_VERSION = "1.0"  # SPEC §2.1 / §2.2 default
SERVICES_ENCOUNTERED = ("ingestion-api", "kafka-producer")  # SPEC §2.1 example
PRODUCER_SERVICE = "ingestion-api"  # SPEC §2.1 header producer_service
POWER_STATE_MESSAGE_TYPE = "power_state"  # SPEC §2.2 routing → device.state.power.raw
# Server receive time (`timestamp`) trails the client's `recorded_at` by network + API latency.
RECEIVE_LATENCY_MS = (60.0, 650.0)

# --------------------------------------------------------------------------------------------
# Rates
# --------------------------------------------------------------------------------------------

GPS_INTERVAL_S = 30.0  # SPEC §5.6 mobile default GPS: 30 s
MOBILE_POWER_INTERVAL_S = 60.0  # SPEC §5.6 mobile default battery: 60 s
LAPTOP_POWER_INTERVAL_S = 10.0  # SPEC §1.10 power_state 0.1 ev/s ("every 10 s")
WIFI_INTERVAL_S = 120.0  # SPEC §5.6 mobile default network: 120 s (only while connected)
# SPEC §1.3 sizes the flow at 2 ev/s (peak x10). We average 0.5 ev/s per device at full activity
# (intensity 1.0, see ACTIVITY_INTENSITY), in screen-on bursts of ~0.6 ev/s with quieter gaps.
APP_EVENTS_PER_S = 0.5
TIMER_JITTER_S = (-0.3, 0.7)  # periodic client timers fire a little late, sometimes early

# --------------------------------------------------------------------------------------------
# Places, people and devices
# --------------------------------------------------------------------------------------------

UUID_RE = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"  # SPEC §2.1

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


# SPEC §5.1 georegions.md SF examples: Home 37.7599,-122.4148; Work 37.7955,-122.3937.
HOME = Place("home", 37.7599, -122.4148, 22.0, (8.0, 20.0))
WORK = Place("work", 37.7955, -122.3937, 6.0, (12.0, 30.0))
COFFEE_SHOP = Place("coffee_shop", 37.7936, -122.3966, 8.0, (6.0, 18.0))  # Market & Drumm

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
    """The demo devices: fixed lowercase UUIDv4 ids derived from ``seed`` (SPEC §2.1 regex)."""
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
    key: bytes  # device_id as UTF-8 (SPEC §2.1: Kafka key = device_id)
    value: bytes  # UTF-8 JSON exactly as Loom v2 produces it
    timestamp: datetime  # event time (UTC); the Kafka message timestamp when replaying at speed
    headers: tuple[tuple[str, bytes], ...]  # trace_id, services_encountered, producer_service


def format_datetime(dt: datetime) -> str:
    """Pydantic v2 JSON datetime (SPEC §2.1): ``2024-06-27T12:00:00.123000Z``.

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
    """A flat REST envelope (SPEC §2.1) followed by the payload fields (SPEC §3)."""
    recorded_at = _to_ms(recorded_at)
    received = recorded_at + timedelta(milliseconds=rng.uniform(*RECEIVE_LATENCY_MS))
    trace_id = _uuid4(rng)
    body = {
        "schema_version": SCHEMA_VERSION,
        "device_id": device_id,
        "recorded_at": format_datetime(recorded_at),
        "timestamp": format_datetime(received),
        "message_id": _uuid4(rng),
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
    """The unified ``POST /ingest/message`` envelope (SPEC §2.2): no recorded_at, message_id or
    trace_id in the body and ``timestamp: null``; the trace id travels only in the headers."""
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

EARTH_RADIUS_M = 6371000.0  # SPEC §5.1 haversine radius


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

    def __init__(self, seed: int, person: int, start: datetime, end: datetime):
        self.seed, self.person = seed, person
        self.home = self._home(seed, person)
        self.commute = Path(((self.home.lat, self.home.lon),) + COMMUTE_ROUTE[1:])
        self.walk = Path(COFFEE_WALK)
        first = start.astimezone(LOCAL_TZ).date() - timedelta(days=1)
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
        rng = random.Random(f"loom-demo-plan:{self.seed}:{self.person}:{day.isoformat()}")
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
    name: str | None  # app_name is optional (SPEC §3); obscure apps may not report one
    weight: float  # how often this person uses it
    category: str | None = None  # Android ApplicationInfo category label (SPEC §5.2)
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
    """``os.events.app_lifecycle.raw`` (flat REST, SPEC §3): bursts of app switching whose
    long-run average is ``APP_EVENTS_PER_S × intensity`` of the current activity."""
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

# SPEC §5.4 thresholds are low_battery 20 and critical_battery 10: users plug in somewhere
# around there (a fresh draw each time), so both thresholds get crossed now and then.
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
    """``device.sensor.power.raw``: flat ``POST /sensor/power`` (SPEC §1.10, §3) every 60 s.
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
    """``device.state.power.raw``: unified ``power_state`` (SPEC §2.2) every 10 s (SPEC §1.10).
    ``data`` holds what the client sends: the DB columns (SPEC §1.10; ``temperature_celsius``
    is the field migration 043 maps to battery_temperature) plus the client's reading time,
    since the unified body's own ``timestamp`` is null."""
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

MOBILE_SIGNAL_DBM = -50  # SPEC §5.5: mobile WiFi readings carry a constant -50
UNKNOWN_SSID = "<unknown ssid>"  # SPEC §5.5: Android without location permission
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
    """``device.network.wifi.raw`` (flat, SPEC §3) every 120 s while connected (SPEC §5.6).
    Phones report the constant -50 dBm (SPEC §5.5); the laptop reports a real RSSI. iOS
    cannot read frequency/channel; Android sometimes hides the SSID (``<unknown ssid>``)."""
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
        frequency: float | None = float(ap.frequency)  # a float in the REST model (SPEC §3)
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
    """``device.sensor.gps.raw`` (flat, SPEC §3: latitude, longitude, altitude, accuracy,
    heading, speed) every 30 s (SPEC §5.6). Stationary fixes wander within their accuracy."""
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


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------

_PHONE_STREAMS = (app_lifecycle_stream, mobile_power_stream, wifi_stream, gps_stream)
_LAPTOP_STREAMS = (app_lifecycle_stream, laptop_power_stream, wifi_stream)


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def demo_messages(start: datetime, minutes: float, devices: int = 2, seed: int = 0) -> Iterator[DemoMessage]:
    """Time-ordered messages for every demo topic.

    ``start`` is UTC (a naive value is taken as UTC, as Loom v2 does); messages cover
    ``[start, start + minutes)``. Device 0 is an Android phone, 1 a MacBook, 2 an iPhone, ...
    The same (start, minutes, devices, seed) always gives the same messages.
    """
    start = _utc(start)
    end = start + timedelta(minutes=minutes)
    plans: dict[int, DayPlan] = {}
    streams = []
    for device in demo_devices(devices, seed):
        if device.person not in plans:
            plans[device.person] = DayPlan(seed, device.person, start, end)
        plan = plans[device.person]
        kinds = _LAPTOP_STREAMS if device.family == "laptop" else _PHONE_STREAMS
        streams.extend(stream(device, plan, seed, start, end) for stream in kinds)
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
            if event_timestamps:
                kwargs["timestamp"] = int(msg.timestamp.timestamp() * 1000)
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
