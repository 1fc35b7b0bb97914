"""Location and motion flows end to end: Loom-v2 GPS and accelerometer messages on a real broker
→ `loom process` → rows in every table, traceable to their offsets; re-runs change nothing;
network readings find the real fixes."""

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg
import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, TopicPartition
from dagster import AssetKey, DagsterInstance

from loom_assets.cli import main

from tests.integration.test_spine import flat, invoke, nested, produce, table

pytestmark = pytest.mark.integration

HOME = (37.7599, -122.4148)
COFFEE = (37.7630, -122.4148)  # ~345 m north
GPS, ACCEL = "device.sensor.gps.raw", "device.sensor.accelerometer.raw"
G = 9.80665


def north(lat: float, metres: float) -> float:
    return lat + math.degrees(metres / 6_371_000.0)


def gps_trace(start: datetime) -> list[tuple[datetime, float, float, float]]:
    """(time, lat, lon, speed): 10 min at home, a 4-min walk north, 8 min at the coffee shop,
    then walking on. A fix every 10 s (docs/messages.md#sampling-rates)."""
    fixes, t = [], start
    rng = np.random.default_rng(1)
    for _ in range(60):  # home
        fixes.append((t, north(HOME[0], rng.normal(0, 4)), HOME[1], 0.0)); t += timedelta(seconds=10)
    for i in range(24):  # walk ~1.45 m/s
        fixes.append((t, north(HOME[0], 14.5 * (i + 1)), HOME[1], 1.45)); t += timedelta(seconds=10)
    for _ in range(48):  # coffee
        fixes.append((t, north(COFFEE[0], rng.normal(0, 4)), COFFEE[1], 0.0)); t += timedelta(seconds=10)
    for i in range(12):  # away
        fixes.append((t, north(COFFEE[0], 14.5 * (i + 1)), COFFEE[1], 1.45)); t += timedelta(seconds=10)
    return fixes


def accelerometer(start: datetime, seconds: float = 90.0, rate_hz: float = 50.0):
    """30 s still on a table, then a walk: a heel-strike gait at 1.8 steps/s, phone in a pocket."""
    rng = np.random.default_rng(2)
    t = np.arange(0, seconds, 1 / rate_hz)
    walking = t >= 30
    vertical = np.where(walking, 3.0 * np.maximum(np.sin(2 * np.pi * 1.8 * t), 0) ** 3
                        + 1.2 * np.sin(2 * np.pi * 1.8 * t), 0.0)
    lateral = np.where(walking, 0.8 * np.sin(np.pi * 1.8 * t), 0.0)
    x = lateral + rng.normal(0, 0.03, t.size)
    y = rng.normal(0, 0.03, t.size)
    z = G + vertical + rng.normal(0, 0.03, t.size)
    return [(start + timedelta(seconds=float(s)), float(a), float(b), float(c)) for s, a, b, c in zip(t, x, y, z)]


def messages(now: datetime) -> list[tuple[str, bytes]]:
    start = now - timedelta(minutes=30)
    out = [(GPS, flat(at, latitude=lat, longitude=lon, accuracy=8.0, speed=speed, altitude=20.0))
           for at, lat, lon, speed in gps_trace(start)]
    # The unified route's nested envelope for a few fixes too (docs/messages.md#unified-envelope);
    # `bearing` is `heading`.
    out.append((GPS, nested(start + timedelta(seconds=5), "gps", latitude=HOME[0], longitude=HOME[1],
                            accuracy=6.0, bearing=90.0)))
    # A Wi-Fi reading 3 s after the 101st fix, for the network flow's correlation.
    out.append(("device.network.wifi.raw", flat(start + timedelta(seconds=1003), ssid="Blue Bottle Guest",
                                                signal_strength=-61, frequency=5180.0, security="open",
                                                connected=True)))
    walk_start = start + timedelta(minutes=10) - timedelta(seconds=30)
    out += [(ACCEL, flat(at, x=x, y=y, z=z)) for at, x, y, z in accelerometer(walk_start)]
    # Bad records: they become error rows with their bytes kept, and the windows still complete.
    out += [(GPS, flat(start, latitude=95.0, longitude=0.0)), (ACCEL, flat(start, x="fast", y=0, z=9.8)),
            (ACCEL, b'{"device_id": "3f2504e0-4f89-41d3-9a0c-0305e82c3301", "x": 1,')]
    return out


@pytest.fixture
def processed(loom_env):
    invoke("regions", "add", "Home", "--type", "home", "--lat", str(HOME[0]), "--lon", str(HOME[1]),
           "--radius", "60")
    produce(loom_env["bootstrap"], messages(datetime.now(UTC)))
    invoke("process", "--through-now")
    return loom_env


def test_gps_and_accelerometer_fill_every_table_traceably(processed):
    url = processed["database_url"]
    fixes = table(url, "location_raw")
    assert len(fixes) == 145
    samples = table(url, "motion_raw")
    assert len(samples) == 90 * 50
    errors = table(url, "processing_errors", order="source_topic, source_offset")
    assert errors.groupby("flow")["error_type"].apply(sorted).to_dict() == {
        "location": ["validation_error"], "motion": ["malformed_json", "validation_error"]}
    assert any(bytes(value).endswith(b'"x": 1,') for value in errors["original_value"])

    # Every raw row is the record at its partition/offset (checked for a sample of rows).
    consumer = Consumer({"bootstrap.servers": processed["bootstrap"], "group.id": "trace-check",
                         "enable.auto.commit": False})
    try:
        for row in pd.concat([fixes.sample(5, random_state=0), samples.sample(5, random_state=0)]).itertuples():
            consumer.assign([TopicPartition(row.source_topic, row.source_partition, row.source_offset)])
            record = consumer.poll(10)
            assert record is not None and record.offset() == row.source_offset
            assert row.device_id.encode() in record.value()
    finally:
        consumer.close()

    events = table(url, "location_georegions", order="recorded_at, event_type")
    kinds = events["event_type"].tolist()
    assert kinds[0] == "enter" and "exit" in kinds
    exit_row = events[events["event_type"] == "exit"].iloc[0]
    assert exit_row["region_name"] == "Home"
    assert 9 * 60 <= exit_row["dwell_time_seconds"] <= 12 * 60
    assert set(events["source_topic"]) == {GPS}
    traced = fixes.set_index(["source_partition", "source_offset"])
    for row in events.itertuples():
        assert traced.loc[(row.source_partition, row.source_offset), "recorded_at"] == row.recorded_at

    geocoded = table(url, "location_geocoded", order="recorded_at")
    assert len(geocoded) >= 2  # home, then ≥ 100 m on
    assert geocoded["city"].iloc[0] == "San Francisco"
    assert geocoded["provider"].eq("offline-geonames").all()
    assert geocoded["timezone"].eq("America/Los_Angeles").all()

    visits = table(url, "location_places", order="arrived_at")
    assert len(visits) == 2  # home and the coffee shop; the walk is no stay
    home, coffee = visits.iloc[0], visits.iloc[1]
    assert home["place_source"] == "georegion" and home["place_name"] == "Home"
    assert 9 * 60 <= home["duration_seconds"] <= 11 * 60
    assert coffee["place_source"] == "geocoded" and coffee["visit_count_30d"] == 1
    # 8 min there, plus the approach: a stay counts from the first fix within its 100 m radius.
    assert 8 * 60 <= coffee["duration_seconds"] <= 10 * 60

    windows = table(url, "motion_windows", order="recorded_at")
    assert 18 <= len(windows) <= 23  # 90 s of 5 s windows every 4 s
    # Windows that begin before the first sample are sparse (a hole > 0.5 s): no features.
    features = windows["features"].dropna()
    assert len(features) >= len(windows) - 2
    assert features.map(len).eq(len(features.iloc[0])).all()
    walking = windows[windows["recorded_at"] >= windows["recorded_at"].min() + pd.Timedelta(seconds=36)]
    assert walking["step_count"].sum() == pytest.approx(1.8 * 50, rel=0.15)  # ~50 s of walk at 1.8 steps/s
    assert walking["peak_frequency_hz"].median() == pytest.approx(1.8, abs=0.2)

    motion = table(url, "motion_significant_motion", order="start_time")
    assert len(motion) >= 1
    assert motion["start_time"].min() >= windows["recorded_at"].min() + pd.Timedelta(seconds=29)

    activities = table(url, "motion_activities", order="recorded_at")
    assert len(activities) == len(windows)
    with_features = activities[windows["features"].notna().to_numpy()]
    still = with_features[with_features["recorded_at"] < windows["recorded_at"].min() + pd.Timedelta(seconds=25)]
    assert len(still) >= 5 and still["activity"].eq("still").all()
    # A sparse window has no features, so no classifier opinion: unknown.
    assert activities[windows["features"].isna().to_numpy()]["activity"].eq("unknown").all()
    assert activities["model_version"].str.contains(r"^1\+activity-1-[0-9a-f]{12}-rules1$").all()
    # The walk's windows see the GPS speed of the walking fixes.
    assert activities["gps_speed_mps"].dropna().between(1.0, 2.0).any()


def test_rerunning_windows_changes_nothing(processed):
    url = processed["database_url"]
    tables = ["location_raw", "location_georegions", "location_geocoded", "location_places",
              "motion_raw", "motion_windows", "motion_significant_motion", "motion_activities"]
    # `cached` says whether the address came from the cache: on a re-run it does.
    volatile = ["ingested_at", "processed_at", "cached"]
    order = {t: "device_id, recorded_at" for t in tables}
    before = {t: table(url, t, order=order[t]).drop(columns=volatile, errors="ignore") for t in tables}

    from loom_assets import definitions
    from loom_assets.windows import partition_key

    for flow in (definitions.flow_named("location"), definitions.flow_named("motion")):
        job = definitions.defs.resolve_job_def(flow.job.name)
        with psycopg.connect(url) as conn:
            windows = [w for (w,) in conn.execute(
                "SELECT DISTINCT window_start FROM loom_offset_log WHERE flow = %s AND end_offset > start_offset",
                (flow.name,))]
        assert windows
        for w in windows:
            assert job.execute_in_process(partition_key=partition_key(w), instance=DagsterInstance.get()).success
    for t in tables:
        after = table(url, t, order=order[t]).drop(columns=volatile, errors="ignore")
        pd.testing.assert_frame_equal(before[t], after, check_dtype=False, obj=t)


def test_network_readings_are_correlated_with_real_fixes(processed):
    """The network flow's location_correlated stage finds the location flow's fixes by event time."""
    url = processed["database_url"]
    fixes = table(url, "location_raw", order="recorded_at")
    reading = table(url, "network_events_raw").iloc[0]
    correlated = table(url, "network_events_location_correlated")
    assert len(correlated) == 1
    row = correlated.iloc[0]
    nearest = fixes.iloc[(fixes["recorded_at"] - reading["recorded_at"]).abs().argmin()]
    assert (row["latitude"], row["longitude"]) == (nearest["latitude"], nearest["longitude"])
    assert row["fix_recorded_at"] == nearest["recorded_at"]
    assert abs(row["fix_offset_seconds"]) <= 5


def test_activities_rerun_when_their_gps_lands_after_them(loom_env):
    """Motion windows (5 min) run before the GPS of their time lands (15 min windows): the
    sensor then asks for a ranged run of just the activities, which now see the GPS speed."""
    from dagster import build_sensor_context

    from loom_assets import definitions

    produce(loom_env["bootstrap"], messages(datetime.now(UTC)))
    invoke("process", "--through-now", "--flow", "motion")
    url = loom_env["database_url"]
    assert table(url, "motion_activities", order="recorded_at")["gps_speed_mps"].isna().all()

    sensor = next(s for s in definitions.defs.sensors if s.name == "motion_activities_after_location")
    instance = DagsterInstance.get()
    assert not sensor.evaluate_tick(build_sensor_context(instance=instance, resources=definitions.resources())).run_requests
    invoke("process", "--through-now", "--flow", "location")

    tick = sensor.evaluate_tick(build_sensor_context(instance=instance, resources=definitions.resources()))
    [request] = tick.run_requests
    assert request.asset_selection == [AssetKey(["motion", "activities"])]
    # Asked again until it has run, under the same run key: Dagster launches it once.
    assert [r.run_key for r in sensor.evaluate_tick(build_sensor_context(instance=instance, resources=definitions.resources())).run_requests] == [
        request.run_key]

    job = definitions.defs.resolve_job_def("motion_job")
    assert job.get_subset(asset_selection=set(request.asset_selection)).execute_in_process(
        instance=instance, tags=request.tags).success
    walking = table(url, "motion_activities", order="recorded_at")["gps_speed_mps"].dropna()
    assert len(walking) > 0 and walking.between(1.0, 2.0).any()
    assert not sensor.evaluate_tick(build_sensor_context(instance=instance, resources=definitions.resources())).run_requests


def test_activities_rerun_when_their_gps_lands_while_they_read_it(loom_env, monkeypatch):
    """The race a comparison of times misses: the activities read the GPS table just before the
    location window commits, and write their rows after it. The activities window's snapshot
    does not see that landing, so the sensor runs it again."""
    from dagster import build_sensor_context

    from loom_assets import definitions
    from loom_assets.flows import motion as motion_flow

    produce(loom_env["bootstrap"], messages(datetime.now(UTC)))
    classify = motion_flow.activity.activities
    landed = []

    def land_gps_meanwhile(*args, **kwargs):
        # The fixes are read; the location window lands and commits before the rows are written.
        if not landed:
            landed.append(invoke("process", "--through-now", "--flow", "location"))
        return classify(*args, **kwargs)

    monkeypatch.setattr(motion_flow.activity, "activities", land_gps_meanwhile)
    invoke("process", "--through-now", "--flow", "motion")
    monkeypatch.setattr(motion_flow.activity, "activities", classify)
    url = loom_env["database_url"]
    assert landed and not table(url, "location_raw").empty
    assert table(url, "motion_activities", order="recorded_at")["gps_speed_mps"].isna().all()

    instance = DagsterInstance.get()
    sensor = next(s for s in definitions.defs.sensors if s.name == "motion_activities_after_location")
    [request] = sensor.evaluate_tick(build_sensor_context(instance=instance, resources=definitions.resources())).run_requests
    job = definitions.defs.resolve_job_def("motion_job")
    assert job.get_subset(asset_selection=set(request.asset_selection)).execute_in_process(
        instance=instance, tags=request.tags).success
    assert table(url, "motion_activities", order="recorded_at")["gps_speed_mps"].dropna().between(1.0, 2.0).any()
    assert not sensor.evaluate_tick(build_sensor_context(instance=instance, resources=definitions.resources())).run_requests


def test_a_new_region_reaches_past_windows_through_reprocess_stage(processed):
    """Regions are data, not code: after adding one, `loom reprocess --stage` re-runs the stages
    that read them over past windows."""
    url = processed["database_url"]
    assert "Coffee" not in set(table(url, "location_georegions", order="recorded_at")["region_name"])
    invoke("regions", "add", "Coffee", "--lat", str(COFFEE[0]), "--lon", str(COFFEE[1]), "--radius", "50")
    since = (datetime.now(UTC) - timedelta(hours=2)).isoformat()

    output = invoke("reprocess", "--flow", "location", "--since", since, "--stage", "georegions", "--stage", "places")
    assert "stale windows" in output
    events = table(url, "location_georegions", order="recorded_at")
    assert events[events["region_name"] == "Coffee"]["event_type"].iloc[0] == "enter"
    coffee = table(url, "location_places", order="arrived_at").iloc[1]
    assert coffee["place_source"] == "georegion" and coffee["place_name"] == "Coffee"

    unknown = CliRunner().invoke(main, ["reprocess", "--flow", "location", "--since", since, "--stage", "nope"])
    assert unknown.exit_code == 1 and "location has no stage nope" in unknown.output
