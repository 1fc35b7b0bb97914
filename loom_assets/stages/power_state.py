"""Power state: charge/discharge rates, charging sessions and power patterns (docs/flows/power_state.md).

`enrich` is stage `power_enrichment`; `patterns` is stage `pattern_detection`.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from loom_assets.stages.frames import float_or_nan, iso, typed_frame, utc, with_columns


@dataclass(frozen=True)
class PowerRules:
    """Every number of the power flow, with its reason. Bump `version` when one changes."""

    version: str = "1"
    # docs/flows/power_state.md#battery-state: thresholds low_battery 20, critical_battery 10 (%). A
    # level AT the threshold counts (20 % is low, 10 % is critical), as phones warn at exactly 20 %
    # and 10 %.
    low_battery_pct: float = 20.0
    critical_battery_pct: float = 10.0
    # Battery levels come as whole percents, so two readings 10 s apart
    # (docs/flows/power_state.md#rates-and-sessions) differ by 0 or 1 %, i.e. 0 or 360 %/h. A
    # segment's first rate is taken over at least 10 minutes (10 steps at a 60 %/h charge); after
    # that it is an exponential moving average of the reading-to-reading rates with a 30-minute time
    # constant, which keeps the ripple of whole-percent steps at a typical 8 %/h drain to about ±15
    # % while following a change of charge rate (e.g. the trickle above 80 %) within half an hour.
    min_rate_interval: pd.Timedelta = pd.Timedelta(minutes=10)
    rate_smoothing: pd.Timedelta = pd.Timedelta(minutes=30)
    # Readings further apart than this are not one continuous observation (phone off, client
    # stopped): the rate starts afresh. 30 min = 180 missed readings at 0.1 ev/s.
    max_reading_gap: pd.Timedelta = pd.Timedelta(minutes=30)
    # A charging session survives a gap in readings up to this long while the device reports
    # charging on both sides (e.g. the client was suspended overnight on the charger).
    session_max_gap: pd.Timedelta = pd.Timedelta(hours=2)
    # Patterns: a week covers every hour of every weekday once.
    pattern_lookback: pd.Timedelta = pd.Timedelta(days=7)
    # Hours of day are read in this time zone (the device reports UTC; Loom is single-user).
    local_timezone: str = "UTC"
    # consumption_period: an hour whose mean drain is over 1.5x the device's median hour is
    # "high" (clearly heavier use), under 0.5x is "low" (mostly idle); hours with fewer than
    # 30 discharging readings (5 min at 0.1 ev/s) are not judged.
    consumption_high_factor: float = 1.5
    consumption_low_factor: float = 0.5
    consumption_min_samples: int = 30
    # battery_health, cycles_per_day: more than one full-charge equivalent a day is "heavy"
    # (Li-ion cells are rated ~500 cycles to 80 % capacity: under 1.5 years at that pace).
    heavy_cycles_per_day: float = 1.0
    # battery_health, discharge_rate_trend: the slope of the daily median drain over at least
    # 3 days; a rise of more than 5 % of the mean per day is "degrading". A weak signal (usage
    # changes move it too); stated as such in the README.
    health_min_days: int = 3
    degrading_relative_slope: float = 0.05
    # charging_location: the GPS fix nearest a charging start within 10 min (GPS every 10-30 s,
    # docs/messages.md#sampling-rates, so a fix is normally near) is rounded to 3 decimals (~110 m
    # of latitude).
    location_tolerance: pd.Timedelta = pd.Timedelta(minutes=10)
    location_decimals: int = 3


_SESSION_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "loom:power_state:charging_session")

READING_COLUMNS = (
    "window_start", "device_id", "recorded_at", "source_topic", "source_partition", "source_offset",
    "message_id", "trace_id", "battery_level", "is_charging", "power_source", "lid_closed", "thermal_state",
)

_TIME = "datetime64[us, UTC]"
ENRICHED_DTYPES: dict[str, str] = {
    "window_start": _TIME,
    "device_id": "str",
    "recorded_at": _TIME,
    "source_topic": "str",
    "source_partition": "Int64",
    "source_offset": "Int64",
    "message_id": "str",
    "trace_id": "str",
    "battery_level": "float64",
    "is_charging": "boolean",
    "power_source": "str",
    "lid_closed": "boolean",
    "thermal_state": "str",
    "power_source_normalised": "str",          # ac_charger | battery | unknown (docs/flows/power_state.md#power-source)
    "on_external_power": "bool",               # what sessions and rate segments follow
    "battery_state": "str",                    # normal | low | critical
    "charging_rate_pct_per_h": "float64",      # signed: + while charging, - while draining
    "power_consumption_rate_pct_per_h": "float64",  # drain (>= 0) on battery, NaN on power
    "time_to_full_min": "float64",
    "time_to_empty_min": "float64",
    "charging_session_id": "str",
    "charging_session_start": _TIME,
    "rate_segment_start": _TIME,               # reading the current rate segment started at
    "rate_segment_start_level": "float64",
}

PATTERN_DTYPES: dict[str, str] = {
    "window_start": _TIME,
    "device_id": "str",
    "pattern_type": "str",   # charging_hour | consumption_period | battery_health | charging_location
    "pattern_key": "str",
    "value": "float64",
    "label": "str",
    "details": "object",     # dict -> jsonb
    "sample_count": "Int64",
}

# Table name -> the DataFrame columns written there (the tables add model_version).
OUTPUT_COLUMNS: dict[str, tuple[str, ...]] = {
    "power_state_enriched": tuple(ENRICHED_DTYPES),
    "power_state_patterns": tuple(PATTERN_DTYPES),
}

# docs/flows/power_state.md#power-source, mobile power_source values; the macOS `pmset` names are
# read the same way.
_SOURCE_NORMALISED = {
    "charging": "ac_charger",
    "full": "ac_charger",
    "connectednotcharging": "ac_charger",
    "ac power": "ac_charger",
    "ac_charger": "ac_charger",
    "discharging": "battery",
    "battery power": "battery",
    "battery": "battery",
}


def power_source_normalised(power_source: Any, is_charging: Any) -> str:
    """docs/flows/power_state.md#power-source: charging/full/connectedNotCharging -> ac_charger,
    discharging -> battery, any other value -> unknown; with no power_source, is_charging
    decides."""
    if isinstance(power_source, str) and power_source.strip():
        return _SOURCE_NORMALISED.get(power_source.strip().lower(), "unknown")
    if is_charging is None or pd.isna(is_charging):
        return "unknown"
    return "ac_charger" if bool(is_charging) else "battery"


def battery_state(level: float, rules: PowerRules) -> str | None:
    """critical at or below 10 %, low at or below 20 %, else normal
    (docs/flows/power_state.md#battery-state)."""
    if level is None or pd.isna(level):
        return None
    if level <= rules.critical_battery_pct:
        return "critical"
    if level <= rules.low_battery_pct:
        return "low"
    return "normal"


# -- enrichment -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _DeviceState:
    at: pd.Timestamp
    level: float
    on_power: bool
    rate: float                     # NaN until the segment is min_rate_interval long
    segment_start: pd.Timestamp
    segment_start_level: float
    session_id: str | None
    session_start: pd.Timestamp


def enrich(readings: pd.DataFrame, carry: pd.DataFrame | None, rules: PowerRules) -> pd.DataFrame:
    """Charging rate (%/h), time to full/empty and charging sessions for one window.

    `carry` is the last enriched row per device from the previous window, so rates and sessions
    continue across window boundaries. Readings are taken per device in event-time order.

    - "On external power" is power_source_normalised == ac_charger, or is_charging when the
      source says unknown. It, not is_charging alone, drives sessions, so a phone sitting "full"
      on the charger stays in one session.
    - Rate segment: consecutive readings with the same on-power state and gaps of at most
      `max_reading_gap`. Its first rate is (level - start level) / elapsed once `min_rate_interval`
      has passed (NaN before); then rate += a * (step rate - rate), a = 1 - exp(-dt / rate_smoothing).
    - time_to_full_min = (100 - level) / rate * 60 on power with rate > 0 (0 at 100 %);
      time_to_empty_min = level / -rate * 60 on battery with rate < 0;
      power_consumption_rate_pct_per_h = max(-rate, 0) on battery.
    - Charging session: starts at the first on-power reading after one on battery (or with no
      state), continues while on power with gaps up to `session_max_gap`.
    - A reading no newer than the device's last one (a duplicate from the second power topic, a
      late arrival) or without a level is enriched from the current state and does not change it.
    """
    readings = with_columns(readings, READING_COLUMNS)
    if readings.empty:
        return typed_frame([], ENRICHED_DTYPES)
    readings = readings.assign(recorded_at=utc(readings["recorded_at"]))
    ordered = readings.sort_values(
        ["device_id", "recorded_at", "source_partition", "source_offset"], kind="stable"
    )
    states = _carried_states(carry)
    rows = []
    for reading in ordered.to_dict("records"):
        normalised = power_source_normalised(reading["power_source"], reading["is_charging"])
        on_power = normalised == "ac_charger" or (normalised == "unknown" and _truthy(reading["is_charging"]))
        state = states.get(reading["device_id"])
        new_state = _next_state(state, reading, on_power, rules)
        if new_state is not None:
            states[reading["device_id"]] = new_state
        shown = new_state or state  # the state this reading is enriched from
        same_power = shown is not None and shown.on_power == on_power
        rate = shown.rate if same_power else math.nan
        level = float_or_nan(reading["battery_level"])
        rows.append({
            **{c: reading[c] for c in READING_COLUMNS},
            "battery_level": level,
            "power_source_normalised": normalised,
            "on_external_power": on_power,
            "battery_state": battery_state(level, rules),
            "charging_rate_pct_per_h": rate,
            "power_consumption_rate_pct_per_h": math.nan if on_power or math.isnan(rate) else max(-rate, 0.0),
            "time_to_full_min": _time_to_full(level, rate) if on_power else math.nan,
            "time_to_empty_min": _time_to_empty(level, rate) if not on_power else math.nan,
            "charging_session_id": shown.session_id if same_power and on_power else None,
            "charging_session_start": shown.session_start if same_power and on_power else pd.NaT,
            "rate_segment_start": shown.segment_start if same_power else pd.NaT,
            "rate_segment_start_level": shown.segment_start_level if same_power else math.nan,
        })
    return typed_frame(rows, ENRICHED_DTYPES)


def _next_state(state: _DeviceState | None, reading: dict, on_power: bool, rules: PowerRules) -> _DeviceState | None:
    """The device state after `reading`; None when the reading must not change it."""
    at, level = reading["recorded_at"], float_or_nan(reading["battery_level"])
    if math.isnan(level) or (state is not None and at <= state.at):
        return None
    gap = at - state.at if state is not None else None

    continues_session = state is not None and state.on_power and on_power and state.session_id is not None \
        and gap <= rules.session_max_gap
    if not on_power:
        session_id, session_start = None, pd.NaT
    elif continues_session:
        session_id, session_start = state.session_id, state.session_start
    else:
        session_id = str(uuid.uuid5(_SESSION_NAMESPACE, f"{reading['device_id']}|{iso(at)}"))
        session_start = at

    continues_segment = state is not None and state.on_power == on_power and gap <= rules.max_reading_gap \
        and not math.isnan(state.level)
    if not continues_segment:
        return _DeviceState(at, level, on_power, math.nan, at, level, session_id, session_start)

    if math.isnan(state.rate):
        elapsed = at - state.segment_start
        rate = (level - state.segment_start_level) / _hours(elapsed) if elapsed >= rules.min_rate_interval else math.nan
    else:
        step_rate = (level - state.level) / _hours(gap)
        alpha = 1.0 - math.exp(-(gap / rules.rate_smoothing))
        rate = state.rate + alpha * (step_rate - state.rate)
    return replace(state, at=at, level=level, rate=rate, session_id=session_id, session_start=session_start)


def _time_to_full(level: float, rate: float) -> float:
    if level >= 100:
        return 0.0
    return (100.0 - level) / rate * 60.0 if rate > 0 else math.nan


def _time_to_empty(level: float, rate: float) -> float:
    return level / -rate * 60.0 if rate < 0 else math.nan


def _carried_states(carry: pd.DataFrame | None) -> dict[str, _DeviceState]:
    if carry is None or carry.empty:
        return {}
    needed = ("device_id", "recorded_at", "battery_level", "on_external_power", "is_charging",
              "charging_rate_pct_per_h", "rate_segment_start", "rate_segment_start_level",
              "charging_session_id", "charging_session_start")
    carry = with_columns(carry, needed)
    carry = carry.assign(**{c: utc(carry[c]) for c in ("recorded_at", "rate_segment_start", "charging_session_start")})
    carry = carry.sort_values("recorded_at").groupby("device_id").tail(1)
    states = {}
    for row in carry.to_dict("records"):
        on_power = row["on_external_power"]
        on_power = _truthy(row["is_charging"]) if on_power is None or pd.isna(on_power) else bool(on_power)
        session_id = row["charging_session_id"] if isinstance(row["charging_session_id"], str) else None
        segment_start = row["rate_segment_start"] if not pd.isna(row["rate_segment_start"]) else row["recorded_at"]
        segment_level = float_or_nan(row["rate_segment_start_level"])
        states[row["device_id"]] = _DeviceState(
            at=row["recorded_at"],
            level=float_or_nan(row["battery_level"]),
            on_power=on_power,
            rate=float_or_nan(row["charging_rate_pct_per_h"]),
            segment_start=segment_start,
            segment_start_level=float_or_nan(row["battery_level"]) if math.isnan(segment_level) else segment_level,
            session_id=session_id,
            session_start=row["charging_session_start"],
        )
    return states


# -- patterns ---------------------------------------------------------------------------------------
def patterns(
    enriched_history: pd.DataFrame,
    window_start: pd.Timestamp,
    window_end: pd.Timestamp,
    rules: PowerRules,
    locations: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Power patterns per device from the enriched rows of [window_end - pattern_lookback, window_end).

    One row per (device_id, pattern_type, pattern_key):
    - charging_hour, key "HH": share of charging-session starts in that local hour of day;
      label "most_common" for the top hour(s).
    - consumption_period, key "HH": mean drain (%/h) in that hour of day, label high | normal | low
      against the median of the device's hours (factors in PowerRules).
    - battery_health, key "cycles_per_day": full-charge equivalents per day observed (sum of
      level drops on battery / 100 / days with readings), label heavy | normal; key
      "discharge_rate_trend": slope of the daily median drain (%/h per day), label degrading | stable.
    - charging_location, key "lat,lon": share of charging starts at the nearest GPS fix rounded to
      ~100 m; only when `locations` (device_id, recorded_at, latitude, longitude) has fixes.
    """
    window_start, window_end = _ts(window_start), _ts(window_end)
    lookback_start = window_end - rules.pattern_lookback
    history = with_columns(enriched_history, tuple(ENRICHED_DTYPES))
    rows: list[dict] = []
    if not history.empty:
        history = history.assign(
            recorded_at=utc(history["recorded_at"]),
            charging_session_start=utc(history["charging_session_start"]),
        )
        history = history[(history["recorded_at"] >= lookback_start) & (history["recorded_at"] < window_end)]
        fixes = _fixes(locations)
        for device_id, device_rows in history.groupby("device_id", sort=True):
            device_rows = device_rows.sort_values("recorded_at")
            starts = _charging_starts(device_rows, lookback_start, window_end)
            device_patterns = [
                *_charging_hours(starts, rules),
                *_consumption_periods(device_rows, rules),
                *_battery_health(device_rows, rules),
                *_charging_locations(starts, fixes[fixes["device_id"] == device_id], rules),
            ]
            rows += [{"window_start": window_start, "device_id": device_id, **p} for p in device_patterns]
    return typed_frame(rows, PATTERN_DTYPES)


def _pattern(pattern_type: str, key: str, value: float, label: str | None, details: dict, count: int) -> dict:
    return {"pattern_type": pattern_type, "pattern_key": key, "value": float(value), "label": label,
            "details": details, "sample_count": int(count)}


def _charging_starts(rows: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
    """Start times of the charging sessions that began inside [start, end)."""
    sessions = rows.dropna(subset=["charging_session_id"]).drop_duplicates("charging_session_id")
    starts = sessions["charging_session_start"].dropna()
    return starts[(starts >= start) & (starts < end)].sort_values()


def _local_hours(times: pd.Series, rules: PowerRules) -> pd.Series:
    return times.dt.tz_convert(rules.local_timezone).dt.hour


def _charging_hours(starts: pd.Series, rules: PowerRules) -> list[dict]:
    if starts.empty:
        return []
    counts = _local_hours(starts, rules).value_counts().sort_index()
    total, top = int(counts.sum()), int(counts.max())
    return [
        _pattern("charging_hour", f"{hour:02d}", n / total, "most_common" if n == top else None,
                 {"sessions": total}, n)
        for hour, n in counts.items()
    ]


def _consumption_periods(rows: pd.DataFrame, rules: PowerRules) -> list[dict]:
    draining = rows[~rows["on_external_power"].astype(bool)].dropna(subset=["power_consumption_rate_pct_per_h"])
    if draining.empty:
        return []
    by_hour = draining.groupby(_local_hours(draining["recorded_at"], rules))["power_consumption_rate_pct_per_h"]
    stats = by_hour.agg(["mean", "count"])
    stats = stats[stats["count"] >= rules.consumption_min_samples]
    if stats.empty:
        return []
    median = float(stats["mean"].median())
    out = []
    for hour, (mean, count) in stats.iterrows():
        if mean > rules.consumption_high_factor * median:
            label = "high"
        elif mean < rules.consumption_low_factor * median:
            label = "low"
        else:
            label = "normal"
        out.append(_pattern("consumption_period", f"{int(hour):02d}", mean, label,
                            {"device_median_pct_per_h": median}, count))
    return out


def _battery_health(rows: pd.DataFrame, rules: PowerRules) -> list[dict]:
    out = []
    on_battery = ~rows["on_external_power"].astype(bool)
    level, at = rows["battery_level"].astype(float), rows["recorded_at"]
    # Level drops between consecutive readings that are both on battery and close enough.
    steps = pd.DataFrame({
        "drop": -(level.diff()),
        "valid": on_battery & on_battery.shift(1, fill_value=False) & (at.diff() <= rules.max_reading_gap),
    })
    drops = steps.loc[steps["valid"] & (steps["drop"] > 0), "drop"]
    days = int(at.dt.tz_convert(rules.local_timezone).dt.date.nunique())
    if days and steps["valid"].any():
        cycles = float(drops.sum()) / 100.0 / days
        out.append(_pattern("battery_health", "cycles_per_day", cycles,
                            "heavy" if cycles > rules.heavy_cycles_per_day else "normal",
                            {"discharged_pct": float(drops.sum()), "days": days}, int(steps["valid"].sum())))

    draining = rows[on_battery].dropna(subset=["power_consumption_rate_pct_per_h"])
    daily = draining.groupby(draining["recorded_at"].dt.tz_convert(rules.local_timezone).dt.date)[
        "power_consumption_rate_pct_per_h"].median()
    if len(daily) >= rules.health_min_days:
        day_numbers = np.array([(d - daily.index[0]).days for d in daily.index], dtype=float)
        slope = float(np.polyfit(day_numbers, daily.to_numpy(dtype=float), 1)[0])
        mean = float(daily.mean())
        relative = slope / mean if mean > 0 else 0.0
        out.append(_pattern("battery_health", "discharge_rate_trend", slope,
                            "degrading" if relative > rules.degrading_relative_slope else "stable",
                            {"relative_slope_per_day": relative,
                             "daily_median_pct_per_h": {d.isoformat(): float(v) for d, v in daily.items()}},
                            len(daily)))
    return out


def _charging_locations(starts: pd.Series, fixes: pd.DataFrame, rules: PowerRules) -> list[dict]:
    if starts.empty or fixes.empty:
        return []
    matched = pd.merge_asof(
        utc(starts).rename("recorded_at").reset_index(drop=True).to_frame(),
        fixes[["recorded_at", "latitude", "longitude"]],
        on="recorded_at", direction="nearest", tolerance=rules.location_tolerance,
    ).dropna(subset=["latitude", "longitude"])
    if matched.empty:
        return []
    decimals = rules.location_decimals
    places = matched.round({"latitude": decimals, "longitude": decimals})
    counts = places.groupby(["latitude", "longitude"]).size().sort_index()
    total, top = int(counts.sum()), int(counts.max())
    return [
        _pattern("charging_location", f"{lat:.{decimals}f},{lon:.{decimals}f}", n / total,
                 "most_common" if n == top else None,
                 {"latitude": float(lat), "longitude": float(lon), "sessions": total}, n)
        for (lat, lon), n in counts.items()
    ]


def _fixes(locations: pd.DataFrame | None) -> pd.DataFrame:
    fixes = with_columns(locations, ("device_id", "recorded_at", "latitude", "longitude"))
    fixes = fixes[["device_id", "recorded_at", "latitude", "longitude"]].dropna()
    return fixes.assign(recorded_at=utc(fixes["recorded_at"])).sort_values("recorded_at")


# -- small helpers (shared ones live in loom_assets.stages.frames) ----------------------------------
def _ts(value: Any) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _hours(delta: pd.Timedelta) -> float:
    return delta / pd.Timedelta(hours=1)


def _truthy(value: Any) -> bool:
    return False if value is None or pd.isna(value) else bool(value)
