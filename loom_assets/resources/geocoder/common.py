"""Provider names, package versions and time zones that both geocoders use."""

from __future__ import annotations

from functools import lru_cache
from importlib import metadata

OFFLINE_PROVIDER = "offline-geonames"
NOMINATIM_PROVIDER = "nominatim"


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
