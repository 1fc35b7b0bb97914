import math

import numpy as np
import pandas as pd
import pytest

from loom_assets.stages.power_state import (
    ENRICHED_DTYPES,
    OUTPUT_COLUMNS,
    PATTERN_DTYPES,
    PowerRules,
    battery_state,
    enrich,
    patterns,
    power_source_normalised,
)

RULES = PowerRules()
T0 = pd.Timestamp("2025-03-03 10:00", tz="UTC")


def readings(levels, start=T0, step_s=10.0, charging=True, source="charging", window_start=None, device="phone-1",
             **extra) -> pd.DataFrame:
    """One reading every `step_s` seconds from `start` with these battery levels."""
    rows = []
    for i, level in enumerate(levels):
        rows.append({
            "window_start": window_start or start, "device_id": device,
            "recorded_at": start + pd.Timedelta(seconds=step_s * i), "received_at": pd.NaT,
            "schema_version": "1.0", "message_id": f"{device}-{start:%H%M%S}-{i}", "trace_id": None,
            "source_topic": "device.sensor.power.raw", "source_partition": 0, "source_offset": i,
            "ingested_at": start, "metadata": None, "battery_level": float(level), "is_charging": charging,
            "power_source": source, "lid_closed": None, "thermal_state": "nominal", **extra,
        })
    return pd.DataFrame(rows)


def linear(start_level, pct_per_h, minutes, step_s=10.0):
    n = int(minutes * 60 / step_s) + 1
    return [start_level + pct_per_h * (i * step_s / 3600) for i in range(n)]


# -- single-reading rules -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("level", "expected"),
    [(100.0, "normal"), (20.01, "normal"), (20.0, "low"), (10.01, "low"), (10.0, "critical"), (0.0, "critical"),
     (float("nan"), None)],
)
def test_battery_state_thresholds_include_the_threshold(level, expected):
    assert battery_state(level, RULES) == expected


@pytest.mark.parametrize(
    ("power_source", "is_charging", "expected"),
    [
        ("charging", False, "ac_charger"),
        ("full", False, "ac_charger"),
        ("connectedNotCharging", False, "ac_charger"),
        ("discharging", True, "battery"),
        ("wireless", True, "unknown"),     # docs/flows/power_state.md#power-source: anything else is unknown
        (None, True, "ac_charger"),        # missing source: is_charging decides
        (None, False, "battery"),
        ("", False, "battery"),
        (None, None, "unknown"),
    ],
)
def test_power_source_normalised(power_source, is_charging, expected):
    assert power_source_normalised(power_source, is_charging) == expected


# -- rates ----------------------------------------------------------------------------------------
def test_steady_charge_gives_its_rate_and_time_to_full():
    out = enrich(readings(linear(50, 60, 15)), None, RULES)  # 50 % -> 65 % at 60 %/h
    before = out[out["recorded_at"] < T0 + RULES.min_rate_interval]
    assert before["charging_rate_pct_per_h"].isna().all()     # no rate from < 10 min of readings
    last = out.iloc[-1]
    assert last["charging_rate_pct_per_h"] == pytest.approx(60.0)
    assert last["time_to_full_min"] == pytest.approx(35.0)   # 35 % left at 1 %/min
    assert math.isnan(last["time_to_empty_min"])
    assert math.isnan(last["power_consumption_rate_pct_per_h"])


def test_steady_drain_gives_time_to_empty_and_consumption():
    out = enrich(readings(linear(50, -10, 60), charging=False, source="discharging"), None, RULES)
    last = out.iloc[-1]
    assert last["charging_rate_pct_per_h"] == pytest.approx(-10.0)
    assert last["power_consumption_rate_pct_per_h"] == pytest.approx(10.0)
    assert last["time_to_empty_min"] == pytest.approx(40 / 10 * 60)
    assert math.isnan(last["time_to_full_min"])
    assert pd.isna(last["charging_session_id"])


def test_whole_percent_steps_are_smoothed():
    levels = np.floor(linear(80, -8, 180))  # what a phone reports: whole percents
    rates = enrich(readings(levels, charging=False, source=None), None, RULES)["charging_rate_pct_per_h"]
    settled = rates.iloc[len(rates) // 3:]
    assert settled.between(-11, -5.5).all()   # never the 0 or -360 %/h of single steps
    assert settled.mean() == pytest.approx(-8.0, abs=0.5)


def test_full_on_the_charger_has_zero_time_to_full():
    out = enrich(readings([100.0] * 70, charging=False, source="full"), None, RULES)
    assert (out["time_to_full_min"] == 0).all()
    assert out["charging_session_id"].nunique() == 1   # "full" is still on the charger


def test_the_rate_restarts_when_the_charger_is_unplugged():
    plugged = readings(linear(50, 60, 20))
    unplugged = readings(linear(70, -10, 5), start=T0 + pd.Timedelta(minutes=20, seconds=10), charging=False,
                         source="discharging")
    out = enrich(pd.concat([plugged, unplugged]), None, RULES)
    after = out[out["recorded_at"] > T0 + pd.Timedelta(minutes=20)]
    assert after["charging_rate_pct_per_h"].isna().all()
    assert after["charging_session_id"].isna().all()
    assert (after["rate_segment_start"] == T0 + pd.Timedelta(minutes=20, seconds=10)).all()


def test_a_gap_longer_than_the_maximum_restarts_the_rate():
    before = readings(linear(80, -10, 20), charging=False, source=None)
    after = readings([60.0, 59.9], start=T0 + pd.Timedelta(minutes=90), charging=False, source=None)
    out = enrich(pd.concat([before, after]), None, RULES)
    assert out["charging_rate_pct_per_h"].iloc[len(before) - 1] == pytest.approx(-10.0)
    assert out["charging_rate_pct_per_h"].iloc[len(before):].isna().all()


def test_out_of_order_readings_are_sorted_and_a_duplicate_does_not_move_the_rate():
    frame = readings(linear(50, 60, 15))
    shuffled = frame.sample(frac=1.0, random_state=1)
    duplicate = frame.tail(1).assign(source_topic="device.state.power.raw", source_offset=999)
    out = enrich(pd.concat([shuffled, duplicate]), None, RULES)
    assert out["recorded_at"].is_monotonic_increasing
    assert out.iloc[-1]["charging_rate_pct_per_h"] == pytest.approx(60.0)
    assert out.iloc[-2]["charging_rate_pct_per_h"] == pytest.approx(60.0)


# -- across windows ---------------------------------------------------------------------------------
def test_charging_session_and_rate_continue_across_windows():
    first = enrich(readings(linear(50, 60, 14.9)), None, RULES)
    carry = first.tail(1).assign(model_version="1")
    w2 = T0 + pd.Timedelta(minutes=15)
    second = enrich(readings(linear(65, 60, 5), start=w2), carry, RULES)
    assert second["charging_session_id"].unique().tolist() == [first.iloc[0]["charging_session_id"]]
    assert (second["charging_session_start"] == T0).all()
    assert second["charging_rate_pct_per_h"].notna().all()          # no 10-minute warm-up again
    assert second.iloc[-1]["charging_rate_pct_per_h"] == pytest.approx(60.0)


def test_a_rate_warm_up_started_in_the_previous_window_finishes_in_this_one():
    first = enrich(readings(linear(50, 60, 6)), None, RULES)         # 6 min: no rate yet
    assert first["charging_rate_pct_per_h"].isna().all()
    second = enrich(readings(linear(56.1, 60, 6), start=T0 + pd.Timedelta(minutes=6, seconds=6)), first.tail(1), RULES)
    ready = second[second["recorded_at"] >= T0 + RULES.min_rate_interval]
    assert ready["charging_rate_pct_per_h"].notna().all()
    assert ready.iloc[0]["charging_rate_pct_per_h"] == pytest.approx(60.0, rel=0.02)


def test_a_new_charge_after_unplugging_is_a_new_session():
    first = readings(linear(50, 60, 5))
    off = readings([55.0], start=T0 + pd.Timedelta(minutes=6), charging=False, source="discharging")
    again = readings([55.0, 55.1], start=T0 + pd.Timedelta(minutes=7))
    out = enrich(pd.concat([first, off, again]), None, RULES)
    ids = out["charging_session_id"].dropna().unique()
    assert len(ids) == 2


@pytest.mark.parametrize(("gap_minutes", "same_session"), [(119, True), (121, False)])
def test_a_charging_session_survives_a_gap_up_to_two_hours(gap_minutes, same_session):
    first = enrich(readings([40.0]), None, RULES)
    second = enrich(readings([70.0], start=T0 + pd.Timedelta(minutes=gap_minutes)), first, RULES)
    assert (second.iloc[0]["charging_session_id"] == first.iloc[0]["charging_session_id"]) is same_session


def test_a_late_reading_older_than_the_carry_does_not_change_state():
    first = enrich(readings(linear(50, 60, 15)), None, RULES)
    late = readings([51.0], start=T0 + pd.Timedelta(minutes=1), window_start=T0 + pd.Timedelta(minutes=15))
    fresh = readings([50 + 60 * 910 / 3600], start=T0 + pd.Timedelta(minutes=15, seconds=10))
    out = enrich(pd.concat([late, fresh]), first.tail(1), RULES)
    assert out.iloc[1]["charging_rate_pct_per_h"] == pytest.approx(60.0, rel=0.01)
    assert out.iloc[0]["charging_session_id"] == first.iloc[0]["charging_session_id"]


def test_missing_power_source_uses_is_charging():
    out = enrich(readings(linear(30, 30, 12), source=None), None, RULES)
    assert (out["power_source_normalised"] == "ac_charger").all()
    assert out["on_external_power"].all()
    assert out.iloc[-1]["time_to_full_min"] == pytest.approx((100 - 36) / 30 * 60)


def test_devices_are_kept_apart():
    a = readings(linear(50, 60, 12), device="a")
    b = readings(linear(50, -12, 12), device="b", charging=False, source="discharging")
    out = enrich(pd.concat([a, b]), None, RULES)
    last = out.groupby("device_id").tail(1).set_index("device_id")["charging_rate_pct_per_h"]
    assert last["a"] == pytest.approx(60.0) and last["b"] == pytest.approx(-12.0)


@pytest.mark.parametrize("frame", [pd.DataFrame(), readings([])])
def test_empty_readings_give_the_output_columns(frame):
    out = enrich(frame, pd.DataFrame(), RULES)
    assert out.empty
    assert list(out.columns) == list(OUTPUT_COLUMNS["power_state_enriched"])
    assert out.dtypes.astype(str).to_dict() == {c: str(pd.Series(dtype=t).dtype) for c, t in ENRICHED_DTYPES.items()}


# -- patterns ---------------------------------------------------------------------------------------
WINDOW_END = pd.Timestamp("2025-03-08 00:00", tz="UTC")


def history_rows(device="phone-1"):
    """Four days: charging starts at 07:00 (x3) and 22:00 (x1); drain 20 %/h at 12:00, 5 %/h otherwise."""
    rows = []
    for day in range(4):
        base = pd.Timestamp("2025-03-04", tz="UTC") + pd.Timedelta(days=day)
        for hour in range(24):
            for minute in range(0, 60, 1):
                t = base + pd.Timedelta(hours=hour, minutes=minute)
                charging = hour == 7 or (day == 0 and hour == 22)
                if charging:
                    start = base + pd.Timedelta(hours=hour)
                    rows.append({"device_id": device, "recorded_at": t, "battery_level": 50.0,
                                 "on_external_power": True, "charging_session_id": f"{device}-{start}",
                                 "charging_session_start": start, "power_consumption_rate_pct_per_h": math.nan})
                else:
                    drain = (20.0 if hour == 12 else 5.0) * (1 + 0.1 * day)
                    level = 90.0 - (minute % 30) * drain / 60
                    rows.append({"device_id": device, "recorded_at": t, "battery_level": level,
                                 "on_external_power": False, "charging_session_id": None,
                                 "charging_session_start": pd.NaT, "power_consumption_rate_pct_per_h": drain})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def found():
    fixes = pd.DataFrame({
        "device_id": ["phone-1"] * 3,
        "recorded_at": [pd.Timestamp("2025-03-04 07:03", tz="UTC"), pd.Timestamp("2025-03-05 06:55", tz="UTC"),
                        pd.Timestamp("2025-03-04 22:05", tz="UTC")],
        "latitude": [36.16231, 36.16209, 40.0],
        "longitude": [-86.78102, -86.78088, -75.0],
    })
    return patterns(history_rows(), WINDOW_END - pd.Timedelta(minutes=15), WINDOW_END, RULES, locations=fixes)


def rows_of(found, pattern_type):
    return found[found["pattern_type"] == pattern_type].set_index("pattern_key")


def test_charging_hours_are_shares_of_session_starts(found):
    hours = rows_of(found, "charging_hour")
    assert hours.loc["07", "value"] == pytest.approx(0.8)   # 4 of 5 starts
    assert hours.loc["07", "sample_count"] == 4
    assert hours.loc["07", "label"] == "most_common"
    assert hours.loc["22", "value"] == pytest.approx(0.2)
    assert pd.isna(hours.loc["22", "label"])
    assert set(hours.index) == {"07", "22"}


def test_consumption_periods_are_labelled_against_the_device_median(found):
    periods = rows_of(found, "consumption_period")
    assert periods.loc["12", "label"] == "high"
    assert periods.loc["03", "label"] == "normal"
    assert "07" not in periods.index                         # always charging at 07:00
    assert periods.loc["12", "value"] == pytest.approx(20.0 * 1.15)


def test_battery_health_reports_cycles_and_a_rising_drain(found):
    health = rows_of(found, "battery_health")
    assert health.loc["discharge_rate_trend", "label"] == "degrading"  # drain +10 %/day
    assert health.loc["discharge_rate_trend", "sample_count"] == 4
    assert health.loc["cycles_per_day", "value"] > 0
    assert health.loc["cycles_per_day", "details"]["days"] == 4


def test_charging_locations_round_to_about_100_m(found):
    places = rows_of(found, "charging_location")
    assert places.loc["36.162,-86.781", "sample_count"] == 2   # two 07:00 starts, fixes 25 m apart
    assert places.loc["36.162,-86.781", "label"] == "most_common"
    assert places.loc["40.000,-75.000", "sample_count"] == 1
    assert places["sample_count"].sum() == 3                     # the other 07:00 starts had no fix within 10 min


def test_patterns_without_locations_have_no_charging_location():
    out = patterns(history_rows(), WINDOW_END, WINDOW_END, RULES, locations=pd.DataFrame())
    assert "charging_location" not in set(out["pattern_type"])
    assert (out["window_start"] == WINDOW_END).all()


def test_patterns_ignore_rows_outside_the_lookback():
    old = history_rows().assign(recorded_at=lambda f: f["recorded_at"] - pd.Timedelta(days=30),
                                charging_session_start=lambda f: f["charging_session_start"] - pd.Timedelta(days=30))
    out = patterns(old, WINDOW_END, WINDOW_END, RULES)
    assert out.empty


def test_battery_health_trend_needs_three_days():
    two_days = history_rows()
    two_days = two_days[two_days["recorded_at"] < pd.Timestamp("2025-03-06", tz="UTC")]
    out = patterns(two_days, WINDOW_END, WINDOW_END, RULES)
    assert "discharge_rate_trend" not in set(out["pattern_key"])
    assert "cycles_per_day" in set(out["pattern_key"])


@pytest.mark.parametrize("history", [pd.DataFrame(), history_rows().iloc[:0]])
def test_empty_history_gives_the_pattern_columns(history):
    out = patterns(history, WINDOW_END, WINDOW_END, RULES)
    assert out.empty
    assert list(out.columns) == list(OUTPUT_COLUMNS["power_state_patterns"]) == list(PATTERN_DTYPES)
