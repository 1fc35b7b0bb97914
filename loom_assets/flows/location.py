"""Location: GPS fixes → georegion enter/exit/dwell → reverse-geocoded addresses → visits to places."""

import pandas as pd
from dagster import AssetExecutionContext, RetryPolicy

from loom_assets.flows.base import Carry, Flow
from loom_assets.resources.business import BusinessProviderResource
from loom_assets.resources.geocoder import GeocoderResource
from loom_assets.resources.warehouse import Warehouse
from loom_assets.settings import settings
from loom_assets.stages import geocoding, location

FLOW = Flow(
    name="location",
    topics=("device.sensor.gps.raw",),
    description="GPS fixes of each device.",
    alert_error_rate=0.05,  # docs/flows/location.md#retries-and-alerts
)
RULES = location.LocationRules()
GEOCODING_RULES = geocoding.GeocodingRules()
# The provider decides the addresses, so it is part of the geocoded stage's version.
GEOCODER = settings().geocoder_provider
BUSINESSES = settings().business_provider
# Steps that call the geocoder or the business provider share one concurrency pool: the rate
# limit (Nominatim's 1 request/s) holds per process, so one such step runs at a time
# (`loom dev` sets the pool's limit; in production: `dagster instance concurrency set geocoder 1`).
GEOCODER_POOL = "geocoder"

raw = FLOW.raw


@FLOW.stage(
    logic_version="1",
    rules_version=f"rules{RULES.version}",
    retry=RetryPolicy(max_retries=2, delay=1),  # docs/flows/location.md#retries-and-alerts: 2 retries, 1 s
    carry=Carry(per=("device_id", "region_id"), lookback=RULES.max_lookback),
)
def georegions(raw: pd.DataFrame, state: pd.DataFrame, warehouse: Warehouse) -> pd.DataFrame:
    """Enter, exit and dwell events for the georegions you defined (`loom regions add`), with
    dwell times; whether a device is inside a region carries over from the previous windows'
    events. Fixes less accurate than the stated bound are ignored."""
    regions = location.regions_from_rows(warehouse.query("SELECT * FROM georegions WHERE is_active"))
    return location.region_events(raw, regions, location.region_state(state), RULES)


@FLOW.stage(
    logic_version="1",
    rules_version=f"rules{GEOCODING_RULES.version}-{GEOCODER}",
    retry=RetryPolicy(max_retries=3, delay=60),  # docs/flows/location.md#retries-and-alerts: 3 retries, 60 s
    carry=Carry(per=("device_id",)),
    pool=GEOCODER_POOL,
)
def geocoded(raw: pd.DataFrame, state: pd.DataFrame, warehouse: Warehouse, geocoder: GeocoderResource) -> pd.DataFrame:
    """Addresses of the fixes where the device moved ≥ 100 m from its last geocoded point, from
    the geocode cache when a cached address lies within 50 m, else from the geocoder."""
    with warehouse.connect() as conn:
        cache = geocoder.cache(conn)
        return geocoding.geocoded(raw, state, geocoder.geocoder(), cache, GEOCODING_RULES)


@FLOW.stage(
    logic_version="1",
    rules_version=f"rules{RULES.version}-{GEOCODER}-{BUSINESSES}",
    retry=RetryPolicy(max_retries=2, delay=30),  # docs/flows/location.md#retries-and-alerts: 2 retries, 30 s
    carry=Carry(per=("device_id",), lookback=RULES.max_lookback + RULES.max_stay),
    pool=GEOCODER_POOL,
)
def places(context: AssetExecutionContext, raw: pd.DataFrame, state: pd.DataFrame, warehouse: Warehouse,
           geocoder: GeocoderResource, businesses: BusinessProviderResource) -> pd.DataFrame:
    """Visits: stays of ≥ 5 min within 100 m, with arrival and departure, each matched to a
    georegion, else a business (when a provider is configured), else its geocoded address;
    with the device's visits to that place in the last 30 days."""
    start = context.partition_time_window.start
    previous = state
    recent = warehouse.query(
        "SELECT * FROM location_raw WHERE window_start < %s AND recorded_at >= %s ORDER BY device_id, recorded_at",
        (start, location.visit_lookback_start(start, RULES)),
    )
    stays = location.visits(raw, location.visit_carry(recent, previous, RULES), RULES, previous)
    if stays.empty:
        return location.match_visits(stays, (), None, None, None, RULES)
    regions = location.regions_from_rows(warehouse.query("SELECT * FROM georegions WHERE is_active"))
    with warehouse.connect() as conn:
        addresses = geocoding.reverse_for_points(
            stays[["latitude", "longitude", "device_id"]], geocoder.geocoder(), geocoder.cache(conn), GEOCODING_RULES)
    found = businesses.nearby_frame(stays)
    # Earlier visits as each window holds them now (its newest version).
    history = warehouse.query(
        "SELECT device_id, place_key, arrived_at, visit_id FROM location_places_latest"
        " WHERE window_start < %s AND arrived_at >= %s",
        (start, start - RULES.visit_count_period - RULES.max_lookback),
    )
    return location.match_visits(stays, regions, found, addresses.assign(visit_id=stays["visit_id"].values),
                                 history, RULES)
