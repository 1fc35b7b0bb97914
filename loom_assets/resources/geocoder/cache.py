"""Caches of addresses and places already looked up, in PostgreSQL or in memory."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from loom_assets.geo.geocoding import ADDRESS_FIELDS, PLACE_FIELDS, Address, Place
from loom_assets.geo.geometry import EARTH_RADIUS_M, haversine_m

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

    def put(self, latitude: float, longitude: float, address: Address, device_id: str | None = None) -> int:
        """Cache the address looked up at this point; returns the new row's id. `device_id`: the
        device whose fix it is, recorded so that erasing the device removes the entry."""
        _check_provider(self, address)
        with self._connect() as conn:
            cache_id = conn.execute(
                "INSERT INTO geocode_cache (provider, provider_version, latitude, longitude, "
                f"{', '.join(ADDRESS_FIELDS)}, raw) VALUES ({', '.join(['%s'] * (len(ADDRESS_FIELDS) + 5))})"
                " RETURNING id",
                (self.provider, self.provider_version, latitude, longitude,
                 *(getattr(address, k) for k in ADDRESS_FIELDS), Jsonb(address.raw or {})),
            ).fetchone()[0]
            _record_user(conn, cache_id, device_id)
            return cache_id

    def touch(self, cache_id: int, device_id: str | None = None) -> None:
        """Count one more use of a cached address (use_count + 1, last_used_at now), by
        `device_id` when given."""
        with self._connect() as conn:
            conn.execute("UPDATE geocode_cache SET use_count = use_count + 1, last_used_at = now() WHERE id = %s",
                         (cache_id,))
            _record_user(conn, cache_id, device_id)


def _record_user(conn: psycopg.Connection, cache_id: int, device_id: str | None) -> None:
    """Note that `device_id`'s fix wrote or reused the entry (sql/0021: what `loom erase` removes)."""
    if device_id is not None:
        conn.execute("INSERT INTO geocode_cache_devices (cache_id, device_id) SELECT id, %s FROM geocode_cache"
                     " WHERE id = %s ON CONFLICT DO NOTHING", (device_id, cache_id))


class MemoryGeocodeCache:
    """`GeocodeCache` in memory (tests, one-off scripts)."""

    def __init__(self, provider: str, provider_version: str) -> None:
        self.provider = provider
        self.provider_version = provider_version
        # id -> (latitude, longitude, address); use_count by id.
        self.rows: dict[int, tuple[float, float, Address]] = {}
        self.use_count: dict[int, int] = {}
        self.users: dict[int, set[str]] = {}  # id -> the devices whose fixes wrote or reused it

    def nearest(self, latitude: float, longitude: float, within_m: float) -> tuple[Address, int, float] | None:
        return _closest(latitude, longitude, within_m,
                        ((i, lat, lon, address) for i, (lat, lon, address) in self.rows.items()))

    def put(self, latitude: float, longitude: float, address: Address, device_id: str | None = None) -> int:
        _check_provider(self, address)
        cache_id = len(self.rows) + 1
        self.rows[cache_id] = (latitude, longitude, address)
        self.use_count[cache_id] = 1
        self.users.setdefault(cache_id, set()).update({device_id} - {None})
        return cache_id

    def touch(self, cache_id: int, device_id: str | None = None) -> None:
        self.use_count[cache_id] += 1
        self.users.setdefault(cache_id, set()).update({device_id} - {None})


def _check_provider(cache, address: Address) -> None:
    if (address.provider, address.provider_version) != (cache.provider, cache.provider_version):
        raise ValueError(f"an address of {address.provider} {address.provider_version} cannot go into the cache"
                         f" of {cache.provider} {cache.provider_version}")


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
