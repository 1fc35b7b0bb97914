"""5 s accelerometer windows: statistics, peak frequency, steps and the activity model's features."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from loom_assets.stages.frames import typed_frame
from loom_assets.stages.motion.inputs import _Stream, _streams, _timestamp, _us
from loom_assets.stages.motion.rows import WINDOW_DTYPES, FeatureFn
from loom_assets.stages.motion.rules import _US, MotionRules
from loom_assets.stages.motion.steps import _step_filtered, _step_peaks


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
