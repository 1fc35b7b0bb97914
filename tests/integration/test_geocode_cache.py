"""The PostgreSQL geocode cache (docs/flows/location.md#geocode-cache) on the session's real PostgreSQL."""

import math
import uuid

import pandas as pd
import psycopg
import pytest

from loom_assets.embedded.postgres import create_database
from loom_assets.resources.geocoder import Address, GeocodeCache
from loom_assets.stages.geocoding import GeocodingRules, geocoded

pytestmark = pytest.mark.integration

# The table as sql/0004 creates it (and sql/0021 adds its users).
DDL = """
CREATE TABLE IF NOT EXISTS geocode_cache (
    id bigserial PRIMARY KEY, provider text NOT NULL, provider_version text NOT NULL,
    latitude double precision NOT NULL, longitude double precision NOT NULL,
    name text, address text, house_number text, road text, city text, state text, country text,
    country_code text, postal_code text, place_type text, timezone text, raw jsonb,
    created_at timestamptz NOT NULL DEFAULT now(), last_used_at timestamptz NOT NULL DEFAULT now(),
    use_count integer NOT NULL DEFAULT 1);
CREATE INDEX IF NOT EXISTS geocode_cache_position ON geocode_cache (provider, latitude, longitude);
-- and sql/0021: the devices whose fixes wrote or reused each entry
CREATE TABLE IF NOT EXISTS geocode_cache_devices (
    cache_id bigint NOT NULL REFERENCES geocode_cache (id) ON DELETE CASCADE, device_id text NOT NULL,
    PRIMARY KEY (cache_id, device_id));
"""

SF = (37.7749, -122.4194)


def north(metres: float, of=SF) -> tuple[float, float]:
    return of[0] + math.degrees(metres / 6_371_000.0), of[1]


def east(metres: float, of=SF) -> tuple[float, float]:
    return of[0], of[1] + math.degrees(metres / (6_371_000.0 * math.cos(math.radians(of[0]))))


@pytest.fixture
def database_url(postgres):
    url = create_database(postgres.uri, f"geocache_{uuid.uuid4().hex[:10]}")
    with psycopg.connect(url) as conn:
        conn.execute(DDL)
    return url


@pytest.fixture
def connect(database_url):
    return lambda: psycopg.connect(database_url)


def address(name: str, provider: str = "nominatim", version: str = "v1", **fields) -> Address:
    return Address(name=name, provider=provider, provider_version=version, **fields)


def test_a_put_address_comes_back_whole_from_nearest(connect):
    cache = GeocodeCache(connect, "nominatim", "v1")
    stored = address("Fox Plaza", address="Fox Plaza, 1390, Market Street, San Francisco", house_number="1390",
                     road="Market Street", city="San Francisco", state="California", country="United States",
                     country_code="US", postal_code="94102", place_type="building", timezone="America/Los_Angeles",
                     raw={"osm_id": 24345519, "address": {"road": "Market Street"}})
    cache_id = cache.put(*SF, stored)
    found, found_id, distance = cache.nearest(*north(10), within_m=50)
    assert found == stored and found.raw == stored.raw
    assert found_id == cache_id and distance == pytest.approx(10.0, abs=0.01)


@pytest.mark.parametrize(("point", "hit"), [
    (north(49), True), (north(51), False), (east(49), True), (east(51), False),
])
def test_nearest_finds_only_points_within_the_radius(connect, point, hit):
    cache = GeocodeCache(connect, "nominatim", "v1")
    cache.put(*SF, address("here"))
    assert (cache.nearest(*point, within_m=50) is not None) is hit


def test_nearest_picks_the_closest_of_several(connect):
    cache = GeocodeCache(connect, "nominatim", "v1")
    far = cache.put(*north(40), address("40 m"))
    near = cache.put(*east(15), address("15 m"))
    cache.put(*north(500), address("500 m"))
    found, found_id, distance = cache.nearest(*SF, within_m=50)
    assert (found.name, found_id) == ("15 m", near) and far != near
    assert distance == pytest.approx(15.0, abs=0.01)


def test_providers_and_versions_never_read_each_others_rows(connect):
    GeocodeCache(connect, "nominatim", "v1").put(*SF, address("v1"))
    GeocodeCache(connect, "offline-geonames", "g1").put(*SF, address("geonames", "offline-geonames", "g1"))
    assert GeocodeCache(connect, "nominatim", "v2").nearest(*SF, 50) is None
    assert GeocodeCache(connect, "nominatim", "v1").nearest(*SF, 50)[0].name == "v1"
    assert GeocodeCache(connect, "offline-geonames", "g1").nearest(*SF, 50)[0].name == "geonames"
    with pytest.raises(ValueError, match="cannot go into the cache"):
        GeocodeCache(connect, "nominatim", "v2").put(*SF, address("v1"))


def test_touch_counts_a_use(connect):
    cache = GeocodeCache(connect, "nominatim", "v1")
    cache_id = cache.put(*SF, address("here"))
    with connect() as conn:
        created, used = conn.execute("SELECT created_at, last_used_at FROM geocode_cache WHERE id = %s",
                                     (cache_id,)).fetchone()
    cache.touch(cache_id)
    cache.touch(cache_id)
    with connect() as conn:
        count, last_used = conn.execute("SELECT use_count, last_used_at FROM geocode_cache WHERE id = %s",
                                        (cache_id,)).fetchone()
    assert count == 3 and last_used > used and created == used


def test_a_circle_across_the_antimeridian_is_searched_on_both_sides(connect):
    cache = GeocodeCache(connect, "nominatim", "v1")
    cache.put(-16.5, -179.9999, address("west of the line"))
    found, _, distance = cache.nearest(-16.5, 179.9999, within_m=50)
    assert found.name == "west of the line" and distance < 25


def test_a_plain_connection_commits_each_call(database_url):
    with psycopg.connect(database_url) as conn:  # not autocommit
        cache = GeocodeCache(conn, "nominatim", "v1")
        assert cache.nearest(*SF, 50) is None
        cache_id = cache.put(*SF, address("here"))
        cache.touch(cache_id)
        with psycopg.connect(database_url) as other:
            assert other.execute("SELECT use_count FROM geocode_cache WHERE id = %s", (cache_id,)).fetchone() == (2,)


def test_the_stage_reuses_addresses_cached_by_an_earlier_run(connect):
    class Geocoder:
        provider, provider_version = "fake", "1"
        calls = 0

        def reverse(self, latitude, longitude):
            Geocoder.calls += 1
            return Address(name=f"lookup {Geocoder.calls}", provider="fake", provider_version="1")

    t0 = pd.Timestamp("2025-03-03 10:00", tz="UTC")
    fixes = pd.DataFrame([
        {"window_start": t0, "device_id": "phone-1", "recorded_at": t0 + pd.Timedelta(minutes=i), "latitude": lat,
         "longitude": lon, "accuracy": 8.0, "source_topic": "device.sensor.gps.raw", "source_partition": 0,
         "source_offset": i, "message_id": f"m{i}", "trace_id": None}
        for i, (lat, lon) in enumerate([SF, north(300), north(20)])
    ])
    cache = GeocodeCache(connect, "fake", "1")
    first = geocoded(fixes, None, Geocoder(), cache, GeocodingRules())
    assert list(first["cached"]) == [False, False, True] and Geocoder.calls == 2
    again = geocoded(fixes, None, Geocoder(), cache, GeocodingRules())
    assert list(again["cached"]) == [True, True, True] and Geocoder.calls == 2
    assert list(again["name"]) == list(first["name"]) == ["lookup 1", "lookup 2", "lookup 1"]
    assert list(again["cache_id"]) == list(first["cache_id"])
