"""Geocoding and business identification: the offline geocoder on known points, Nominatim through
geopy and the business providers against real HTTP servers on 127.0.0.1 replaying recorded
response shapes (tests/fixtures/geocoding), and the stage's rules with an in-memory cache."""

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest

from loom_assets.resources.business import (
    BUSINESS_DTYPES,
    BusinessProviderAuthError,
    BusinessProviderError,
    BusinessProviderResource,
    BusinessProviderUnavailable,
    confidence,
)
from loom_assets.resources.geocoder import (
    ADDRESS_FIELDS,
    Address,
    GeocoderRejected,
    GeocoderResource,
    GeocoderUnavailable,
    MemoryGeocodeCache,
    NominatimGeocoder,
    OfflineGeocoder,
    haversine_m,
    nominatim_address,
)
from loom_assets.stages.geocoding import (
    GEOCODED_DTYPES,
    POINT_ADDRESS_DTYPES,
    GeocodingRules,
    geocoded,
    reverse_for_points,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "geocoding"
SF = (37.7749, -122.4194)
RULES = GeocodingRules()
T0 = pd.Timestamp("2025-03-03 10:00", tz="UTC")


def fixture(name: str):
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


# -- a real HTTP server replaying recorded answers ---------------------------------------------------
class Replay:
    """An HTTP server on 127.0.0.1 (port 0) answering each request with the next scripted
    (status, body, headers); the last one repeats. Records what it was asked."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests = []
        replay = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                url = urlsplit(self.path)
                replay.requests.append({
                    "at": time.monotonic(), "method": self.command, "path": url.path,
                    "query": {k: v[0] for k, v in parse_qs(url.query).items()},
                    "headers": dict(self.headers), "json": json.loads(body) if body else None,
                })
                index = min(len(replay.requests), len(replay.answers)) - 1
                status, payload, headers = (*replay.answers[index], {})[:3]
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def replay():
    servers = []

    def start(*answers):
        servers.append(Replay(*answers))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def nominatim(server: Replay, **options) -> NominatimGeocoder:
    return NominatimGeocoder(domain=server.host, scheme="http", **{"min_delay_s": 0.0, "error_wait_s": 0.0, **options})


# -- offline ----------------------------------------------------------------------------------------
def test_offline_geocoder_names_san_francisco_in_pacific_time():
    address = OfflineGeocoder().reverse(*SF)
    assert (address.city, address.name, address.state) == ("San Francisco", "San Francisco", "California")
    assert (address.country_code, address.country) == ("US", "United States")
    assert address.timezone == "America/Los_Angeles"
    assert address.address == "San Francisco, California, US"
    assert address.provider == "offline-geonames"
    assert address.provider_version.startswith("reverse_geocoder-1.5.1+timezonefinder-data-")
    assert address.raw["distance_m"] < 50


def test_offline_geocoder_names_a_nashville_area_town_in_central_time():
    # docs/flows/location.md#georegions: the Home georegion in Nashville.
    address = OfflineGeocoder().reverse(36.0476, -86.6841)
    # Great-circle nearest (8.9 km); a degree-space tree would say Nolensville (12 km).
    assert address.city == "Brentwood Estates"
    assert (address.state, address.country_code, address.timezone) == ("Tennessee", "US", "America/Chicago")


def test_offline_batch_lookup_answers_in_order_and_keeps_namibia_as_na():
    points = [(-22.5594, 17.0832), SF, (51.5074, -0.1278)]
    found = OfflineGeocoder().reverse_many(points)
    assert [a.country_code for a in found] == ["NA", "US", "GB"]
    assert found[0].city == "Windhoek" and found[0].timezone == "Africa/Windhoek"
    assert found[2].timezone == "Europe/London"
    assert OfflineGeocoder().reverse_many([]) == []


# -- Nominatim through geopy -------------------------------------------------------------------------
def test_nominatim_maps_every_field_of_a_reverse_answer(replay):
    server = replay((200, fixture("nominatim_reverse_sf.json")))
    address = nominatim(server, language="en").reverse(*SF)
    assert address == Address(
        name="Fox Plaza",
        address="Fox Plaza, 1390, Market Street, Civic Center, San Francisco, California, 94102, United States",
        house_number="1390", road="Market Street", city="San Francisco", state="California",
        country="United States", country_code="US", postal_code="94102", place_type="building",
        timezone="America/Los_Angeles", provider="nominatim", provider_version=server.host,
    )
    assert address.raw["osm_id"] == 24345519
    [request] = server.requests
    assert request["path"] == "/reverse"
    assert request["query"] == {"lat": "37.7749", "lon": "-122.4194", "format": "json", "accept-language": "en",
                                "addressdetails": "1", "zoom": "18"}
    assert request["headers"]["User-Agent"] == "loom-geocoder/0.1"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"name": ""}, {"name": "Civic Center"}),                          # neighbourhood
        ({"name": "", "address": {"suburb": "Mission"}}, {"name": "Mission"}),
        ({"address": {"town": "Sausalito", "province": "Marin"}}, {"city": "Sausalito", "state": "Marin"}),
        ({"address": {"village": "Bolinas"}}, {"city": "Bolinas"}),
        ({"address": {"hamlet": "Olema"}}, {"city": "Olema"}),
        ({"addresstype": None, "type": "house"}, {"place_type": "house"}),
    ],
)
def test_nominatim_fallback_fields(change, expected):
    raw = fixture("nominatim_reverse_sf.json")
    for key, value in change.items():
        if key == "address":
            raw["address"] = value
        else:
            raw[key] = value
    address = nominatim_address(raw, "America/Los_Angeles", "x")
    assert {k: getattr(address, k) for k in expected} == expected


def test_nominatim_without_a_result_gives_an_empty_address_with_the_timezone(replay):
    server = replay((200, {"error": "Unable to geocode"}))
    address = nominatim(server).reverse(0.5, -160.0)
    assert all(getattr(address, k) is None for k in ADDRESS_FIELDS if k != "timezone")
    assert address.timezone == "Etc/GMT+11"
    assert address.raw == {"error": "Unable to geocode"}


def test_nominatim_requests_are_spaced_by_the_rate_limit(replay):
    server = replay((200, fixture("nominatim_reverse_sf.json")))
    geocoder = nominatim(server, min_delay_s=0.3, error_wait_s=0.3)
    started = time.monotonic()
    geocoder.reverse_many([SF, (37.7760, -122.4194), (37.7770, -122.4194)])
    arrivals = [r["at"] for r in server.requests]
    assert len(arrivals) == 3
    assert all(later - earlier >= 0.29 for earlier, later in zip(arrivals, arrivals[1:]))
    assert time.monotonic() - started >= 0.59


def test_nominatim_retries_a_503_twice_then_succeeds(replay):
    server = replay((503, {"error": "busy"}), (503, {"error": "busy"}), (200, fixture("nominatim_reverse_sf.json")))
    address = nominatim(server, max_retries=3, min_delay_s=0.05, error_wait_s=0.1).reverse(*SF)
    assert address.city == "San Francisco"
    assert len(server.requests) == 3
    assert server.requests[2]["at"] - server.requests[1]["at"] >= 0.09


def test_nominatim_gives_up_after_its_retries_with_geocoder_unavailable(replay):
    server = replay((503, {"error": "busy"}))
    with pytest.raises(GeocoderUnavailable, match="failed 3 times"):
        nominatim(server, max_retries=2).reverse(*SF)
    assert len(server.requests) == 3


def test_nominatim_refusal_is_not_retried(replay):
    server = replay((403, b"<html>Access blocked</html>"))
    with pytest.raises(GeocoderRejected, match="refused"):
        nominatim(server, max_retries=3).reverse(*SF)
    assert len(server.requests) == 1


def test_the_resource_builds_one_geocoder_per_configuration(replay, monkeypatch):
    assert GeocoderResource(provider="offline").geocoder() is GeocoderResource(provider="offline").geocoder()
    server = replay((200, fixture("nominatim_reverse_sf.json")))
    monkeypatch.setenv("LOOM_GEOCODER_PROVIDER", "nominatim")
    monkeypatch.setenv("LOOM_GEOCODER_DOMAIN", server.host)
    monkeypatch.setenv("LOOM_GEOCODER_SCHEME", "http")
    geocoder = GeocoderResource().geocoder()
    assert isinstance(geocoder, NominatimGeocoder) and geocoder.provider_version == server.host
    assert geocoder.reverse(*SF).road == "Market Street"
    assert GeocoderResource().geocoder() is geocoder
    with pytest.raises(ValueError, match="unknown geocoder provider"):
        GeocoderResource(provider="mapbox").geocoder()


# -- the stage ---------------------------------------------------------------------------------------
class CountingGeocoder:
    """Answers "lookup <n>" and counts lookups."""

    provider = "fake"
    provider_version = "1"

    def __init__(self):
        self.calls = []

    def reverse(self, latitude, longitude):
        self.calls.append((latitude, longitude))
        return Address(name=f"lookup {len(self.calls)}", city="Testville", timezone="UTC",
                       provider=self.provider, provider_version=self.provider_version)

    def reverse_many(self, points):
        return [self.reverse(*p) for p in points]


def north(metres: float, of=SF) -> tuple[float, float]:
    """The point `metres` due north (haversine-exact)."""
    return of[0] + math.degrees(metres / 6_371_000.0), of[1]


def fixes(*points, device="phone-1", accuracy=10.0) -> pd.DataFrame:
    """One GPS fix per point, a minute apart; a point may be (lat, lon, accuracy)."""
    rows = []
    for i, point in enumerate(points):
        lat, lon, acc = (*point, accuracy)[:3]
        rows.append({
            "window_start": T0, "device_id": device, "recorded_at": T0 + pd.Timedelta(minutes=i),
            "latitude": lat, "longitude": lon, "accuracy": acc, "source_topic": "device.sensor.gps.raw",
            "source_partition": 0, "source_offset": i, "message_id": f"{device}-{i}", "trace_id": f"t{i}",
        })
    return pd.DataFrame(rows)


def carry(point, device="phone-1") -> pd.DataFrame:
    return pd.DataFrame([{"device_id": device, "latitude": point[0], "longitude": point[1]}])


@pytest.fixture
def geocoder():
    return CountingGeocoder()


@pytest.fixture
def cache():
    return MemoryGeocodeCache("fake", "1")


@pytest.mark.parametrize(("metres", "reused"), [(0.0, True), (49.0, True), (51.0, False)])
def test_a_cached_address_is_reused_within_50_m(geocoder, cache, metres, reused):
    known = Address(name="cached place", provider="fake", provider_version="1")
    cache_id = cache.put(*SF, known)
    out = geocoded(fixes(north(metres)), None, geocoder, cache, RULES)
    assert len(out) == 1
    assert bool(out.loc[0, "cached"]) is reused
    assert (out.loc[0, "name"] == "cached place") is reused
    assert len(geocoder.calls) == (0 if reused else 1)
    if reused:
        assert out.loc[0, "cache_id"] == cache_id and cache.use_count[cache_id] == 2
        assert out.loc[0, "cache_distance_m"] == pytest.approx(metres, abs=0.01)
    else:
        assert out.loc[0, "cache_id"] == cache_id + 1 and out.loc[0, "cache_distance_m"] == 0.0
        assert len(cache.rows) == 2


@pytest.mark.parametrize(("metres", "geocoded_again"), [(30.0, False), (99.0, False), (101.0, True)])
def test_no_lookup_within_100_m_of_the_last_geocoded_fix_of_an_earlier_window(geocoder, cache, metres, geocoded_again):
    out = geocoded(fixes(north(metres)), carry(SF), geocoder, cache, RULES)
    assert len(out) == int(geocoded_again)
    if geocoded_again:
        assert out.loc[0, "distance_from_previous_m"] == pytest.approx(metres, abs=0.01)


def test_within_a_window_the_distance_counts_from_the_last_geocoded_fix(geocoder, cache):
    points = [SF, north(60), north(90), north(120), north(180), north(230)]
    out = geocoded(fixes(*points), None, geocoder, cache, RULES)
    # 60 and 90 m are within 100 m of SF; 120 m is not; 180 is 60 m from 120; 230 is 110 m from 120.
    assert list(out["source_offset"]) == [0, 3, 5]
    assert math.isnan(out.loc[0, "distance_from_previous_m"])
    assert list(out["distance_from_previous_m"][1:].round(2)) == [120.0, 110.0]
    assert list(out["cached"]) == [False, False, False] and len(geocoder.calls) == 3


def test_returning_to_a_place_reads_it_from_the_cache(geocoder, cache):
    out = geocoded(fixes(SF, north(500), north(20)), None, geocoder, cache, RULES)
    assert list(out["cached"]) == [False, False, True]
    assert out.loc[2, "name"] == "lookup 1" and out.loc[2, "cache_id"] == out.loc[0, "cache_id"]
    assert len(geocoder.calls) == 2


def test_devices_keep_their_own_last_fix_but_share_the_cache(geocoder, cache):
    both = pd.concat([fixes(SF, device="phone-1"), fixes(north(10), device="watch-1")])
    out = geocoded(both, carry(north(30), device="watch-2"), geocoder, cache, RULES)
    assert list(out["device_id"]) == ["phone-1", "watch-1"]
    assert list(out["cached"]) == [False, True]


@pytest.mark.parametrize(("accuracy", "kept"), [(5.0, True), (100.0, True), (100.5, False), (None, True)])
def test_fixes_less_accurate_than_100_m_are_not_geocoded(geocoder, cache, accuracy, kept):
    out = geocoded(fixes((*SF, accuracy)), None, geocoder, cache, RULES)
    assert len(out) == int(kept)


@pytest.mark.parametrize("point", [(math.nan, -122.4), (37.7, None), (0.0, 0.0), (91.0, 10.0), (10.0, 181.0)])
def test_fixes_without_a_valid_position_are_not_geocoded(geocoder, cache, point):
    assert geocoded(fixes(point), None, geocoder, cache, RULES).empty
    assert geocoder.calls == []


def test_output_has_the_declared_columns_and_dtypes(geocoder, cache):
    out = geocoded(fixes(SF, north(200)), None, geocoder, cache, RULES)
    assert list(out.columns) == list(GEOCODED_DTYPES)
    assert {c: str(t) for c, t in out.dtypes.items()} == {
        c: str(pd.Series([], dtype=t).dtype) for c, t in GEOCODED_DTYPES.items()}
    row = out.iloc[0]
    assert (row["message_id"], row["trace_id"]) == ("phone-1-0", "t0")
    assert (row["provider"], row["provider_version"]) == ("fake", "1")
    assert (row["city"], row["timezone"], row["accuracy"]) == ("Testville", "UTC", 10.0)
    empty = geocoded(pd.DataFrame(), None, geocoder, cache, RULES)
    assert empty.empty and list(empty.columns) == list(GEOCODED_DTYPES)


def test_fixes_are_taken_in_time_order_whatever_their_row_order(geocoder, cache):
    frame = fixes(SF, north(60), north(150)).iloc[::-1]
    out = geocoded(frame, None, geocoder, cache, RULES)
    assert list(out["source_offset"]) == [0, 2]


def test_a_cache_of_another_provider_is_refused(geocoder):
    with pytest.raises(ValueError, match="cache holds"):
        geocoded(fixes(SF), None, geocoder, MemoryGeocodeCache("nominatim", "x"), RULES)
    with pytest.raises(ValueError, match="cannot go into the cache"):
        MemoryGeocodeCache("fake", "2").put(*SF, geocoder.reverse(*SF))


def test_the_offline_geocoder_through_the_stage():
    offline = OfflineGeocoder()
    cache = MemoryGeocodeCache(offline.provider, offline.provider_version)
    out = geocoded(fixes(SF, north(2000)), None, offline, cache, RULES)
    assert list(out["city"]) == ["San Francisco", "San Francisco"]
    assert list(out["timezone"]) == ["America/Los_Angeles"] * 2


def test_reverse_for_points_is_cache_first_and_keeps_the_index(geocoder, cache):
    cache.put(*SF, Address(name="home", provider="fake", provider_version="1"))
    points = pd.DataFrame({"latitude": [north(30)[0], 36.0476, math.nan], "longitude": [SF[1], -86.6841, 1.0]},
                          index=["visit-a", "visit-b", "visit-c"])
    out = reverse_for_points(points, geocoder, cache, RULES)
    assert list(out.index) == ["visit-a", "visit-b", "visit-c"]
    assert list(out.columns) == list(POINT_ADDRESS_DTYPES)
    assert list(out["name"][:2]) == ["home", "lookup 1"]
    assert list(out["cached"]) == [True, False, pd.NA]
    assert out.loc["visit-c"].drop(["latitude", "longitude"]).isna().all()
    assert geocoder.calls == [(36.0476, -86.6841)]


def test_haversine_matches_the_spec_radius():
    assert haversine_m(*SF, *north(1000)) == pytest.approx(1000.0, abs=1e-6)


# -- business identification -------------------------------------------------------------------------
def business(server: Replay, provider: str, **options) -> BusinessProviderResource:
    return BusinessProviderResource(provider=provider, api_key="test-key", base_url=server.url,
                                    **{"backoff_s": 0.01, **options})


def test_foursquare_search_is_parsed_nearest_first(replay):
    server = replay((200, fixture("foursquare_search.json")))
    found = business(server, "foursquare", max_results=5).nearby(*SF)
    [request] = server.requests
    assert (request["method"], request["path"]) == ("GET", "/v3/places/search")
    assert request["query"] == {"ll": "37.774900,-122.419400", "radius": "100", "limit": "5", "sort": "DISTANCE"}
    assert request["headers"]["Authorization"] == "test-key"
    assert [b.name for b in found] == ["Civic Center Coffee", "Market Street Books"]
    coffee, books = found
    assert (coffee.provider, coffee.category) == ("foursquare", "Coffee Shop")
    assert coffee.business_id == "5a2f1b9e0c1d8a3b7f6e4c21"
    assert (coffee.latitude, coffee.longitude) == (37.77508, -122.4194)
    assert coffee.distance_m == pytest.approx(20.0, abs=0.1)
    assert coffee.confidence == pytest.approx(0.8, abs=0.001)
    assert coffee.address == "1390 Market St, San Francisco, CA 94102"
    assert books.category == "Bookstore" and books.distance_m == pytest.approx(83.5, abs=0.2)
    assert books.confidence == pytest.approx(0.165, abs=0.002)
    assert books.raw["related_places"]["parent"]["name"] == "Fox Plaza"


def test_google_places_search_nearby_is_parsed_nearest_first(replay):
    server = replay((200, fixture("google_places_search_nearby.json")))
    found = business(server, "google_places", max_results=50, radius_m=100).nearby(*SF)
    [request] = server.requests
    assert (request["method"], request["path"]) == ("POST", "/v1/places:searchNearby")
    assert request["headers"]["X-Goog-Api-Key"] == "test-key"
    assert request["headers"]["X-Goog-FieldMask"] == (
        "places.id,places.displayName,places.primaryType,places.types,places.location,places.formattedAddress")
    assert request["json"] == {
        "locationRestriction": {"circle": {"center": {"latitude": 37.7749, "longitude": -122.4194}, "radius": 100.0}},
        "maxResultCount": 20, "rankPreference": "DISTANCE",
    }
    assert [b.name for b in found] == ["Civic Center Coffee", "Van Ness Station Kiosk", "Market Street Books"]
    coffee, kiosk, _ = found
    assert (coffee.provider, coffee.category) == ("google_places", "coffee_shop")
    assert coffee.business_id == "ChIJ2eUgeAK6j4ARbn5u_wAGqWA"
    assert coffee.address == "1390 Market St, San Francisco, CA 94102, USA"
    assert kiosk.category == "point_of_interest"  # no primaryType: the first type
    assert kiosk.confidence == pytest.approx(1 - kiosk.distance_m / 100, abs=0.001)


@pytest.mark.parametrize("provider", ["foursquare", "google_places"])
def test_a_rejected_api_key_fails_at_once(replay, provider):
    server = replay((401, {"message": "Invalid request token."}))
    with pytest.raises(BusinessProviderAuthError, match="HTTP 401"):
        business(server, provider).nearby(*SF)
    assert len(server.requests) == 1


def test_a_missing_api_key_fails_before_any_request(replay, monkeypatch):
    monkeypatch.delenv("LOOM_BUSINESS_API_KEY", raising=False)
    server = replay((200, fixture("foursquare_search.json")))
    with pytest.raises(BusinessProviderAuthError, match="LOOM_BUSINESS_API_KEY"):
        BusinessProviderResource(provider="foursquare", base_url=server.url).nearby(*SF)
    assert server.requests == []


def test_other_client_errors_are_not_retried(replay):
    server = replay((400, {"message": "Invalid ll"}))
    with pytest.raises(BusinessProviderError, match="HTTP 400"):
        business(server, "foursquare").nearby(*SF)
    assert len(server.requests) == 1


def test_429_and_5xx_are_retried_with_backoff(replay):
    server = replay((429, {"message": "slow down"}, {"Retry-After": "0.2"}), (502, b"bad gateway"),
                    (200, fixture("foursquare_search.json")))
    found = business(server, "foursquare", backoff_s=0.05).nearby(*SF)
    assert len(found) == 2 and len(server.requests) == 3
    at = [r["at"] for r in server.requests]
    assert at[1] - at[0] >= 0.19          # Retry-After
    assert at[2] - at[1] >= 0.09          # backoff_s x 2^1


def test_a_provider_that_keeps_failing_is_unavailable(replay):
    server = replay((503, b"down"))
    with pytest.raises(BusinessProviderUnavailable, match="HTTP 503 3 times"):
        business(server, "google_places", max_retries=2).nearby(*SF)
    assert len(server.requests) == 3


def test_provider_none_answers_nothing():
    assert BusinessProviderResource(provider="none").nearby(*SF) == []
    visits = pd.DataFrame({"visit_id": ["v1"], "latitude": [SF[0]], "longitude": [SF[1]]})
    empty = BusinessProviderResource(provider="none").nearby_frame(visits)
    assert empty.empty and list(empty.columns) == ["visit_id", *BUSINESS_DTYPES]


def test_nearby_frame_gives_each_points_candidates_under_its_key(replay):
    server = replay((200, fixture("foursquare_search.json")))
    visits = pd.DataFrame({"visit_id": ["v1", "v2", "v3"], "latitude": [SF[0], math.nan, SF[0]],
                           "longitude": [SF[1], SF[1], SF[1]]})
    found = business(server, "foursquare").nearby_frame(visits)
    assert len(server.requests) == 2  # v2 has no position
    assert list(found.columns) == ["visit_id", *BUSINESS_DTYPES]
    assert list(found["visit_id"]) == ["v1", "v1", "v3", "v3"]
    assert list(found["name"][:2]) == ["Civic Center Coffee", "Market Street Books"]
    assert found["confidence"].dtype == "float64" and found.loc[0, "confidence"] == pytest.approx(0.8, abs=0.001)


@pytest.mark.parametrize(("distance", "radius", "expected"),
                         [(0.0, 100.0, 1.0), (30.0, 100.0, 0.7), (100.0, 100.0, 0.0), (150.0, 100.0, 0.0),
                          (None, 100.0, 0.0), (12.3456, 100.0, 0.877)])
def test_confidence_falls_linearly_to_the_radius(distance, radius, expected):
    assert confidence(distance, radius) == expected
