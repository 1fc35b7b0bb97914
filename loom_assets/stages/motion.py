"""Motion: 5 s accelerometer windows with steps, and significant-motion events (docs/flows/motion.md).

`motion_windows` is stage `data_aggregation` (docs/flows/motion.md#windows: 5 s windows, 1 s
overlap, mean, std, magnitude, peak frequency; plus the step counter (docs/flows/motion.md#steps)
and the activity model's features); `significant_motion` is stage `significant_motion_detection`
(docs/flows/motion.md#significant-motion).

Both read one partition's samples plus a `tail` of the device's earlier samples, and both give the
same rows however the samples are split across partitions: a window or event is a function of the
samples in a fixed span of event time only, and each is emitted by exactly one partition.
Samples are taken per device in event-time order; a sample repeated (same device and
`recorded_at`, the raw table's key) counts once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import signal

from loom_assets.stages.frames import typed_frame, utc, with_columns

_US = 1_000_000  # microseconds per second: all event-time arithmetic is in integer µs


@dataclass(frozen=True)
class MotionRules:
    """Every number of the motion flow, with its reason. Bump `version` when one changes."""

    version: str = "1"

    # -- windows (docs/flows/motion.md#windows) --
    # window_size_ms 5000, overlap_ms 1000: a window starts every 4 s, on a grid of multiples of
    # 4 s since the epoch, so window boundaries do not depend on where a partition starts. Steps
    # are counted in the middle 4 s of each window (half of each overlap), so they add up.
    window_seconds: float = 5.0
    overlap_seconds: float = 1.0
    # Every window is resampled to 50 Hz by linear interpolation before its spectrum, steps and
    # features: docs/flows/motion.md#windows sizes a window at 250 samples = 50 Hz, the step counter
    # (docs/flows/motion.md#steps) assumes 50 Hz, and the activity model is trained at 50 Hz.
    resample_hz: float = 50.0
    # Fewer samples than this, or a hole longer than `max_gap_seconds` (window edges included),
    # and a window gets no peak frequency, step count or features (only its plain statistics):
    # 40 = 5 s at 8 Hz, the mobile default of 10 Hz (docs/messages.md#sampling-rates) with 20 % of
    # samples lost, still above the 6 Hz needed to see the 3 Hz end of the step band. A 0.5 s hole
    # is one step at 2 steps/s: longer, and interpolation would draw a straight line over a step.
    min_samples: int = 40
    max_gap_seconds: float = 0.5
    # The spectrum is zero-padded to 8x the window (0.025 Hz bins instead of 0.2 Hz) and
    # Hann-tapered, so the peak frequency of a steady rhythm is read to a few hundredths of a Hz.
    spectrum_padding: int = 8

    # -- steps (docs/flows/motion.md#steps) --
    # 2nd-order Butterworth band-pass 0.5-3.0 Hz on the magnitude minus its mean: 30-180 steps/min,
    # walking to running cadence. Applied forward and backward (zero phase) so peaks stay in place.
    step_band_hz: tuple[float, float] = (0.5, 3.0)
    step_filter_order: int = 2
    # find_peaks(height=1.5, distance=fs/3): a step is a filtered peak of at least 1.5 m/s², and
    # steps are at least 1/3 s apart (at most 3 steps/s, a sprint).
    step_peak_height: float = 1.5
    step_min_interval_seconds: float = 1.0 / 3.0

    # -- significant motion (docs/flows/motion.md#significant-motion) --
    # m = |‖a‖ - g|, g the standard gravity (Loom v2's code used 9.8).
    gravity: float = 9.80665
    # A sample with m >= 2.0 m/s² is a "crossing" (Loom v2's threshold; its design's 0.1 g ≈ 1 m/s² was the
    # design value, the code's 2.0 is what ran and keeps walking-level jiggle out).
    motion_threshold: float = 2.0
    # docs/flows/motion.md#significant-motion: min_duration_ms 500 (first to last crossing),
    # debounce_ms 2000 (crossings less than 2 s apart are one event).
    min_event_seconds: float = 0.5
    debounce_seconds: float = 2.0
    # An event is cut after 30 s so a long walk or drive becomes a series of events that are
    # emitted as they happen (Loom v2's activity classifier looked back 120 s and spoke every
    # 60 s: it sees at least two events of an ongoing motion).
    max_event_seconds: float = 30.0
    # Motion and activity type are judged on the event plus 1 s either side: Loom v2 judged a 2 s
    # buffer, which is exactly what an instantaneous event gets. Loom v2's buffer-relative numbers
    # are turned into time: its "first/last quarter" is the first/last 0.5 s of the span,
    # zero crossings are counted per 2 s, "peak + 5 samples" at 100 Hz is 0.05 s after the peak,
    # and "peak < n - 10" is at least 0.1 s of samples after the peak.
    context_seconds: float = 1.0
    quarter_seconds: float = 0.5
    zero_crossing_seconds: float = 2.0
    # docs/flows/motion.md#significant-motion: motion_type thresholds (m/s², or zero crossings of
    # m - mean(m) per 2 s), first match wins.
    sudden_change: float = 3.0           # |last-quarter mean - first-quarter mean| >
    fall_peak: float = 8.0               # max m >
    fall_after_seconds: float = 0.05     # ... and the mean after peak + this
    fall_min_after_seconds: float = 0.1  # (over at least this long)
    fall_after_mean: float = 1.0         # ... is <
    shake_std: float = 2.0               # std >
    shake_crossings: float = 10.0        # and zc >
    walking_crossings: tuple[float, float] = (5.0, 15.0)  # open interval
    walking_mean: tuple[float, float] = (1.0, 3.0)        # open interval
    running_crossings: float = 15.0      # zc >
    running_mean: float = 3.0            # mean >
    vehicle_crossings: float = 5.0       # zc <
    vehicle_mean: tuple[float, float] = (0.5, 2.0)        # open interval
    # docs/flows/motion.md#significant-motion: activity_type thresholds on the same span (the code's
    # LOOM_ACTIVITY_* defaults).
    stationary_mean: float = 0.5
    walking_activity_mean: float = 2.0
    walking_activity_std: float = 0.5
    running_activity_mean: float = 5.0
    running_activity_std: float = 1.0
    vehicle_activity_mean: float = 1.0
    vehicle_activity_std: float = 0.5

    @property
    def step_seconds(self) -> float:
        """Seconds between window starts (4 s)."""
        return self.window_seconds - self.overlap_seconds

    @property
    def tail_seconds(self) -> float:
        """Seconds of a device's earlier samples `motion_windows` needs: one window (5 s)."""
        return self.window_seconds

    @property
    def event_tail_seconds(self) -> float:
        """Seconds of a device's earlier samples `significant_motion` needs: the longest event
        that can still be open, with its context on both sides (30 + 2 x 1 = 32 s)."""
        return self.max_event_seconds + 2 * self.context_seconds


# docs/flows/motion.md#significant-motion: confidences, by label.
MOTION_CONFIDENCE: dict[str, float] = {
    "sudden_start": 0.8, "sudden_stop": 0.8, "fall": 0.9, "shake": 0.7, "walking": 0.7,
    "running": 0.7, "vehicle": 0.6, "unknown": 0.5,
}
ACTIVITY_CONFIDENCE: dict[str, float] = {
    "stationary": 0.9, "walking": 0.7, "running": 0.7, "vehicle": 0.6, "unknown": 0.5,
}

SAMPLE_COLUMNS = ("window_start", "device_id", "recorded_at", "x", "y", "z")

_TIME = "datetime64[us, UTC]"
WINDOW_DTYPES: dict[str, str] = {
    "window_start": _TIME,          # the partition that emitted the window
    "device_id": "str",
    "recorded_at": _TIME,           # window start s (event time)
    "window_end": _TIME,            # s + 5 s, exclusive
    "sample_count": "Int64",        # raw samples in [s, s + 5 s)
    "sampling_rate_hz": "float64",  # (n - 1) / (last - first sample time); NaN below 2 samples
    "mean_x": "float64",
    "mean_y": "float64",
    "mean_z": "float64",
    "std_x": "float64",             # population std (ddof 0), as numpy and Loom v2's code
    "std_y": "float64",
    "std_z": "float64",
    "magnitude_mean": "float64",    # of ‖a‖, gravity included
    "magnitude_std": "float64",
    "peak_frequency_hz": "float64", # NaN for sparse or flat windows
    "step_count": "Int64",          # steps in [s + 0.5 s, s + 4.5 s); <NA> for sparse windows
    "features": "object",           # list of floats from feature_fn, or None
}

EVENT_DTYPES: dict[str, str] = {
    "window_start": _TIME,
    "device_id": "str",
    "recorded_at": _TIME,           # = start_time
    "event_id": "str",              # "<device_id>-<start_time in epoch ms>"
    "start_time": _TIME,            # first crossing
    "end_time": _TIME,              # last crossing
    "duration_seconds": "float64",
    "motion_type": "str",           # sudden_start | sudden_stop | fall | shake | walking | running | vehicle | unknown
    "confidence": "float64",
    "activity_type": "str",         # stationary | walking | running | vehicle | unknown
    "activity_confidence": "float64",
    "sample_count": "Int64",        # samples in [start_time, end_time]
    "max_acceleration": "float64",  # statistics of m over those samples (m/s²)
    "avg_acceleration": "float64",
    "std_acceleration": "float64",
    "min_acceleration": "float64",
    "p25_acceleration": "float64",
    "p75_acceleration": "float64",
    "dominant_axis": "str",         # x | y | z, largest variance over those samples
    "x_variance": "float64",
    "y_variance": "float64",
    "z_variance": "float64",
}

FeatureFn = Callable[[np.ndarray], Any]


# -- inputs ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Stream:
    """One device's samples (tail first), sorted by time, one per timestamp."""

    t: np.ndarray           # int64 µs since the epoch, strictly increasing
    xyz: np.ndarray         # (n, 3) float64 m/s²
    last_own: int           # µs of this partition's last sample
    last_tail: int | None   # µs of the tail's last sample, None without a tail
    window_start: Any       # this partition's window_start


def _prepared(frame: pd.DataFrame | None) -> pd.DataFrame:
    frame = with_columns(frame, SAMPLE_COLUMNS)[list(SAMPLE_COLUMNS)]
    frame = frame.dropna(subset=["device_id", "recorded_at", "x", "y", "z"])
    return frame.assign(
        recorded_at=utc(frame["recorded_at"]),
        x=frame["x"].astype("float64"), y=frame["y"].astype("float64"), z=frame["z"].astype("float64"),
    )


def _micros(times: pd.Series) -> np.ndarray:
    return (times - pd.Timestamp(0, tz="UTC")).to_numpy() // np.timedelta64(1, "us")


def _streams(samples: pd.DataFrame | None, tail: pd.DataFrame | None):
    """(device_id, _Stream) per device of `samples`, in device order."""
    own_all, tail_all = _prepared(samples), _prepared(tail)
    tails = dict(tuple(tail_all.groupby("device_id", sort=False)))
    for device_id, own in own_all.groupby("device_id", sort=True):
        before = tails.get(device_id)
        both = own if before is None else pd.concat([before, own], ignore_index=True)
        both = both.sort_values("recorded_at", kind="stable").drop_duplicates("recorded_at", keep="first")
        yield device_id, _Stream(
            t=_micros(both["recorded_at"]).astype(np.int64),
            xyz=both[["x", "y", "z"]].to_numpy(dtype=np.float64),
            last_own=int(_micros(own["recorded_at"]).max()),
            last_tail=None if before is None else int(_micros(before["recorded_at"]).max()),
            window_start=own["window_start"].max(),
        )


def _timestamp(micros: int) -> pd.Timestamp:
    return pd.Timestamp(int(micros), unit="us", tz="UTC")


def _us(seconds: float) -> int:
    return int(round(seconds * _US))


# -- windows --------------------------------------------------------------------------------------
def motion_windows(
    samples: pd.DataFrame,
    tail: pd.DataFrame | None,
    rules: MotionRules,
    feature_fn: FeatureFn | None = None,
) -> pd.DataFrame:
    """5 s windows with 1 s overlap per device (`WINDOW_DTYPES`), for one partition.

    Windows [s, s + 5 s) start at multiples of 4 s since the epoch. `tail` is the device's
    earlier samples, at least the last `rules.tail_seconds` (5 s) before its last earlier sample.
    A window is emitted here iff its end is <= this partition's last sample of the device (it is
    complete) and > the tail's last sample (an earlier partition did not emit it); its samples are
    those of tail and partition inside [s, s + 5 s). A window holding no sample is not emitted.

    Statistics are over the raw samples; the peak frequency, steps and features over the window
    resampled to `resample_hz` (linear interpolation, the edge samples held out to the window's
    ends). `step_count` counts the step peaks in [s + 0.5 s, s + 4.5 s) only: these 4 s spans
    of consecutive windows tile event time (each 1 s overlap is split in half between its two
    windows), so summing consecutive windows gives the total steps. The span keeps 0.5 s from
    both window edges because the band-pass filter distorts the signal near its ends: counting
    up to the window's end lost about 3 % of the steps of a synthetic walk.
    A sparse window (fewer than `min_samples`, or a hole over `max_gap_seconds`) is still
    emitted with its statistics, but with peak_frequency_hz NaN, step_count <NA> (not counted,
    which is not "no steps") and features None. `features` is `feature_fn(xyz)` of the
    resampled (n, 3) window as a list of floats; None without a feature_fn.
    """
    rows: list[dict] = []
    for device_id, stream in _streams(samples, tail):
        rows += _device_windows(device_id, stream, rules, feature_fn)
    return typed_frame(rows, WINDOW_DTYPES)


def _device_windows(device_id: str, stream: _Stream, rules: MotionRules, feature_fn: FeatureFn | None) -> list[dict]:
    t, xyz = stream.t, stream.xyz
    length, step = _us(rules.window_seconds), _us(rules.step_seconds)
    # Grid windows that hold at least one sample: each sample is in the windows k*step with
    # t - length < k*step <= t.
    newest = np.floor_divide(t, step)
    oldest = np.floor_divide(t - length, step) + 1
    reach = int(math.ceil(length / step))
    ks = np.unique(np.concatenate([(newest - j)[newest - j >= oldest] for j in range(reach + 1)]))
    starts = ks * step
    ends = starts + length
    owned = ends <= stream.last_own
    if stream.last_tail is not None:
        owned &= ends > stream.last_tail
    starts, ends = starts[owned], ends[owned]
    if len(starts) == 0:
        return []
    lo = np.searchsorted(t, starts, side="left")
    hi = np.searchsorted(t, ends, side="left")

    rows, dense = [], []
    max_gap = _us(rules.max_gap_seconds)
    for i, (start, end, a, b) in enumerate(zip(starts, ends, lo, hi, strict=True)):
        times, seg = t[a:b], xyz[a:b]
        magnitude = np.sqrt(np.einsum("ij,ij->i", seg, seg))
        mean, std = seg.mean(axis=0), seg.std(axis=0)
        span = (times[-1] - times[0]) / _US
        gap = max(times[0] - start, end - times[-1], int(np.diff(times).max()) if len(times) > 1 else 0)
        if len(times) >= rules.min_samples and gap <= max_gap:
            dense.append(i)
        rows.append({
            "window_start": stream.window_start,
            "device_id": device_id,
            "recorded_at": _timestamp(start),
            "window_end": _timestamp(end),
            "sample_count": len(times),
            "sampling_rate_hz": (len(times) - 1) / span if span > 0 else math.nan,
            "mean_x": mean[0], "mean_y": mean[1], "mean_z": mean[2],
            "std_x": std[0], "std_y": std[1], "std_z": std[2],
            "magnitude_mean": float(magnitude.mean()),
            "magnitude_std": float(magnitude.std()),
            "peak_frequency_hz": math.nan,
            "step_count": None,
            "features": None,
        })
    if not dense:
        return rows

    owned_from, owned_to = _owned_samples(rules)
    # Resampled windows are filtered and transformed together, a bounded batch at a time
    # (1024 windows of 250 x 3 floats is 6 MB).
    for batch in np.array_split(np.asarray(dense), math.ceil(len(dense) / 1024)):
        xyz_50 = _resampled(t, xyz, starts[batch], lo[batch], hi[batch], rules)   # (k, n, 3)
        magnitude_50 = np.sqrt(np.einsum("kij,kij->ki", xyz_50, xyz_50))          # (k, n)
        peaks = _peak_frequencies(magnitude_50, rules)
        filtered = _step_filtered(magnitude_50, rules)
        for row_index, window, peak, trace in zip(batch, xyz_50, peaks, filtered, strict=True):
            row = rows[row_index]
            row["peak_frequency_hz"] = peak
            at = _step_peaks(trace, rules)
            row["step_count"] = int(np.count_nonzero((at >= owned_from) & (at < owned_to)))
            if feature_fn is not None:
                row["features"] = [float(v) for v in np.asarray(feature_fn(window), dtype=np.float64).ravel()]
    return rows


def _resampled(t: np.ndarray, xyz: np.ndarray, starts: np.ndarray, lo: np.ndarray, hi: np.ndarray,
               rules: MotionRules) -> np.ndarray:
    """Each window [s, s + length) on the grid s + k / resample_hz, interpolated linearly from its
    own samples only (grid points outside them take the first/last sample's value)."""
    n = int(round(rules.window_seconds * rules.resample_hz))
    grid = starts[:, None] + np.round(np.arange(n) * (_US / rules.resample_hz)).astype(np.int64)[None, :]
    # Clamping to the window's own first and last sample keeps every interpolation inside the
    # window, so a window reads the same whichever neighbours the caller passed along.
    grid = np.clip(grid, t[lo][:, None], t[hi - 1][:, None]).astype(np.float64)
    times = t.astype(np.float64)  # µs since the epoch < 2**53: exact
    return np.stack([np.interp(grid, times, xyz[:, axis]) for axis in range(3)], axis=-1)


def _peak_frequencies(magnitude: np.ndarray, rules: MotionRules) -> np.ndarray:
    """Dominant frequency (Hz) of each row minus its mean; NaN for a flat row."""
    n = magnitude.shape[1]
    centred = magnitude - magnitude.mean(axis=1, keepdims=True)
    size = n * rules.spectrum_padding
    power = np.abs(np.fft.rfft(centred * np.hanning(n)[None, :], n=size, axis=1)) ** 2
    power[:, 0] = 0.0  # what is left of the mean is not a rhythm
    best = power.argmax(axis=1)
    frequency = best * rules.resample_hz / size
    # A flat row (a still phone, or one sample held) has no rhythm; its argmax would be rounding.
    return np.where(centred.std(axis=1) > 1e-6, frequency, math.nan)


def _owned_samples(rules: MotionRules) -> tuple[int, int]:
    """The resampled indices [from, to) whose step peaks a window counts: [s + 0.5 s, s + 4.5 s)."""
    half = rules.overlap_seconds / 2
    return (int(round(half * rules.resample_hz)),
            int(round((rules.window_seconds - half) * rules.resample_hz)))


# -- steps ----------------------------------------------------------------------------------------
def count_steps(magnitude_50hz: np.ndarray, rules: MotionRules) -> np.ndarray:
    """Indices of the step peaks in a magnitude signal sampled at `rules.resample_hz`.

    docs/flows/motion.md#steps: the magnitude minus its mean, band-passed (Butterworth, `step_band_hz`,
    zero phase), then peaks of at least `step_peak_height` at least `step_min_interval_seconds`
    apart. Peaks within a sample of either end of the signal cannot be seen.
    """
    values = np.asarray(magnitude_50hz, dtype=np.float64).reshape(1, -1)
    if values.shape[1] < 3:
        return np.array([], dtype=np.int64)
    return _step_peaks(_step_filtered(values, rules)[0], rules)


def _step_filtered(magnitude: np.ndarray, rules: MotionRules) -> np.ndarray:
    """Rows band-passed for steps (zero phase, odd extension at the ends)."""
    sos = signal.butter(rules.step_filter_order, rules.step_band_hz, btype="bandpass",
                        fs=rules.resample_hz, output="sos")
    centred = magnitude - magnitude.mean(axis=1, keepdims=True)
    default_padlen = 3 * (2 * len(sos) + 1 - min((sos[:, 2] == 0).sum(), (sos[:, 5] == 0).sum()))
    return signal.sosfiltfilt(sos, centred, axis=1, padlen=min(default_padlen, centred.shape[1] - 1))


def _step_peaks(filtered: np.ndarray, rules: MotionRules) -> np.ndarray:
    peaks, _ = signal.find_peaks(filtered, height=rules.step_peak_height,
                                 distance=max(1.0, rules.step_min_interval_seconds * rules.resample_hz))
    return peaks.astype(np.int64)


# -- significant motion ---------------------------------------------------------------------------
def significant_motion(
    samples: pd.DataFrame,
    tail: pd.DataFrame | None,
    last_event_end: pd.Series | Mapping[str, Any] | None,
    rules: MotionRules,
) -> pd.DataFrame:
    """Significant-motion events (`EVENT_DTYPES`) that closed in this partition.

    A crossing is a sample with m = |‖a‖ - gravity| >= `motion_threshold`. An event starts at the
    first crossing after the device's previous event and takes each next crossing less than
    `debounce_seconds` after the one before, until a crossing `max_event_seconds` or more after
    its start (which starts the next event: a long motion becomes a series). It runs from its
    first to its last crossing and is dropped when shorter than `min_event_seconds`.

    An event is emitted once closed: the device's last sample is >= its end + debounce (no
    crossing can join it), or >= its start + max duration and >= its end + context (it is cut and
    its context is in). Until then it is left to a later partition, which sees its samples through
    `tail`: the device's earlier samples, at least the last `rules.event_tail_seconds` (32 s)
    before its last earlier sample. `last_event_end` (device_id -> end_time of the device's last
    emitted event) keeps crossings of emitted events from starting new ones. The same samples give
    the same events however they are split across partitions.

    Motion and activity type follow docs/flows/motion.md#significant-motion (`motion_type`,
    `activity_type`) on the event's samples with `context_seconds` either side; the other statistics
    are of m over the event's own samples. As the first and last 0.5 s of that span are context,
    sudden_start marks the first piece of a strong motion (mean m > 3) that started from rest and
    went on past the 30 s cut, sudden_stop the last piece of one that stopped short.
    """
    ends = _last_ends(last_event_end)
    rows: list[dict] = []
    for device_id, stream in _streams(samples, tail):
        rows += _device_events(device_id, stream, ends.get(device_id), rules)
    return typed_frame(rows, EVENT_DTYPES)


def _last_ends(last_event_end) -> dict[str, int]:
    if last_event_end is None:
        return {}
    items = last_event_end.items() if isinstance(last_event_end, (pd.Series, Mapping)) else last_event_end
    ends = {}
    for device_id, end in items:
        if end is not None and not pd.isna(end):
            end_us = int(_micros(utc(pd.Series([end])))[0])
            ends[device_id] = max(end_us, ends.get(device_id, end_us))
    return ends


def _device_events(device_id: str, stream: _Stream, last_end: int | None, rules: MotionRules) -> list[dict]:
    t, xyz = stream.t, stream.xyz
    m = np.abs(np.sqrt(np.einsum("ij,ij->i", xyz, xyz)) - rules.gravity)
    crossing = m >= rules.motion_threshold
    if last_end is not None:
        crossing &= t > last_end
    c = t[crossing]
    if len(c) == 0:
        return []
    debounce, longest = _us(rules.debounce_seconds), _us(rules.max_event_seconds)
    context, shortest = _us(rules.context_seconds), _us(rules.min_event_seconds)
    last = int(t[-1])

    rows = []
    # Runs of crossings less than the debounce apart, each cut into pieces of < max duration.
    run_starts = np.concatenate([[0], np.flatnonzero(np.diff(c) >= debounce) + 1])
    run_ends = np.concatenate([run_starts[1:], [len(c)]])
    for a, b in zip(run_starts, run_ends, strict=True):
        i = a
        while i < b:
            j = i + int(np.searchsorted(c[i:b], c[i] + longest, side="left"))
            start, end = int(c[i]), int(c[j - 1])
            closed = last >= end + debounce or (last >= start + longest and last >= end + context)
            if not closed:
                return rows  # every later event is open too
            if end - start >= shortest:
                rows.append(_event_row(device_id, stream, m, start, end, rules))
            i = j
    return rows


def _event_row(device_id: str, stream: _Stream, m: np.ndarray, start: int, end: int, rules: MotionRules) -> dict:
    t, xyz = stream.t, stream.xyz
    a, b = np.searchsorted(t, start, side="left"), np.searchsorted(t, end, side="right")
    own, own_xyz = m[a:b], xyz[a:b]
    context = _us(rules.context_seconds)
    ca, cb = np.searchsorted(t, start - context, side="left"), np.searchsorted(t, end + context, side="right")
    seconds, span = (t[ca:cb] - t[ca]) / _US, m[ca:cb]
    kind, confidence = motion_type(seconds, span, rules)
    activity, activity_confidence = activity_type(float(span.mean()), float(span.std()), rules)
    variance = own_xyz.var(axis=0)
    return {
        "window_start": stream.window_start,
        "device_id": device_id,
        "recorded_at": _timestamp(start),
        "event_id": f"{device_id}-{start // 1000}",
        "start_time": _timestamp(start),
        "end_time": _timestamp(end),
        "duration_seconds": (end - start) / _US,
        "motion_type": kind,
        "confidence": confidence,
        "activity_type": activity,
        "activity_confidence": activity_confidence,
        "sample_count": len(own),
        "max_acceleration": float(own.max()),
        "avg_acceleration": float(own.mean()),
        "std_acceleration": float(own.std()),
        "min_acceleration": float(own.min()),
        "p25_acceleration": float(np.percentile(own, 25)),
        "p75_acceleration": float(np.percentile(own, 75)),
        "dominant_axis": _dominant_axis(variance),
        "x_variance": float(variance[0]),
        "y_variance": float(variance[1]),
        "z_variance": float(variance[2]),
    }


def _dominant_axis(variance: np.ndarray) -> str:
    """The axis of largest variance; on a tie Loom v2's code says y over x, z over the rest."""
    x, y, z = variance
    return "x" if x > y and x > z else ("y" if y > z else "z")


def zero_crossings(values: np.ndarray) -> int:
    """Sign changes of `values` minus their mean (a step onto exactly the mean is not one)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return 0
    signs = np.sign(values - values.mean())
    return int(np.count_nonzero(np.abs(np.diff(signs)) > 1))


def motion_type(seconds: np.ndarray, m: np.ndarray, rules: MotionRules) -> tuple[str, float]:
    """Motion type and confidence (docs/flows/motion.md#significant-motion) of m = |‖a‖ - g| sampled
    at `seconds` (ascending).

    First match wins; Loom v2's 2 s, 100 Hz buffer numbers turned into time (see MotionRules):
    1. mean of the last 0.5 s - mean of the first 0.5 s > 3 -> sudden_start; the reverse -> sudden_stop
    2. max > 8 and the mean from 0.05 s after the peak (>= 0.1 s of samples) < 1 -> fall
    3. std > 2 and zc > 10 -> shake
    4. 5 < zc < 15 and 1 < mean < 3 -> walking
    5. zc > 15 and mean > 3 -> running
    6. zc < 5 and 0.5 < mean < 2 -> vehicle
    7. otherwise unknown
    zc: zero crossings of m - mean(m) per 2 s of the span. m is rectified, so a sinusoidal ‖a‖
    at f Hz crosses 4f times a second, a heel-strike pulse train at f steps/s 2f times.
    """
    seconds, m = np.asarray(seconds, dtype=np.float64), np.asarray(m, dtype=np.float64)
    if len(m) < 2 or seconds[-1] <= seconds[0]:
        return "unknown", MOTION_CONFIDENCE["unknown"]

    def label(name: str) -> tuple[str, float]:
        return name, MOTION_CONFIDENCE[name]

    first = m[seconds < seconds[0] + rules.quarter_seconds]
    last = m[seconds > seconds[-1] - rules.quarter_seconds]
    change = float(last.mean() - first.mean())
    if change > rules.sudden_change:
        return label("sudden_start")
    if -change > rules.sudden_change:
        return label("sudden_stop")

    peak = int(np.argmax(m))
    if m[peak] > rules.fall_peak and seconds[-1] - seconds[peak] >= rules.fall_min_after_seconds:
        after = m[seconds > seconds[peak] + rules.fall_after_seconds]
        if len(after) and after.mean() < rules.fall_after_mean:
            return label("fall")

    mean, std = float(m.mean()), float(m.std())
    zc = zero_crossings(m) * rules.zero_crossing_seconds / (seconds[-1] - seconds[0])
    if std > rules.shake_std and zc > rules.shake_crossings:
        return label("shake")
    if _between(zc, rules.walking_crossings) and _between(mean, rules.walking_mean):
        return label("walking")
    if zc > rules.running_crossings and mean > rules.running_mean:
        return label("running")
    if zc < rules.vehicle_crossings and _between(mean, rules.vehicle_mean):
        return label("vehicle")
    return label("unknown")


def activity_type(mean: float, std: float, rules: MotionRules) -> tuple[str, float]:
    """Activity type and confidence (docs/flows/motion.md#significant-motion) from the mean and std
    of m, first match wins: mean < 0.5 stationary; mean < 2 and std > 0.5 walking; mean < 5 and
    std > 1 running; mean < 1 and std < 0.5 vehicle; otherwise unknown."""
    if mean < rules.stationary_mean:
        name = "stationary"
    elif mean < rules.walking_activity_mean and std > rules.walking_activity_std:
        name = "walking"
    elif mean < rules.running_activity_mean and std > rules.running_activity_std:
        name = "running"
    elif mean < rules.vehicle_activity_mean and std < rules.vehicle_activity_std:
        name = "vehicle"
    else:
        name = "unknown"
    return name, ACTIVITY_CONFIDENCE[name]


def _between(value: float, bounds: tuple[float, float]) -> bool:
    return bounds[0] < value < bounds[1]

