"""Location: georegion enter/exit/dwell events, stays (visits) and the place each visit was at
(docs/flows/location.md).

`region_events` is stage `georegion_detection`: the old detector emitted a row per region on
every fix and kept no state (docs/flows/location.md#georegions); here a device's presence in a
region is carried across windows and only changes (enter, exit) and one dwell per window are
emitted. `visits` finds the stays of a device (where it stopped, for how long), and `match_visits`
names the place of each stay: your georegion, else a business, else the geocoded address (stage
business_identification and the `user_location_history` 30-day counts,
docs/flows/location.md#places).

Geometry is plain spherical maths (haversine, R = 6 371 000 m, docs/flows/location.md#georegions)
over the GeoJSON rings of `georegions` (no PostGIS). Rings crossing the antimeridian (±180°
longitude) are out of scope.
"""

from loom_assets.geo.geometry import (
    EARTH_RADIUS_M,
    EDGE_TOLERANCE_M,
    closed_ring,
    edge_distance_m,
    haversine_m,
    point_in_polygon,
    polygon_ring,
)
from loom_assets.stages.location.places import address_key, geohash, match_visits
from loom_assets.stages.location.regions import (
    Region,
    region_events,
    region_state,
    regions_from_rows,
)
from loom_assets.stages.location.rows import (
    FIX_COLUMNS,
    OUTPUT_COLUMNS,
    REGION_EVENT_DTYPES,
    REGION_STATE_DTYPES,
    STAY_DTYPES,
    VISIT_DTYPES,
    accepted_fixes,
)
from loom_assets.stages.location.rules import LocationRules
from loom_assets.stages.location.stays import visit_carry, visit_lookback_start, visits
