"""The demo's places, people and devices."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import timedelta, timezone
from typing import Any

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
