import math

import numpy as np
import pandas as pd
import pytest

from loom_assets.stages.motion import (
    EVENT_DTYPES,
    WINDOW_DTYPES,
    MotionRules,
    activity_type,
    count_steps,
    motion_type,
    motion_windows,
    significant_motion,
    zero_crossings,
)

RULES = MotionRules()
G = 9.80665
HZ = 50
# Not on the 4 s window grid, so the first window of a stream starts before its first sample.
T0 = pd.Timestamp("2025-03-03 10:00:00.013", tz="UTC")


# -- synthetic signals ------------------------------------------------------------------------------
def rotation(rng) -> np.ndarray:
    """A random rotation matrix: the phone in an unknown orientation."""
    q = rng.normal(size=4)
    a, b, c, d = q / np.linalg.norm(q)
    return np.array([
        [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
        [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
        [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
    ])


def irregular_times(seconds, hz, rng, jitter=0.3, drop=0.05) -> np.ndarray:
    """Sample times at about `hz`: each jittered by up to 30 % of a period, 5 % dropped."""
    n = int(seconds * hz)
    t = np.arange(n) / hz + rng.uniform(-jitter, jitter, n) / hz
    return np.sort(t[rng.uniform(size=n) > drop])


def gait(t, rng, steps_hz=1.8, phase=0.7) -> np.ndarray:
    """Walking: a vertical bounce per step (with a harmonic), sway, noise; phone rotated at random.
    Step k is at (k - phase / 2π) / steps_hz seconds."""
    p = 2 * np.pi * steps_hz * t + phase
    vertical = 3.0 * (np.cos(p) + 0.35 * np.cos(2 * p + 0.4)) + rng.normal(0, 0.3, len(t))
    sideways = 1.0 * np.sin(p / 2) + rng.normal(0, 0.2, len(t))
    forward = 0.8 * np.sin(p + 1) + rng.normal(0, 0.2, len(t))
    return np.stack([forward, sideways, G + vertical], axis=1) @ rotation(rng).T


def true_steps(seconds, steps_hz=1.8, phase=0.7) -> np.ndarray:
    k = np.arange(int(seconds * steps_hz) + 2)
    steps = (k - phase / (2 * np.pi)) / steps_hz
    return steps[steps >= 0]


def samples(t, xyz, device="phone-1", start=T0, window_start=None) -> pd.DataFrame:
    """Raw rows: recorded_at = start + t seconds."""
    n = len(t)
    return pd.DataFrame({
        "window_start": window_start or start, "device_id": device,
        "recorded_at": start + pd.to_timedelta(np.round(np.asarray(t) * 1e6).astype(np.int64), unit="us"),
        "source_topic": "device.sensor.accelerometer.raw", "source_partition": 0,
        "source_offset": np.arange(n), "message_id": [f"{device}-{i}" for i in range(n)], "trace_id": None,
        "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2],
    })


def magnitude_signal(d, seed=0, device="phone-1", start=T0) -> pd.DataFrame:
    """50 Hz samples whose ‖a‖ is g + d, in a random orientation."""
    d = np.asarray(d, dtype=float)
    t = np.arange(len(d)) / HZ
    xyz = np.stack([np.zeros_like(d), np.zeros_like(d), G + d], axis=1) @ rotation(np.random.default_rng(seed)).T
    return samples(t, xyz, device=device, start=start)


def still(seconds, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.03, int(seconds * HZ))


def wave(seconds, fn) -> np.ndarray:
    return fn(np.arange(int(seconds * HZ)) / HZ)


# The motions of docs/flows/motion.md#significant-motion, as the dynamic magnitude d = ‖a‖ - g at 50 Hz.
WALKING = wave(20, lambda t: 7 * np.maximum(np.cos(2 * np.pi * 2 * t), 0) ** 4 + 0.2)  # heel strikes, 2 steps/s
RUNNING = wave(90, lambda t: 6 * np.sin(2 * np.pi * 3 * t))             # 3 Hz, larger: cut into 3 events
SHAKE = wave(4, lambda t: (14 - t) * np.sin(2 * np.pi * 6 * t))          # fast and large
FALL = np.concatenate([np.full(25, 0.3 - G), [25.0, 15.0, 5.0]])         # 0.5 s free fall, impact
VEHICLE = wave(20, lambda t: 1.2 + np.sin(2 * np.pi * 0.5 * t))          # low, slow sway


def with_quiet(*motions, quiet=5.0) -> np.ndarray:
    parts = [still(quiet, 0)]
    for i, motion in enumerate(motions, start=1):
        parts += [motion, still(quiet, i)]
    return np.concatenate(parts)


def in_partitions(frame, cuts, stage, tail_seconds, rules=RULES):
    """Run `stage` partition by partition, cut at these seconds after T0, each with the last
    `tail_seconds` of every device's earlier samples as tail (and, for events, the end of the
    device's last emitted event)."""
    edges = [T0 - pd.Timedelta(days=1), *(T0 + pd.Timedelta(seconds=c) for c in cuts), T0 + pd.Timedelta(days=1)]
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        part = frame[(frame["recorded_at"] >= lo) & (frame["recorded_at"] < hi)].assign(window_start=lo)
        earlier = frame[frame["recorded_at"] < lo]
        last = earlier.groupby("device_id")["recorded_at"].transform("max")
        tail = earlier[earlier["recorded_at"] >= last - pd.Timedelta(seconds=tail_seconds)]
        if stage is significant_motion:
            emitted = pd.concat(out) if out else pd.DataFrame(columns=["device_id", "end_time"])
            last_end = emitted.groupby("device_id")["end_time"].max()
            result = significant_motion(part, tail, last_end, rules)
        else:
            result = stage(part, tail, rules)
        out.append(result)
    return pd.concat(out, ignore_index=True)


def assert_same_rows(left, right):
    pd.testing.assert_frame_equal(left.drop(columns="window_start").reset_index(drop=True),
                                  right.drop(columns="window_start").reset_index(drop=True), check_exact=True)


# -- rules ------------------------------------------------------------------------------------------
def test_rules_derive_the_window_step_and_the_tails():
    assert RULES.step_seconds == 4.0
    assert RULES.tail_seconds == 5.0
    assert RULES.event_tail_seconds == 32.0


# -- windows ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("hz", [20, 50, 100])
@pytest.mark.parametrize("seed", [0, 1])
def test_steps_of_a_minute_of_walking_are_counted_within_five_percent(hz, seed):
    rng = np.random.default_rng(seed)
    t = irregular_times(60, hz, rng)
    windows = motion_windows(samples(t, gait(t, rng)), None, RULES)

    counted = windows.dropna(subset=["step_count"])
    assert len(counted) >= len(windows) - 1  # only the first window, before the first sample, is sparse
    steps = true_steps(60)
    offsets = [((s - T0).total_seconds() + 0.5, (s - T0).total_seconds() + 4.5) for s in counted["recorded_at"]]
    expected = sum(int(((steps >= lo) & (steps < hi)).sum()) for lo, hi in offsets)
    assert expected > 90
    assert abs(int(counted["step_count"].sum()) - expected) <= 0.05 * expected
    assert counted["peak_frequency_hz"].between(1.7, 1.9).all()


def test_windows_sit_on_a_four_second_grid_of_five_second_windows():
    rng = np.random.default_rng(3)
    t = irregular_times(30, HZ, rng)
    windows = motion_windows(samples(t, gait(t, rng)), None, RULES)

    epoch_us = (windows["recorded_at"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(microseconds=1)
    assert (epoch_us % 4_000_000 == 0).all()
    assert ((windows["window_end"] - windows["recorded_at"]) == pd.Timedelta(seconds=5)).all()
    assert (windows["recorded_at"].diff().dropna() == pd.Timedelta(seconds=4)).all()
    # Complete windows only: each ends at or before the last sample.
    assert windows["window_end"].max() <= T0 + pd.Timedelta(seconds=t[-1])
    assert windows["window_end"].max() + pd.Timedelta(seconds=4) > T0 + pd.Timedelta(seconds=t[-1])


def test_a_regular_50_hz_window_has_250_samples_and_its_statistics():
    t = np.arange(0, 12, 1 / HZ)
    xyz = np.stack([np.full_like(t, 1.0), np.sin(2 * np.pi * 2 * t), np.full_like(t, G)], axis=1)
    start = pd.Timestamp("2025-03-03 10:00:00", tz="UTC")  # on the grid
    windows = motion_windows(samples(t, xyz, start=start), None, RULES)

    # [-4 s, 1 s) holds the first second of samples; [8 s, 13 s) is not complete.
    assert windows["recorded_at"].tolist() == [start + pd.Timedelta(seconds=s) for s in (-4, 0, 4)]
    assert windows["sample_count"].tolist() == [50, 250, 250]
    assert windows["step_count"].isna().tolist() == [True, False, False]
    windows = windows.iloc[1:]
    assert windows["sampling_rate_hz"].tolist() == pytest.approx([50.0, 50.0])
    assert windows["mean_x"].tolist() == pytest.approx([1.0, 1.0])
    assert windows["std_x"].tolist() == pytest.approx([0.0, 0.0], abs=1e-12)
    assert windows["std_y"].tolist() == pytest.approx([math.sqrt(0.5)] * 2, rel=1e-3)
    assert windows["mean_z"].tolist() == pytest.approx([G, G])
    expected_magnitude = np.sqrt(1 + np.sin(2 * np.pi * 2 * t[:250]) ** 2 + G**2)
    assert windows["magnitude_mean"].iloc[0] == pytest.approx(expected_magnitude.mean())
    assert windows["magnitude_std"].iloc[0] == pytest.approx(expected_magnitude.std())
    assert windows["peak_frequency_hz"].tolist() == pytest.approx([4.0, 4.0], abs=0.05)  # |sin| at 2 Hz


@pytest.mark.parametrize("frequency", [0.7, 1.3, 2.0, 3.3, 7.5, 12.0])
def test_peak_frequency_is_that_of_a_sine_in_the_magnitude(frequency):
    rng = np.random.default_rng(int(frequency * 10))
    t = irregular_times(20, 100, rng, drop=0.0)
    d = 2.0 * np.sin(2 * np.pi * frequency * t)
    xyz = np.stack([np.zeros_like(t), np.zeros_like(t), G + d], axis=1) @ rotation(rng).T
    windows = motion_windows(samples(t, xyz), None, RULES).dropna(subset=["peak_frequency_hz"])

    assert len(windows) >= 3
    assert windows["peak_frequency_hz"].to_numpy() == pytest.approx(frequency, abs=0.05)


def test_a_still_phone_has_no_peak_frequency_and_no_steps():
    t = np.arange(0, 12, 1 / HZ)
    xyz = np.tile([0.0, 0.0, G], (len(t), 1))
    windows = motion_windows(samples(t, xyz), None, RULES)
    dense = windows.iloc[1:]
    assert dense["peak_frequency_hz"].isna().all()
    assert (dense["step_count"] == 0).all()


@pytest.mark.parametrize(
    ("times", "why"),
    [
        (np.arange(0, 12, 1 / 5), "5 Hz: fewer than 40 samples a window"),
        (np.concatenate([np.arange(0, 5.0, 1 / HZ), np.arange(5.8, 12, 1 / HZ)]), "a 0.8 s hole"),
    ],
)
def test_sparse_windows_keep_their_statistics_but_get_no_spectrum_steps_or_features(times, why):
    start = pd.Timestamp("2025-03-03 10:00:00", tz="UTC")
    xyz = np.stack([np.zeros_like(times), np.zeros_like(times), G + np.sin(2 * np.pi * 2 * times)], axis=1)
    windows = motion_windows(samples(times, xyz, start=start), None, RULES, feature_fn=lambda w: w.mean(axis=0))

    sparse = windows[windows["step_count"].isna()]
    assert len(sparse) >= 1, why
    assert sparse["peak_frequency_hz"].isna().all()
    assert sparse["features"].isna().all()
    assert sparse["sample_count"].gt(0).all() and sparse["mean_z"].notna().all()
    assert list(windows.dtypes.astype(str)) == [pd.Series(dtype=d).dtype.name for d in WINDOW_DTYPES.values()]


def test_features_come_from_the_window_resampled_to_50_hz():
    rng = np.random.default_rng(5)
    t = irregular_times(14, 20, rng)
    seen = []

    def feature_fn(xyz):
        seen.append(xyz)
        return np.array([xyz.shape[0], xyz.shape[1], np.linalg.norm(xyz, axis=1).mean()], dtype=np.float32)

    windows = motion_windows(samples(t, gait(t, rng)), None, RULES, feature_fn=feature_fn)
    dense = windows.dropna(subset=["step_count"])
    assert len(seen) == len(dense) >= 2
    assert all(w.shape == (250, 3) and w.dtype == np.float64 for w in seen)
    for row in dense.itertuples():
        assert isinstance(row.features, list) and row.features[:2] == [250.0, 3.0]
        assert row.features[2] == pytest.approx(row.magnitude_mean, rel=0.02)  # m/s², gravity included
    assert motion_windows(samples(t, gait(t, rng)), None, RULES)["features"].isna().all()


@pytest.mark.parametrize("cuts", [[10.0], [8.0, 16.0], [7.99, 13.3, 13.31, 27.0], [4.0, 12.0, 20.0], [1.0, 35.0]])
@pytest.mark.parametrize("tail_seconds", [RULES.tail_seconds, RULES.event_tail_seconds])
def test_windows_split_across_partitions_equal_the_windows_of_the_whole(cuts, tail_seconds):
    rng = np.random.default_rng(7)
    t = irregular_times(40, HZ, rng)
    walk = samples(t, gait(t, rng))
    other = samples(t + 0.5, gait(t, rng), device="watch-2")
    frame = pd.concat([walk, other], ignore_index=True)

    whole = motion_windows(frame, None, RULES, feature_fn=lambda w: w[::50, 2])
    split = in_partitions(frame, cuts, lambda s, tl, r: motion_windows(s, tl, r, feature_fn=lambda w: w[::50, 2]),
                          tail_seconds)
    split = split.sort_values(["device_id", "recorded_at"], kind="stable")
    assert not split.duplicated(["device_id", "recorded_at"]).any()
    assert_same_rows(split, whole)


def test_more_than_a_batch_of_windows_gives_the_same_rows_as_partitions_of_it():
    # 70 min at 10 Hz: over 1024 windows, so the whole is resampled in two batches.
    rng = np.random.default_rng(13)
    t = irregular_times(70 * 60, 10, rng, drop=0.0)
    frame = samples(t, gait(t, rng))
    whole = motion_windows(frame, None, RULES)
    assert len(whole) > 1024 and whole["step_count"].notna().sum() > 1024
    split = in_partitions(frame, [1500.0, 3000.0], motion_windows, RULES.tail_seconds)
    assert_same_rows(split, whole)


def test_a_window_waits_for_the_partition_that_completes_it():
    t = np.arange(0, 10, 1 / HZ)
    start = pd.Timestamp("2025-03-03 10:00:00", tz="UTC")
    xyz = np.tile([0.0, 0.0, G], (len(t), 1))
    frame = samples(t, xyz, start=start)
    first = frame[frame["recorded_at"] < start + pd.Timedelta(seconds=8.5)]
    second = frame[frame["recorded_at"] >= start + pd.Timedelta(seconds=8.5)]

    # [-4, 1) and [0, 5) are complete at 8.48 s, [4, 9) is not: it is the next partition's.
    assert motion_windows(first, None, RULES)["recorded_at"].tolist() == [start - pd.Timedelta(seconds=4), start]
    assert motion_windows(second, first, RULES)["recorded_at"].tolist() == [start + pd.Timedelta(seconds=4)]
    assert motion_windows(second, first, RULES)["sample_count"].tolist() == [250]


def test_a_sample_in_both_tail_and_partition_counts_once():
    t = np.arange(0, 10, 1 / HZ)
    start = pd.Timestamp("2025-03-03 10:00:00", tz="UTC")
    frame = samples(t, np.tile([0.0, 0.0, G], (len(t), 1)), start=start)
    tail = frame[frame["recorded_at"] < start + pd.Timedelta(seconds=6)]
    own = frame[frame["recorded_at"] >= start + pd.Timedelta(seconds=5)]  # repeats 5-6 s
    windows = motion_windows(own, tail, RULES)
    assert windows["sample_count"].tolist() == [250]


@pytest.mark.parametrize(
    "empty", [None, pd.DataFrame(), pd.DataFrame(columns=["device_id", "recorded_at", "x", "y", "z"])]
)
def test_no_samples_give_empty_frames_with_every_column_typed(empty):
    windows = motion_windows(empty, None, RULES)
    events = significant_motion(empty, empty, None, RULES)
    for frame, dtypes in ((windows, WINDOW_DTYPES), (events, EVENT_DTYPES)):
        assert frame.empty
        assert list(frame.columns) == list(dtypes)
        assert list(frame.dtypes.astype(str)) == [pd.Series(dtype=d).dtype.name for d in dtypes.values()]


def test_windows_of_several_devices_have_the_declared_dtypes():
    rng = np.random.default_rng(11)
    t = irregular_times(20, HZ, rng)
    frame = pd.concat([samples(t, gait(t, rng)), samples(t, gait(t, rng), device="watch-2")], ignore_index=True)
    windows = motion_windows(frame, None, RULES)
    assert list(windows.columns) == list(WINDOW_DTYPES)
    assert list(windows.dtypes.astype(str)) == [pd.Series(dtype=d).dtype.name for d in WINDOW_DTYPES.values()]
    assert windows["device_id"].tolist() == sorted(windows["device_id"].tolist())
    assert (windows["window_start"] == T0).all()


# -- steps ------------------------------------------------------------------------------------------
def test_count_steps_finds_each_bounce_of_a_clean_walk():
    t = np.arange(0, 10, 1 / HZ)
    peaks = count_steps(G + 3.0 * np.cos(2 * np.pi * 2.0 * t), RULES)
    assert len(peaks) in (19, 20, 21)
    assert np.diff(peaks).tolist() == [25] * (len(peaks) - 1)


@pytest.mark.parametrize(
    ("magnitude", "why"),
    [
        (np.full(500, G), "still"),
        (G + 0.5 * np.cos(2 * np.pi * 2.0 * np.arange(500) / HZ), "too weak to be a step"),
        (G + 3.0 * np.cos(2 * np.pi * 8.0 * np.arange(500) / HZ), "too fast to be steps"),
        (np.array([G, G + 3]), "too short"),
        (np.array([]), "empty"),
    ],
)
def test_count_steps_finds_none(magnitude, why):
    assert len(count_steps(magnitude, RULES)) == 0, why


# -- significant motion: types ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("motion", "expected"),
    [
        (WALKING, ["walking"]),
        (RUNNING, ["sudden_start", "running", "sudden_stop"]),
        (SHAKE, ["shake"]),
        (FALL, ["fall"]),
        (VEHICLE, ["vehicle"]),
    ],
)
def test_each_motion_is_told_by_its_signal(motion, expected):
    events = significant_motion(magnitude_signal(with_quiet(motion)), None, None, RULES)
    assert events["motion_type"].tolist() == expected


def test_motion_type_confidences_are_those_of_the_spec():
    kinds = {}
    for motion in (WALKING, RUNNING, SHAKE, FALL, VEHICLE):
        events = significant_motion(magnitude_signal(with_quiet(motion)), None, None, RULES)
        kinds.update(zip(events["motion_type"], events["confidence"]))
    assert kinds == {"walking": 0.7, "sudden_start": 0.8, "running": 0.7, "sudden_stop": 0.8, "shake": 0.7,
                     "fall": 0.9, "vehicle": 0.6}


def seconds_at(n, hz=HZ):
    return np.arange(n) / hz


@pytest.mark.parametrize(
    ("m", "expected"),
    [
        (np.concatenate([np.zeros(50), np.full(50, 4.0)]), "sudden_start"),
        (np.concatenate([np.full(50, 4.0), np.zeros(50)]), "sudden_stop"),
        (np.concatenate([np.zeros(50), np.full(20, 9.5), [20.0, 5.0], np.zeros(50)]), "fall"),
        (np.concatenate([np.zeros(50), [20.0], np.full(50, 3.0)]), "vehicle"),  # a peak but no stillness after
        (np.abs(12 * np.sin(2 * np.pi * 6 * seconds_at(100))), "shake"),
        (2.0 + np.sign(np.sin(2 * np.pi * 2 * seconds_at(100) + 0.1)), "walking"),   # zc 8 per 2 s, mean 2
        (4.0 + np.sign(np.sin(2 * np.pi * 5 * seconds_at(100) + 0.1)), "running"),   # zc 20, mean 4
        (1.2 + 0.5 * np.sign(np.sin(2 * np.pi * 0.5 * seconds_at(100) + 0.1)), "vehicle"),  # zc 2, mean 1.2
        (4.0 + np.sign(np.sin(2 * np.pi * 2 * seconds_at(100) + 0.1)), "unknown"),   # walking's rhythm, too strong
        (np.array([5.0]), "unknown"),
    ],
)
def test_motion_type_rules_in_order(m, expected):
    kind, confidence = motion_type(seconds_at(len(m)), m, RULES)
    assert kind == expected
    assert confidence == {"sudden_start": 0.8, "sudden_stop": 0.8, "fall": 0.9, "shake": 0.7, "walking": 0.7,
                          "running": 0.7, "vehicle": 0.6, "unknown": 0.5}[expected]


def test_zero_crossings_are_counted_per_two_seconds_whatever_the_rate():
    for hz in (10, 50, 100):
        t = np.arange(0, 4, 1 / hz)
        m = 2.0 + np.sign(np.sin(2 * np.pi * 2 * t + 0.1))   # 4 crossings a second
        assert zero_crossings(m) == 15
        # 15 crossings over 3.9-3.99 s: ~7.6 per 2 s, walking at every rate.
        assert motion_type(t, m, RULES)[0] == "walking"


@pytest.mark.parametrize(
    ("mean", "std", "expected"),
    [
        (0.2, 0.1, ("stationary", 0.9)),
        (0.49, 3.0, ("stationary", 0.9)),
        (1.5, 0.8, ("walking", 0.7)),
        (3.0, 1.5, ("running", 0.7)),
        (1.5, 0.6, ("walking", 0.7)),
        (0.8, 0.3, ("vehicle", 0.6)),
        (0.8, 0.5, ("unknown", 0.5)),
        (6.0, 3.0, ("unknown", 0.5)),
        (3.0, 0.8, ("unknown", 0.5)),
    ],
)
def test_activity_type_rules_in_order(mean, std, expected):
    assert activity_type(mean, std, RULES) == expected


# -- significant motion: events ---------------------------------------------------------------------
def burst(seconds, level=4.0) -> np.ndarray:
    """m = `level` (‖a‖ = g + level) for this long."""
    return np.full(int(round(seconds * HZ)), level)


@pytest.mark.parametrize(
    ("gap_seconds", "events"),
    [(0.5, 1), (1.5, 1), (1.98, 1), (2.02, 2), (3.0, 2)],
)
def test_crossings_closer_than_the_debounce_are_one_event(gap_seconds, events):
    # The gap is between the last crossing of one burst and the first of the next.
    d = with_quiet(np.concatenate([burst(1.0), still(gap_seconds - 1 / HZ, 9), burst(1.0)]))
    found = significant_motion(magnitude_signal(d), None, None, RULES)
    assert len(found) == events


@pytest.mark.parametrize(("seconds", "events"), [(0.02, 0), (0.3, 0), (0.48, 0), (0.52, 1), (3.0, 1)])
def test_events_shorter_than_the_minimum_duration_are_dropped(seconds, events):
    # n samples span (n - 1) / 50 s from first to last crossing.
    d = with_quiet(burst(seconds + 1 / HZ))
    found = significant_motion(magnitude_signal(d), None, None, RULES)
    assert len(found) == events
    if events:
        assert found["duration_seconds"].iloc[0] == pytest.approx(seconds, abs=1e-6)


def test_a_long_motion_becomes_a_series_of_events_of_at_most_30_s():
    events = significant_motion(magnitude_signal(with_quiet(burst(70.0))), None, None, RULES)
    assert len(events) == 3
    assert (events["duration_seconds"] < 30.0).all()
    assert events["duration_seconds"].iloc[:2].tolist() == pytest.approx([29.98, 29.98])
    # Back to back: each event starts at the sample after the previous one's end.
    gaps = (events["start_time"].iloc[1:].to_numpy() - events["end_time"].iloc[:-1].to_numpy())
    assert (gaps == np.timedelta64(20_000, "us")).all()


def test_an_event_row_describes_the_event():
    d = with_quiet(FALL)
    frame = magnitude_signal(d, device="phone-7")
    events = significant_motion(frame, None, None, RULES)
    assert len(events) == 1
    event = events.iloc[0]
    first_crossing = T0 + pd.Timedelta(seconds=5.0)
    assert event["start_time"] == event["recorded_at"] == first_crossing
    assert event["end_time"] == first_crossing + pd.Timedelta(seconds=27 / HZ)
    assert event["event_id"] == f"phone-7-{first_crossing.value // 1_000_000}"
    assert event["duration_seconds"] == pytest.approx(0.54)
    assert event["sample_count"] == 28
    assert event["max_acceleration"] == pytest.approx(25.0)
    assert event["min_acceleration"] == pytest.approx(5.0)
    m = np.abs(np.concatenate([np.full(25, 0.3 - G), [25.0, 15.0, 5.0]]))
    assert event["avg_acceleration"] == pytest.approx(m.mean())
    assert event["std_acceleration"] == pytest.approx(m.std())
    assert event["p25_acceleration"] == pytest.approx(np.percentile(m, 25))
    assert event["p75_acceleration"] == pytest.approx(np.percentile(m, 75))
    assert event["window_start"] == T0
    assert list(events.dtypes.astype(str)) == [pd.Series(dtype=d).dtype.name for d in EVENT_DTYPES.values()]


def test_the_dominant_axis_is_the_one_that_moves_most():
    t = np.arange(0, 12, 1 / HZ)
    shaking = (t > 5) & (t < 8)
    x = np.where(shaking, 8 * np.sin(2 * np.pi * 5 * t), 0.0)
    xyz = np.stack([x, np.full_like(t, 0.1), np.full_like(t, G)], axis=1)
    events = significant_motion(samples(t, xyz), None, None, RULES)
    assert events["dominant_axis"].tolist() == ["x"]
    assert events["x_variance"].iloc[0] > 10 * events["z_variance"].iloc[0]


def test_an_open_event_is_left_to_the_partition_that_closes_it():
    frame = magnitude_signal(with_quiet(burst(3.0)))
    # Crossings 5.00-7.98 s; closed once a sample at 9.98 s (end + 2 s debounce) is in.
    first = frame[frame["recorded_at"] < T0 + pd.Timedelta(seconds=9.97)]
    second = frame[frame["recorded_at"] >= T0 + pd.Timedelta(seconds=9.97)]
    assert significant_motion(first, None, None, RULES).empty
    later = significant_motion(second, first, pd.Series(dtype="datetime64[us, UTC]"), RULES)
    assert later["start_time"].tolist() == [T0 + pd.Timedelta(seconds=5.0)]
    assert later["end_time"].tolist() == [T0 + pd.Timedelta(seconds=7.98)]


def test_last_event_end_keeps_an_emitted_event_from_coming_back():
    frame = magnitude_signal(with_quiet(burst(3.0), burst(1.0)))
    events = significant_motion(frame, None, None, RULES)
    assert len(events) == 2
    first_end = events["end_time"].iloc[0]
    for last_end in ({"phone-1": first_end}, pd.Series({"phone-1": first_end}), [("phone-1", first_end)]):
        again = significant_motion(frame, None, last_end, RULES)
        assert again["event_id"].tolist() == events["event_id"].iloc[1:].tolist()
    assert significant_motion(frame, None, {"phone-1": events["end_time"].max()}, RULES).empty
    # Another device's end changes nothing.
    assert len(significant_motion(frame, None, {"watch-2": events["end_time"].max()}, RULES)) == 2


SCENE = with_quiet(WALKING, FALL, RUNNING, SHAKE, burst(0.3), VEHICLE, burst(1.0), burst(1.0), quiet=4.0)


@pytest.mark.parametrize(
    "cuts",
    [
        [30.0],                                 # inside the walk
        [31.0, 36.0],                           # after the walk, at the fall
        [45.0, 60.0, 75.0, 90.0, 105.0, 120.0],  # every 15 s through the run
        [62.48, 62.5, 62.52],                   # around a cut of the run, 20 ms apart
        [40.0, 70.0, 100.0, 130.0, 160.0],      # every 30 s
        [133.5, 134.0, 138.0, 142.2, 150.0, 171.0, 172.0, 176.0],
    ],
)
def test_events_split_across_partitions_equal_the_events_of_the_whole(cuts):
    frame = pd.concat([magnitude_signal(SCENE), magnitude_signal(SCENE[::-1], seed=3, device="watch-2")],
                      ignore_index=True)
    whole = significant_motion(frame, None, None, RULES)
    assert len(whole) >= 14
    split = in_partitions(frame, cuts, significant_motion, RULES.event_tail_seconds)
    split = split.sort_values(["device_id", "start_time"], kind="stable")
    assert not split["event_id"].duplicated().any()
    assert_same_rows(split, whole)
