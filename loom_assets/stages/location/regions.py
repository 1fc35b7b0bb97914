"""Regions (circles and polygons) and the enter/exit/dwell events of fixes in them."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from loom_assets.geo.geometry import (
    _M_PER_DEG,
    closed_ring,
    edge_distance_m,
    haversine_m,
    point_in_polygon,
    polygon_ring,
)
from loom_assets.stages.frames import typed_frame, utc, with_columns
from loom_assets.stages.location.rows import (
    _EVENT_ORDER,
    _LINEAGE,
    REGION_EVENT_DTYPES,
    REGION_STATE_DTYPES,
    accepted_fixes,
)
from loom_assets.stages.location.rules import LocationRules
from loom_assets.stages.location.values import _seconds


@dataclass(frozen=True)
class Region:
    """One row of `georegions` (docs/flows/location.md#georegions): a circle (centre + radius) or a
    polygon ring of [lon, lat] points. A polygon keeps its centre (for distance_from_center_m) and
    radius."""

    id: int
    name: str
    type: str                                  # home | work | custom
    center_latitude: float
    center_longitude: float
    radius_m: float
    geometry: str = "circle"                   # circle | polygon
    polygon: tuple[tuple[float, float], ...] | None = None

    def __post_init__(self) -> None:
        if self.geometry not in ("circle", "polygon"):
            raise ValueError(f"geometry must be circle or polygon, got {self.geometry!r}")
        if self.geometry == "polygon":
            closed_ring(self.polygon or ())    # raises for a missing or degenerate ring
            object.__setattr__(self, "polygon", tuple((float(p[0]), float(p[1])) for p in self.polygon))
        elif not self.radius_m > 0:
            raise ValueError(f"a circle needs a positive radius, got {self.radius_m!r}")

    def distance_m(self, lat: Any, lon: Any) -> Any:
        """Distance from the region's centre, metres."""
        return haversine_m(self.center_latitude, self.center_longitude, lat, lon)

    def boundary_distance_m(self, lat: Any, lon: Any) -> Any:
        """Signed distance to the boundary: >= 0 inside (how deep), < 0 outside (how far out)."""
        if self.geometry == "circle":
            return self.radius_m - self.distance_m(lat, lon)
        depth = edge_distance_m(lat, lon, self.polygon)
        inside = point_in_polygon(lat, lon, self.polygon)
        return np.where(inside, depth, -depth) if np.ndim(depth) else (depth if inside else -depth)

    def contains(self, lat: Any, lon: Any, margin_m: float = 0.0) -> Any:
        """Inside, or at most `margin_m` beyond the boundary (circle: distance <= radius + margin;
        polygon: inside the ring or within margin metres of an edge). The boundary is inside."""
        signed = self.boundary_distance_m(lat, lon)
        return signed >= -margin_m if np.ndim(signed) else bool(signed >= -margin_m)

    @cached_property
    def area_m2(self) -> float:
        if self.geometry == "circle":
            return math.pi * self.radius_m ** 2
        ring = closed_ring(self.polygon)
        lat0 = ring[:-1, 1].mean()
        x = (ring[:, 0] - ring[:-1, 0].mean()) * math.cos(math.radians(lat0)) * _M_PER_DEG
        y = (ring[:, 1] - lat0) * _M_PER_DEG
        return abs(float(np.sum(x[:-1] * y[1:] - x[1:] * y[:-1]))) / 2.0   # shoelace

    @cached_property
    def equivalent_radius_m(self) -> float:
        """The radius of the circle with the same area (the radius itself for a circle)."""
        return math.sqrt(self.area_m2 / math.pi)

    def confidence(self, lat: float, lon: float, event_type: str = "enter") -> float:
        """How sure the event is, in [0, 1], rounded to 3 decimals.

        Inside (enter, dwell): depth inside the boundary / equivalent radius. For a circle that is
        exactly round(1 - distance/radius, 3) (docs/flows/location.md#georegions); for a polygon the
        depth is the distance to the nearest edge and the radius that of the circle of equal area,
        so the same number means the same for both shapes. A dwell fix in the hysteresis band scores
        0. Exit: distance beyond the boundary / equivalent radius, the mirror image (at least
        exit_margin / radius, as an exit fix is past the margin).
        """
        signed = float(self.boundary_distance_m(lat, lon))
        value = -signed if event_type == "exit" else signed
        return round(min(max(value / self.equivalent_radius_m, 0.0), 1.0), 3)


def regions_from_rows(rows: pd.DataFrame | None) -> tuple[Region, ...]:
    """`georegions` rows (id, name, type, geometry_type, center_latitude, center_longitude,
    radius_meters, polygon_coordinates, is_active) as Regions; inactive rows are left out. A
    polygon row without a usable ring falls back to its circle (centre and radius are NOT NULL)."""
    needed = ("id", "name", "type", "geometry_type", "center_latitude", "center_longitude", "radius_meters",
              "polygon_coordinates", "is_active")
    rows = with_columns(rows, needed)
    regions = []
    for row in rows.to_dict("records"):
        if row["is_active"] is not None and not pd.isna(row["is_active"]) and not bool(row["is_active"]):
            continue
        ring = polygon_ring(row["polygon_coordinates"]) if row["geometry_type"] == "polygon" else None
        try:
            closed_ring(ring or ())
        except ValueError:
            ring = None
        regions.append(Region(
            id=int(row["id"]), name=str(row["name"]), type=str(row["type"] or "custom"),
            center_latitude=float(row["center_latitude"]), center_longitude=float(row["center_longitude"]),
            radius_m=float(row["radius_meters"]), geometry="polygon" if ring else "circle", polygon=ring,
        ))
    return tuple(sorted(regions, key=lambda r: r.id))


# -- region events ----------------------------------------------------------------------------------
def region_events(
    fixes: pd.DataFrame, regions: Iterable[Region], state: pd.DataFrame | None, rules: LocationRules
) -> pd.DataFrame:
    """enter / exit / dwell events per device and region for one window.

    `state` is `region_state(...)` of the earlier windows' events: per (device_id, region_id)
    whether the device is inside and since when (no row: outside). Per device and region, in
    event-time order over the accepted fixes:
    - enter: a fix inside (boundary included) a region the device was outside of;
    - exit: a fix more than exit_margin_m beyond the boundary of a region it was inside of
      (hysteresis); dwell_time_seconds = exit time - entered_at;
    - dwell: once per window, at the device's last fix of the window, for each region it is still
      inside of (dwell_time_seconds = that fix - entered_at), unless that fix is the enter itself.
    So the latest event per (device, region) always holds the state for the next window.
    Fixes no newer than the carried state's last event (late arrivals) do not change it.
    """
    regions = tuple(regions)
    fixes = accepted_fixes(fixes, rules)
    if fixes.empty or not regions:
        return typed_frame([], REGION_EVENT_DTYPES)
    carried = _carried_region_states(state)
    rows: list[dict] = []
    for device_id, group in fixes.groupby("device_id", sort=True):
        records = group.to_dict("records")
        lat, lon = group["latitude"].to_numpy(), group["longitude"].to_numpy()
        times = list(group["recorded_at"])
        for region in regions:
            signed = np.atleast_1d(region.boundary_distance_m(lat, lon))
            inside, entered_at, last_at = carried.get((str(device_id), region.id), (False, pd.NaT, pd.NaT))
            last, last_was_enter = None, False
            for k, record in enumerate(records):
                at = times[k]
                if not pd.isna(last_at) and at <= last_at:
                    continue
                last, last_was_enter = k, False
                if not inside and signed[k] >= 0:
                    inside, entered_at, last_was_enter = True, at, True
                    rows.append(_region_row(record, region, "enter", entered_at, 0.0))
                elif inside and signed[k] < -rules.exit_margin_m:
                    rows.append(_region_row(record, region, "exit", entered_at, _seconds(at - entered_at)))
                    inside, entered_at = False, pd.NaT
            if inside and last is not None and not last_was_enter:
                rows.append(_region_row(records[last], region, "dwell", entered_at, _seconds(times[last] - entered_at)))
    events = typed_frame(rows, REGION_EVENT_DTYPES)
    order = events["event_type"].map(_EVENT_ORDER)
    events = events.assign(_order=order).sort_values(
        ["device_id", "recorded_at", "_order", "region_id"], kind="stable").drop(columns="_order")
    return events.reset_index(drop=True)


def region_state(previous_events: pd.DataFrame | None) -> pd.DataFrame:
    """The carry for `region_events`: the latest earlier event per (device_id, region_id) as
    inside (anything but exit), entered_at (NaT when outside) and recorded_at (its time)."""
    needed = ("device_id", "region_id", "event_type", "entered_at", "recorded_at", "window_start")
    events = with_columns(previous_events, needed)
    if events.empty:
        return typed_frame([], REGION_STATE_DTYPES)
    events = events.dropna(subset=["device_id", "region_id", "recorded_at", "event_type"])
    events = events.assign(
        recorded_at=utc(events["recorded_at"]), entered_at=utc(events["entered_at"]),
        window_start=utc(events["window_start"]), _order=events["event_type"].map(_EVENT_ORDER).fillna(3),
    )
    last = events.sort_values(["recorded_at", "window_start", "_order"], kind="stable").groupby(
        ["device_id", "region_id"]).tail(1)
    inside = last["event_type"] != "exit"
    state = pd.DataFrame({
        "device_id": last["device_id"], "region_id": last["region_id"], "inside": inside,
        "entered_at": last["entered_at"].where(inside), "recorded_at": last["recorded_at"],
    })
    state = typed_frame(state.to_dict("records"), REGION_STATE_DTYPES)
    return state.sort_values(["device_id", "region_id"], kind="stable").reset_index(drop=True)


def _carried_region_states(state: pd.DataFrame | None) -> dict[tuple[str, int], tuple[bool, Any, Any]]:
    """(device_id, region_id) -> (inside, entered_at, time of the last event)."""
    state = with_columns(state, ("device_id", "region_id", "inside", "entered_at", "recorded_at"))
    if state.empty:
        return {}
    state = state.dropna(subset=["device_id", "region_id"]).assign(
        entered_at=utc(state["entered_at"]), recorded_at=utc(state["recorded_at"]))
    carried = {}
    for row in state.to_dict("records"):
        inside = bool(row["inside"]) if row["inside"] is not None and not pd.isna(row["inside"]) else False
        carried[(str(row["device_id"]), int(row["region_id"]))] = (
            inside, row["entered_at"] if inside else pd.NaT, row["recorded_at"])
    return carried


def _region_row(fix: dict, region: Region, event_type: str, entered_at: pd.Timestamp, dwell: float) -> dict:
    lat, lon = fix["latitude"], fix["longitude"]
    return {
        **{c: fix[c] for c in _LINEAGE},
        "recorded_at": fix["recorded_at"],
        "region_id": region.id,
        "region_name": region.name,
        "region_type": region.type,
        "event_type": event_type,
        "entered_at": entered_at,
        "dwell_time_seconds": dwell,
        "distance_from_center_m": round(region.distance_m(lat, lon), 2),  # docs/flows/location.md#georegions
        "confidence": region.confidence(lat, lon, event_type),
        "latitude": lat,
        "longitude": lon,
        "accuracy": fix["accuracy"],
    }
