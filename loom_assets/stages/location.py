"""Location: georegion enter/exit/dwell events, stays (visits) and the place each visit was at
(docs/flows/location.md).

`region_events` is stage `georegion_detection`: the old detector emitted a row per region on
every fix and kept no state (docs/flows/location.md#georegions); here a device's presence in a
region is carried across windows and only changes (enter, exit) and one dwell per window are
emitted. `visits` finds the stays of a device (where it stopped, for how long), and `match_visits`
names the place of each stay: your georegion, else a business, else the geocoded address (stage
business_identification and the `user_location_history` 30-day counts,
docs/flows/location.md#places).

Geometry is plain spherical maths (haversine, R = 6 371 000 m, docs/flows/location.md#georegions)
over the GeoJSON rings of `georegions` (no PostGIS). Rings crossing the antimeridian (±180°
longitude) are out of scope.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from loom_assets.stages.frames import typed_frame, utc, with_columns


@dataclass(frozen=True)
class LocationRules:
    """Every number of the location flow, with its reason. Bump `version` when one changes."""

    version: str = "2"  # 2: a visit extends around its mean, not only its first fix
    # A fix whose accuracy radius (m, 68 %) is worse than this is ignored for regions and stays:
    # it cannot tell whether the device is inside a 100 m region (docs/flows/location.md#georegions
    # seeds are 50-150 m) or a 100 m stay. Phones report 5-30 m with GPS; > 100 m means
    # Wi-Fi/cell-only positioning (iOS's kCLLocationAccuracyHundredMeters). A fix without accuracy
    # (optional, docs/messages.md#payload-fields) is kept.
    max_fix_accuracy_m: float = 100.0
    # Hysteresis: a device inside a region stays inside until a fix is more than this beyond the
    # boundary. Indoor/edge GPS jitter is typically 10-30 m, so an edge fix wandering in and out
    # does not flap; someone walking away crosses 25 m in about 20 s.
    exit_margin_m: float = 25.0
    # A stay: consecutive fixes all within 100 m of the first (Li et al. 2008 stay points).
    # 100 m is the old pipeline's detection radius (LOOM_DETECTION_RADIUS_METERS=100) and the
    # business match radius (docs/flows/location.md#places), so one stay is one place.
    stay_radius_m: float = 100.0
    # ...lasting at least 5 minutes: a red light or a queue (1-3 min) is not a visit, a coffee is.
    min_stay: pd.Timedelta = pd.Timedelta(minutes=5)
    # Fixes come every 10-30 s (docs/messages.md#sampling-rates); 10 min without one (20-60 missed
    # fixes) may hide a trip away and back, so the stay is split there (each part is a visit if long
    # enough).
    max_stay_gap: pd.Timedelta = pd.Timedelta(minutes=10)
    # A stay longer than a day is cut at 24 h (the visit ends at its last fix within 24 h of
    # arrival, the next fix starts a new one), so an open stay never needs more than a day of
    # fixes to finish.
    max_stay: pd.Timedelta = pd.Timedelta(hours=24)
    # How far back the caller reads raw fixes to finish open stays: max_stay, plus one more day
    # so that a device that went silent for up to a day in the middle of a stay still has it.
    max_lookback: pd.Timedelta = pd.Timedelta(hours=48)
    # docs/flows/location.md#places: business candidates count from confidence 0.7 and within 100 m.
    business_min_confidence: float = 0.7
    business_max_distance_m: float = 100.0
    # docs/flows/location.md#places: "30-day visit counts".
    visit_count_period: pd.Timedelta = pd.Timedelta(days=30)
    # Places nobody named get a geohash cell of 7 characters (about 153 x 153 m at the equator,
    # 153 x 124 m at 36° N): coarse enough that visits to one place (centroids a few tens of
    # metres apart) mostly share a cell, fine enough to tell neighbouring blocks apart.
    unknown_geohash_precision: int = 7


EARTH_RADIUS_M = 6_371_000.0  # docs/flows/location.md#georegions
# Points within 1 cm of a polygon edge are "on" it (floating-point noise; GPS is metres at best).
EDGE_TOLERANCE_M = 0.01
_M_PER_DEG = EARTH_RADIUS_M * math.pi / 180.0

FIX_COLUMNS = (
    "window_start", "device_id", "recorded_at", "source_topic", "source_partition", "source_offset",
    "message_id", "trace_id", "latitude", "longitude", "altitude", "accuracy", "heading", "speed",
)
_LINEAGE = ("window_start", "device_id", "source_topic", "source_partition", "source_offset", "message_id", "trace_id")

_TIME = "datetime64[us, UTC]"
REGION_EVENT_DTYPES: dict[str, str] = {
    "window_start": _TIME,
    "device_id": "str",
    "recorded_at": _TIME,                 # the event time: the fix that triggered it
    "source_topic": "str",
    "source_partition": "Int64",
    "source_offset": "Int64",
    "message_id": "str",
    "trace_id": "str",
    "region_id": "Int64",
    "region_name": "str",
    "region_type": "str",                 # home | work | custom
    "event_type": "str",                  # enter | exit | dwell
    "entered_at": _TIME,                  # when the current presence began (NaT if unknown)
    "dwell_time_seconds": "float64",      # event time - entered_at (0 on enter)
    "distance_from_center_m": "float64",
    "confidence": "float64",              # see Region.confidence
    "latitude": "float64",
    "longitude": "float64",
    "accuracy": "float64",
}

REGION_STATE_DTYPES: dict[str, str] = {
    "device_id": "str",
    "region_id": "Int64",
    "inside": "bool",
    "entered_at": _TIME,
    "recorded_at": _TIME,                 # the last event's time: older fixes do not change the state
}

STAY_DTYPES: dict[str, str] = {
    "window_start": _TIME,                # the window whose fix closed the stay
    "device_id": "str",
    "visit_id": "str",                    # f"{device_id}-{arrival epoch ms}"
    "recorded_at": _TIME,                 # = arrived_at
    "arrived_at": _TIME,                  # first fix of the stay
    "departed_at": _TIME,                 # last fix of the stay
    "duration_seconds": "float64",
    "latitude": "float64",                # median of the stay's fixes
    "longitude": "float64",
    "radius_m": "float64",                # farthest fix from that centre
    "fix_count": "Int64",
}

VISIT_DTYPES: dict[str, str] = {
    **STAY_DTYPES,
    "place_source": "str",                # georegion | business | geocoded | unknown
    "place_key": "str",                   # region:<id> | <provider>:<id> | address:<...> | geohash:<...>
    "place_name": "str",
    "place_category": "str",              # region type or business category
    "address": "str",                     # the geocoded address whenever there is one
    "region_id": "Int64",
    "business_provider": "str",
    "business_id": "str",
    "visit_count_30d": "Int64",           # visits to place_key by the device in (arrived - 30 d, arrived]
}

# Table name -> the DataFrame columns written there (the tables add model_version).
OUTPUT_COLUMNS: dict[str, tuple[str, ...]] = {
    "location_georegions": tuple(REGION_EVENT_DTYPES),
    "location_places": tuple(VISIT_DTYPES),
}

_EVENT_ORDER = {"exit": 0, "enter": 1, "dwell": 2}


# -- geometry ---------------------------------------------------------------------------------------
def haversine_m(lat1: Any, lon1: Any, lat2: Any, lon2: Any) -> Any:
    """Great-circle distance in metres (R = 6 371 000 m, docs/flows/location.md#georegions); scalars
    give a float, arrays (broadcast) give an array."""
    phi1, lam1, phi2, lam2 = (np.radians(np.asarray(v, dtype=float)) for v in (lat1, lon1, lat2, lon2))
    a = np.sin((phi2 - phi1) / 2) ** 2 + np.cos(phi1) * np.cos(phi2) * np.sin((lam2 - lam1) / 2) ** 2
    distance = 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
    return float(distance) if np.ndim(distance) == 0 else distance


def closed_ring(ring: Iterable) -> np.ndarray:
    """A GeoJSON ring of [lon, lat] points as an (m, 2) array, closed (last point = first).

    Accepts an unclosed ring (it is closed here). Raises ValueError for fewer than 3 distinct
    points."""
    points = np.asarray([(float(p[0]), float(p[1])) for p in ring], dtype=float).reshape(-1, 2)
    if len(np.unique(points, axis=0)) < 3:
        raise ValueError(f"a polygon ring needs at least 3 distinct points, got {points.tolist()}")
    if not np.array_equal(points[0], points[-1]):
        points = np.vstack([points, points[:1]])
    return points


def edge_distance_m(lat: Any, lon: Any, ring: Iterable) -> Any:
    """Distance in metres from each point to the nearest edge of the ring (0 on an edge).

    Each point projects the ring into its own local equirectangular plane (x east, y north,
    metres, centred on the point): accurate to well under 1 % at region scale (kilometres)."""
    ring = closed_ring(ring)
    lat_a, lon_a = np.atleast_1d(np.asarray(lat, dtype=float)), np.atleast_1d(np.asarray(lon, dtype=float))
    scale_x = (np.cos(np.radians(lat_a)) * _M_PER_DEG)[:, None]
    xs = (ring[:, 0][None, :] - lon_a[:, None]) * scale_x          # (n, m)
    ys = (ring[:, 1][None, :] - lat_a[:, None]) * _M_PER_DEG
    ax, ay, bx, by = xs[:, :-1], ys[:, :-1], xs[:, 1:], ys[:, 1:]
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(length2 > 0, -(ax * dx + ay * dy) / length2, 0.0)
    t = np.clip(t, 0.0, 1.0)
    distance = np.hypot(ax + t * dx, ay + t * dy).min(axis=1)
    return float(distance[0]) if np.ndim(lat) == 0 and np.ndim(lon) == 0 else distance


def point_in_polygon(lat: Any, lon: Any, ring: Iterable) -> Any:
    """Whether the point(s) lie inside a GeoJSON ring of [lon, lat] points
    (docs/flows/location.md#georegions).

    Ray casting (even-odd rule) with a half-open test on latitude, so a ray through a vertex is
    counted once. A point on an edge or vertex (within EDGE_TOLERANCE_M) counts as INSIDE, like
    PostGIS ST_Intersects/ST_Covers (ST_Contains would say no): a fix on a region's boundary is at
    it. Concave rings work; unclosed rings are closed; holes are the caller's to drop (only
    `coordinates[0]` is used); rings crossing the antimeridian are out of scope. Scalars give a
    bool, arrays an array.
    """
    closed = closed_ring(ring)
    lat_a, lon_a = np.atleast_1d(np.asarray(lat, dtype=float)), np.atleast_1d(np.asarray(lon, dtype=float))
    y, x = lat_a[:, None], lon_a[:, None]
    x1, y1, x2, y2 = closed[:-1, 0], closed[:-1, 1], closed[1:, 0], closed[1:, 1]
    straddles = (y1 > y) != (y2 > y)                               # half-open: [min, max)
    with np.errstate(invalid="ignore", divide="ignore"):
        x_cross = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
    crossings = (straddles & (x < x_cross)).sum(axis=1)
    inside = (crossings % 2 == 1) | (edge_distance_m(lat_a, lon_a, closed) <= EDGE_TOLERANCE_M)
    return bool(inside[0]) if np.ndim(lat) == 0 and np.ndim(lon) == 0 else inside


def polygon_ring(coordinates: Any) -> tuple[tuple[float, float], ...] | None:
    """The outer ring of `georegions.polygon_coordinates`: a GeoJSON Polygon (dict or JSON text),
    its list of rings, or a bare ring. Holes (rings after the first) are ignored. None when empty."""
    if coordinates is None or (isinstance(coordinates, float) and math.isnan(coordinates)):
        return None
    if isinstance(coordinates, str):
        coordinates = json.loads(coordinates)
    if isinstance(coordinates, Mapping):
        coordinates = coordinates.get("coordinates")
    if not coordinates:
        return None
    first = coordinates[0]
    if len(first) and isinstance(first[0], (list, tuple)):   # a list of rings
        coordinates = first
    return tuple((float(p[0]), float(p[1])) for p in coordinates)


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


# -- fixes ------------------------------------------------------------------------------------------
def accepted_fixes(fixes: pd.DataFrame | None, rules: LocationRules) -> pd.DataFrame:
    """The fixes regions and stays look at, per device in event-time order: with a position, and
    an accuracy no worse than max_fix_accuracy_m (a missing accuracy is accepted)."""
    fixes = with_columns(fixes, FIX_COLUMNS)
    fixes = fixes.assign(
        window_start=utc(fixes["window_start"]),
        recorded_at=utc(fixes["recorded_at"]),
        latitude=pd.to_numeric(fixes["latitude"], errors="coerce").astype(float),
        longitude=pd.to_numeric(fixes["longitude"], errors="coerce").astype(float),
        accuracy=pd.to_numeric(fixes["accuracy"], errors="coerce").astype(float),
    )
    fixes = fixes.dropna(subset=["device_id", "recorded_at", "latitude", "longitude"])
    fixes = fixes[~(fixes["accuracy"] > rules.max_fix_accuracy_m)]
    return fixes.sort_values(["device_id", "recorded_at", "source_partition", "source_offset"], kind="stable")


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


# -- stays ------------------------------------------------------------------------------------------
def visit_lookback_start(window_start: Any, rules: LocationRules) -> pd.Timestamp:
    """Where the caller starts reading the raw fixes before a window (up to its start) for
    `visit_carry`: max_lookback back."""
    return _ts(window_start) - rules.max_lookback


def visit_carry(recent_fixes: pd.DataFrame | None, previous_visits: pd.DataFrame | None,
                rules: LocationRules) -> pd.DataFrame:
    """The `carry_fixes` for `visits`: of the fixes before the window (read from
    `visit_lookback_start`), each device's fixes after its last earlier visit departed.

    `previous_visits` are the visits rows of earlier windows (at least device_id, departed_at;
    the last per device is enough). Where a device has none, all its recent fixes are kept; a
    stay that closed among them is not emitted again (`visits` emits only what the window's own
    fixes close). A stay still open at the window start is at most max_stay long, so reading
    max_lookback (= max_stay + 1 day) back finds its first fix unless the device was silent for
    over a day right before the window; then its visit starts at the first fix read."""
    fixes = with_columns(recent_fixes, FIX_COLUMNS)
    if fixes.empty:
        return fixes.iloc[0:0]
    fixes = fixes.assign(recorded_at=utc(fixes["recorded_at"]))
    closed = _closed_until(previous_visits)
    if closed:
        until = fixes["device_id"].map(closed)
        fixes = fixes[until.isna() | (fixes["recorded_at"] > until)]
    return fixes.reset_index(drop=True)


def visits(fixes: pd.DataFrame, carry_fixes: pd.DataFrame | None, rules: LocationRules,
           previous_visits: pd.DataFrame | None = None) -> pd.DataFrame:
    """The stays (visits) that this window's fixes close, per device.

    Stay points after Li et al. (2008): from an anchor fix, the run of following fixes that are
    all within stay_radius_m of it, with no gap over max_stay_gap and at most max_stay after it.
    The run ends at the first fix that breaks one of these; if it spans at least min_stay it is a
    visit, extended while the next fixes stay within stay_radius_m of the mean of the visit's
    fixes so far (an anchor taken on the way in, up to ~100 m off the place, would otherwise cut
    an hour's coffee in two at the first fix jittering the other way), and the fix after it is
    the next anchor; if it is shorter, the next fix is. A run still going at the last
    fix is undecided: nothing after its anchor is emitted, and a later window (whose
    `carry_fixes`, see `visit_carry`, start after the last visit) finishes it. A visit is emitted
    by the window holding the fix that closed it, so each is emitted once, and the same fixes
    split into windows anywhere give the same visits as processed whole. A device that goes
    silent mid-stay gets its visit when it next sends a fix (the gap closes it).

    Window fixes at or before the device's last earlier visit's departure (`previous_visits`,
    late arrivals) are left out. Each visit: arrived_at/departed_at = its first/last fix,
    latitude/longitude = median of its fixes, radius_m = farthest fix from that centre.
    """
    window = accepted_fixes(fixes, rules)
    if window.empty:
        return typed_frame([], STAY_DTYPES)
    carry = accepted_fixes(carry_fixes, rules)
    parts = [carry.assign(_in_window=False)] if not carry.empty else []
    both = pd.concat([*parts, window.assign(_in_window=True)], ignore_index=True)
    closed = _closed_until(previous_visits)
    if closed:
        until = both["device_id"].map(closed)
        both = both[until.isna() | (both["recorded_at"] > until)]
    both = both.sort_values(["device_id", "recorded_at", "_in_window", "source_partition", "source_offset"],
                            kind="stable").drop_duplicates(["device_id", "recorded_at"], keep="first")
    rows: list[dict] = []
    for device_id, group in both.groupby("device_id", sort=True):
        rows.extend(_device_stays(str(device_id), group, rules))
    return typed_frame(rows, STAY_DTYPES)


def _device_stays(device_id: str, fixes: pd.DataFrame, rules: LocationRules) -> list[dict]:
    times = fixes["recorded_at"].dt.as_unit("us").astype("int64").to_numpy()
    lat, lon = fixes["latitude"].to_numpy(float), fixes["longitude"].to_numpy(float)
    in_window = fixes["_in_window"].to_numpy(bool)
    window_starts = list(fixes["window_start"])
    limits = (rules.stay_radius_m, _micros(rules.max_stay_gap), _micros(rules.max_stay))
    min_stay = _micros(rules.min_stay)
    rows, i, n = [], 0, len(times)
    while i < n:
        end = _run_end(i, times, lat, lon, limits)
        if end < n - 1 and times[end] - times[i] >= min_stay:
            end = _run_end(i, times, lat, lon, limits, around_mean_from=end + 1)
        if end == n - 1:
            break                          # no fix after the run yet: undecided
        if times[end] - times[i] >= min_stay:
            if in_window[end + 1]:
                rows.append(_stay_row(device_id, window_starts[end + 1], times[i:end + 1], lat[i:end + 1],
                                      lon[i:end + 1]))
            i = end + 1
        else:
            i += 1
    return rows


def _run_end(i: int, times: np.ndarray, lat: np.ndarray, lon: np.ndarray, limits: tuple[float, int, int],
             around_mean_from: int | None = None) -> int:
    """Index of the last fix of the run anchored at i: each fix within the radius of fix i, or,
    from `around_mean_from` on, of the mean of the run's fixes before it. Checked in growing
    chunks, so a long stay costs O(n) and a walk O(1) per anchor."""
    radius, max_gap, max_span = limits
    n, chunk = len(times), 16
    j = i if around_mean_from is None else around_mean_from - 1
    while j < n - 1:
        hi = min(n, j + 1 + chunk)
        k = np.arange(j + 1, hi)
        if around_mean_from is None:
            centre_lat, centre_lon = lat[i], lon[i]
        else:  # the mean of fixes i..k-1 for each k, from running sums (degrees: a ~100 m scale)
            count = k - i
            centre_lat = np.cumsum(lat[i:hi - 1])[k - 1 - i] / count
            centre_lon = np.cumsum(lon[i:hi - 1])[k - 1 - i] / count
        ok = ((haversine_m(centre_lat, centre_lon, lat[k], lon[k]) <= radius)
              & (times[k] - times[k - 1] <= max_gap) & (times[k] - times[i] <= max_span))
        if not ok.all():
            return int(k[np.argmin(ok)]) - 1
        j, chunk = hi - 1, chunk * 2
    return n - 1


def _stay_row(device_id: str, window_start: Any, times: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> dict:
    arrived, departed = _from_micros(times[0]), _from_micros(times[-1])
    centre_lat, centre_lon = float(np.median(lat)), float(np.median(lon))
    return {
        "window_start": window_start,
        "device_id": device_id,
        "visit_id": f"{device_id}-{int(times[0]) // 1000}",
        "recorded_at": arrived,
        "arrived_at": arrived,
        "departed_at": departed,
        "duration_seconds": (int(times[-1]) - int(times[0])) / 1e6,
        "latitude": centre_lat,
        "longitude": centre_lon,
        "radius_m": round(float(np.max(haversine_m(centre_lat, centre_lon, lat, lon))), 2),
        "fix_count": len(times),
    }


def _closed_until(previous_visits: pd.DataFrame | None) -> dict[str, pd.Timestamp]:
    previous = with_columns(previous_visits, ("device_id", "departed_at"))
    previous = previous.dropna(subset=["device_id", "departed_at"])
    if previous.empty:
        return {}
    departed = utc(previous["departed_at"]).groupby(previous["device_id"].astype(str)).max()
    return departed.to_dict()


# -- places -----------------------------------------------------------------------------------------
def match_visits(
    visits: pd.DataFrame,
    regions: Iterable[Region],
    businesses: pd.DataFrame | None,
    geocoded: pd.DataFrame | None,
    history: pd.DataFrame | None,
    rules: LocationRules,
) -> pd.DataFrame:
    """The place of each visit and how often the device went there in 30 days.

    First match wins:
    1. georegion: a region containing the visit's centre (boundary included); of several, the
       smallest (a room in a campus is the room), then the lowest id. place_key "region:<id>".
    2. business: of the visit's `businesses` candidates (visit_id, provider, business_id, name,
       category, distance_m, confidence) with confidence >= 0.7 and distance <= 100 m
       (docs/flows/location.md#places), the most confident, then nearest. place_key
       "<provider>:<business_id>".
    3. geocoded: the visit's `geocoded` row (visit_id, address, name, city, country, provider)
       with an address (else name, city, country). place_key "address:" + address_key(...).
    4. unknown: place_key "geohash:" + the geohash of the centre (unknown_geohash_precision).
    `address` is the geocoded address whenever one exists, whatever the source.
    visit_count_30d: visits of the device with the same place_key arriving in
    (arrived_at - 30 days, arrived_at], from `history` (earlier visits rows: device_id,
    place_key, arrived_at, visit_id) and this window's visits, each visit counted once.
    """
    stays = with_columns(visits, STAY_DTYPES)
    if stays.empty:
        return typed_frame([], VISIT_DTYPES)
    regions = sorted(regions, key=lambda r: (r.area_m2, r.id))
    business_by_visit = _best_businesses(businesses, rules)
    geocoded_by_visit = _geocoded_by_visit(geocoded)
    rows = []
    for stay in stays.to_dict("records"):
        lat, lon = float(stay["latitude"]), float(stay["longitude"])
        geo = geocoded_by_visit.get(stay["visit_id"])
        address = _text(geo.get("address")) if geo else None
        place = {"address": address, "region_id": None, "business_provider": None, "business_id": None,
                 "place_category": None}
        region = next((r for r in regions if r.contains(lat, lon)), None)
        business = business_by_visit.get(stay["visit_id"])
        geo_key = address_key(address or ", ".join(
            t for t in (_text(geo.get(c)) for c in ("name", "city", "country")) if t)) if geo else ""
        if region is not None:
            place.update(place_source="georegion", place_key=f"region:{region.id}", place_name=region.name,
                         place_category=region.type, region_id=region.id)
        elif business is not None:
            place.update(place_source="business", place_key=f"{business['provider']}:{business['business_id']}",
                         place_name=_text(business.get("name")), place_category=_text(business.get("category")),
                         business_provider=str(business["provider"]), business_id=str(business["business_id"]))
        elif geo_key:
            place.update(place_source="geocoded", place_key=f"address:{geo_key}",
                         place_name=_text(geo.get("name")) or address)
        else:
            place.update(place_source="unknown", place_name=None,
                         place_key=f"geohash:{geohash(lat, lon, rules.unknown_geohash_precision)}")
        rows.append({**stay, **place})
    out = typed_frame(rows, VISIT_DTYPES)
    out["visit_count_30d"] = pd.array(_visit_counts(out, history, rules), dtype="Int64")
    return out.sort_values(["device_id", "recorded_at"], kind="stable").reset_index(drop=True)


def address_key(address: Any) -> str:
    """A normalised address: accents dropped, case folded, every run of anything but letters and
    digits made one "-" ("Café Rösti, 5 Rue X" -> "cafe-rosti-5-rue-x"). "" for no address."""
    text = _text(address)
    if not text:
        return ""
    folded = unicodedata.normalize("NFKD", text)
    folded = "".join(c for c in folded if not unicodedata.combining(c)).casefold()
    return re.sub(r"[^0-9a-z]+", "-", folded).strip("-")


_GEOHASH_BASE32 = "0123456789bcdefghjkmnpqrstuvwxyz"


def geohash(lat: float, lon: float, precision: int = 7) -> str:
    """The standard geohash (base 32, longitude bit first) of a point."""
    lat_range, lon_range = [-90.0, 90.0], [-180.0, 180.0]
    chars, value, bits, even = [], 0, 0, True
    while len(chars) < precision:
        rng, coordinate = (lon_range, lon) if even else (lat_range, lat)
        mid = (rng[0] + rng[1]) / 2
        if coordinate >= mid:
            value, rng[0] = value * 2 + 1, mid
        else:
            value, rng[1] = value * 2, mid
        even, bits = not even, bits + 1
        if bits == 5:
            chars.append(_GEOHASH_BASE32[value])
            value, bits = 0, 0
    return "".join(chars)


def _best_businesses(businesses: pd.DataFrame | None, rules: LocationRules) -> dict[str, dict]:
    needed = ("visit_id", "provider", "business_id", "name", "category", "distance_m", "confidence")
    candidates = with_columns(businesses, needed)
    if candidates.empty:
        return {}
    candidates = candidates.assign(
        confidence=pd.to_numeric(candidates["confidence"], errors="coerce"),
        distance_m=pd.to_numeric(candidates["distance_m"], errors="coerce"),
    ).dropna(subset=["visit_id", "provider", "business_id", "confidence", "distance_m"])
    candidates = candidates[(candidates["confidence"] >= rules.business_min_confidence)
                            & (candidates["distance_m"] <= rules.business_max_distance_m)]
    candidates = candidates.assign(_neg_confidence=-candidates["confidence"]).sort_values(
        ["visit_id", "_neg_confidence", "distance_m", "provider", "business_id"], kind="stable")
    return {row["visit_id"]: row for row in candidates.groupby("visit_id").head(1).to_dict("records")}


def _geocoded_by_visit(geocoded: pd.DataFrame | None) -> dict[str, dict]:
    rows = with_columns(geocoded, ("visit_id", "address", "name", "city", "country", "provider"))
    if rows.empty:
        return {}
    rows = rows.dropna(subset=["visit_id"])
    rows = rows.assign(_no_address=rows["address"].map(lambda a: not _text(a))).sort_values(
        ["visit_id", "_no_address", "provider"], kind="stable")
    return {row["visit_id"]: row for row in rows.groupby("visit_id").head(1).to_dict("records")}


def _visit_counts(current: pd.DataFrame, history: pd.DataFrame | None, rules: LocationRules) -> list[int]:
    past = with_columns(history, ("device_id", "place_key", "arrived_at", "visit_id"))
    past = past[["device_id", "place_key", "arrived_at", "visit_id"]]
    past = past.dropna(subset=["device_id", "place_key", "arrived_at"])
    past = past[~past["visit_id"].isin(set(current["visit_id"]))]          # each visit once
    every = pd.concat([past.assign(arrived_at=utc(past["arrived_at"])),
                       current[["device_id", "place_key", "arrived_at", "visit_id"]]], ignore_index=True)
    every = every.assign(device_id=every["device_id"].astype(str), place_key=every["place_key"].astype(str))
    arrivals = {key: np.sort(group["arrived_at"].dt.as_unit("us").astype("int64").to_numpy())
                for key, group in every.groupby(["device_id", "place_key"])}
    period = _micros(rules.visit_count_period)
    counts = []
    for device_id, key, at in zip(current["device_id"], current["place_key"], current["arrived_at"]):
        times = arrivals[(str(device_id), str(key))]
        t = pd.Timestamp(at).as_unit("us").value // 1000
        counts.append(int(np.searchsorted(times, t, side="right") - np.searchsorted(times, t - period, side="right")))
    return counts


# -- small helpers ----------------------------------------------------------------------------------
def _ts(value: Any) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _seconds(delta: Any) -> float:
    return math.nan if pd.isna(delta) else delta / pd.Timedelta(seconds=1)


def _micros(delta: pd.Timedelta) -> int:
    return int(delta / pd.Timedelta(microseconds=1))


def _from_micros(value: Any) -> pd.Timestamp:
    return pd.Timestamp(int(value), unit="us", tz="UTC")


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    text = str(value).strip()
    return text or None

