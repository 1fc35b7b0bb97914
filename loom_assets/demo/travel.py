"""Geometry and travel: distances, bearings and paths along the demo's routes."""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass
from functools import cached_property

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
