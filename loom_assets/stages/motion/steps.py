"""The step counter over a 50 Hz magnitude signal."""

from __future__ import annotations

import numpy as np

from loom_assets.stages.motion.rules import MotionRules


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
    # scipy.signal takes seconds to import: only the runs that count steps pay for it.
    from scipy import signal

    sos = signal.butter(rules.step_filter_order, rules.step_band_hz, btype="bandpass",
                        fs=rules.resample_hz, output="sos")
    centred = magnitude - magnitude.mean(axis=1, keepdims=True)
    default_padlen = 3 * (2 * len(sos) + 1 - min((sos[:, 2] == 0).sum(), (sos[:, 5] == 0).sum()))
    return signal.sosfiltfilt(sos, centred, axis=1, padlen=min(default_padlen, centred.shape[1] - 1))


def _step_peaks(filtered: np.ndarray, rules: MotionRules) -> np.ndarray:
    from scipy import signal

    peaks, _ = signal.find_peaks(filtered, height=rules.step_peak_height,
                                 distance=max(1.0, rules.step_min_interval_seconds * rules.resample_hz))
    return peaks.astype(np.int64)
