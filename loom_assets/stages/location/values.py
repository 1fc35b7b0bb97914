"""Small conversions of timestamps, durations and text shared by the location stages."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd


# -- small helpers ----------------------------------------------------------------------------------
def _ts(value: Any) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _seconds(delta: Any) -> float:
    return math.nan if pd.isna(delta) else delta / pd.Timedelta(seconds=1)


def _micros(delta: pd.Timedelta) -> int:
    return int(delta / pd.Timedelta(microseconds=1))


def _from_micros(value: Any) -> pd.Timestamp:
    return pd.Timestamp(int(value), unit="us", tz="UTC")


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    text = str(value).strip()
    return text or None
