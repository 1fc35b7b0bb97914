"""Per-device streams of samples in event-time order, with the earlier tail."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from loom_assets.stages.frames import utc, with_columns
from loom_assets.stages.motion.rows import SAMPLE_COLUMNS
from loom_assets.stages.motion.rules import _US


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
