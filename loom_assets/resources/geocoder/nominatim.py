"""The Nominatim geocoder through geopy, reverse and forward, rate limited."""

from __future__ import annotations

from collections.abc import Sequence

from loom_assets.geo.geocoding import (
    Address,
    GeocoderRejected,
    GeocoderUnavailable,
    Place,
)
from loom_assets.resources.geocoder.common import NOMINATIM_PROVIDER, timezone_at


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
