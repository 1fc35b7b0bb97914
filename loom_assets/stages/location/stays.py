"""Stays: runs of fixes within a radius, and the visits they make across windows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from loom_assets.geo.geometry import haversine_m
from loom_assets.stages.frames import typed_frame, utc, with_columns
from loom_assets.stages.location.rows import FIX_COLUMNS, STAY_DTYPES, accepted_fixes
from loom_assets.stages.location.rules import LocationRules
from loom_assets.stages.location.values import _from_micros, _micros, _ts


# -- stays ------------------------------------------------------------------------------------------
def visit_lookback_start(window_start: Any, rules: LocationRules) -> pd.Timestamp:
    """Where the caller starts reading the raw fixes before a window (up to its start) for
    `visit_carry`: max_lookback back."""
    return _ts(window_start) - rules.max_lookback


def visit_carry(recent_fixes: pd.DataFrame | None, previous_visits: pd.DataFrame | None,
                rules: LocationRules) -> pd.DataFrame:
    """The `carry_fixes` for `visits`: of the fixes before the window (read from
    `visit_lookback_start`), each device's fixes after its last earlier visit departed.

    `previous_visits` are the visits rows of earlier windows (at least device_id, departed_at;
    the last per device is enough). Where a device has none, all its recent fixes are kept; a
    stay that closed among them is not emitted again (`visits` emits only what the window's own
    fixes close). A stay still open at the window start is at most max_stay long, so reading
    max_lookback (= max_stay + 1 day) back finds its first fix unless the device was silent for
    over a day right before the window; then its visit starts at the first fix read."""
    fixes = with_columns(recent_fixes, FIX_COLUMNS)
    if fixes.empty:
        return fixes.iloc[0:0]
    fixes = fixes.assign(recorded_at=utc(fixes["recorded_at"]))
    closed = _closed_until(previous_visits)
    if closed:
        until = fixes["device_id"].map(closed)
        fixes = fixes[until.isna() | (fixes["recorded_at"] > until)]
    return fixes.reset_index(drop=True)


def visits(fixes: pd.DataFrame, carry_fixes: pd.DataFrame | None, rules: LocationRules,
           previous_visits: pd.DataFrame | None = None) -> pd.DataFrame:
    """The stays (visits) that this window's fixes close, per device.

    Stay points after Li et al. (2008): from an anchor fix, the run of following fixes that are
    all within stay_radius_m of it, with no gap over max_stay_gap and at most max_stay after it.
    The run ends at the first fix that breaks one of these; if it spans at least min_stay it is a
    visit, extended while the next fixes stay within stay_radius_m of the mean of the visit's
    fixes so far (an anchor taken on the way in, up to ~100 m off the place, would otherwise cut
    an hour's coffee in two at the first fix jittering the other way), and the fix after it is
    the next anchor; if it is shorter, the next fix is. A run still going at the last
    fix is undecided: nothing after its anchor is emitted, and a later window (whose
    `carry_fixes`, see `visit_carry`, start after the last visit) finishes it. A visit is emitted
    by the window holding the fix that closed it, so each is emitted once, and the same fixes
    split into windows anywhere give the same visits as processed whole. A device that goes
    silent mid-stay gets its visit when it next sends a fix (the gap closes it).

    Window fixes at or before the device's last earlier visit's departure (`previous_visits`,
    late arrivals) are left out. Each visit: arrived_at/departed_at = its first/last fix,
    latitude/longitude = median of its fixes, radius_m = farthest fix from that centre.
    """
    window = accepted_fixes(fixes, rules)
    if window.empty:
        return typed_frame([], STAY_DTYPES)
    carry = accepted_fixes(carry_fixes, rules)
    parts = [carry.assign(_in_window=False)] if not carry.empty else []
    both = pd.concat([*parts, window.assign(_in_window=True)], ignore_index=True)
    closed = _closed_until(previous_visits)
    if closed:
        until = both["device_id"].map(closed)
        both = both[until.isna() | (both["recorded_at"] > until)]
    both = both.sort_values(["device_id", "recorded_at", "_in_window", "source_partition", "source_offset"],
                            kind="stable").drop_duplicates(["device_id", "recorded_at"], keep="first")
    rows: list[dict] = []
    for device_id, group in both.groupby("device_id", sort=True):
        rows.extend(_device_stays(str(device_id), group, rules))
    return typed_frame(rows, STAY_DTYPES)


def _device_stays(device_id: str, fixes: pd.DataFrame, rules: LocationRules) -> list[dict]:
    times = fixes["recorded_at"].dt.as_unit("us").astype("int64").to_numpy()
    lat, lon = fixes["latitude"].to_numpy(float), fixes["longitude"].to_numpy(float)
    in_window = fixes["_in_window"].to_numpy(bool)
    window_starts = list(fixes["window_start"])
    limits = (rules.stay_radius_m, _micros(rules.max_stay_gap), _micros(rules.max_stay))
    min_stay = _micros(rules.min_stay)
    rows, i, n = [], 0, len(times)
    while i < n:
        end = _run_end(i, times, lat, lon, limits)
        if end < n - 1 and times[end] - times[i] >= min_stay:
            end = _run_end(i, times, lat, lon, limits, around_mean_from=end + 1)
        if end == n - 1:
            break                          # no fix after the run yet: undecided
        if times[end] - times[i] >= min_stay:
            if in_window[end + 1]:
                rows.append(_stay_row(device_id, window_starts[end + 1], times[i:end + 1], lat[i:end + 1],
                                      lon[i:end + 1]))
            i = end + 1
        else:
            i += 1
    return rows


def _run_end(i: int, times: np.ndarray, lat: np.ndarray, lon: np.ndarray, limits: tuple[float, int, int],
             around_mean_from: int | None = None) -> int:
    """Index of the last fix of the run anchored at i: each fix within the radius of fix i, or,
    from `around_mean_from` on, of the mean of the run's fixes before it. Checked in growing
    chunks, so a long stay costs O(n) and a walk O(1) per anchor."""
    radius, max_gap, max_span = limits
    n, chunk = len(times), 16
    j = i if around_mean_from is None else around_mean_from - 1
    while j < n - 1:
        hi = min(n, j + 1 + chunk)
        k = np.arange(j + 1, hi)
        if around_mean_from is None:
            centre_lat, centre_lon = lat[i], lon[i]
        else:  # the mean of fixes i..k-1 for each k, from running sums (degrees: a ~100 m scale)
            count = k - i
            centre_lat = np.cumsum(lat[i:hi - 1])[k - 1 - i] / count
            centre_lon = np.cumsum(lon[i:hi - 1])[k - 1 - i] / count
        ok = ((haversine_m(centre_lat, centre_lon, lat[k], lon[k]) <= radius)
              & (times[k] - times[k - 1] <= max_gap) & (times[k] - times[i] <= max_span))
        if not ok.all():
            return int(k[np.argmin(ok)]) - 1
        j, chunk = hi - 1, chunk * 2
    return n - 1


def _stay_row(device_id: str, window_start: Any, times: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> dict:
    arrived, departed = _from_micros(times[0]), _from_micros(times[-1])
    centre_lat, centre_lon = float(np.median(lat)), float(np.median(lon))
    return {
        "window_start": window_start,
        "device_id": device_id,
        "visit_id": f"{device_id}-{int(times[0]) // 1000}",
        "recorded_at": arrived,
        "arrived_at": arrived,
        "departed_at": departed,
        "duration_seconds": (int(times[-1]) - int(times[0])) / 1e6,
        "latitude": centre_lat,
        "longitude": centre_lon,
        "radius_m": round(float(np.max(haversine_m(centre_lat, centre_lon, lat, lon))), 2),
        "fix_count": len(times),
    }


def _closed_until(previous_visits: pd.DataFrame | None) -> dict[str, pd.Timestamp]:
    previous = with_columns(previous_visits, ("device_id", "departed_at"))
    previous = previous.dropna(subset=["device_id", "departed_at"])
    if previous.empty:
        return {}
    departed = utc(previous["departed_at"]).groupby(previous["device_id"].astype(str)).max()
    return departed.to_dict()
