"""Places: visits matched to geocoded addresses and nearby businesses."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from loom_assets.stages.frames import typed_frame, utc, with_columns
from loom_assets.stages.location.regions import Region
from loom_assets.stages.location.rows import STAY_DTYPES, VISIT_DTYPES
from loom_assets.stages.location.rules import LocationRules
from loom_assets.stages.location.values import _micros, _text


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
