"""Small DataFrame/value helpers shared by the stage modules (plain pandas, no Dagster)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd


def with_columns(frame: pd.DataFrame | None, columns) -> pd.DataFrame:
    """`frame` (an empty one for None) with any of `columns` it lacks added as all-None columns."""
    frame = pd.DataFrame() if frame is None else frame
    missing = {c: None for c in columns if c not in frame.columns}
    return frame.assign(**missing) if missing else frame


def utc(values: pd.Series) -> pd.Series:
    """Values parsed as UTC datetimes at microsecond resolution."""
    return pd.to_datetime(values, utc=True).dt.as_unit("us")


def iso(at: pd.Timestamp) -> str:
    """A tz-aware timestamp as a UTC, microsecond-resolution ISO 8601 string."""
    return pd.Timestamp(at).tz_convert("UTC").as_unit("us").isoformat()


def float_or_nan(value: Any) -> float:
    """`value` as a float, NaN when it is None/NA or not convertible."""
    try:
        return math.nan if value is None or pd.isna(value) else float(value)
    except (TypeError, ValueError):
        return math.nan


def typed_frame(rows: list[dict], dtypes: Mapping[str, str]) -> pd.DataFrame:
    """Rows -> a DataFrame with exactly these columns, in this order, with these dtypes."""
    return with_dtypes(pd.DataFrame.from_records(rows, columns=list(dtypes)), dtypes)


def with_dtypes(frame: pd.DataFrame, dtypes: Mapping[str, str]) -> pd.DataFrame:
    """`frame` re-indexed to exactly these columns (fresh RangeIndex) and cast to these dtypes."""
    frame = frame.reset_index(drop=True).reindex(columns=list(dtypes))
    for column, dtype in dtypes.items():
        if dtype.startswith("datetime64"):
            frame[column] = utc(frame[column])
        else:
            frame[column] = frame[column].astype(dtype)
    return frame
