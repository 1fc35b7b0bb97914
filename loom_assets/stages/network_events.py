"""Network events: Wi-Fi categories, bands, signal quality and location correlation
(docs/flows/network_events.md).

The old system only stored the raw readings; its README named "Enrichment -> Location
Correlation", which these two stages build. Loom v2 gave no rules, so the ones here are ours
(docs/flows/network_events.md#enriched).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from loom_assets.stages.frames import (
    float_or_nan,
    typed_frame,
    utc,
    with_columns,
    with_dtypes,
)


@dataclass(frozen=True)
class NetworkRules:
    """Every rule and number of the network flow. Bump `version` when one changes.

    Patterns are case-insensitive regular expressions searched in the SSID (or security).
    """

    version: str = "1"
    # Your own networks, matched exactly (case-insensitive). They beat every pattern.
    home_ssids: frozenset[str] = frozenset()
    work_ssids: frozenset[str] = frozenset()
    # Default names of phone hotspots and mobile routers (iOS "<name>'s iPhone", Android
    # "AndroidAP1234", Samsung "Galaxy S23", Pixel "Pixel_1234", MiFi boxes).
    hotspot_patterns: tuple[str, ...] = (
        r"iphone", r"ipad", r"androidap", r"\bgalaxy", r"\bpixel", r"hotspot", r"mifi", r"'s phone",
        r"\boneplus", r"\bredmi", r"\bhuawei", r"\bmoto\b",
    )
    # Venue and operator networks open to the public. "free" only as a word or "FreeWiFi", so
    # the French ISP's home routers ("Freebox-1A2B3C") stay private.
    public_patterns: tuple[str, ...] = (
        r"starbucks", r"mcdonald", r"airport", r"guest", r"\bfree\b", r"free[ _-]?wi-?fi", r"public",
        r"xfinitywifi", r"attwifi", r"boingo", r"caf[eé]", r"coffee", r"hotel", r"library", r"wifi4eu",
        r"amtrak", r"hilton", r"marriott",
    )
    # Federated 802.1X networks (eduroam, govroam) are enterprise even without a security field.
    enterprise_ssid_patterns: tuple[str, ...] = (r"\beduroam\b", r"\bgovroam\b")
    enterprise_security_patterns: tuple[str, ...] = (r"enterprise", r"802\.?1x", r"\beap", r"wpa\d?-?ent")
    # Security values meaning "no password".
    open_security: tuple[str, ...] = ("open", "none", "")
    # Security values meaning a password-protected personal network (WEP, WPA/WPA2/WPA3-Personal).
    private_security_patterns: tuple[str, ...] = (r"wpa", r"wep", r"psk", r"sae", r"personal")
    # docs/flows/network_events.md#enriched: the mobile client skips SSIDs that are empty or
    # "<unknown ssid>" (Android's placeholder without location permission); we keep the row but
    # cannot categorise it.
    placeholder_ssids: tuple[str, ...] = ("", "<unknown ssid>")
    # Signal bands in dBm, the usual Wi-Fi rule of thumb; the mobile client sends a constant
    # -50 (docs/flows/network_events.md#enriched), which therefore always reads "excellent".
    excellent_dbm: int = -50
    good_dbm: int = -60
    fair_dbm: int = -70


# Frequency bands (MHz, lower bound inclusive): 2.4 GHz channels 1-14 are 2412-2484 MHz; the
# 5 GHz band runs 5150-5895 (4.9 GHz public-safety channels included); 6 GHz (Wi-Fi 6E/7)
# is 5925-7125 MHz.
BANDS = (("2.4GHz", 2400.0, 2500.0), ("5GHz", 4900.0, 5925.0), ("6GHz", 5925.0, 7125.0))

LOCATION_TOLERANCE = pd.Timedelta(minutes=5)

READING_COLUMNS = (
    "window_start", "device_id", "recorded_at", "source_topic", "source_partition", "source_offset",
    "message_id", "trace_id", "ssid", "bssid", "signal_strength", "frequency", "channel", "security",
    "connected", "ip_address", "metadata",
)

_TIME = "datetime64[us, UTC]"
ENRICHED_DTYPES: dict[str, str] = {
    "window_start": _TIME,
    "device_id": "str",
    "recorded_at": _TIME,
    "source_topic": "str",
    "source_partition": "Int64",
    "source_offset": "Int64",
    "message_id": "str",
    "trace_id": "str",
    "ssid": "str",
    "bssid": "str",
    "signal_strength": "Int64",
    "frequency": "float64",
    "channel": "Int64",
    "security": "str",
    "connected": "boolean",
    "ip_address": "str",
    "ssid_valid": "bool",          # False for empty / placeholder SSIDs (docs/flows/network_events.md#enriched)
    "network_category": "str",     # home | work | public | hotspot | enterprise | unknown
    "category_reason": "str",      # which rule decided, see network_category()
    "frequency_band": "str",       # 2.4GHz | 5GHz | 6GHz | NaN
    "signal_quality": "str",       # excellent | good | fair | weak | NaN
}

CORRELATED_DTYPES: dict[str, str] = {
    "window_start": _TIME,
    "device_id": "str",
    "recorded_at": _TIME,
    "source_topic": "str",
    "source_partition": "Int64",
    "source_offset": "Int64",
    "message_id": "str",
    "trace_id": "str",
    "ssid": "str",
    "bssid": "str",
    "network_category": "str",
    "latitude": "float64",
    "longitude": "float64",
    "accuracy": "float64",
    "fix_recorded_at": _TIME,
    "fix_offset_seconds": "float64",  # fix time - reading time (negative: the fix is earlier)
}

# Table name -> the DataFrame columns written there (the tables add model_version).
OUTPUT_COLUMNS: dict[str, tuple[str, ...]] = {
    "network_events_enriched": tuple(ENRICHED_DTYPES),
    "network_events_location_correlated": tuple(CORRELATED_DTYPES),
}


def network_category(ssid: Any, security: Any, metadata: Any, rules: NetworkRules) -> tuple[str, str]:
    """(category, reason). The first rule that matches wins:

    1. empty or placeholder SSID                                 -> unknown    (no_ssid)
    2. SSID in rules.home_ssids / rules.work_ssids               -> home/work  (configured)
    3. metadata `network_category` (or `label`) home/work        -> home/work  (metadata)
    4. 802.1X/Enterprise security, or eduroam/govroam            -> enterprise (enterprise)
    5. phone-hotspot name                                        -> hotspot    (hotspot_name)
    6. venue/operator name (Starbucks, Airport, Guest, Free, ...) -> public     (public_name)
    7. open security ("open", "none", "")                        -> public     (open_network)
    8. personal WPA/WEP security                                 -> home       (private_network):
       a password-protected network nobody configured is most often a home (yours, a friend's);
       offices mostly use 802.1X (rule 4). List work networks in rules.work_ssids.
    9. security missing                                          -> unknown    (unknown_security):
       the mobile client sends no security field, so "missing" must not read as "open".
    """
    name = ssid.strip() if isinstance(ssid, str) else ""
    if name.lower() in rules.placeholder_ssids:
        return "unknown", "no_ssid"
    folded = name.casefold()
    if folded in {s.casefold() for s in rules.home_ssids}:
        return "home", "configured"
    if folded in {s.casefold() for s in rules.work_ssids}:
        return "work", "configured"
    label = _metadata_label(metadata)
    if label in ("home", "work"):
        return label, "metadata"
    sec = security.strip().lower() if isinstance(security, str) else None
    if (sec and _matches(sec, rules.enterprise_security_patterns)) or _matches(name, rules.enterprise_ssid_patterns):
        return "enterprise", "enterprise"
    if _matches(name, rules.hotspot_patterns):
        return "hotspot", "hotspot_name"
    if _matches(name, rules.public_patterns):
        return "public", "public_name"
    if sec is not None and sec in rules.open_security:
        return "public", "open_network"
    if sec and _matches(sec, rules.private_security_patterns):
        return "home", "private_network"
    return "unknown", "unknown_security"


def frequency_band(frequency_mhz: Any) -> str | None:
    """2.4GHz / 5GHz / 6GHz from the centre frequency; values under 100 are taken as GHz
    (some clients send 2.4 or 5.0), anything outside the bands gives None."""
    mhz = float_or_nan(frequency_mhz)
    if math.isnan(mhz) or mhz <= 0:
        return None
    if mhz < 100:
        mhz *= 1000.0
    for band, low, high in BANDS:
        if low <= mhz < high or (band == "6GHz" and mhz == high):
            return band
    return None


def signal_quality(dbm: Any, rules: NetworkRules) -> str | None:
    """excellent >= -50 dBm, good >= -60, fair >= -70, else weak; None when missing."""
    value = float_or_nan(dbm)
    if math.isnan(value):
        return None
    if value >= rules.excellent_dbm:
        return "excellent"
    if value >= rules.good_dbm:
        return "good"
    if value >= rules.fair_dbm:
        return "fair"
    return "weak"


def enrich(readings: pd.DataFrame, rules: NetworkRules) -> pd.DataFrame:
    """Category, band and signal quality for each Wi-Fi reading of a window (all rows kept)."""
    readings = with_columns(readings, READING_COLUMNS)
    if readings.empty:
        return typed_frame([], ENRICHED_DTYPES)
    readings = readings.assign(recorded_at=utc(readings["recorded_at"]))
    ordered = readings.sort_values(["device_id", "recorded_at", "source_partition", "source_offset"], kind="stable")
    rows = []
    for reading in ordered.to_dict("records"):
        category, reason = network_category(reading["ssid"], reading["security"], reading["metadata"], rules)
        rows.append({
            **{c: reading[c] for c in READING_COLUMNS if c in ENRICHED_DTYPES},
            "ssid_valid": reason != "no_ssid",
            "network_category": category,
            "category_reason": reason,
            "frequency_band": frequency_band(reading["frequency"]),
            "signal_quality": signal_quality(reading["signal_strength"], rules),
        })
    return typed_frame(rows, ENRICHED_DTYPES)


def location_correlated(
    enriched: pd.DataFrame, fixes: pd.DataFrame | None, tolerance: pd.Timedelta = LOCATION_TOLERANCE
) -> pd.DataFrame:
    """Each enriched reading with the nearest GPS fix of the same device at most `tolerance` away
    (inclusive); readings without such a fix are left out. 5 min: GPS comes every 10-30 s
    (docs/messages.md#sampling-rates), so a reading with no fix that close was taken while location
    was off."""
    empty = typed_frame([], CORRELATED_DTYPES)
    if enriched is None or enriched.empty or fixes is None or fixes.empty:
        return empty
    lineage = [c for c in CORRELATED_DTYPES if c in ENRICHED_DTYPES]
    left = with_columns(enriched, lineage)[lineage]
    left = left.assign(recorded_at=utc(left["recorded_at"]), device_id=left["device_id"].astype(str))
    left = left.dropna(subset=["recorded_at"]).sort_values("recorded_at", kind="stable")
    right = with_columns(fixes, ("device_id", "recorded_at", "latitude", "longitude", "accuracy"))
    right = right[["device_id", "recorded_at", "latitude", "longitude", "accuracy"]].dropna(
        subset=["device_id", "recorded_at", "latitude", "longitude"])
    right = right.assign(fix_recorded_at=utc(right["recorded_at"]), device_id=right["device_id"].astype(str),
                         accuracy=right["accuracy"].astype(float))
    right = right.drop(columns=["recorded_at"]).sort_values("fix_recorded_at", kind="stable")
    if right.empty:
        return empty
    matched = pd.merge_asof(
        left, right, left_on="recorded_at", right_on="fix_recorded_at", by="device_id",
        direction="nearest", tolerance=tolerance,
    ).dropna(subset=["fix_recorded_at"])
    matched["fix_offset_seconds"] = (matched["fix_recorded_at"] - matched["recorded_at"]).dt.total_seconds()
    matched = matched.sort_values(["device_id", "recorded_at", "source_partition", "source_offset"], kind="stable")
    return with_dtypes(matched, CORRELATED_DTYPES)


def _metadata_label(metadata: Any) -> str | None:
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata)
        except ValueError:
            return None
    if not isinstance(metadata, Mapping):
        return None
    for key in ("network_category", "label"):
        value = metadata.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip().lower()
    return None


def _matches(text: str, patterns: tuple[str, ...]) -> bool:
    return any(re.search(p, text, re.IGNORECASE) for p in patterns)
