import json
import math
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from loom_assets import demo
from loom_assets.stages.location import (
    EARTH_RADIUS_M,
    OUTPUT_COLUMNS,
    REGION_EVENT_DTYPES,
    REGION_STATE_DTYPES,
    STAY_DTYPES,
    VISIT_DTYPES,
    LocationRules,
    Region,
    address_key,
    closed_ring,
    geohash,
    haversine_m,
    match_visits,
    point_in_polygon,
    polygon_ring,
    region_events,
    region_state,
    regions_from_rows,
    visit_carry,
    visit_lookback_start,
    visits,
)

RULES = LocationRules()
T0 = pd.Timestamp("2025-03-03 08:00", tz="UTC")
# docs/flows/location.md#georegions, migration 033: the Nashville Home polygon ([lon, lat], closed).
NASHVILLE = [[-86.685127, 36.046366], [-86.682296, 36.047976], [-86.683277, 36.048782],
             [-86.686243, 36.047234], [-86.685127, 36.046366]]
HOME = (36.047644, -86.684133)   # migration 032's Home centre, inside the polygon
# A concave "U": arms x in [0, 0.001] and [0.002, 0.003], joined by a base y in [0, 0.001].
U_RING = [[0, 0], [0.003, 0], [0.003, 0.003], [0.002, 0.003], [0.002, 0.001], [0.001, 0.001], [0.001, 0.003],
          [0, 0.003]]
# A diamond whose left/right vertices are at latitude 0.001: rays at that latitude pass through them.
DIAMOND = [[0.001, 0], [0.002, 0.001], [0.001, 0.002], [0, 0.001], [0.001, 0]]


def moved(lat: float, lon: float, north_m: float = 0.0, east_m: float = 0.0) -> tuple[float, float]:
    """The point `north_m` north and `east_m` east of (lat, lon) (flat earth, fine at these scales)."""
    dlat = north_m / (EARTH_RADIUS_M * math.pi / 180)
    dlon = east_m / (EARTH_RADIUS_M * math.pi / 180 * math.cos(math.radians(lat)))
    return lat + dlat, lon + dlon


def gps(points, start=T0, step_s=10.0, device="phone-1", accuracy=8.0, window_start=None) -> pd.DataFrame:
    """One fix every `step_s` seconds from `start`; points are (lat, lon) or (lat, lon, accuracy)."""
    rows = []
    for i, point in enumerate(points):
        lat, lon, acc = (*point, accuracy) if len(point) == 2 else point
        at = start + pd.Timedelta(seconds=step_s * i)
        rows.append({
            "window_start": window_start if window_start is not None else at.floor("15min"),
            "device_id": device, "recorded_at": at, "received_at": pd.NaT, "schema_version": "1.0",
            "message_id": f"{device}-{at.value}", "trace_id": f"trace-{i}", "source_topic": "device.sensor.gps.raw",
            "source_partition": 0, "source_offset": i, "ingested_at": at, "metadata": None, "latitude": lat,
            "longitude": lon, "altitude": None, "accuracy": acc, "heading": None, "speed": None,
        })
    return pd.DataFrame(rows)


def circle(radius=100.0, id=1, name="Home", type="home", center=HOME) -> Region:
    return Region(id=id, name=name, type=type, center_latitude=center[0], center_longitude=center[1], radius_m=radius)


def assert_exact_frame(frame: pd.DataFrame, dtypes: dict[str, str]) -> None:
    assert list(frame.columns) == list(dtypes)
    expected = pd.DataFrame({c: pd.Series([], dtype=d) for c, d in dtypes.items()}).dtypes
    assert frame.dtypes.astype(str).tolist() == expected.astype(str).tolist()


def in_windows(fixes: pd.DataFrame, size: pd.Timedelta, offset: pd.Timedelta = pd.Timedelta(0), cuts=None):
    """The fixes cut into consecutive windows of `size` (starting `offset` after a multiple of it),
    or at the given `cuts` (times), each with its window_start, as the raw landing hands them over."""
    if cuts is None:
        starts = ((fixes["recorded_at"] - T0 - offset) // size) * size + T0 + offset
    else:
        edges = pd.Series(sorted({T0 - pd.Timedelta(days=1), *cuts}))
        starts = edges.iloc[edges.searchsorted(fixes["recorded_at"], side="right") - 1].to_numpy()
    fixes = fixes.assign(window_start=starts)
    return [group for _, group in fixes.groupby("window_start", sort=True)]


# -- geometry ---------------------------------------------------------------------------------------
def test_haversine_uses_the_spec_earth_radius_and_vectorises():
    assert haversine_m(0, 0, 0, 1) == pytest.approx(EARTH_RADIUS_M * math.pi / 180)
    assert haversine_m(*HOME, *HOME) == 0.0
    many = haversine_m(HOME[0], HOME[1], np.array([HOME[0], 36.0]), np.array([HOME[1], -86.7]))
    assert isinstance(many, np.ndarray) and many[0] == 0.0
    assert many[1] == pytest.approx(haversine_m(*HOME, 36.0, -86.7))


@pytest.mark.parametrize(
    ("lat", "lon", "ring", "inside"),
    [
        (*HOME, NASHVILLE, True),
        (36.05, -86.68, NASHVILLE, False),
        (36.046366, -86.685127, NASHVILLE, True),                       # on a vertex
        (36.047171, -86.6837115, NASHVILLE, True),                      # midpoint of the first edge
        (*moved(36.047171, -86.6837115, north_m=-3), NASHVILLE, False),  # 3 m outside that edge
        (*HOME, NASHVILLE[:-1], True),                                  # unclosed ring
        (36.05, -86.68, NASHVILLE[:-1], False),
        (0.0005, 0.0005, U_RING, True),                                 # base of the U
        (0.0025, 0.0005, U_RING, True),                                 # left arm
        (0.0025, 0.0015, U_RING, False),                                # in the notch (lat, lon order!)
        (0.002, 0.0015, U_RING, False),
        (0.002, -0.0005, U_RING, False),                                # west of the U: the ray crosses 4 edges
        (0.002, 0.0035, U_RING, False),                                 # east of it
        (0.0015, 0.0025, U_RING, True),                                 # right arm
        (0.0015, 0.002, U_RING, True),                                  # on the notch's side edge
        (0.001, 0.0015, U_RING, True),                                  # on the notch's bottom edge
        (0.001, 0.001, DIAMOND, True),                                  # centre; ray through a vertex
        (0.001, -0.0005, DIAMOND, False),                               # left of it, same latitude
        (0.001, 0.0025, DIAMOND, False),                                # right of it, same latitude
        (0.001, 0.0, DIAMOND, True),                                    # on the left vertex
    ],
)
def test_point_in_polygon(lat, lon, ring, inside):
    assert point_in_polygon(lat, lon, ring) is inside


def test_point_in_polygon_vectorises():
    lats = np.array([HOME[0], 36.05, 36.046366])
    lons = np.array([HOME[1], -86.68, -86.685127])
    assert point_in_polygon(lats, lons, NASHVILLE).tolist() == [True, False, True]


@pytest.mark.parametrize("ring", [[], [[0, 0], [1, 1]], [[0, 0], [1, 1], [0, 0], [1, 1]]])
def test_degenerate_rings_are_refused(ring):
    with pytest.raises(ValueError):
        closed_ring(ring)


@pytest.mark.parametrize(
    "coordinates",
    [
        {"type": "Polygon", "coordinates": [NASHVILLE]},
        '{"type": "Polygon", "coordinates": [%s]}' % NASHVILLE,
        [NASHVILLE, [[-86.6845, 36.0475], [-86.6840, 36.0475], [-86.6840, 36.0478], [-86.6845, 36.0475]]],  # a hole
        NASHVILLE,
    ],
)
def test_polygon_ring_reads_the_outer_ring_of_geojson(coordinates):
    assert polygon_ring(coordinates) == tuple((float(x), float(y)) for x, y in NASHVILLE)


def test_regions_from_rows_skips_inactive_and_falls_back_to_the_circle():
    rows = pd.DataFrame([
        {"id": 2, "name": "Home", "type": "home", "geometry_type": "polygon", "center_latitude": HOME[0],
         "center_longitude": HOME[1], "radius_meters": 150.0,
         "polygon_coordinates": {"type": "Polygon", "coordinates": [NASHVILLE]}, "is_active": True},
        {"id": 1, "name": "Gym", "type": "custom", "geometry_type": "polygon", "center_latitude": 37.79,
         "center_longitude": -122.409, "radius_meters": 50.0, "polygon_coordinates": [[0, 0], [1, 1]],
         "is_active": True},
        {"id": 3, "name": "Old", "type": "work", "geometry_type": "circle", "center_latitude": 37.79,
         "center_longitude": -122.39, "radius_meters": 150.0, "polygon_coordinates": None, "is_active": False},
    ])
    gym, home = regions_from_rows(rows)
    assert (gym.id, gym.geometry, gym.polygon) == (1, "circle", None)
    assert (home.id, home.geometry, len(home.polygon)) == (2, "polygon", 5)


@pytest.mark.parametrize(
    ("north_m", "margin_m", "expected"),
    [(0, 0, True), (99.9, 0, True), (110, 0, False), (110, 25, True), (126, 25, False)],
)
def test_circle_contains_with_margin(north_m, margin_m, expected):
    assert circle().contains(*moved(*HOME, north_m=north_m), margin_m=margin_m) is expected


def test_polygon_contains_within_margin_of_an_edge():
    home = Region(2, "Home", "home", HOME[0], HOME[1], 150.0, "polygon", tuple(map(tuple, NASHVILLE)))
    outside = moved(36.047171, -86.6837115, north_m=-20)       # ~18 m beyond the SE edge
    assert not home.contains(*outside)
    assert home.contains(*outside, margin_m=25)
    assert not home.contains(*moved(*outside, north_m=-30), margin_m=25)


@pytest.mark.parametrize(
    ("north_m", "event_type", "confidence"),
    [(0, "enter", 1.0), (50, "enter", 0.5), (75, "dwell", 0.25), (100, "enter", 0.0), (120, "dwell", 0.0),
     (150, "exit", 0.5), (80, "exit", 0.0), (500, "exit", 1.0)],
)
def test_circle_confidence_is_one_minus_distance_over_radius(north_m, event_type, confidence):
    assert circle().confidence(*moved(*HOME, north_m=north_m), event_type) == pytest.approx(confidence, abs=1e-3)


def test_polygon_confidence_is_depth_over_the_equal_area_radius():
    side = 0.002  # a square ~222 m a side at the equator: centre depth = side/2, R_eq = side/sqrt(pi)
    square = Region(9, "Sq", "custom", 0.001, 0.001, 150.0, "polygon",
                    ((0, 0), (side, 0), (side, side), (0, side), (0, 0)))
    assert square.confidence(0.001, 0.001) == pytest.approx(math.sqrt(math.pi) / 2, abs=2e-3)
    assert square.confidence(0.0, 0.001) == 0.0                   # on the edge
    assert 0.0 <= square.confidence(0.0005, 0.001) <= 1.0


# -- region events ----------------------------------------------------------------------------------
def walk_through_home() -> pd.DataFrame:
    """300 m south, walk in at 1.4 m/s, 40 min at home, walk out north; a fix every 30 s."""
    points = [moved(*HOME, north_m=-300 + 42 * i) for i in range(8)]           # approach
    points += [moved(*HOME, north_m=5 * ((-1) ** i)) for i in range(80)]       # 40 min inside
    points += [moved(*HOME, north_m=42 * i) for i in range(1, 8)]              # leave
    return gps(points, step_s=30)


def test_enter_then_exit_with_the_dwell_time():
    events = region_events(walk_through_home(), [circle()], None, RULES)
    assert events["event_type"].tolist() == ["enter", "exit"]
    enter, exit_ = events.iloc[0], events.iloc[1]
    assert enter["dwell_time_seconds"] == 0 and enter["entered_at"] == enter["recorded_at"]
    assert exit_["entered_at"] == enter["recorded_at"]
    assert exit_["dwell_time_seconds"] == (exit_["recorded_at"] - enter["recorded_at"]).total_seconds()
    assert enter["confidence"] > 0 and exit_["confidence"] >= RULES.exit_margin_m / 100 - 1e-3
    # lineage: the fix that triggered each event
    fixes = walk_through_home().set_index("recorded_at")
    assert enter["message_id"] == fixes.loc[enter["recorded_at"], "message_id"]
    assert exit_["trace_id"] == fixes.loc[exit_["recorded_at"], "trace_id"]
    assert_exact_frame(events, REGION_EVENT_DTYPES)


@pytest.mark.parametrize("size_min", [15, 7, 3])
def test_windows_carrying_region_state_give_the_same_enters_and_exits_as_one_pass(size_min):
    fixes = walk_through_home()
    whole = region_events(fixes, [circle()], None, RULES)
    produced = []
    for window in in_windows(fixes, pd.Timedelta(minutes=size_min)):
        state = region_state(pd.concat(produced) if produced else None)
        produced.append(region_events(window, [circle()], state, RULES))
    split = pd.concat(produced, ignore_index=True)
    changes = split[split["event_type"] != "dwell"].reset_index(drop=True)
    cols = ["recorded_at", "event_type", "entered_at", "dwell_time_seconds", "message_id"]
    pd.testing.assert_frame_equal(changes[cols], whole[cols])
    # one dwell per window the device ends inside; the dwell time keeps counting from the enter
    dwells = split[split["event_type"] == "dwell"]
    assert len(dwells) >= 2 and dwells["window_start"].is_unique
    assert (dwells["dwell_time_seconds"] == (dwells["recorded_at"] - dwells["entered_at"]).dt.total_seconds()).all()
    assert dwells["dwell_time_seconds"].is_monotonic_increasing
    assert (dwells["entered_at"] == whole.iloc[0]["recorded_at"]).all()


def test_region_state_is_the_last_event_per_device_and_region():
    fixes = walk_through_home()
    first = fixes[fixes["recorded_at"] < T0 + pd.Timedelta(minutes=15)]
    events = region_events(first, [circle(), circle(radius=50, id=2, name="Desk")], None, RULES)
    state = region_state(events)
    assert_exact_frame(state, REGION_STATE_DTYPES)
    assert state["inside"].tolist() == [True, True]
    assert state["recorded_at"].tolist() == [first["recorded_at"].max()] * 2
    left = region_state(region_events(fixes, [circle()], None, RULES))
    assert left["inside"].tolist() == [False] and left["entered_at"].isna().all()


def test_jitter_at_the_edge_does_not_flap():
    # Alternating 15 m beyond and 10 m inside the 100 m edge: one enter, no exit (margin 25 m).
    points = [moved(*HOME, north_m=300)] + [moved(*HOME, north_m=115 if i % 2 else 90) for i in range(40)]
    events = region_events(gps(points), [circle()], None, RULES)
    assert events["event_type"].tolist() == ["enter", "dwell"]
    # Then 30 m beyond the edge: out.
    points.append(moved(*HOME, north_m=130))
    assert region_events(gps(points), [circle()], None, RULES)["event_type"].tolist() == ["enter", "exit"]


@pytest.mark.parametrize(
    ("accuracy", "entered"), [(8.0, True), (100.0, True), (100.5, False), (float("nan"), True), (None, True)]
)
def test_fixes_less_accurate_than_the_bound_are_ignored(accuracy, entered):
    points = [moved(*HOME, north_m=400, east_m=0) + (5.0,), (*HOME, accuracy)]
    events = region_events(gps(points), [circle()], None, RULES)
    assert (events["event_type"].tolist() == ["enter"]) is entered


def test_no_dwell_when_the_last_fix_is_the_enter():
    events = region_events(gps([moved(*HOME, north_m=400), HOME]), [circle()], None, RULES)
    assert events["event_type"].tolist() == ["enter"]


def test_late_fixes_do_not_change_the_carried_state():
    state = pd.DataFrame([{"device_id": "phone-1", "region_id": 1, "inside": True,
                           "entered_at": T0 - pd.Timedelta(hours=1), "recorded_at": T0 + pd.Timedelta(hours=1)}])
    late = gps([moved(*HOME, north_m=500)])                    # at T0: older than the state
    assert region_events(late, [circle()], state, RULES).empty
    fresh = gps([moved(*HOME, north_m=500)], start=T0 + pd.Timedelta(hours=2))
    exit_ = region_events(fresh, [circle()], state, RULES).iloc[0]
    assert exit_["event_type"] == "exit" and exit_["dwell_time_seconds"] == 3 * 3600


def test_leaving_one_region_into_the_next_gives_exit_before_enter():
    west, east = moved(*HOME, east_m=-100), moved(*HOME, east_m=100)
    regions = [circle(radius=60, id=1, name="West", center=west), circle(radius=60, id=2, name="East", center=east)]
    events = region_events(gps([west, east]), regions, None, RULES)
    assert events[["region_id", "event_type"]].values.tolist() == [[1, "enter"], [1, "exit"], [2, "enter"]]


def test_polygon_region_events_use_the_ring():
    home = Region(2, "Home", "home", HOME[0], HOME[1], 150.0, "polygon", tuple(map(tuple, NASHVILLE)))
    events = region_events(gps([(36.05, -86.68), HOME, HOME, (36.05, -86.68)]), [home], None, RULES)
    assert events["event_type"].tolist() == ["enter", "exit"]
    assert events["region_type"].tolist() == ["home", "home"]
    assert events.iloc[0]["distance_from_center_m"] == 0.0 and 0 < events.iloc[0]["confidence"] <= 1


# -- stays ------------------------------------------------------------------------------------------
COFFEE = moved(*HOME, east_m=800)


def day_trace(*, tail=True) -> pd.DataFrame:
    """Home 20 min (±8 m jitter), walk east 4 min, 2 min at a light, walk 4 min, coffee 15 min,
    walk on 2 min; a fix every 10 s, walking at 1.4 m/s."""
    points = [moved(*HOME, north_m=8 * math.sin(i), east_m=8 * math.cos(i * 1.3)) for i in range(120)]
    points += [moved(*HOME, east_m=14 * i) for i in range(1, 25)]                  # 4 min: 336 m
    light = moved(*HOME, east_m=336)
    points += [moved(*light, north_m=3 * math.sin(i)) for i in range(12)]          # 2 min
    points += [moved(*light, east_m=14 * i) for i in range(1, 25)]                 # to 672 m
    points += [moved(*COFFEE, north_m=5 * math.sin(i)) for i in range(90)]         # 15 min
    if tail:
        points += [moved(*COFFEE, east_m=14 * i) for i in range(1, 13)]
    return gps(points)


def test_home_and_coffee_are_visits_and_the_light_is_not():
    found = visits(day_trace(), None, RULES)
    assert_exact_frame(found, STAY_DTYPES)
    assert len(found) == 2
    home, coffee = found.iloc[0], found.iloc[1]
    assert haversine_m(home["latitude"], home["longitude"], *HOME) < 10
    assert haversine_m(coffee["latitude"], coffee["longitude"], *COFFEE) < 10
    assert home["arrived_at"] == T0 and 20 * 60 <= home["duration_seconds"] <= 22 * 60
    assert 15 * 60 <= coffee["duration_seconds"] <= 17 * 60
    assert home["visit_id"] == f"phone-1-{T0.value // 1_000_000}"
    assert home["recorded_at"] == home["arrived_at"]
    assert home["fix_count"] > 120 and home["radius_m"] <= RULES.stay_radius_m + 10


def test_a_stay_is_emitted_only_once_closed():
    found = visits(day_trace(tail=False), None, RULES)
    assert len(found) == 1 and haversine_m(found.iloc[0]["latitude"], found.iloc[0]["longitude"], *HOME) < 10


@pytest.mark.parametrize(("gap_min", "expected"), [(8, 1), (15, 2)])
def test_a_gap_longer_than_the_limit_splits_the_stay(gap_min, expected):
    before = gps([COFFEE] * 37)                                            # 6 min
    resume = T0 + pd.Timedelta(minutes=6 + gap_min)
    after = gps([COFFEE] * 37 + [moved(*COFFEE, east_m=500)], start=resume)
    found = visits(pd.concat([before, after], ignore_index=True), None, RULES)
    assert len(found) == expected
    assert found.iloc[-1]["departed_at"] == resume + pd.Timedelta(minutes=6)


def test_inaccurate_fixes_do_not_break_a_stay():
    points = [COFFEE] * 40 + [moved(*COFFEE, north_m=900) + (450.0,)] + [COFFEE] * 40 + [moved(*COFFEE, east_m=500)]
    found = visits(gps(points), None, RULES)
    assert len(found) == 1 and found.iloc[0]["fix_count"] == 80


def arrival_on_the_way_in() -> pd.DataFrame:
    """The first fix 85 m west of the coffee shop (walking in), then 40 min there (±8 m), one fix
    20 m east of it (105 m from the first fix) after 10 min, then walking away east."""
    points = [moved(*COFFEE, east_m=-85)]
    points += [moved(*COFFEE, north_m=8 * math.sin(i)) for i in range(60)]
    points += [moved(*COFFEE, east_m=20)]
    points += [moved(*COFFEE, north_m=8 * math.sin(i)) for i in range(180)]
    points += [moved(*COFFEE, east_m=14 * i) for i in range(10, 20)]
    return gps(points)


def test_a_first_fix_on_the_way_in_does_not_cut_the_stay_in_two():
    found = visits(arrival_on_the_way_in(), None, RULES)
    assert len(found) == 1
    assert found.iloc[0]["fix_count"] == 1 + 60 + 1 + 180
    assert haversine_m(found.iloc[0]["latitude"], found.iloc[0]["longitude"], *COFFEE) < 10


def test_a_stay_extended_around_its_mean_comes_out_the_same_in_windows():
    fixes = arrival_on_the_way_in()
    whole = visits(fixes, None, RULES)
    for size, offset in [("5min", "0s"), ("15min", "7min"), ("2min", "1min")]:
        split = run_in_windows(fixes, pd.Timedelta(size), pd.Timedelta(offset))
        pd.testing.assert_frame_equal(split[STAY_FIELDS], whole[STAY_FIELDS])


def demo_fixes(messages) -> pd.DataFrame:
    """The demo's GPS messages as raw landing rows."""
    rows = []
    for i, m in enumerate(messages):
        fix = json.loads(m.value)
        at = pd.Timestamp(m.timestamp)
        rows.append({**gps([(0.0, 0.0)], start=at).iloc[0].to_dict(), "source_offset": i,
                     **{k: fix[k] for k in ("latitude", "longitude", "accuracy")}})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("plan_date", [date(2026, 11, 2) + timedelta(days=d) for d in range(28)],
                         ids=lambda d: d.isoformat())
def test_every_demo_afternoon_gives_work_then_coffee_then_work(plan_date):
    # The afternoon of the demo plans of four weeks (each day's draws differ: the coffee break's
    # time and length, the walks' pace, the GPS jitter), as the location flow sees it.
    start = datetime(2026, 11, 2, 14, tzinfo=demo.LOCAL_TZ)
    messages = demo.demo_messages(start, 285, devices=1, topics=[demo.GPS_TOPIC], plan_date=plan_date)
    found = visits(demo_fixes(messages), None, RULES)
    plan = demo.DayPlan(0, 0, start, start + timedelta(minutes=285), plan_date)
    lived = [s for s in plan.segments if s.place is not None and s.end > start and s.start < start + timedelta(minutes=285)]
    assert [s.activity for s in lived[:3]] == ["work", "coffee", "work"]
    assert len(found) == 3, found[["arrived_at", "departed_at"]]
    for visit, segment in zip(found.itertuples(), lived):
        assert haversine_m(visit.latitude, visit.longitude, segment.place.lat, segment.place.lon) < 30
        assert visit.departed_at >= segment.end - pd.Timedelta(minutes=1)


def run_in_windows(fixes: pd.DataFrame, size=None, offset=pd.Timedelta(0), cuts=None, rules=RULES) -> pd.DataFrame:
    """What the flow does: per window, read back the raw fixes from visit_lookback_start and the
    earlier visits, build the carry and emit the visits the window closes."""
    emitted = []
    for window in in_windows(fixes, size, offset, cuts):
        start = window["window_start"].iloc[0]
        earlier = pd.concat(emitted) if emitted else None
        recent = fixes[(fixes["recorded_at"] >= visit_lookback_start(start, rules)) & (fixes["recorded_at"] < start)]
        carry = visit_carry(recent, earlier, rules)
        emitted.append(visits(window, carry, rules, earlier))
    return pd.concat(emitted, ignore_index=True)


STAY_FIELDS = [c for c in STAY_DTYPES if c != "window_start"]


@pytest.mark.parametrize(
    ("size", "offset"),
    [("15min", "0s"), ("15min", "7min"), ("15min", "13min20s"), ("5min", "2min"), ("2min", "0s")],
)
def test_visits_do_not_depend_on_where_windows_split(size, offset):
    fixes = day_trace()
    whole = visits(fixes, None, RULES)
    split = run_in_windows(fixes, pd.Timedelta(size), pd.Timedelta(offset))
    pd.testing.assert_frame_equal(split[STAY_FIELDS], whole[STAY_FIELDS])


@pytest.mark.parametrize("where", ["first", "second", "arrival+1", "departure", "closing", "closing+1",
                                   "light", "light+6", "coffee-9", "last"])
def test_visits_do_not_depend_on_a_split_at_any_critical_fix(where):
    # Two windows, the second starting at the named fix (the stays' first, last and closing fixes).
    fixes = day_trace()
    whole = visits(fixes, None, RULES)
    times = fixes["recorded_at"]
    home, coffee = whole.iloc[0], whole.iloc[1]
    index = {"first": 0, "second": 1, "arrival+1": 1, "departure": times[times == home["departed_at"]].index[0],
             "light": 144, "light+6": 150, "coffee-9": times[times == coffee["arrived_at"]].index[0] - 9,
             "last": len(fixes) - 1}
    index["closing"] = index["departure"] + 1
    index["closing+1"] = index["departure"] + 2
    split = run_in_windows(fixes, cuts=[times[index[where]]])
    pd.testing.assert_frame_equal(split[STAY_FIELDS], whole[STAY_FIELDS])


def test_a_stay_longer_than_a_day_is_cut_at_24_hours_and_comes_out_the_same_in_windows():
    points = [moved(*HOME, north_m=5 * math.sin(i)) for i in range(30 * 60 + 1)] + [moved(*HOME, east_m=900)]
    fixes = gps(points, step_s=60)                                                  # 30 h, a fix a minute
    whole = visits(fixes, None, RULES)
    assert len(whole) == 2
    first, second = whole.iloc[0], whole.iloc[1]
    assert (first["arrived_at"], first["departed_at"]) == (T0, T0 + pd.Timedelta(hours=24))
    assert second["arrived_at"] == T0 + pd.Timedelta(hours=24, minutes=1)
    assert second["departed_at"] == T0 + pd.Timedelta(hours=30)
    split = run_in_windows(fixes, pd.Timedelta(hours=1))
    pd.testing.assert_frame_equal(split[STAY_FIELDS], whole[STAY_FIELDS])
    assert split["window_start"].tolist() == [T0 + pd.Timedelta(hours=24), T0 + pd.Timedelta(hours=30)]


def test_a_device_silent_for_hours_mid_stay_gets_its_visit_when_it_returns():
    stay = gps([COFFEE] * 40)
    back = gps([moved(*COFFEE, east_m=2000)] * 3, start=T0 + pd.Timedelta(hours=20))
    fixes = pd.concat([stay, back], ignore_index=True)
    split = run_in_windows(fixes, pd.Timedelta(minutes=15))
    pd.testing.assert_frame_equal(split[STAY_FIELDS], visits(fixes, None, RULES)[STAY_FIELDS])
    assert len(split) == 1 and split.iloc[0]["window_start"] == T0 + pd.Timedelta(hours=20)


def test_a_stay_closed_within_the_carry_is_not_emitted_again():
    # Only the window holding the closing fix emits a visit (here: the carry closes home, with no
    # earlier visits rows, as on the first window after a deploy).
    fixes = day_trace()
    found = visits(fixes.iloc[150:], fixes.iloc[:150], RULES)
    assert len(found) == 1 and haversine_m(found.iloc[0]["latitude"], found.iloc[0]["longitude"], *COFFEE) < 10


def test_late_fixes_before_the_last_visit_are_left_out():
    fixes = day_trace()
    earlier = visits(fixes, None, RULES)
    late = gps([HOME] * 40, start=T0 + pd.Timedelta(minutes=1), window_start=T0 + pd.Timedelta(hours=2))
    assert visits(late, None, RULES, previous_visits=earlier).empty


def test_visits_of_two_devices_are_kept_apart():
    a = day_trace()
    b = gps([COFFEE] * 40 + [HOME], device="phone-2")
    found = visits(pd.concat([a, b], ignore_index=True), None, RULES)
    assert found["device_id"].tolist() == ["phone-1", "phone-1", "phone-2"]


# -- places -----------------------------------------------------------------------------------------
def stay(lat, lon, arrived, device="phone-1", window_start=T0) -> dict:
    arrived = pd.Timestamp(arrived)
    return {"window_start": window_start, "device_id": device, "visit_id": f"{device}-{arrived.value // 1_000_000}",
            "recorded_at": arrived, "arrived_at": arrived, "departed_at": arrived + pd.Timedelta(minutes=20),
            "duration_seconds": 1200.0, "latitude": lat, "longitude": lon, "radius_m": 30.0, "fix_count": 120}


def business(visit_id, confidence=0.9, distance=40.0, provider="foursquare", business_id="fsq-1", name="Bean") -> dict:
    return {"visit_id": visit_id, "provider": provider, "business_id": business_id, "name": name,
            "category": "cafe", "distance_m": distance, "confidence": confidence}


def geocode(visit_id, address="5 Rue de l'Église, Nashville, TN") -> dict:
    return {"visit_id": visit_id, "address": address, "name": None, "city": "Nashville", "country": "US",
            "provider": "nominatim"}


@pytest.mark.parametrize(
    ("at_home", "candidates", "geocoded", "source", "key"),
    [
        (True, [business("V", 0.95, 10)], True, "georegion", "region:1"),
        (False, [business("V", 0.95, 10)], True, "business", "foursquare:fsq-1"),
        (False, [business("V", 0.7, 100)], True, "business", "foursquare:fsq-1"),       # bounds included
        (False, [business("V", 0.69, 10)], True, "geocoded", "address:5-rue-de-l-eglise-nashville-tn"),
        (False, [business("V", 0.9, 101)], True, "geocoded", "address:5-rue-de-l-eglise-nashville-tn"),
        (False, [], False, "unknown", None),
    ],
)
def test_place_priority_is_region_then_business_then_geocoded_then_unknown(at_home, candidates, geocoded, source, key):
    lat, lon = HOME if at_home else COFFEE
    visit = stay(lat, lon, T0)
    vid = visit["visit_id"]
    candidates = pd.DataFrame([{**c, "visit_id": vid} for c in candidates]) if candidates else None
    geo = pd.DataFrame([geocode(vid)]) if geocoded else None
    out = match_visits(pd.DataFrame([visit]), [circle()], candidates, geo, None, RULES)
    assert_exact_frame(out, VISIT_DTYPES)
    row = out.iloc[0]
    assert row["place_source"] == source
    assert row["place_key"] == (key or f"geohash:{geohash(lat, lon, 7)}")
    if source == "georegion":
        assert (row["region_id"], row["place_name"], row["place_category"]) == (1, "Home", "home")
        assert row["address"] == "5 Rue de l'Église, Nashville, TN"                   # kept whatever the source
    if source == "business":
        assert (row["business_provider"], row["business_id"], row["place_category"]) == ("foursquare", "fsq-1", "cafe")
    assert row["visit_count_30d"] == 1


def test_the_most_confident_business_then_the_nearest_wins():
    visit = stay(*COFFEE, T0)
    vid = visit["visit_id"]
    candidates = pd.DataFrame([business(vid, 0.8, 5, business_id="a"), business(vid, 0.9, 60, business_id="b"),
                               business(vid, 0.9, 30, business_id="c", provider="google_places")])
    out = match_visits(pd.DataFrame([visit]), [], candidates, None, None, RULES)
    assert out.iloc[0]["place_key"] == "google_places:c"


def test_the_smallest_containing_region_wins():
    campus = circle(radius=1000, id=1, name="Campus", type="work")
    office = circle(radius=60, id=7, name="Office", type="work")
    out = match_visits(pd.DataFrame([stay(*HOME, T0)]), [campus, office], None, None, None, RULES)
    assert out.iloc[0]["place_key"] == "region:7"


def test_visit_counts_cover_30_days_up_to_and_including_the_visit():
    now = T0 + pd.Timedelta(days=40)
    current = pd.DataFrame([stay(*COFFEE, now), stay(*COFFEE, now + pd.Timedelta(hours=3)),
                            stay(*COFFEE, now, device="phone-2")])
    key = f"geohash:{geohash(*COFFEE, 7)}"
    history = pd.DataFrame([
        {"device_id": "phone-1", "place_key": key, "arrived_at": now - pd.Timedelta(days=31), "visit_id": "old"},
        {"device_id": "phone-1", "place_key": key, "arrived_at": now - pd.Timedelta(days=30), "visit_id": "edge"},
        {"device_id": "phone-1", "place_key": key, "arrived_at": now - pd.Timedelta(days=29), "visit_id": "in"},
        {"device_id": "phone-1", "place_key": "region:1", "arrived_at": now - pd.Timedelta(days=1), "visit_id": "home"},
        # the visit itself, already in history: counted once
        {"device_id": "phone-1", "place_key": key, "arrived_at": now, "visit_id": current.iloc[0]["visit_id"]},
    ])
    out = match_visits(current, [], None, None, history, RULES)
    assert out[["device_id", "visit_count_30d"]].values.tolist() == [["phone-1", 2], ["phone-1", 3], ["phone-2", 1]]


@pytest.mark.parametrize(
    ("address", "key"),
    [("123 Main St., Nashville, TN", "123-main-st-nashville-tn"), ("  Café  Rösti ", "cafe-rosti"),
     ("STRASSE 5", "strasse-5"), ("", ""), (None, "")],
)
def test_address_key(address, key):
    assert address_key(address) == key


def test_geocoded_place_without_an_address_uses_name_and_city():
    visit = stay(*COFFEE, T0)
    geo = pd.DataFrame([{**geocode(visit["visit_id"], address=None), "name": "Centennial Park"}])
    row = match_visits(pd.DataFrame([visit]), [], None, geo, None, RULES).iloc[0]
    assert (row["place_key"], row["place_name"]) == ("address:centennial-park-nashville-us", "Centennial Park")


def test_geohash_matches_the_reference_value():
    assert geohash(57.64911, 10.40744, 11) == "u4pruydqqvj"   # the example of geohash.org / Wikipedia


# -- shapes ---------------------------------------------------------------------------------------
def test_empty_inputs_give_empty_frames_with_exact_columns():
    assert_exact_frame(region_events(pd.DataFrame(), [circle()], None, RULES), REGION_EVENT_DTYPES)
    assert_exact_frame(region_events(gps([HOME]), [], None, RULES), REGION_EVENT_DTYPES)
    assert_exact_frame(region_state(None), REGION_STATE_DTYPES)
    assert_exact_frame(visits(pd.DataFrame(), None, RULES), STAY_DTYPES)
    assert_exact_frame(visits(gps([HOME] * 3), pd.DataFrame(), RULES, pd.DataFrame()), STAY_DTYPES)
    assert_exact_frame(match_visits(pd.DataFrame(), [circle()], None, None, None, RULES), VISIT_DTYPES)
    assert visit_carry(None, None, RULES).empty


def test_output_columns_name_both_tables():
    assert OUTPUT_COLUMNS == {"location_georegions": tuple(REGION_EVENT_DTYPES),
                              "location_places": tuple(VISIT_DTYPES)}
    assert visit_lookback_start(T0, RULES) == T0 - pd.Timedelta(hours=48)
