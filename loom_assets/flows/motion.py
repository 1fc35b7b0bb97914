"""Motion: accelerometer samples → 5 s feature windows → significant motion events → activities."""

import pandas as pd
from dagster import AssetExecutionContext, AssetKey, RetryPolicy

from loom_assets.flows.base import Carry, EventTime, Flow
from loom_assets.resources.models import Models, activity_model_version
from loom_assets.resources.warehouse import Warehouse
from loom_assets.stages import activity, motion

FLOW = Flow(
    name="motion",
    topics=("device.sensor.accelerometer.raw",),
    description="Accelerometer samples of each device (m/s², gravity included, 10–100 Hz).",
    alert_error_rate=0.05,  # docs/flows/motion.md#retries-and-alerts
)
RULES = motion.MotionRules()
ACTIVITY_RULES = activity.ActivityRules()
# GPS fixes this far around a window still tell its speed.
FIX_MARGIN = ACTIVITY_RULES.derived_speed_margin

raw = FLOW.raw


@FLOW.stage(
    logic_version="1",
    rules_version=f"rules{RULES.version}-features{activity.FEATURES_VERSION}",
    retry=RetryPolicy(max_retries=1, delay=1),  # docs/flows/motion.md#retries-and-alerts: 1 retry, 1 s
    ordered=True,  # windows straddling the boundary take the previous window's raw tail
    columns={"raw": motion.SAMPLE_COLUMNS},
)
def windows(context: AssetExecutionContext, raw: pd.DataFrame, warehouse: Warehouse) -> pd.DataFrame:
    """5 s windows with 1 s overlap per device: mean, std, magnitude, peak frequency, steps,
    sample count and the classifier's feature vector. Windows that straddle the window
    boundary take their first seconds from the previous window's samples."""
    tail = warehouse.raw_tail("motion_raw", context.partition_time_window.start - FLOW.window,
                              seconds=RULES.tail_seconds, columns=motion.SAMPLE_COLUMNS)
    return motion.motion_windows(raw, tail, RULES, feature_fn=activity.feature_vector)


@FLOW.stage(
    logic_version="1",
    rules_version=f"rules{RULES.version}",
    retry=RetryPolicy(max_retries=1, delay=1),  # docs/flows/motion.md#retries-and-alerts
    carry=Carry(per=("device_id",)),
    columns={"raw": motion.SAMPLE_COLUMNS},
)
def significant_motion(context: AssetExecutionContext, raw: pd.DataFrame, state: pd.DataFrame,
                       warehouse: Warehouse) -> pd.DataFrame:
    """Events where the gravity-removed acceleration stays over the threshold (debounced), with
    a motion type: sudden start/stop, fall, shake, walking, running, vehicle or unknown."""
    start = context.partition_time_window.start
    last = state
    last_end = last.set_index("device_id")["end_time"] if not last.empty else pd.Series(dtype="datetime64[us, UTC]")
    tail = warehouse.raw_tail("motion_raw", start - FLOW.window, seconds=RULES.event_tail_seconds,
                              columns=motion.SAMPLE_COLUMNS)
    return motion.significant_motion(raw, tail, last_end, RULES)


@FLOW.stage(
    logic_version="1",
    rules_version=f"{activity_model_version()}-rules{ACTIVITY_RULES.version}",
    retry=RetryPolicy(max_retries=2, delay=2),  # docs/flows/motion.md#retries-and-alerts: 2 retries, 2 s
    reads={"fixes": EventTime(AssetKey(["location", "raw"]), before=FIX_MARGIN, after=FIX_MARGIN,
                              of="windows", end_column="window_end")},
)
def activities(windows: pd.DataFrame, fixes: pd.DataFrame, models: Models) -> pd.DataFrame:
    """Still, walking or stairs from the trained classifier; running, cycling and vehicle from
    GPS speed and step cadence; below 0.7 confidence, unknown."""
    return activity.activities(windows, fixes, models.activity(), ACTIVITY_RULES)
