"""Power state: battery readings → charging rates and sessions → daily patterns."""

from datetime import timedelta

import pandas as pd
from dagster import AssetExecutionContext, AssetKey, RetryPolicy

from loom_assets.flows.base import Carry, EventTime, Flow
from loom_assets.resources.warehouse import Warehouse
from loom_assets.stages import power_state

FLOW = Flow(
    name="power_state",
    # Both names are on the wire (docs/flows/power_state.md#kafka-topics).
    topics=("device.sensor.power.raw", "device.state.power.raw"),
    description="Battery level, charging state and power source of each device.",
    alert_error_rate=0.05,  # docs/flows/power_state.md#retries-and-alerts
)
RULES = power_state.PowerRules()
# Patterns look back over this much enriched history (hour-of-day shares need several days).
PATTERN_LOOKBACK = timedelta(days=7)

raw = FLOW.raw


@FLOW.stage(
    logic_version="1",
    rules_version=f"rules{RULES.version}",
    retry=RetryPolicy(max_retries=2, delay=1),  # docs/flows/power_state.md#retries-and-alerts: 2 retries, 1 s backoff
    carry=Carry(per=("device_id",)),
)
def enriched(raw: pd.DataFrame, state: pd.DataFrame) -> pd.DataFrame:
    """Charging rate (%/h), time to full or empty, charging sessions and low/critical states;
    rates and sessions continue from the previous window's last reading."""
    return power_state.enrich(raw, state, RULES)


@FLOW.stage(
    logic_version="1",
    rules_version=f"rules{RULES.version}",
    retry=RetryPolicy(max_retries=1, delay=2),  # docs/flows/power_state.md#retries-and-alerts: 1 retry, 2 s
    # The week of fixes up to the window's end (charging locations).
    reads={"locations": EventTime(AssetKey(["location", "raw"]), before=PATTERN_LOOKBACK - FLOW.window)},
)
def patterns(context: AssetExecutionContext, enriched: pd.DataFrame, locations: pd.DataFrame,
             warehouse: Warehouse) -> pd.DataFrame:
    """Charging schedule by hour of day, high/low consumption periods, battery-health trend and
    charging locations (from GPS fixes) over the last week of enriched readings."""
    window = context.partition_time_window
    since = window.end - PATTERN_LOOKBACK
    # Earlier windows' readings as each window holds them now (its newest version).
    history = warehouse.query(
        "SELECT * FROM power_state_enriched_latest WHERE recorded_at >= %s AND recorded_at < %s"
        " AND window_start < %s",
        (since, window.end, window.start),
    )
    history = pd.concat([history, enriched], ignore_index=True) if not history.empty else enriched
    return power_state.patterns(history, window.start, window.end, RULES, locations=locations)
