"""What geocoding answers and who answers it: addresses, places, the geocoder protocols and their errors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Protocol


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
