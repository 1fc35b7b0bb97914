"""Business identification: which businesses are near a point (docs/flows/location.md#places, providers
foursquare and google_places, match_radius_meters 100).

One resource, `BusinessProviderResource`, in front of the Foursquare Places API v3 and the Google
Places API (New); provider "none" (the default) answers nothing, so places fall back to your
georegions and the geocoded address.
"""

from __future__ import annotations

import email.utils
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pandas as pd
import requests
from dagster import ConfigurableResource

from loom_assets.geo import haversine_m
from loom_assets.settings import settings

PUBLIC_BASE_URLS = {
    "foursquare": "https://api.foursquare.com",
    "google_places": "https://places.googleapis.com",
}
# The Google field mask: what the searchNearby answer carries (and what Google bills for).
GOOGLE_FIELD_MASK = (
    "places.id,places.displayName,places.primaryType,places.types,places.location,places.formattedAddress"
)
# Google's searchNearby accepts 1-20 results; Foursquare's search 1-50.
MAX_RESULTS = {"foursquare": 50, "google_places": 20}
# A Retry-After longer than this is not waited out inside a run: the run fails and its
# RetryPolicy (docs/flows/location.md#retries-and-alerts: 2 retries, 30 s) comes back later.
MAX_RETRY_AFTER_S = 60.0


# nearby_frame: one row per candidate business of a point, after the point's key column.
BUSINESS_DTYPES: dict[str, str] = {
    "provider": "str",
    "business_id": "str",
    "name": "str",
    "category": "str",
    "latitude": "float64",
    "longitude": "float64",
    "distance_m": "float64",
    "confidence": "float64",
    "address": "str",
}


class BusinessProviderError(RuntimeError):
    """The provider refused the request (a 4xx other than 429): fix the request or configuration."""


class BusinessProviderAuthError(BusinessProviderError):
    """No API key, or the provider rejected it (HTTP 401/403)."""


class BusinessProviderUnavailable(RuntimeError):
    """429, 5xx or no answer after every retry: transient, so the run's RetryPolicy retries."""


@dataclass(frozen=True)
class Business:
    """A business near the queried point. `confidence` = 1 - distance/radius, clipped to [0, 1]."""

    provider: str
    business_id: str
    name: str | None
    category: str | None
    latitude: float | None
    longitude: float | None
    distance_m: float | None
    confidence: float
    address: str | None = None
    raw: dict = field(default_factory=dict, compare=False, hash=False)


def confidence(distance_m: float | None, radius_m: float) -> float:
    """1 at the point, 0 at the search radius (and for an unknown distance), linear between;
    rounded to 3 decimals. The georegion detector's formula (docs/flows/location.md#georegions) applied to the
    match_radius_meters circle, so the 0.7 confidence threshold (docs/flows/location.md#places)
    keeps businesses within 30 % of the radius (30 m at 100 m)."""
    if distance_m is None or radius_m <= 0:
        return 0.0
    return round(min(1.0, max(0.0, 1.0 - distance_m / radius_m)), 3)


class BusinessProviderResource(ConfigurableResource):
    """Nearby businesses from the configured provider. Fields left None come from settings
    (LOOM_BUSINESS_PROVIDER, LOOM_BUSINESS_API_KEY, LOOM_BUSINESS_BASE_URL).

    429, 5xx, timeouts and connection errors are retried up to `max_retries` times after
    `backoff_s` x 2^attempt seconds (1, 2, 4 s by default), or the server's Retry-After when it
    sends one (up to 60 s); then BusinessProviderUnavailable. 401/403 raise
    BusinessProviderAuthError at once, other 4xx BusinessProviderError.
    """

    provider: str | None = None        # "none" | "foursquare" | "google_places"
    api_key: str | None = None
    base_url: str | None = None        # None/empty: the provider's public endpoint
    radius_m: float = 100.0            # docs/flows/location.md#places: 100 m
    timeout_s: float = 10.0
    max_results: int = 10
    max_retries: int = 3
    backoff_s: float = 1.0

    @property
    def provider_name(self) -> str:
        return (self.provider or settings().business_provider).strip().lower()

    def nearby(self, latitude: float, longitude: float) -> list[Business]:
        """Businesses within `radius_m` of the point, nearest first (at most `max_results`)."""
        provider = self.provider_name
        if provider == "none":
            return []
        if provider not in PUBLIC_BASE_URLS:
            raise ValueError(f"unknown business provider {provider!r}: use none, foursquare or google_places")
        key = self.api_key or settings().business_api_key
        if not key:
            raise BusinessProviderAuthError(f"{provider} needs an API key: set LOOM_BUSINESS_API_KEY")
        base = (self.base_url or settings().business_base_url or PUBLIC_BASE_URLS[provider]).rstrip("/")
        limit = max(1, min(self.max_results, MAX_RESULTS[provider]))
        if provider == "foursquare":
            answer = self._request(provider, "GET", f"{base}/v3/places/search", headers={
                "Authorization": key, "Accept": "application/json",
            }, params={"ll": f"{latitude:.6f},{longitude:.6f}", "radius": int(round(self.radius_m)),
                       "limit": limit, "sort": "DISTANCE"})
            found = [foursquare_business(r, latitude, longitude, self.radius_m) for r in answer.get("results") or []]
        else:
            answer = self._request(provider, "POST", f"{base}/v1/places:searchNearby", headers={
                "X-Goog-Api-Key": key, "X-Goog-FieldMask": GOOGLE_FIELD_MASK, "Content-Type": "application/json",
            }, json={
                "locationRestriction": {"circle": {"center": {"latitude": latitude, "longitude": longitude},
                                                   "radius": float(self.radius_m)}},
                "maxResultCount": limit,
                "rankPreference": "DISTANCE",
            })
            found = [google_business(p, latitude, longitude, self.radius_m) for p in answer.get("places") or []]
        found.sort(key=lambda b: (b.distance_m is None, b.distance_m or 0.0, b.business_id))
        return found[:limit]

    def nearby_frame(self, points: pd.DataFrame, key: str = "visit_id") -> pd.DataFrame:
        """`nearby` for each row of `points` (`latitude`, `longitude`, `key`): one row per
        candidate business, `key` first, then BUSINESS_DTYPES. Provider "none" asks nothing;
        rows without a valid position are skipped."""
        dtypes = {key: "str", **BUSINESS_DTYPES}
        rows = []
        if self.provider_name != "none" and points is not None and not points.empty:
            for point in points.to_dict("records"):
                lat, lon = _float(point.get("latitude")), _float(point.get("longitude"))
                if lat is None or lon is None or math.isnan(lat) or math.isnan(lon):
                    continue
                for found in self.nearby(lat, lon):
                    rows.append({key: point.get(key), **{c: getattr(found, c) for c in BUSINESS_DTYPES}})
        frame = pd.DataFrame.from_records(rows, columns=list(dtypes))
        return frame.astype(dtypes)

    def _request(self, provider: str, method: str, url: str, **kwargs) -> dict:
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                response = requests.request(method, url, timeout=self.timeout_s, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as error:
                if last:
                    raise BusinessProviderUnavailable(
                        f"{provider} at {url} did not answer after {attempt + 1} tries: {error}") from error
                time.sleep(self.backoff_s * 2 ** attempt)
                continue
            status = response.status_code
            if status in (401, 403):
                raise BusinessProviderAuthError(
                    f"{provider} rejected the API key (HTTP {status}): check LOOM_BUSINESS_API_KEY"
                    f" ({_snippet(response)})")
            if status == 429 or status >= 500:
                if last:
                    raise BusinessProviderUnavailable(
                        f"{provider} at {url} answered HTTP {status} {attempt + 1} times ({_snippet(response)})")
                time.sleep(_retry_after(response) or self.backoff_s * 2 ** attempt)
                continue
            if status >= 400:
                raise BusinessProviderError(f"{provider} refused the request (HTTP {status}): {_snippet(response)}")
            try:
                return response.json()
            except ValueError as error:
                raise BusinessProviderUnavailable(
                    f"{provider} at {url} answered non-JSON: {_snippet(response)}") from error
        raise AssertionError("unreachable")


def foursquare_business(result: dict, latitude: float, longitude: float, radius_m: float) -> Business:
    """A Foursquare Places v3 search result. Also reads the newer Places API's `fsq_place_id`
    and top-level `latitude`/`longitude`."""
    main = ((result.get("geocodes") or {}).get("main") or {})
    lat = _float(main.get("latitude", result.get("latitude")))
    lon = _float(main.get("longitude", result.get("longitude")))
    categories = result.get("categories") or []
    distance = _distance(latitude, longitude, lat, lon, result.get("distance"))
    return Business(
        provider="foursquare",
        business_id=str(result.get("fsq_id") or result.get("fsq_place_id") or ""),
        name=result.get("name"),
        category=(categories[0].get("name") if categories else None),
        latitude=lat, longitude=lon, distance_m=distance,
        confidence=confidence(distance, radius_m),
        address=(result.get("location") or {}).get("formatted_address"),
        raw=result,
    )


def google_business(place: dict, latitude: float, longitude: float, radius_m: float) -> Business:
    """A Google Places API (New) searchNearby place."""
    location = place.get("location") or {}
    lat, lon = _float(location.get("latitude")), _float(location.get("longitude"))
    distance = _distance(latitude, longitude, lat, lon, None)
    types = place.get("types") or []
    return Business(
        provider="google_places",
        business_id=str(place.get("id") or ""),
        name=(place.get("displayName") or {}).get("text"),
        category=place.get("primaryType") or (types[0] if types else None),
        latitude=lat, longitude=lon, distance_m=distance,
        confidence=confidence(distance, radius_m),
        address=place.get("formattedAddress"),
        raw=place,
    )


def _distance(lat: float, lon: float, place_lat: float | None, place_lon: float | None, stated) -> float | None:
    """Haversine from the query to the place's coordinates (both providers measured alike),
    else the distance the provider states."""
    if place_lat is not None and place_lon is not None:
        return round(haversine_m(lat, lon, place_lat, place_lon), 1)
    return _float(stated)


def _float(value) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _retry_after(response: requests.Response) -> float | None:
    """Retry-After in seconds (delta or HTTP date), capped at MAX_RETRY_AFTER_S."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            at = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = (at - datetime.now(timezone.utc)).total_seconds()
    return min(MAX_RETRY_AFTER_S, max(0.0, seconds))


def _snippet(response: requests.Response) -> str:
    return response.text[:300].replace("\n", " ")
