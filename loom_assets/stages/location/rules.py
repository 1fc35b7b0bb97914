"""The location flow's rules: every number of it, with its reason."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class LocationRules:
    """Every number of the location flow, with its reason. Bump `version` when one changes."""

    version: str = "2"  # 2: a visit extends around its mean, not only its first fix
    # A fix whose accuracy radius (m, 68 %) is worse than this is ignored for regions and stays:
    # it cannot tell whether the device is inside a 100 m region (docs/flows/location.md#georegions
    # seeds are 50-150 m) or a 100 m stay. Phones report 5-30 m with GPS; > 100 m means
    # Wi-Fi/cell-only positioning (iOS's kCLLocationAccuracyHundredMeters). A fix without accuracy
    # (optional, docs/messages.md#payload-fields) is kept.
    max_fix_accuracy_m: float = 100.0
    # Hysteresis: a device inside a region stays inside until a fix is more than this beyond the
    # boundary. Indoor/edge GPS jitter is typically 10-30 m, so an edge fix wandering in and out
    # does not flap; someone walking away crosses 25 m in about 20 s.
    exit_margin_m: float = 25.0
    # A stay: consecutive fixes all within 100 m of the first (Li et al. 2008 stay points).
    # 100 m is the old pipeline's detection radius (LOOM_DETECTION_RADIUS_METERS=100) and the
    # business match radius (docs/flows/location.md#places), so one stay is one place.
    stay_radius_m: float = 100.0
    # ...lasting at least 5 minutes: a red light or a queue (1-3 min) is not a visit, a coffee is.
    min_stay: pd.Timedelta = pd.Timedelta(minutes=5)
    # Fixes come every 10-30 s (docs/messages.md#sampling-rates); 10 min without one (20-60 missed
    # fixes) may hide a trip away and back, so the stay is split there (each part is a visit if long
    # enough).
    max_stay_gap: pd.Timedelta = pd.Timedelta(minutes=10)
    # A stay longer than a day is cut at 24 h (the visit ends at its last fix within 24 h of
    # arrival, the next fix starts a new one), so an open stay never needs more than a day of
    # fixes to finish.
    max_stay: pd.Timedelta = pd.Timedelta(hours=24)
    # How far back the caller reads raw fixes to finish open stays: max_stay, plus one more day
    # so that a device that went silent for up to a day in the middle of a stay still has it.
    max_lookback: pd.Timedelta = pd.Timedelta(hours=48)
    # docs/flows/location.md#places: business candidates count from confidence 0.7 and within 100 m.
    business_min_confidence: float = 0.7
    business_max_distance_m: float = 100.0
    # docs/flows/location.md#places: "30-day visit counts".
    visit_count_period: pd.Timedelta = pd.Timedelta(days=30)
    # Places nobody named get a geohash cell of 7 characters (about 153 x 153 m at the equator,
    # 153 x 124 m at 36° N): coarse enough that visits to one place (centroids a few tens of
    # metres apart) mostly share a cell, fine enough to tell neighbouring blocks apart.
    unknown_geohash_precision: int = 7
