"""Significant-motion events, and the motion and activity types that label windows and events."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from loom_assets.stages.frames import typed_frame, utc
from loom_assets.stages.motion.inputs import _micros, _Stream, _streams, _timestamp, _us
from loom_assets.stages.motion.rows import EVENT_DTYPES
from loom_assets.stages.motion.rules import (
    _US,
    ACTIVITY_CONFIDENCE,
    MOTION_CONFIDENCE,
    MotionRules,
)


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
