"""Activity: what the person is doing in each 5 s accelerometer window (docs/flows/motion.md).

`feature_vector` turns one window of accelerometer samples into the classifier's input;
`activities` is stage `activity_classification`: the classifier's still/walking/stairs combined
with GPS speed and step cadence into still | walking | stairs | running | cycling | vehicle | unknown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from loom_assets.geo import haversine_m
from loom_assets.stages.frames import float_or_nan, typed_frame, utc, with_columns

# Windows are resampled to 50 Hz before features are taken: HAPT (the training data) is 50 Hz and
# docs/flows/motion.md#windows sizes a 5 s window at 250 samples = 50 Hz.
FEATURE_RATE_HZ = 50
# Bump when feature_vector changes: stored windows then need recomputing, and the model retraining.
FEATURES_VERSION = "1"

# The three orientation-invariant signals of a window (see `feature_vector`).
_SIGNALS = ("mag", "vert", "horiz")
# Percentiles of each signal: robust shape of the distribution (a fall or a bump moves the tails).
_PERCENTILES = (5, 25, 50, 75, 95)
# Spectral bands (Hz) of each signal's dynamic part. Walking steps are at 1.5-2.5 Hz, running at
# 2.5-3.5 Hz (docs/flows/motion.md#steps: 0.5-3 Hz band), stride (left+right) at half that; vehicles
# and engines add energy above 6 Hz; below 0.3 Hz is posture drift, left out.
_BANDS = ((0.3, 1.0), (1.0, 1.5), (1.5, 2.0), (2.0, 2.5), (2.5, 3.0), (3.0, 4.0), (4.0, 6.0),
          (6.0, 10.0), (10.0, 25.0))
# Dominant frequency and autocorrelation are searched over step/stride periods: 0.3-10 Hz and
# lags 0.25-1.5 s (a step at 4 Hz down to a slow stride at 0.67 Hz).
_DOMINANT_RANGE_HZ = (0.3, 10.0)
_AUTOCORR_LAGS_S = (0.25, 1.5)
# Below this std (m/s²) a signal is "flat": shape features (skew, correlation, autocorrelation)
# are 0 rather than noise divided by almost nothing. Phone accelerometer noise is ~0.01-0.05 m/s².
_FLAT_STD = 1e-3


def _signal_names(signal: str) -> list[str]:
    return [
        f"{signal}_mean", f"{signal}_std",
        *(f"{signal}_p{p:02d}" for p in _PERCENTILES),
        f"{signal}_jerk", f"{signal}_skew", f"{signal}_kurtosis",
        f"{signal}_log_energy",
        *(f"{signal}_band_{lo:g}_{hi:g}hz" for lo, hi in _BANDS),
        f"{signal}_dominant_hz", f"{signal}_spectral_entropy",
        f"{signal}_autocorr_peak", f"{signal}_autocorr_hz",
    ]


FEATURE_NAMES: tuple[str, ...] = (
    *(name for signal in _SIGNALS for name in _signal_names(signal)),
    "gravity_norm", "tilt_mean", "tilt_std", "vert_horiz_corr",
)


def feature_vector(xyz: np.ndarray) -> np.ndarray:
    """Fixed-length float32 features (`FEATURE_NAMES`) of one window of accelerometer samples.

    `xyz` is (n, 3) in m/s², gravity included, resampled to `FEATURE_RATE_HZ`; n >= 25 (0.5 s)
    gives meaningful values, any n >= 1 gives finite ones. The phone's orientation is unknown, so
    every feature is invariant to a rotation of the phone: they are taken from
    - mag: |a|;
    - vert: a projected on the window's mean direction (gravity, to the accelerometer);
    - horiz: |a - vert * g|, the magnitude of the rest;
    per signal: mean, std, percentiles, jerk (mean |Δ| per s), skew, kurtosis, log energy of the
    dynamic part, its share in each spectral band, dominant frequency, spectral entropy, and the
    autocorrelation peak over step/stride lags with its frequency (cadence); plus the gravity
    estimate's norm, the tilt away from it (mean/std, radians) and the vert/horiz correlation.
    """
    a = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    a = a[np.isfinite(a).all(axis=1)]
    if len(a) == 0:
        return np.zeros(len(FEATURE_NAMES), dtype=np.float32)
    mean_vec = a.mean(axis=0)
    gravity_norm = float(np.linalg.norm(mean_vec))
    g_hat = mean_vec / gravity_norm if gravity_norm > 1e-6 else _principal_axis(a)

    mag = np.linalg.norm(a, axis=1)
    vert = a @ g_hat
    horiz = np.linalg.norm(a - np.outer(vert, g_hat), axis=1)
    # Angle between each sample and gravity: how much the phone tilts or swings in the window.
    tilt = np.arctan2(horiz, vert)

    features: list[float] = []
    for signal in (mag, vert, horiz):
        features += _signal_features(signal)
    features += [gravity_norm, float(tilt.mean()), float(tilt.std()), _corr(vert, horiz)]
    out = np.asarray(features, dtype=np.float64)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def _principal_axis(a: np.ndarray) -> np.ndarray:
    """Direction of largest variance: the vertical when the mean is ~0 (no gravity in the data)."""
    if len(a) < 2:
        return np.array([0.0, 0.0, 1.0])
    _, vectors = np.linalg.eigh(np.cov(a.T) + np.eye(3) * 1e-12)
    return vectors[:, -1]


def _signal_features(s: np.ndarray) -> list[float]:
    rate = float(FEATURE_RATE_HZ)
    mean, std = float(s.mean()), float(s.std())
    dynamic = s - mean
    percentiles = [float(v) for v in np.percentile(s, _PERCENTILES)]
    jerk = float(np.abs(np.diff(s)).mean() * rate) if len(s) > 1 else 0.0
    if std > _FLAT_STD:
        z = dynamic / std
        skew, kurtosis = float((z ** 3).mean()), float((z ** 4).mean() - 3.0)
    else:
        skew = kurtosis = 0.0
    # log(1 + mean square) keeps still (~0) and running (~100 m²/s⁴) on one scale.
    log_energy = float(np.log1p((dynamic ** 2).mean()))
    bands, dominant, entropy = _spectrum(dynamic, std)
    peak, cadence = _autocorrelation(dynamic, std)
    return [mean, std, *percentiles, jerk, skew, kurtosis, log_energy, *bands, dominant, entropy, peak, cadence]


def _spectrum(dynamic: np.ndarray, std: float) -> tuple[list[float], float, float]:
    """Band shares of the power, dominant frequency and normalised spectral entropy."""
    n = len(dynamic)
    if n < 4 or std <= _FLAT_STD:
        return [0.0] * len(_BANDS), 0.0, 0.0
    # A Hann window and zero-padding to >= 512 points (0.1 Hz bins at 50 Hz) give the same
    # frequency grid for short and full windows.
    n_fft = max(512, 1 << int(np.ceil(np.log2(n))))
    power = np.abs(np.fft.rfft(dynamic * np.hanning(n), n=n_fft)) ** 2
    freqs = np.fft.rfftfreq(n_fft, d=1.0 / FEATURE_RATE_HZ)
    in_range = (freqs >= _BANDS[0][0]) & (freqs <= _BANDS[-1][1])
    total = float(power[in_range].sum())
    if total <= 0:
        return [0.0] * len(_BANDS), 0.0, 0.0
    bands = [float(power[(freqs >= lo) & (freqs < hi)].sum() / total) for lo, hi in _BANDS]
    lo, hi = _DOMINANT_RANGE_HZ
    search = (freqs >= lo) & (freqs <= hi)
    dominant = float(freqs[search][np.argmax(power[search])])
    p = power[in_range] / total
    p = p[p > 0]
    entropy = float(-(p * np.log(p)).sum() / np.log(max(in_range.sum(), 2)))
    return bands, dominant, entropy


def _autocorrelation(dynamic: np.ndarray, std: float) -> tuple[float, float]:
    """Highest normalised autocorrelation over step/stride lags, and 1 / that lag (Hz)."""
    n = len(dynamic)
    lo = int(round(_AUTOCORR_LAGS_S[0] * FEATURE_RATE_HZ))
    hi = min(int(round(_AUTOCORR_LAGS_S[1] * FEATURE_RATE_HZ)), n // 2)
    if std <= _FLAT_STD or hi <= lo:
        return 0.0, 0.0
    n_fft = 1 << int(np.ceil(np.log2(2 * n)))
    spectrum = np.fft.rfft(dynamic, n=n_fft)
    acf = np.fft.irfft(np.abs(spectrum) ** 2, n=n_fft)[: hi + 1]
    # Unbiased: divide each lag by the number of overlapping samples, then by lag 0.
    acf = acf / (n - np.arange(hi + 1))
    acf = acf / acf[0]
    lag = lo + int(np.argmax(acf[lo:hi + 1]))
    return float(acf[lag]), float(FEATURE_RATE_HZ / lag)


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2 or x.std() <= _FLAT_STD or y.std() <= _FLAT_STD:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


# -- activity_classification ------------------------------------------------------------------------
class Classifier(Protocol):
    """What `activities` needs of a model (loom_assets.models.activity.ActivityClassifier is one)."""

    labels: tuple[str, ...]
    version: str

    def predict_proba(self, features: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class ActivityRules:
    """Every number of the activity decision, with its reason. Bump `version` when one changes.

    The classifier knows still / walking / stairs (what HAPT has); GPS speed and step cadence add
    running, cycling and vehicle. Decision, first match wins (s = GPS speed, c = step cadence):
      1. s > vehicle_speed                                  -> vehicle (speed alone)
      2. s > max_running_speed and stepping                 -> cycling (the steps are pedal strokes)
      3. min_running_speed <= s <= max_running_speed, on foot -> running
      4. c > running_cadence and walking-like motion        -> running
      5. s >= min_cycling_speed, not on foot, motion >= cycling_min_motion -> cycling
      6. s >= min_cycling_speed, not on foot                -> vehicle
      7. otherwise the classifier's label, "unknown" below min_confidence.
    stepping = c >= stepping_cadence; walking-like = the classifier's top label is walking or
    stairs; on foot = both. A window without features is "unknown" unless rule 1 applies.
    """

    version: str = "1"
    # docs/flows/motion.md#activities: confidence_threshold 0.7; a final confidence below it is "unknown".
    min_confidence: float = 0.7
    # GPS speed of a window: the median reported (Doppler) speed of fixes within 15 s of the
    # window (GPS every 10 s, docs/messages.md#sampling-rates, so one or two fixes); reported speeds
    # < 0 mean "none".
    reported_speed_margin: pd.Timedelta = pd.Timedelta(seconds=15)
    # Without reported speeds: haversine distance / time between the first and last fix within
    # 30 s of the window (mobile GPS default is every 30 s, docs/messages.md#sampling-rates, so a
    # window is bracketed), over at least 10 s so that position noise is divided by a useful time.
    derived_speed_margin: pd.Timedelta = pd.Timedelta(seconds=30)
    min_derived_interval: pd.Timedelta = pd.Timedelta(seconds=10)
    # Fixes with a reported accuracy worse than 25 m are ignored: between two such fixes 10-65 s
    # apart, position error alone fakes up to sqrt(2)*25/10 ≈ 3.5 m/s. Fixes with no accuracy are kept
    # (many clients leave it out).
    max_fix_accuracy_m: float = 25.0
    # docs/flows/motion.md#steps: 0.8-2.5 steps/s is walking; under 0.8 is no more than shuffling.
    stepping_cadence_hz: float = 0.8
    # docs/flows/motion.md#steps: > 2.5 steps/s is running (brisk walking reaches ~2.2).
    running_cadence_hz: float = 2.5
    # Jogging starts at ~2.5 m/s (9 km/h; a brisk walk tops out near 2 m/s); above 6 m/s
    # (21.6 km/h, a sprint) steps at that speed are pedal strokes
    # (docs/flows/motion.md#activities: > 5 m/s with steps).
    min_running_speed_mps: float = 2.5
    max_running_speed_mps: float = 6.0
    # Nobody on foot covers 3 m/s without steps; below it GPS jitter and slow walking blur.
    min_cycling_speed_mps: float = 3.0
    # Pedalling moves a phone on the body by 1-3 m/s² (std of |a|); a car, bus or train ride
    # shakes it by 0.1-0.5 m/s².
    cycling_min_motion_std: float = 1.0
    # Everyday cycling stays under 8 m/s (29 km/h); faster is a vehicle whatever the motion says.
    vehicle_speed_mps: float = 8.0
    # docs/flows/motion.md#activities: > 5 m/s without steps is a vehicle (0.9); slower (3-5 m/s,
    # traffic) is less sure.
    fast_vehicle_speed_mps: float = 5.0
    # Confidences of the rule outcomes (docs/flows/motion.md#activities: vehicle 0.9, cycling 0.7,
    # running 0.8); all at or above min_confidence, since the rules are only reached on clear
    # evidence.
    vehicle_confidence: float = 0.9
    slow_vehicle_confidence: float = 0.7
    cycling_confidence: float = 0.7
    running_confidence: float = 0.8
    # A window without window_end lasts 5 s (docs/flows/motion.md#windows).
    default_window: pd.Timedelta = pd.Timedelta(seconds=5)


WINDOW_COLUMNS = (
    "window_start", "device_id", "recorded_at", "window_end", "step_count", "peak_frequency_hz",
    "magnitude_std", "sample_count", "features",
)
FIX_COLUMNS = ("device_id", "recorded_at", "latitude", "longitude", "speed", "accuracy")

# How the label was decided: "gps" (speed alone, no accelerometer features), "gps+classifier"
# (a speed rule, with the classifier's view of the motion), "steps+classifier" (running by
# cadence), "classifier" (the model's label, GPS absent or not decisive), "none" (no evidence).
SOURCES = ("gps", "gps+classifier", "steps+classifier", "classifier", "none")
ACTIVITIES = ("still", "walking", "stairs", "running", "cycling", "vehicle", "unknown")

_TIME = "datetime64[us, UTC]"
ACTIVITY_DTYPES: dict[str, str] = {
    "window_start": _TIME,
    "device_id": "str",
    "recorded_at": _TIME,                  # the 5 s window's start
    "window_end": _TIME,
    "activity": "str",                     # ACTIVITIES
    "confidence": "float64",
    "classifier_label": "str",             # the model's top label, before any rule
    "classifier_confidence": "float64",
    "probabilities": "object",             # dict label -> p -> jsonb
    "gps_speed_mps": "float64",
    "step_cadence_hz": "float64",
    "source": "str",                       # SOURCES
}

_WALKING_LIKE = ("walking", "stairs")


def activities(windows: pd.DataFrame, fixes: pd.DataFrame | None, classifier: Classifier,
               rules: ActivityRules) -> pd.DataFrame:
    """One activity per 5 s window (`ACTIVITY_DTYPES`): the classifier's label on the window's
    `features`, overridden by GPS speed and step cadence for running, cycling and vehicle
    (`ActivityRules` lists the rules and their numbers).

    `fixes` are the devices' GPS rows (device_id, recorded_at, latitude, longitude, speed m/s,
    accuracy m) around the windows; a window's speed comes from the fixes within a margin of it.
    """
    windows = with_columns(windows, WINDOW_COLUMNS)
    if windows.empty:
        return typed_frame([], ACTIVITY_DTYPES)
    windows = windows.assign(
        window_start=utc(windows["window_start"]),
        recorded_at=utc(windows["recorded_at"]),
        window_end=utc(windows["window_end"]),
    ).reset_index(drop=True)
    speeds = _gps_speeds(windows, fixes, rules)
    probabilities, has_features = _probabilities(windows["features"], classifier)
    labels = tuple(classifier.labels)

    rows = []
    for i, window in enumerate(windows.to_dict("records")):
        end = window["window_end"]
        if pd.isna(end):
            end = window["recorded_at"] + rules.default_window
        seconds = (end - window["recorded_at"]) / pd.Timedelta(seconds=1)
        steps = float_or_nan(window["step_count"])
        cadence = steps / seconds if seconds > 0 and not math.isnan(steps) else math.nan
        motion = float_or_nan(window["magnitude_std"])
        if has_features[i]:
            p = probabilities[i]
            top = int(np.argmax(p))
            classifier_label, classifier_confidence = labels[top], float(p[top])
            probs = {label: float(v) for label, v in zip(labels, p)}
            if math.isnan(motion):
                motion = float(window["features"][FEATURE_NAMES.index("mag_std")])
        else:
            classifier_label, classifier_confidence, probs = None, math.nan, None
        activity, confidence, source = _decide(speeds[i], cadence, motion, classifier_label,
                                               classifier_confidence, rules)
        rows.append({
            "window_start": window["window_start"],
            "device_id": window["device_id"],
            "recorded_at": window["recorded_at"],
            "window_end": end,
            "activity": activity,
            "confidence": confidence,
            "classifier_label": classifier_label,
            "classifier_confidence": classifier_confidence,
            "probabilities": probs,
            "gps_speed_mps": speeds[i],
            "step_cadence_hz": cadence,
            "source": source,
        })
    return typed_frame(rows, ACTIVITY_DTYPES)


def _decide(speed: float, cadence: float, motion: float, label: str | None, label_confidence: float,
            rules: ActivityRules) -> tuple[str, float, str]:
    """(activity, confidence, source) by the rules in `ActivityRules`' docstring."""
    # NaN compares False, so a missing speed or cadence never triggers a rule that needs it.
    if speed > rules.vehicle_speed_mps:
        return "vehicle", rules.vehicle_confidence, "gps" if label is None else "gps+classifier"
    if label is None:
        return "unknown", math.nan, "none"
    stepping = cadence >= rules.stepping_cadence_hz
    on_foot = stepping and label in _WALKING_LIKE
    if speed > rules.max_running_speed_mps and stepping:
        return "cycling", rules.cycling_confidence, "gps+classifier"
    if rules.min_running_speed_mps <= speed <= rules.max_running_speed_mps and on_foot:
        return "running", rules.running_confidence, "gps+classifier"
    if cadence > rules.running_cadence_hz and label in _WALKING_LIKE:
        return "running", rules.running_confidence, "steps+classifier"
    if speed >= rules.min_cycling_speed_mps and not on_foot:
        if motion >= rules.cycling_min_motion_std:
            return "cycling", rules.cycling_confidence, "gps+classifier"
        fast = speed > rules.fast_vehicle_speed_mps
        return "vehicle", rules.vehicle_confidence if fast else rules.slow_vehicle_confidence, "gps+classifier"
    if label_confidence < rules.min_confidence:
        return "unknown", label_confidence, "classifier"
    return label, label_confidence, "classifier"


def _probabilities(features: pd.Series, classifier: Classifier) -> tuple[np.ndarray, np.ndarray]:
    """The classifier's probabilities for the rows that have a feature vector (others: zeros)."""
    has = np.array([_is_vector(f) for f in features], dtype=bool)
    out = np.zeros((len(features), len(classifier.labels)))
    if has.any():
        matrix = np.stack([np.asarray(f, dtype=np.float32) for f in features[has]])
        if matrix.shape[1] != len(FEATURE_NAMES):
            raise ValueError(f"feature vectors have {matrix.shape[1]} values, this code computes "
                             f"{len(FEATURE_NAMES)}: the windows were built by other code")
        out[has] = classifier.predict_proba(matrix)
    return out, has


def _is_vector(value: Any) -> bool:
    return isinstance(value, (list, tuple, np.ndarray)) and len(value) > 0


def _gps_speeds(windows: pd.DataFrame, fixes: pd.DataFrame | None, rules: ActivityRules) -> np.ndarray:
    """GPS speed (m/s) of each window, NaN when no usable fixes are near it (see ActivityRules)."""
    speeds = np.full(len(windows), math.nan)
    fixes = with_columns(fixes, FIX_COLUMNS)
    if fixes.empty:
        return speeds
    accuracy = pd.to_numeric(fixes["accuracy"], errors="coerce")
    fixes = fixes[~(accuracy > rules.max_fix_accuracy_m)]
    fixes = fixes.dropna(subset=["device_id", "recorded_at"])
    fixes = fixes.assign(recorded_at=utc(fixes["recorded_at"])).sort_values("recorded_at", kind="stable")
    ends = windows["window_end"].fillna(windows["recorded_at"] + rules.default_window)
    for device_id, device_fixes in fixes.groupby("device_id", sort=False):
        rows = np.flatnonzero((windows["device_id"] == device_id).to_numpy())
        if not len(rows):
            continue
        at = device_fixes["recorded_at"].dt.tz_convert(None).to_numpy()  # naive UTC, comparable
        speed = pd.to_numeric(device_fixes["speed"], errors="coerce").to_numpy(dtype=float)
        speed = np.where(speed < 0, math.nan, speed)  # iOS reports -1 for "no speed"
        lat = pd.to_numeric(device_fixes["latitude"], errors="coerce").to_numpy(dtype=float)
        lon = pd.to_numeric(device_fixes["longitude"], errors="coerce").to_numpy(dtype=float)
        placed = np.isfinite(lat) & np.isfinite(lon)
        for i in rows:
            start, end = windows.at[i, "recorded_at"], ends.iat[i]
            near = _between(at, start - rules.reported_speed_margin, end + rules.reported_speed_margin)
            reported = speed[near][np.isfinite(speed[near])]
            if len(reported):
                speeds[i] = float(np.median(reported))
                continue
            near = _between(at, start - rules.derived_speed_margin, end + rules.derived_speed_margin) & placed
            if near.sum() < 2:
                continue
            first, last = np.flatnonzero(near)[[0, -1]]
            seconds = (at[last] - at[first]) / np.timedelta64(1, "s")
            if seconds >= rules.min_derived_interval.total_seconds():
                speeds[i] = haversine_m(lat[first], lon[first], lat[last], lon[last]) / seconds
    return speeds


def _between(at: np.ndarray, lo: pd.Timestamp, hi: pd.Timestamp) -> np.ndarray:
    lo, hi = np.datetime64(lo.tz_convert(None)), np.datetime64(hi.tz_convert(None))
    return (at >= lo) & (at <= hi)

