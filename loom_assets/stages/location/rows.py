"""Row layouts of the location tables, and the GPS fixes a window accepts."""

from __future__ import annotations

import pandas as pd

from loom_assets.stages.frames import utc, with_columns
from loom_assets.stages.location.rules import LocationRules

FIX_COLUMNS = (
    "window_start", "device_id", "recorded_at", "source_topic", "source_partition", "source_offset",
    "message_id", "trace_id", "latitude", "longitude", "altitude", "accuracy", "heading", "speed",
)
_LINEAGE = ("window_start", "device_id", "source_topic", "source_partition", "source_offset", "message_id", "trace_id")

_TIME = "datetime64[us, UTC]"
REGION_EVENT_DTYPES: dict[str, str] = {
    "window_start": _TIME,
    "device_id": "str",
    "recorded_at": _TIME,                 # the event time: the fix that triggered it
    "source_topic": "str",
    "source_partition": "Int64",
    "source_offset": "Int64",
    "message_id": "str",
    "trace_id": "str",
    "region_id": "Int64",
    "region_name": "str",
    "region_type": "str",                 # home | work | custom
    "event_type": "str",                  # enter | exit | dwell
    "entered_at": _TIME,                  # when the current presence began (NaT if unknown)
    "dwell_time_seconds": "float64",      # event time - entered_at (0 on enter)
    "distance_from_center_m": "float64",
    "confidence": "float64",              # see Region.confidence
    "latitude": "float64",
    "longitude": "float64",
    "accuracy": "float64",
}

REGION_STATE_DTYPES: dict[str, str] = {
    "device_id": "str",
    "region_id": "Int64",
    "inside": "bool",
    "entered_at": _TIME,
    "recorded_at": _TIME,                 # the last event's time: older fixes do not change the state
}

STAY_DTYPES: dict[str, str] = {
    "window_start": _TIME,                # the window whose fix closed the stay
    "device_id": "str",
    "visit_id": "str",                    # f"{device_id}-{arrival epoch ms}"
    "recorded_at": _TIME,                 # = arrived_at
    "arrived_at": _TIME,                  # first fix of the stay
    "departed_at": _TIME,                 # last fix of the stay
    "duration_seconds": "float64",
    "latitude": "float64",                # median of the stay's fixes
    "longitude": "float64",
    "radius_m": "float64",                # farthest fix from that centre
    "fix_count": "Int64",
}

VISIT_DTYPES: dict[str, str] = {
    **STAY_DTYPES,
    "place_source": "str",                # georegion | business | geocoded | unknown
    "place_key": "str",                   # region:<id> | <provider>:<id> | address:<...> | geohash:<...>
    "place_name": "str",
    "place_category": "str",              # region type or business category
    "address": "str",                     # the geocoded address whenever there is one
    "region_id": "Int64",
    "business_provider": "str",
    "business_id": "str",
    "visit_count_30d": "Int64",           # visits to place_key by the device in (arrived - 30 d, arrived]
}

# Table name -> the DataFrame columns written there (the tables add model_version).
OUTPUT_COLUMNS: dict[str, tuple[str, ...]] = {
    "location_georegions": tuple(REGION_EVENT_DTYPES),
    "location_places": tuple(VISIT_DTYPES),
}

_EVENT_ORDER = {"exit": 0, "enter": 1, "dwell": 2}


# -- fixes ------------------------------------------------------------------------------------------
def accepted_fixes(fixes: pd.DataFrame | None, rules: LocationRules) -> pd.DataFrame:
    """The fixes regions and stays look at, per device in event-time order: with a position, and
    an accuracy no worse than max_fix_accuracy_m (a missing accuracy is accepted)."""
    fixes = with_columns(fixes, FIX_COLUMNS)
    fixes = fixes.assign(
        window_start=utc(fixes["window_start"]),
        recorded_at=utc(fixes["recorded_at"]),
        latitude=pd.to_numeric(fixes["latitude"], errors="coerce").astype(float),
        longitude=pd.to_numeric(fixes["longitude"], errors="coerce").astype(float),
        accuracy=pd.to_numeric(fixes["accuracy"], errors="coerce").astype(float),
    )
    fixes = fixes.dropna(subset=["device_id", "recorded_at", "latitude", "longitude"])
    fixes = fixes[~(fixes["accuracy"] > rules.max_fix_accuracy_m)]
    return fixes.sort_values(["device_id", "recorded_at", "source_partition", "source_offset"], kind="stable")
