"""The power generators: a battery that drains and charges through the day, phones and laptops."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta

from loom_assets.demo.constants import (
    LAPTOP_POWER_INTERVAL_S,
    MOBILE_POWER_INTERVAL_S,
    POWER_STATE_MESSAGE_TYPE,
    SENSOR_POWER_TOPIC,
    STATE_POWER_TOPIC,
)
from loom_assets.demo.day import DayPlan
from loom_assets.demo.messages import (
    DemoMessage,
    _to_ms,
    format_datetime,
    rest_message,
    unified_message,
)
from loom_assets.demo.people import ACTIVITY_INTENSITY, LOCAL_TZ, DemoDevice
from loom_assets.demo.streams import _stream_rng, _ticks

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
