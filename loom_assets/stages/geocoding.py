"""Geocoding: the address of where each device went (docs/flows/location.md#geocoded).

The old consumer geocoded every fix not already covered by its cache, and skipped a fix within
100 m of *any* cached point (docs/flows/location.md#geocoded); here the skip is measured from the device's own
last geocoded fix, carried across windows, so a device returning to a cached place still gets
its address (from the cache, with no lookup). The geocoder and the cache are passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import pandas as pd

from loom_assets.geo import ADDRESS_FIELDS, Address, Geocoder, haversine_m
from loom_assets.stages.frames import float_or_nan, typed_frame, utc, with_columns


@dataclass(frozen=True)
class GeocodingRules:
    """Every number of the geocoding stage, with its reason. Bump `version` when one changes."""

    version: str = "1"
    # docs/flows/location.md#geocoded precision_meters 50 and the old consumer's
    # cache_radius_meters=50: an address looked up within 50 m is reused. 50 m is about half a city
    # block, so the street is right.
    cache_radius_m: float = 50.0
    # docs/flows/location.md#geocoded min_distance_meters=100: no new address while the device stays within
    # 100 m of its last geocoded fix (GPS comes every 10 s; a stay would otherwise cost a lookup
    # per fix at the public server's 1 request/s).
    min_distance_m: float = 100.0
    # A fix whose accuracy radius (m, 68 %) is worse than this is not geocoded: beyond 100 m
    # the phone used Wi-Fi/cell positioning, which cannot tell a 100 m move (above) from its
    # own jitter nor which block it is on. Same bound as LocationRules. A fix without accuracy
    # (the field is optional, docs/messages.md#payload-fields) is geocoded.
    max_fix_accuracy_m: float = 100.0


class Cache(Protocol):
    """What the stage needs of a geocode cache (GeocodeCache, MemoryGeocodeCache)."""

    provider: str
    provider_version: str

    def nearest(self, latitude: float, longitude: float, within_m: float) -> tuple[Address, int, float] | None: ...
    def put(self, latitude: float, longitude: float, address: Address, device_id: str | None = None) -> int: ...
    def touch(self, cache_id: int, device_id: str | None = None) -> None: ...


FIX_COLUMNS = (
    "window_start", "device_id", "recorded_at", "latitude", "longitude", "accuracy", "source_topic",
    "source_partition", "source_offset", "message_id", "trace_id",
)

_TIME = "datetime64[us, UTC]"
_ADDRESS_DTYPES = {name: "str" for name in ADDRESS_FIELDS}

GEOCODED_DTYPES: dict[str, str] = {
    "window_start": _TIME,
    "device_id": "str",
    "recorded_at": _TIME,
    "source_topic": "str",
    "source_partition": "Int64",
    "source_offset": "Int64",
    "message_id": "str",
    "trace_id": "str",
    "latitude": "float64",
    "longitude": "float64",
    "accuracy": "float64",
    **_ADDRESS_DTYPES,                     # name, address, ..., timezone (resources.geocoder.Address)
    "provider": "str",                     # offline-geonames | nominatim
    "provider_version": "str",
    "cached": "bool",                      # True: reused from the cache, no lookup
    "cache_id": "Int64",                   # geocode_cache.id of the address used
    "cache_distance_m": "float64",         # fix to the cached point (0 for a fresh lookup)
    "distance_from_previous_m": "float64",  # from the device's previous geocoded fix; NaN for its first
}

# reverse_for_points: one row per point, on the points' index.
POINT_ADDRESS_DTYPES: dict[str, str] = {
    "latitude": "float64",
    "longitude": "float64",
    **_ADDRESS_DTYPES,
    "provider": "str",
    "provider_version": "str",
    "cached": "boolean",                   # NA for a point without a valid position
    "cache_id": "Int64",
    "cache_distance_m": "float64",
}

# Table name -> the DataFrame columns written there (the table adds model_version).
OUTPUT_COLUMNS: dict[str, tuple[str, ...]] = {"location_geocoded": tuple(GEOCODED_DTYPES)}


def geocoded(fixes: pd.DataFrame, last_geocoded: pd.DataFrame | None, geocoder: Geocoder, cache: Cache,
             rules: GeocodingRules) -> pd.DataFrame:
    """One row per geocoded fix of a window, with its address.

    Per device in time order, a fix is
    1. skipped when its position is missing or invalid (including 0,0, a client placeholder),
    2. skipped when its accuracy is worse than `rules.max_fix_accuracy_m`,
    3. skipped when within `rules.min_distance_m` of the device's last geocoded fix (from
       `last_geocoded`, the carry of earlier windows: device_id, latitude, longitude, or from
       this window),
    4. else given the cached address nearest it within `rules.cache_radius_m` (cached=True),
    5. else looked up and cached (cached=False).
    """
    _check_cache(geocoder, cache)
    fixes = with_columns(fixes, FIX_COLUMNS)
    if fixes.empty:
        return typed_frame([], GEOCODED_DTYPES)
    fixes = fixes.assign(recorded_at=utc(fixes["recorded_at"]), device_id=fixes["device_id"].astype(str))
    ordered = fixes.sort_values(["device_id", "recorded_at", "source_partition", "source_offset"], kind="stable")
    last = _last_points(last_geocoded)
    rows = []
    for fix in ordered.to_dict("records"):
        lat, lon = float_or_nan(fix["latitude"]), float_or_nan(fix["longitude"])
        accuracy = float_or_nan(fix["accuracy"])
        if not _valid_position(lat, lon) or accuracy > rules.max_fix_accuracy_m:
            continue
        previous = last.get(fix["device_id"])
        moved = haversine_m(*previous, lat, lon) if previous else math.nan
        if previous and moved <= rules.min_distance_m:
            continue
        address, cached, cache_id, cache_distance = _cached_or_looked_up(lat, lon, geocoder, cache, rules,
                                                                          fix["device_id"])
        last[fix["device_id"]] = (lat, lon)
        rows.append({
            **{c: fix[c] for c in FIX_COLUMNS},
            "latitude": lat, "longitude": lon, "accuracy": accuracy,
            **{name: getattr(address, name) for name in ADDRESS_FIELDS},
            "provider": address.provider, "provider_version": address.provider_version,
            "cached": cached, "cache_id": cache_id, "cache_distance_m": cache_distance,
            "distance_from_previous_m": moved,
        })
    return typed_frame(rows, GEOCODED_DTYPES)


def reverse_for_points(points: pd.DataFrame, geocoder: Geocoder, cache: Cache, rules: GeocodingRules) -> pd.DataFrame:
    """The address of arbitrary points (`latitude`, `longitude` columns; `device_id`, when given,
    is recorded as the cache entry's user), cache first: a cached address within
    `rules.cache_radius_m`, else a lookup that is cached. One row per point, on
    `points`' index; points without a valid position get an empty row."""
    _check_cache(geocoder, cache)
    points = with_columns(points, ("latitude", "longitude", "device_id"))
    rows = []
    for lat, lon, device_id in zip(points["latitude"].map(float_or_nan), points["longitude"].map(float_or_nan),
                                   points["device_id"]):
        if not _valid_position(lat, lon):
            rows.append({"latitude": lat, "longitude": lon})
            continue
        address, cached, cache_id, cache_distance = _cached_or_looked_up(
            lat, lon, geocoder, cache, rules, device_id if isinstance(device_id, str) else None)
        rows.append({
            "latitude": lat, "longitude": lon, **{name: getattr(address, name) for name in ADDRESS_FIELDS},
            "provider": address.provider, "provider_version": address.provider_version,
            "cached": cached, "cache_id": cache_id, "cache_distance_m": cache_distance,
        })
    return typed_frame(rows, POINT_ADDRESS_DTYPES).set_axis(points.index)


def _cached_or_looked_up(lat: float, lon: float, geocoder: Geocoder, cache: Cache, rules: GeocodingRules,
                         device_id: str | None) -> tuple[Address, bool, int, float]:
    """The cached address nearest the point, else a lookup that is cached; the cache notes the
    device whose fix wrote or reused the entry (erasing the device removes it)."""
    hit = cache.nearest(lat, lon, rules.cache_radius_m)
    if hit is not None:
        address, cache_id, distance = hit
        cache.touch(cache_id, device_id)
        return address, True, cache_id, distance
    address = geocoder.reverse(lat, lon)
    return address, False, cache.put(lat, lon, address, device_id), 0.0


def _last_points(last_geocoded: pd.DataFrame | None) -> dict[str, tuple[float, float]]:
    """device -> (lat, lon) of its last geocoded fix before this window (the latest row when a
    device has several and `recorded_at` is given)."""
    carry = with_columns(last_geocoded, ("device_id", "latitude", "longitude", "recorded_at"))
    if carry.empty:
        return {}
    carry = carry.dropna(subset=["device_id", "latitude", "longitude"])
    if carry["recorded_at"].notna().any():
        carry = carry.assign(recorded_at=utc(carry["recorded_at"])).sort_values("recorded_at", kind="stable",
                                                                                na_position="first")
    points: dict[str, tuple[float, float]] = {}
    for row in carry.to_dict("records"):
        lat, lon = float_or_nan(row["latitude"]), float_or_nan(row["longitude"])
        if _valid_position(lat, lon):
            points[str(row["device_id"])] = (lat, lon)
    return points


def _valid_position(lat: float, lon: float) -> bool:
    return (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0  # False for NaN
            and not (lat == 0.0 and lon == 0.0))


def _check_cache(geocoder: Geocoder, cache: Cache) -> None:
    if (geocoder.provider, geocoder.provider_version) != (cache.provider, cache.provider_version):
        raise ValueError(f"the cache holds {cache.provider} {cache.provider_version} addresses,"
                         f" the geocoder is {geocoder.provider} {geocoder.provider_version}")

