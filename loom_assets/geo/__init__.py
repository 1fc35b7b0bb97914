"""Geometry on the sphere and the geocoding types: pure helpers that stages and resources share.

Nothing here imports Dagster or talks to the outside; the geocoders themselves are resources
(`loom_assets.resources.geocoder`).
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
from loom_assets.geo.geometry import (
    EARTH_RADIUS_M,
    EDGE_TOLERANCE_M,
    closed_ring,
    edge_distance_m,
    haversine_m,
    point_in_polygon,
    polygon_ring,
)
