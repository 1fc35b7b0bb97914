"""Row layouts of the motion tables."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

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
