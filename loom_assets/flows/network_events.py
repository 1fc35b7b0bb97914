"""Network events: Wi-Fi readings → network category and signal quality → GPS-correlated."""

import hashlib

import pandas as pd
from dagster import AssetKey, RetryPolicy

from loom_assets.flows.base import EventTime, Flow
from loom_assets.settings import settings
from loom_assets.stages import network_events

FLOW = Flow(
    name="network_events",
    topics=("device.network.wifi.raw",),
    description="Wi-Fi networks seen and joined by each device.",
    alert_error_rate=0.01,  # the only rate Loom v2 gave: docs/flows/network_events.md#retries-and-alerts
)
# Your own networks (comma-separated SSIDs) beat every pattern.
RULES = network_events.NetworkRules(home_ssids=settings().network_home_ssids,
                                    work_ssids=settings().network_work_ssids)
# Configured SSIDs change the output, so they are part of the rules version (a short digest).
RULES_VERSION = f"rules{RULES.version}" + (
    "-" + hashlib.sha1(repr((sorted(RULES.home_ssids), sorted(RULES.work_ssids))).encode()).hexdigest()[:6]
    if RULES.home_ssids or RULES.work_ssids else ""
)
# A fix this close in time stands for where the device was (GPS every 30 s on mobile,
# docs/messages.md#sampling-rates).
FIX_TOLERANCE = pd.Timedelta(minutes=5)

raw = FLOW.raw


@FLOW.stage(logic_version="1", rules_version=RULES_VERSION, retry=RetryPolicy(max_retries=5, delay=2))
def enriched(raw: pd.DataFrame) -> pd.DataFrame:
    """Network category (home, work, public, hotspot or enterprise), frequency band and signal quality."""
    return network_events.enrich(raw, RULES)


@FLOW.stage(
    logic_version="1",
    rules_version=f"tolerance{int(FIX_TOLERANCE.total_seconds())}s",
    retry=RetryPolicy(max_retries=5, delay=2),
    reads={"fixes": EventTime(AssetKey(["location", "raw"]), before=FIX_TOLERANCE, after=FIX_TOLERANCE,
                              of="enriched")},
)
def location_correlated(enriched: pd.DataFrame, fixes: pd.DataFrame) -> pd.DataFrame:
    """Each reading with the device's nearest GPS fix within the time tolerance (none: no row)."""
    return network_events.location_correlated(enriched, fixes, FIX_TOLERANCE)
