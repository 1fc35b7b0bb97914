"""The demo producer: Loom v2 wire formats, time order, rates, battery physics, reproducibility."""

import json
import re
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from loom_assets import demo
from loom_assets.demo import (
    ACCELEROMETER_TOPIC,
    APP_LIFECYCLE_TOPIC,
    DEMO_TOPICS,
    GPS_TOPIC,
    SENSOR_POWER_TOPIC,
    STATE_POWER_TOPIC,
    WIFI_TOPIC,
    DemoMessage,
    demo_devices,
    demo_messages,
    replay,
)

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# pydantic v2 JSON datetimes (docs/messages.md#rest-envelope); like pydantic, no fraction when
# microseconds are 0
DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$")
FLAT_ENVELOPE = ["schema_version", "device_id", "recorded_at", "timestamp", "message_id",
                 "trace_id", "services_encountered"]
PAYLOAD_FIELDS = {  # docs/messages.md#payload-fields, in model order
    APP_LIFECYCLE_TOPIC: ["app_identifier", "app_name", "event_type", "duration_seconds", "metadata"],
    SENSOR_POWER_TOPIC: ["battery_level", "is_charging", "power_source", "lid_closed", "thermal_state"],
    WIFI_TOPIC: ["ssid", "bssid", "signal_strength", "frequency", "channel", "security", "connected",
                 "ip_address"],
    GPS_TOPIC: ["latitude", "longitude", "altitude", "accuracy", "heading", "speed"],
    ACCELEROMETER_TOPIC: ["x", "y", "z"],
}
# The accelerometer alone is ~1 M messages per phone-day: the whole-day tests leave it out and
# it is tested on its own below (minutes at a time, or its sample arrays for a whole day). The
# screenshots and photos come only while the person is up and are tested on their own too.
MEDIA_TOPICS = [demo.SCREENSHOT_TOPIC, demo.CAMERA_TOPIC]
# Speech and the calendar come a few times a day (tests/unit/test_demo_speech_calendar.py).
OCCASIONAL_TOPICS = [demo.AUDIO_TOPIC, demo.CALENDAR_TOPIC]
SLOW_TOPICS = [t for t in DEMO_TOPICS
               if t != ACCELEROMETER_TOPIC and t not in MEDIA_TOPICS and t not in OCCASIONAL_TOPICS]
MOBILE_POWER_SOURCES = {"charging", "discharging", "full", "connectedNotCharging"}
THERMAL = {"nominal", "fair", "serious", "critical"}


def local(hour: float, day: int = 27) -> datetime:
    """A San Francisco wall-clock time on a June weekday, as UTC."""
    return (datetime(2024, 6, day, tzinfo=demo.LOCAL_TZ) + timedelta(hours=hour)).astimezone(timezone.utc)


@pytest.fixture(scope="module")
def day() -> list[DemoMessage]:
    """A whole local day for the default phone + laptop (all topics but the accelerometer)."""
    return list(demo_messages(local(0), 24 * 60, devices=2, seed=0, topics=SLOW_TOPICS))


def bodies(messages, topic, device_id=None):
    return [json.loads(m.value) for m in messages
            if m.topic == topic and (device_id is None or m.key.decode() == device_id)]


def in_window(messages, start, end):
    return [m for m in messages if start <= m.timestamp < end]


# ---- ordering and coverage ----------------------------------------------------------------


def test_messages_are_time_ordered(day):
    assert len(day) > 10_000
    assert all(a.timestamp <= b.timestamp for a, b in zip(day, day[1:]))
    assert all(local(0) <= m.timestamp < local(24) for m in day)


@pytest.mark.parametrize("hour", [3.0, 8.2, 10.0, 14.6, 17.6, 21.0])
def test_every_topic_appears_within_30_minutes(hour):
    messages = list(demo_messages(local(hour), 30, devices=2, seed=1, topics=SLOW_TOPICS))
    assert {m.topic for m in messages} == set(SLOW_TOPICS)
    minute = list(demo_messages(local(hour), 1, devices=2, seed=1))
    assert {m.topic for m in minute} >= {ACCELEROMETER_TOPIC}
    assert all(m.topic in DEMO_TOPICS for m in minute)


def test_topics_can_be_chosen():
    messages = list(demo_messages(local(10), 5, devices=2, seed=0, topics=[GPS_TOPIC, WIFI_TOPIC]))
    assert {m.topic for m in messages} == {GPS_TOPIC, WIFI_TOPIC}
    with pytest.raises(ValueError):
        list(demo_messages(local(10), 5, topics=["device.sensor.nope.raw"]))


def test_naive_start_is_utc():
    naive = datetime(2024, 6, 27, 17, 0)
    aware = naive.replace(tzinfo=timezone.utc)
    assert list(demo_messages(naive, 5, seed=2)) == list(demo_messages(aware, 5, seed=2))


# ---- envelopes ----------------------------------------------------------------------------


def test_device_ids_are_fixed_lowercase_uuids():
    devices = demo_devices(6, seed=0)
    ids = [d.device_id for d in devices]
    assert all(UUID.match(i) for i in ids)
    assert len(set(ids)) == 6
    assert [d.device_id for d in demo_devices(6, seed=0)] == ids
    assert not set(ids) & {d.device_id for d in demo_devices(6, seed=1)}
    assert [d.kind for d in devices] == ["android", "macbook", "iphone", "macbook", "android", "macbook"]


def test_keys_and_headers(day):
    for m in day[:2000]:
        body = json.loads(m.value)
        assert m.key == body["device_id"].encode()
        assert UUID.match(m.key.decode())
        headers = dict(m.headers)
        assert [name for name, _ in m.headers] == ["trace_id", "services_encountered", "producer_service"]
        assert UUID.match(headers["trace_id"].decode())
        assert headers["services_encountered"] == b"ingestion-api,kafka-producer"
        assert headers["producer_service"] == b"ingestion-api"
        assert m.timestamp.tzinfo is not None and m.timestamp.utcoffset() == timedelta(0)


def test_flat_rest_envelope(day):
    assert_flat_rest_envelopes(day)


def assert_flat_rest_envelopes(messages):
    for m in messages:
        if m.topic == STATE_POWER_TOPIC:
            continue
        body = json.loads(m.value.decode("utf-8"))
        assert list(body) == FLAT_ENVELOPE + PAYLOAD_FIELDS[m.topic], m.topic
        assert body["schema_version"] == "1.0"
        assert DATETIME.match(body["recorded_at"]) and DATETIME.match(body["timestamp"])
        recorded = datetime.fromisoformat(body["recorded_at"].replace("Z", "+00:00"))
        received = datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))
        assert recorded == m.timestamp
        assert recorded.microsecond % 1000 == 0  # client clocks report milliseconds
        assert timedelta(0) < received - recorded < timedelta(seconds=1)
        assert UUID.match(body["message_id"]) and UUID.match(body["trace_id"])
        assert body["trace_id"].encode() == dict(m.headers)["trace_id"]
        assert body["services_encountered"] == ["ingestion-api", "kafka-producer"]
        # exactly json.dumps of the dict, as Loom v2's producer writes it
        assert m.value == json.dumps(body).encode()


def test_unified_power_state_envelope(day):
    values = [m for m in day if m.topic == STATE_POWER_TOPIC]
    assert values
    for m in values:
        body = json.loads(m.value)
        assert list(body) == ["schema_version", "device_id", "message_type", "data", "metadata", "timestamp"]
        assert body["schema_version"] == "1.0"
        assert body["message_type"] == "power_state"
        assert body["metadata"] == {} and body["timestamp"] is None
        data = body["data"]
        assert isinstance(data["battery_level"], int)
        assert isinstance(data["is_charging"], bool) and isinstance(data["is_plugged_in"], bool)
        assert isinstance(data["lid_closed"], bool)
        assert data["thermal_state"] in THERMAL
        assert data["power_source"] in MOBILE_POWER_SOURCES
        assert datetime.fromisoformat(data["timestamp"].replace("Z", "+00:00")) == m.timestamp
        if data["is_charging"]:
            assert data["is_plugged_in"]


def test_messages_decode_with_loom_reader(day):
    """Loom's own envelope reader accepts every demo message and finds its event time."""
    from loom_assets.events import decode

    for offset, m in enumerate(day[::7]):
        message = decode(m.topic, m.value, partition=0, offset=offset, headers=dict(m.headers))
        assert message.device_id == m.key.decode()
        assert message.recorded_at == m.timestamp
    for offset, m in enumerate(demo_messages(local(10), 0.5, topics=[ACCELEROMETER_TOPIC])):
        message = decode(m.topic, m.value, partition=0, offset=offset, headers=dict(m.headers))
        assert message.recorded_at == m.timestamp


# ---- payloads -----------------------------------------------------------------------------


def test_app_sessions_are_coherent(day):
    """launch → foreground → background (duration = time in foreground) → maybe terminate."""
    for device in demo_devices(2, seed=0):
        fg: dict[str, datetime] = {}
        events = [(m.timestamp, json.loads(m.value)) for m in day
                  if m.topic == APP_LIFECYCLE_TOPIC and m.key.decode() == device.device_id]
        assert events
        for ts, e in events:
            kind, app = e["event_type"], e["app_identifier"]
            assert kind in {"launch", "foreground", "background", "terminate", "crash"}
            if kind == "foreground":
                assert not fg, "one app in the foreground at a time"
                fg[app] = ts
            elif kind in ("background", "crash") and app in fg:
                started = fg.pop(app)
                if kind == "background":
                    assert abs(e["duration_seconds"] - (ts - started).total_seconds()) <= 1
            if kind in ("background", "terminate"):
                assert isinstance(e["duration_seconds"], int) and e["duration_seconds"] >= 0
            else:
                assert e["duration_seconds"] is None
    counts = Counter(json.loads(m.value)["event_type"] for m in day if m.topic == APP_LIFECYCLE_TOPIC)
    sessions = counts["foreground"]
    assert counts["background"] + counts["crash"] == pytest.approx(sessions, abs=2)
    assert 0 < counts["crash"] < 0.03 * sessions
    assert 0 < counts["terminate"] < counts["launch"] < sessions


def test_app_catalogue(day):
    apps = {(b["app_identifier"], b["app_name"]) for b in bodies(day, APP_LIFECYCLE_TOPIC)}
    ids = {a for a, _ in apps}
    assert {"com.whatsapp", "com.google.android.gm", "com.apple.Safari", "com.microsoft.teams"} <= ids
    assert any(name is None for _, name in apps)  # obscure apps without a name
    categories = {b["metadata"].get("category") for b in bodies(day, APP_LIFECYCLE_TOPIC)}
    assert {"SOCIAL", "PRODUCTIVITY"} <= categories


def test_wifi_readings(day):
    phone, laptop = demo_devices(2, seed=0)
    phone_wifi = bodies(day, WIFI_TOPIC, phone.device_id)
    laptop_wifi = bodies(day, WIFI_TOPIC, laptop.device_id)
    assert {w["signal_strength"] for w in phone_wifi} == {-50}  # docs/flows/network_events.md#enriched mobile quirk
    assert len({w["signal_strength"] for w in laptop_wifi}) > 10
    assert all(-95 < w["signal_strength"] < -20 for w in laptop_wifi)
    assert all(w["connected"] is True for w in phone_wifi + laptop_wifi)
    ssids = {w["ssid"]: w["security"] for w in phone_wifi + laptop_wifi}
    assert ssids["AcmeCorp"] == "WPA2-Enterprise"
    assert ssids["Starbucks WiFi"] == "Open"
    assert ssids["Pixel_7823"] == "WPA2"
    for w in phone_wifi + laptop_wifi:
        assert isinstance(w["frequency"], float)
        f, ch = int(w["frequency"]), w["channel"]
        assert ch == ((f - 2407) // 5 if f < 5000 else (f - 5000) // 5)
    assert "Pixel_7823" in {w["ssid"] for w in laptop_wifi}  # tethered at the coffee shop


def test_gps_follows_the_day(day):
    fixes = [(m.timestamp, json.loads(m.value)) for m in day if m.topic == GPS_TOPIC]
    assert all(5 <= f["accuracy"] <= 30 for _, f in fixes)

    def near(place, since, until, metres=60):
        window = [f for ts, f in fixes if since <= ts < until]
        assert window
        return all(demo.haversine_m(f["latitude"], f["longitude"], place.lat, place.lon) < metres
                   for f in window)

    assert near(demo.HOME, local(2), local(5))
    assert near(demo.WORK, local(10), local(12))
    assert near(demo.HOME, local(20), local(22))
    driving = [f for ts, f in fixes if local(8) <= ts < local(9.5) and f["speed"] > 5]
    assert driving and max(f["speed"] for f in driving) < 20
    assert 9 < sum(f["speed"] for f in driving) / len(driving) < 16


# ---- rates --------------------------------------------------------------------------------


def rate(messages, topic, device_id, start, end) -> float:
    n = sum(1 for m in in_window(messages, start, end) if m.topic == topic and m.key.decode() == device_id)
    return n / (end - start).total_seconds()


def test_periodic_rates(day):
    phone, laptop = demo_devices(2, seed=0)
    work = (local(9.5), local(14))  # both on WiFi at the office
    checks = [
        (GPS_TOPIC, phone, 1 / demo.GPS_INTERVAL_S),
        (SENSOR_POWER_TOPIC, phone, 1 / demo.MOBILE_POWER_INTERVAL_S),
        (STATE_POWER_TOPIC, laptop, 1 / demo.LAPTOP_POWER_INTERVAL_S),
        (WIFI_TOPIC, phone, 1 / demo.WIFI_INTERVAL_S),
        (WIFI_TOPIC, laptop, 1 / demo.WIFI_INTERVAL_S),
    ]
    for topic, device, stated in checks:
        assert rate(day, topic, device.device_id, *work) == pytest.approx(stated, rel=0.5), topic
    # power and GPS keep reporting all day
    for topic, device, stated in checks[:3]:
        assert rate(day, topic, device.device_id, local(0), local(24)) == pytest.approx(stated, rel=0.5)


@pytest.mark.parametrize(
    ("family", "activity", "since", "until"),
    [("laptop", "work", 9.5, 14.0), ("phone", "work", 9.5, 14.0), ("phone", "evening", 19.0, 22.0)],
)
def test_app_event_rates(family, activity, since, until):
    """Bursty, but the long-run rate is APP_EVENTS_PER_S × the activity's intensity."""
    stated = demo.APP_EVENTS_PER_S * demo.ACTIVITY_INTENSITY[family][activity]
    observed = []
    for seed in range(3):
        device = next(d for d in demo_devices(2, seed) if d.family == family)
        messages = list(demo_messages(local(since), (until - since) * 60, devices=2, seed=seed,
                                      topics=[APP_LIFECYCLE_TOPIC]))
        observed.append(rate(messages, APP_LIFECYCLE_TOPIC, device.device_id, local(since), local(until)))
    assert sum(observed) / len(observed) == pytest.approx(stated, rel=0.5)
    assert 0.5 <= stated <= 2.0 or family == "phone"


def test_app_events_come_in_bursts(day):
    phone = demo_devices(2, seed=0)[0]
    per_minute = Counter(m.timestamp.replace(second=0, microsecond=0)
                         for m in in_window(day, local(19), local(22))
                         if m.topic == APP_LIFECYCLE_TOPIC and m.key == phone.device_id.encode())
    minutes = [per_minute.get(local(19) + timedelta(minutes=i), 0) for i in range(180)]
    assert minutes.count(0) > 10  # quiet minutes …
    assert max(minutes) > 45  # … and busy ones (> 0.75 ev/s)


# ---- battery ------------------------------------------------------------------------------


def battery_series(messages):
    series = defaultdict(list)
    for m in messages:
        if m.topic in (SENSOR_POWER_TOPIC, STATE_POWER_TOPIC):
            body = json.loads(m.value)
            series[m.key.decode()].append((m.timestamp, body.get("data", body)))
    return series


def test_battery_stays_in_range_and_behaves(day):
    for device_id, readings in battery_series(day).items():
        levels = [r["battery_level"] for _, r in readings]
        assert all(0 <= level <= 100 for level in levels)
        sources = Counter(r["power_source"] for _, r in readings)
        assert set(sources) <= MOBILE_POWER_SOURCES
        assert sources["charging"] and sources["discharging"]
        for (t0, a), (t1, b) in zip(readings, readings[1:]):
            hours = (t1 - t0).total_seconds() / 3600
            change = (b["battery_level"] - a["battery_level"]) / hours
            if a["power_source"] == b["power_source"] == "discharging" and hours > 0.01:
                assert change <= 1 / hours  # (rounding to whole percent)
            assert -25 - 1 / hours < change < 65 + 1 / hours  # %/h
        for _, r in readings:
            assert r["is_charging"] == (r["power_source"] == "charging")
            assert r["thermal_state"] in THERMAL


def test_phone_charges_overnight_and_laptop_lid(day):
    phone, laptop = demo_devices(2, seed=0)
    series = battery_series(day)
    night = [r for t, r in series[phone.device_id] if local(1) <= t < local(5)]
    assert all(r["power_source"] != "discharging" for r in night)
    assert all(r["lid_closed"] is None for _, r in series[phone.device_id])
    lid = {t: r["lid_closed"] for t, r in series[laptop.device_id]}
    assert all(closed for t, closed in lid.items() if local(1) <= t < local(5))
    assert not any(closed for t, closed in lid.items() if local(10) <= t < local(12))


def test_battery_across_seeds():
    """Two days of power readings for several people (power streams only, to stay fast)."""
    start, end = local(6), local(12, day=28)
    for seed in range(3):
        for device in demo_devices(4, seed):
            plan = demo.DayPlan(seed, device.person, start, end)
            stream = demo.laptop_power_stream if device.family == "laptop" else demo.mobile_power_stream
            readings = battery_series(stream(device, plan, seed, start, end))[device.device_id]
            assert len(readings) > 500
            assert all(0 <= r["battery_level"] <= 100 for _, r in readings)
            assert min(r["battery_level"] for _, r in readings) < max(r["battery_level"] for _, r in readings)


# ---- reproducibility ----------------------------------------------------------------------


def test_reproducible_for_a_seed():
    start = local(7.5)
    a = list(demo_messages(start, 90, devices=3, seed=7, topics=SLOW_TOPICS))
    b = list(demo_messages(start, 90, devices=3, seed=7, topics=SLOW_TOPICS))
    c = list(demo_messages(start, 90, devices=3, seed=8, topics=SLOW_TOPICS))
    assert a == b
    assert [m.value for m in a] != [m.value for m in c]


# ---- accelerometer ------------------------------------------------------------------------

G = 9.80665


def accel(start, minutes, devices=2, seed=0):
    return list(demo_messages(start, minutes, devices=devices, seed=seed, topics=[ACCELEROMETER_TOPIC]))


def samples(messages, since=None):
    """(seconds since ``since`` (default: the first sample), (n, 3) m/s²) of one phone's samples."""
    since = since or messages[0].timestamp
    t = np.array([(m.timestamp - since).total_seconds() for m in messages])
    return t, np.array([[b["x"], b["y"], b["z"]] for b in map(json.loads, (m.value for m in messages))])


def spectrum_peak(signal, rate_hz, above_hz=0.5) -> float:
    power = np.abs(np.fft.rfft((signal - signal.mean()) * np.hanning(len(signal))))
    freqs = np.fft.rfftfreq(len(signal), 1 / rate_hz)
    band = freqs > above_hz
    return float(freqs[band][np.argmax(power[band])])


def high_pass(signal, rate_hz, above_hz):
    spectrum = np.fft.rfft(signal - signal.mean())
    freqs = np.fft.rfftfreq(len(signal), 1 / rate_hz)
    return np.fft.irfft(np.where(freqs > above_hz, spectrum, 0), len(signal))


@pytest.fixture(scope="module")
def person0():
    """The default phone (seed 0) and its person's plan for the test day."""
    return demo_devices(2, seed=0)[0], demo.DayPlan(0, 0, local(0), local(24))


def first(plan, activity, after=None):
    return next(s for s in plan.segments if s.activity == activity and s.start >= (after or local(0)))


def test_accelerometer_comes_from_phones_only():
    devices = demo_devices(4, seed=0)
    messages = accel(local(10), 1, devices=4)
    assert {m.key.decode() for m in messages} == {d.device_id for d in devices if d.family == "phone"}
    assert_flat_rest_envelopes(messages)
    assert all(isinstance(v, float) for m in messages[:300] for v in json.loads(m.value).values()
               if not isinstance(v, (str, list)))


def test_accelerometer_rates(person0):
    """50 Hz while the phone moves (docs/flows/motion.md#windows), 10 Hz while it lies still
    (docs/messages.md#sampling-rates)."""
    _, plan = person0
    moving = accel(first(plan, "drive").start + timedelta(minutes=1), 2)
    assert len(moving) == 2 * 60 * demo.ACCEL_MOVING_HZ
    assert np.allclose(np.diff(samples(moving)[0]), 1 / demo.ACCEL_MOVING_HZ)
    still = accel(local(3), 10)  # asleep, the phone on the nightstand
    gaps = np.diff(samples(still)[0])
    assert np.isclose(gaps, 1 / demo.ACCEL_STILL_HZ).mean() > 0.95
    assert len(still) / 600 == pytest.approx(demo.ACCEL_STILL_HZ, rel=0.1)


def test_a_still_phone_reads_gravity_and_noise():
    _, xyz = samples(accel(local(3), 10))
    magnitude = np.linalg.norm(xyz, axis=1)
    assert magnitude.mean() == pytest.approx(9.81, abs=0.05)
    assert np.percentile(magnitude, 99) - np.percentile(magnitude, 1) < 0.5
    noise = np.median(np.abs(np.diff(xyz, axis=0)), axis=0) / 0.954  # white noise: median |Δ| ≈ 0.95 σ
    assert ((0.015 < noise) & (noise < 0.06)).all()
    direction = xyz / magnitude[:, None]
    assert (direction @ np.median(direction, axis=0) > 0.99).mean() > 0.9  # lies in one orientation


def test_walking_steps_at_the_persons_cadence(person0):
    phone, plan = person0
    walk = first(plan, "walk")
    minutes = (walk.end - walk.start).total_seconds() / 60
    t, xyz = samples(accel(walk.start - timedelta(seconds=20), minutes + 1 / 3), since=walk.start)
    magnitude = np.linalg.norm(xyz, axis=1)
    walking = (t >= 0) & (t < minutes * 60)
    assert np.allclose(np.diff(t[walking]), 0.02)
    cadence = demo._PhoneMotion(phone, plan, 0).cadence
    assert demo.CADENCE_HZ[0] <= cadence <= demo.CADENCE_HZ[1]
    assert spectrum_peak(magnitude[walking], 50) == pytest.approx(cadence, rel=0.04)
    assert 1.0 < magnitude[walking].std() < 4.0
    # a sudden start after sitting: still, a brief pick-up into the pocket, then steps at once
    assert magnitude[(t >= -20) & (t < -5)].std() < 0.3
    assert magnitude[(t >= 0.5) & (t < 3)].std() > 1.0
    cadences = {demo._PhoneMotion(d, demo.DayPlan(0, d.person, local(0), local(1)), 0).cadence
                for d in demo_devices(8, seed=0) if d.family == "phone"}
    assert len(cadences) == 4  # every person has their own


def test_stairs_up_to_the_office(person0):
    """Back from the coffee shop, the walk carries on up the office stairs: slower steps, harder."""
    phone, plan = person0
    coffee = first(plan, "coffee")
    office = first(plan, "work", after=coffee.end)
    t, xyz = samples(accel(office.start - timedelta(seconds=30), 0.75), since=office.start)
    magnitude = np.linalg.norm(xyz, axis=1)
    cadence = demo._PhoneMotion(phone, plan, 0).cadence
    stairs = magnitude[(t >= 1) & (t < 14)]
    assert spectrum_peak(stairs, 50) == pytest.approx(demo.STAIRS_CADENCE * cadence, rel=0.06)
    assert stairs.std() > 1.5


def test_driving_vibrates_and_follows_the_speed_profile(person0):
    _, plan = person0
    drive = first(plan, "drive")
    minutes = (drive.end - drive.start).total_seconds() / 60
    t, xyz = samples(accel(drive.start, minutes), since=drive.start)
    speed = np.diff(drive.profile)  # m/s in each second, as the GPS reports it
    second = t.astype(int)
    # engine and road: broadband vibration above 8 Hz that grows with speed
    vibration = high_pass(np.linalg.norm(xyz, axis=1), 50, 8.0)
    assert 0.1 < vibration[speed[second] > 8].std() < 0.5
    assert vibration[speed[second] < 0.1].std() < 0.1
    # the mount holds the phone still: gravity is the mean; what is left, per second, is the
    # car's acceleration, mostly along its length: the derivative of the GPS speed
    g = xyz.mean(axis=0) / np.linalg.norm(xyz.mean(axis=0))
    horizontal = xyz - np.outer(xyz @ g, g)
    per_second = np.stack([np.bincount(second, horizontal[:, k]) / np.bincount(second) for k in range(3)], 1)
    _, axes = np.linalg.eigh(np.cov(per_second.T))
    along = per_second @ axes[:, -1]
    n = min(len(along), len(speed))
    assert abs(np.corrcoef(along[:n], np.gradient(speed[:n]))[0, 1]) > 0.8
    assert np.abs(per_second).max() < 3.5  # no harder than 3 m/s² (plus vibration)


def test_accelerometer_is_reproducible_for_a_seed(person0):
    _, plan = person0
    start = first(plan, "walk").start - timedelta(seconds=30)
    a = accel(start, 1.5)
    assert a == accel(start, 1.5)
    other = samples(accel(start, 1.5, seed=1))[1]
    n = min(len(a), len(other))
    assert not np.allclose(samples(a)[1][:n], other[:n])


@pytest.mark.parametrize("where", ["walk", "midnight"])
def test_consecutive_windows_join_seamlessly(person0, where):
    """`loom dev` makes an hour at a time from whatever instant it is: back-to-back windows give
    exactly the samples and message ids of one long window (here 2 + 2 minutes, split mid-walk
    and at local midnight, where the day plan changes)."""
    _, plan = person0
    if where == "walk":
        split = first(plan, "walk").start + timedelta(seconds=70.123457)
    else:
        split = local(24) + timedelta(microseconds=321)
    start = split - timedelta(minutes=2)
    assert accel(start, 2) + accel(split, 2) == accel(start, 4)


def test_a_phone_day_is_physical_and_as_large_as_stated(person0):
    """Every 20 ms of the day has one motion; 10-50 samples a second, ~1 M a day; and nothing
    that Loom v2's detector would take for a fall (docs/flows/motion.md#significant-motion): a jolt
    over 8 m/s² (|a| - g) that is followed by stillness. (Footfalls now and then jolt that hard, but
    the walk goes on.)"""
    phone, plan = person0
    motion = demo._PhoneMotion(phone, plan, 0)
    block_us = demo._ACCEL_BLOCK * demo._ACCEL_STEP_US
    day = demo._us(local(0)) // block_us
    blocks = [motion.block(b)[:2] for b in range(day, day + 24 * 60)]
    counts = [len(t) for t, _ in blocks]
    assert min(counts) >= 60 * demo.ACCEL_STILL_HZ and max(counts) == 60 * demo.ACCEL_MOVING_HZ
    assert 0.8e6 < sum(counts) < 1.3e6
    xyz = np.concatenate([x for _, x in blocks])
    assert not np.isnan(xyz).any()
    jolt = np.abs(np.linalg.norm(xyz, axis=1) - G)
    for peak in np.flatnonzero(jolt > 8.0):
        assert jolt[peak + 5:peak + 55].mean() > 1.0


# ---- replay -------------------------------------------------------------------------------


class FakeProducer:
    def __init__(self, full_every: int = 0):
        self.produced: list[tuple[str, dict]] = []
        self.full_every, self.calls, self.flushed = full_every, 0, None

    def produce(self, topic, **kwargs):
        self.calls += 1
        if self.full_every and self.calls % self.full_every == 0:
            raise BufferError("queue full")
        self.produced.append((topic, kwargs))

    def poll(self, timeout=0):
        return 0

    def flush(self, timeout=None):
        self.flushed = timeout
        return 0


def test_replay_as_fast_as_possible():
    messages = list(demo_messages(local(10), 10, seed=0))
    producer = FakeProducer(full_every=50)
    assert replay(producer, messages, speed=None, progress=False) == len(messages)
    assert len(producer.produced) == len(messages)
    assert producer.flushed is not None
    topic, kwargs = producer.produced[0]
    assert topic == messages[0].topic and kwargs["key"] == messages[0].key
    assert kwargs["value"] == messages[0].value and kwargs["headers"] == list(messages[0].headers)
    # the time of sending, not the event time: future event times would be rejected
    sent_at = [kwargs["timestamp"] for _, kwargs in producer.produced]
    assert sent_at == sorted(sent_at) and sent_at[0] != int(messages[0].timestamp.timestamp() * 1000)


def test_replay_at_speed_paces_and_stamps_event_time():
    import time

    messages = list(demo_messages(local(10), 2, seed=0))  # 120 s of event time
    span = (messages[-1].timestamp - messages[0].timestamp).total_seconds()
    producer = FakeProducer()
    began = time.monotonic()
    assert replay(producer, iter(messages), speed=600.0, progress=False) == len(messages)
    elapsed = time.monotonic() - began
    assert span / 600 * 0.8 <= elapsed < span / 600 + 2
    stamps = [kwargs["timestamp"] for _, kwargs in producer.produced]
    assert stamps == [int(m.timestamp.timestamp() * 1000) for m in messages]
    with pytest.raises(ValueError):
        replay(producer, messages, speed=0, progress=False)


# ---- screenshots and photos ---------------------------------------------------------------------


def test_laptops_send_readable_screenshots_and_phones_photos_while_up():
    import base64
    import io

    from PIL import Image

    from loom_assets.events import decode
    from loom_assets.stages.screenshot_ocr import decode_image, page_text

    messages = list(demo_messages(local(8), 16 * 60, devices=2, seed=0, topics=MEDIA_TOPICS))
    shots = [m for m in messages if m.topic == demo.SCREENSHOT_TOPIC]
    photos = [m for m in messages if m.topic == demo.CAMERA_TOPIC]
    devices = demo_devices(2, 0)
    assert {m.key.decode() for m in shots} == {devices[1].device_id}  # the MacBook
    assert {m.key.decode() for m in photos} == {devices[0].device_id}  # the phone
    plan = demo.DayPlan(0, 0, local(8), local(24))
    assert all(plan.intensity("laptop", m.timestamp) > 0 for m in shots)
    assert all(plan.at(m.timestamp).activity in demo.PHOTO_SUBJECTS for m in photos) and len(photos) >= 3
    gaps = np.diff([m.timestamp.timestamp() for m in shots])
    assert np.median(gaps) == pytest.approx(demo.SCREENSHOT_INTERVAL_S, abs=5)

    body = json.loads(shots[0].value)
    assert decode(demo.SCREENSHOT_TOPIC, shots[0].value, partition=0, offset=0).payload.camera_type == "screen"
    title = next(t for screens in demo.SCREENS.values() for t, lines in screens
                 if demo._screenshot_png(t, lines) == base64.b64decode(body["image_data"]))
    assert title.split()[0].lower() in page_text(decode_image(body["image_data"]))["text"].lower()
    photo = Image.open(io.BytesIO(base64.b64decode(json.loads(photos[0].value)["image_data"])))
    assert photo.format == "JPEG" and min(photo.size) >= 300
    assert messages == list(demo_messages(local(8), 16 * 60, devices=2, seed=0, topics=MEDIA_TOPICS))
