import pandas as pd
import pytest

from loom_assets.stages.network_events import (
    CORRELATED_DTYPES,
    ENRICHED_DTYPES,
    OUTPUT_COLUMNS,
    NetworkRules,
    enrich,
    frequency_band,
    location_correlated,
    network_category,
    signal_quality,
)

RULES = NetworkRules()
T0 = pd.Timestamp("2025-03-03 10:00", tz="UTC")


def wifi(*specs, device="phone-1") -> pd.DataFrame:
    """specs: dicts of payload fields, optionally with `seconds` after T0."""
    rows = []
    for offset, spec in enumerate(specs):
        spec = dict(spec)
        seconds = spec.pop("seconds", 60 * offset)
        rows.append({
            "window_start": T0, "device_id": device, "recorded_at": T0 + pd.Timedelta(seconds=seconds),
            "received_at": pd.NaT, "schema_version": "1.0", "message_id": f"{device}-{offset}", "trace_id": None,
            "source_topic": "device.network.wifi.raw", "source_partition": 0, "source_offset": offset,
            "ingested_at": T0, "metadata": None, "ssid": "HomeNet", "bssid": "aa:bb:cc:dd:ee:ff",
            "signal_strength": -50, "frequency": 5180.0, "channel": 36, "security": "WPA2",
            "connected": True, "ip_address": "192.168.1.20", **spec,
        })
    return pd.DataFrame(rows)


# -- categories -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ssid", "security", "metadata", "expected"),
    [
        ("", "WPA2", None, ("unknown", "no_ssid")),
        ("<unknown ssid>", "WPA2", None, ("unknown", "no_ssid")),
        (None, None, None, ("unknown", "no_ssid")),
        ("  ", "WPA2", None, ("unknown", "no_ssid")),
        ("Bob's iPhone", "WPA2", None, ("hotspot", "hotspot_name")),
        ("AndroidAP5f3c", "WPA2", None, ("hotspot", "hotspot_name")),
        ("Galaxy S23 1a2b", "WPA3", None, ("hotspot", "hotspot_name")),
        ("Pixel_4821", "WPA2", None, ("hotspot", "hotspot_name")),
        ("Starbucks WiFi", "open", None, ("public", "public_name")),
        ("Google Starbucks", None, None, ("public", "public_name")),
        ("JFK Airport Free WiFi", None, None, ("public", "public_name")),
        ("xfinitywifi", None, None, ("public", "public_name")),
        ("Smith-Guest", "WPA2", None, ("public", "public_name")),
        ("CornerBakery", "open", None, ("public", "open_network")),
        ("CornerBakery", "", None, ("public", "open_network")),
        ("Freebox-1A2B3C", "WPA2", None, ("home", "private_network")),  # "free" only as a word
        ("eduroam", None, None, ("enterprise", "enterprise")),
        ("ACME-Corp", "WPA2-Enterprise", None, ("enterprise", "enterprise")),
        ("ACME-Corp", "802.1X", None, ("enterprise", "enterprise")),
        ("NETGEAR42", "WPA2", None, ("home", "private_network")),
        ("NETGEAR42", "WPA3-Personal", None, ("home", "private_network")),
        ("NETGEAR42", None, None, ("unknown", "unknown_security")),     # missing security is not "open"
        ("NETGEAR42", "WPA2", {"network_category": "work"}, ("work", "metadata")),
        ("NETGEAR42", "WPA2", '{"label": "Home"}', ("home", "metadata")),
    ],
)
def test_network_category(ssid, security, metadata, expected):
    assert network_category(ssid, security, metadata, RULES) == expected


def test_configured_networks_beat_every_pattern():
    rules = NetworkRules(home_ssids=frozenset({"Bob's iPhone"}), work_ssids=frozenset({"ACME-CORP"}))
    assert network_category("bob's iphone", "WPA2", None, rules) == ("home", "configured")
    assert network_category("ACME-Corp", "WPA2-Enterprise", None, rules) == ("work", "configured")


# -- band and signal ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("frequency", "expected"),
    [
        (2412.0, "2.4GHz"), (2484.0, "2.4GHz"), (2399.9, None), (2500.0, None),
        (4900.0, "5GHz"), (5180.0, "5GHz"), (5885.0, "5GHz"), (5924.9, "5GHz"),
        (5925.0, "6GHz"), (5955.0, "6GHz"), (7125.0, "6GHz"), (7125.1, None),
        (2.4, "2.4GHz"), (5.0, "5GHz"),          # sent in GHz
        (None, None), (float("nan"), None), (0.0, None),
    ],
)
def test_frequency_band_edges(frequency, expected):
    assert frequency_band(frequency) == expected


@pytest.mark.parametrize(
    ("dbm", "expected"),
    [(-30, "excellent"), (-50, "excellent"), (-51, "good"), (-60, "good"), (-61, "fair"), (-70, "fair"),
     (-71, "weak"), (-95, "weak"), (None, None), (float("nan"), None)],
)
def test_signal_quality_edges(dbm, expected):
    assert signal_quality(dbm, RULES) == expected


# -- enrich ---------------------------------------------------------------------------------------------
def test_enrich_keeps_placeholder_ssids_and_flags_them():
    out = enrich(wifi({"ssid": "<unknown ssid>"}, {"ssid": "HomeNet"}), RULES)
    assert len(out) == 2
    assert out["ssid_valid"].tolist() == [False, True]
    assert out["network_category"].tolist() == ["unknown", "home"]


def test_enrich_sorts_by_event_time_and_keeps_lineage():
    out = enrich(wifi({"seconds": 120, "ssid": "Later"}, {"seconds": 0, "ssid": "Earlier"}), RULES)
    assert out["ssid"].tolist() == ["Earlier", "Later"]
    assert out["source_offset"].tolist() == [1, 0]
    assert out.loc[0, "source_topic"] == "device.network.wifi.raw"
    assert out.loc[0, "frequency_band"] == "5GHz" and out.loc[0, "signal_quality"] == "excellent"


def test_enrich_handles_missing_optional_fields():
    frame = wifi({"frequency": None, "signal_strength": None, "security": None, "channel": None}).drop(
        columns=["bssid", "ip_address", "metadata"])
    out = enrich(frame, RULES)
    row = out.iloc[0]
    assert pd.isna(row["frequency_band"]) and pd.isna(row["signal_quality"]) and pd.isna(row["bssid"])
    assert row["network_category"] == "unknown"


@pytest.mark.parametrize("frame", [pd.DataFrame(), wifi()])
def test_empty_readings_give_the_output_columns(frame):
    out = enrich(frame, RULES)
    assert out.empty
    assert list(out.columns) == list(OUTPUT_COLUMNS["network_events_enriched"])
    assert out.dtypes.astype(str).to_dict() == {c: str(pd.Series(dtype=t).dtype) for c, t in ENRICHED_DTYPES.items()}


# -- location correlation ---------------------------------------------------------------------------------
def fixes(*specs) -> pd.DataFrame:
    """specs: (device_id, seconds after T0, latitude)."""
    return pd.DataFrame([
        {"device_id": d, "recorded_at": T0 + pd.Timedelta(seconds=s), "latitude": lat, "longitude": -86.78,
         "accuracy": 8.0}
        for d, s, lat in specs
    ])


@pytest.mark.parametrize(
    ("fix_seconds", "matched"),
    [(0, True), (300, True), (-300, True), (301, False), (-301, False)],
)
def test_a_fix_matches_within_the_tolerance_inclusive(fix_seconds, matched):
    enriched = enrich(wifi({"seconds": 0}), RULES)
    out = location_correlated(enriched, fixes(("phone-1", fix_seconds, 36.1)))
    assert (len(out) == 1) is matched
    if matched:
        assert out.loc[0, "fix_offset_seconds"] == fix_seconds
        assert out.loc[0, "fix_recorded_at"] == T0 + pd.Timedelta(seconds=fix_seconds)


def test_the_nearest_fix_of_the_same_device_is_taken():
    enriched = enrich(wifi({"seconds": 100}), RULES)
    candidates = fixes(("phone-1", 0, 1.0), ("phone-1", 130, 2.0), ("phone-2", 100, 3.0), ("phone-1", 400, 4.0))
    out = location_correlated(enriched, candidates)
    assert out["latitude"].tolist() == [2.0]
    assert out.loc[0, "fix_offset_seconds"] == 30.0
    assert out.loc[0, "accuracy"] == 8.0


def test_readings_without_a_fix_are_dropped():
    enriched = enrich(wifi({"seconds": 0}, {"seconds": 3600}), RULES)
    out = location_correlated(enriched, fixes(("phone-1", 10, 36.1)))
    assert out["recorded_at"].tolist() == [T0]


def test_a_custom_tolerance_is_used():
    enriched = enrich(wifi({"seconds": 0}), RULES)
    assert location_correlated(enriched, fixes(("phone-1", 90, 1.0)), tolerance=pd.Timedelta(minutes=1)).empty


@pytest.mark.parametrize(
    ("enriched_specs", "fix_specs"),
    [((), (("phone-1", 0, 1.0),)), (({"seconds": 0},), ()), (({"seconds": 0},), (("phone-2", 0, 1.0),))],
)
def test_no_match_gives_the_output_columns(enriched_specs, fix_specs):
    enriched = enrich(wifi(*enriched_specs), RULES)
    fix_frame = fixes(*fix_specs) if fix_specs else pd.DataFrame()
    out = location_correlated(enriched, fix_frame)
    assert out.empty
    assert list(out.columns) == list(OUTPUT_COLUMNS["network_events_location_correlated"])
    assert out.dtypes.astype(str).to_dict() == {c: str(pd.Series(dtype=t).dtype) for c, t in CORRELATED_DTYPES.items()}
