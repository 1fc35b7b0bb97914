"""The geocoder resource: one configured geocoder per process, and its caches."""

from __future__ import annotations

import threading
from collections.abc import Callable

from dagster import ConfigurableResource

from loom_assets.geo.geocoding import Geocoder
from loom_assets.resources.geocoder.cache import Connection, GeocodeCache, PlaceCache
from loom_assets.resources.geocoder.nominatim import NominatimGeocoder
from loom_assets.resources.geocoder.offline import OfflineGeocoder
from loom_assets.settings import settings

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


def place_cache(resource: GeocoderResource, connection: Connection) -> PlaceCache:
    """The forward-geocoding cache of the resource's configured geocoder."""
    geocoder = resource.geocoder()
    return PlaceCache(connection, geocoder.provider, geocoder.provider_version)
