import json

import pandas as pd
import pytest

from loom_assets.stages import app_lifecycle
from loom_assets.stages.app_lifecycle import ENRICHED_DTYPES, OUTPUT_COLUMNS, enrich, load_app_categories

W1 = pd.Timestamp("2025-03-03 10:00", tz="UTC")
W2 = pd.Timestamp("2025-03-03 10:15", tz="UTC")
SLACK = "com.slack.Slack"


@pytest.fixture(scope="module")
def categories():
    return load_app_categories()


def at(minutes: float, base: pd.Timestamp = W1) -> pd.Timestamp:
    return base + pd.Timedelta(minutes=minutes)


def events(*specs, window_start=W1) -> pd.DataFrame:
    """specs: (minutes after window_start, event_type[, app_identifier[, extra fields]])."""
    rows = []
    for offset, spec in enumerate(specs):
        minutes, event_type, *rest = spec
        app = rest[0] if rest else SLACK
        extra = rest[1] if len(rest) > 1 else {}
        rows.append({
            "window_start": window_start, "device_id": "phone-1", "recorded_at": at(minutes, window_start),
            "received_at": pd.NaT, "schema_version": "1.0", "message_id": f"m{window_start:%H%M}-{offset}",
            "trace_id": None, "source_topic": "os.events.app_lifecycle.raw", "source_partition": 0,
            "source_offset": offset, "ingested_at": window_start, "app_identifier": app,
            "app_name": "Slack", "event_type": event_type, "duration_seconds": float("nan"), "metadata": None,
            **extra,
        })
    return pd.DataFrame(rows)


# -- categories -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("app_identifier", "label", "expected"),
    [
        ("com.slack.Slack", None, ("communication", "bundle_id")),
        ("com.Slack", None, ("communication", "bundle_id")),               # Android package, other case
        ("com.whatsapp", None, ("communication", "bundle_id")),            # prefix matches the id itself
        ("com.whatsapp.w4b", None, ("communication", "bundle_id")),
        ("com.whatsappclone.fake", None, ("unknown", "unknown")),          # prefix needs a dot boundary
        ("com.microsoft.Word", None, ("productivity", "bundle_id")),
        ("com.microsoft.VSCode", None, ("developer_tools", "bundle_id")),  # exact beats prefix
        ("com.microsoft.office.onenote", None, ("productivity", "bundle_id")),
        ("com.google.android.apps.docs.editors.sheets", None, ("productivity", "bundle_id")),
        ("com.spotify.client", None, ("music", "bundle_id")),
        ("com.netflix.mediaclient", None, ("entertainment", "bundle_id")),
        ("com.instagram.android", None, ("social", "bundle_id")),
        ("com.facebook.orca", None, ("communication", "bundle_id")),       # exact beats 'com.facebook.'
        ("org.mozilla.firefox", None, ("browser", "bundle_id")),
        ("com.apple.Safari", None, ("browser", "bundle_id")),
        ("com.apple.dt.Xcode", None, ("developer_tools", "bundle_id")),
        ("com.apple.dt.Xcode", "GAME", ("developer_tools", "bundle_id")),  # the id wins over the label
        ("com.example.notes", "PRODUCTIVITY", ("productivity", "android_label")),
        ("com.example.chat", "CATEGORY_SOCIAL", ("social", "android_label")),
        ("com.example.puzzle", "GAME_PUZZLE", ("games", "android_label")),
        ("com.example.radio", "music_and_audio", ("music", "android_label")),
        ("com.example.maps", 6, ("travel_navigation", "android_label")),   # ApplicationInfo.CATEGORY_MAPS
        ("com.example.thing", "UNDEFINED", ("unknown", "unknown")),
        ("com.example.thing", None, ("unknown", "unknown")),
        ("", None, ("unknown", "unknown")),
    ],
)
def test_category_of_an_app(categories, app_identifier, label, expected):
    assert categories.category_of(app_identifier, label) == expected


def test_the_shipped_category_table_is_versioned_and_large(categories):
    assert categories.version == "1"
    assert len(categories.exact) + len(categories.prefixes) >= 150
    assert set(categories.exact.values()) | set(categories.android_labels.values()) <= set(categories.names)


def test_a_category_table_with_a_typo_is_refused(tmp_path):
    path = tmp_path / "cats.json"
    path.write_text(json.dumps({
        "version": "x", "categories": {"music": "Music"}, "bundle_ids": {"com.a": "musik"},
        "bundle_id_prefixes": {}, "android_labels": {},
    }))
    with pytest.raises(ValueError, match="musik"):
        load_app_categories(path)


def test_a_prefix_without_trailing_dot_is_refused(tmp_path):
    path = tmp_path / "cats.json"
    path.write_text(json.dumps({
        "version": "x", "categories": {"music": "Music"}, "bundle_ids": {},
        "bundle_id_prefixes": {"com.spotify": "music"}, "android_labels": {},
    }))
    with pytest.raises(ValueError, match="end with"):
        load_app_categories(path)


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"category": "PRODUCTIVITY"}, ("productivity", "android_label")),
        ({"android_category": "SOCIAL"}, ("social", "android_label")),
        ('{"category": "NEWS"}', ("news", "android_label")),  # JSON text, as read back from jsonb
        ({"other": 1}, ("unknown", "unknown")),
        (None, ("unknown", "unknown")),
    ],
)
def test_android_label_is_read_from_metadata(categories, metadata, expected):
    out = enrich(events((0, "launch", "com.example.app", {"metadata": metadata})), None, categories)
    assert (out.loc[0, "app_category"], out.loc[0, "category_source"]) == expected


# -- sessions ---------------------------------------------------------------------------------
def test_a_session_opens_and_closes_within_a_window(categories):
    out = enrich(events((1, "launch"), (3.5, "background")), None, categories)
    assert out["session_id"].nunique() == 1
    assert out["session_open"].tolist() == [True, False]
    assert pd.isna(out.loc[0, "foreground_seconds"])
    assert out.loc[1, "foreground_seconds"] == 150.0
    assert out.loc[1, "session_start"] == at(1)
    assert out.loc[1, "session_end"] == at(3.5)
    assert pd.isna(out.loc[0, "session_end"])


def test_a_session_opened_in_one_window_closes_in_the_next(categories):
    first = enrich(events((10, "foreground")), None, categories)
    carry = first.tail(1).assign(model_version="1")  # as read back from the table
    second = enrich(events((2, "background"), window_start=W2), carry, categories)
    assert second.loc[0, "session_id"] == first.loc[0, "session_id"]
    assert second.loc[0, "foreground_seconds"] == 7 * 60.0   # 10:10 -> 10:17
    assert second.loc[0, "session_start"] == at(10)
    assert not second.loc[0, "session_open"]


def test_carry_of_another_app_does_not_close_this_one(categories):
    first = enrich(events((10, "foreground", "com.spotify.client")), None, categories)
    second = enrich(events((2, "background"), window_start=W2), first, categories)
    assert second.loc[0, "session_flag"] == "close_without_open"
    assert second.loc[0, "session_id"] != first.loc[0, "session_id"]


def test_out_of_order_events_are_taken_in_event_time(categories):
    shuffled = events((5, "background"), (1, "launch"))  # delivered close first
    out = enrich(shuffled, None, categories)
    assert out["event_type"].tolist() == ["launch", "background"]
    assert out.loc[1, "foreground_seconds"] == 240.0


def test_equal_times_are_ordered_by_partition_and_offset(categories):
    same = events((1, "launch"), (1, "background"))
    same.loc[0, "source_offset"], same.loc[1, "source_offset"] = 9, 3  # background has the lower offset
    out = enrich(same, None, categories)
    assert out["event_type"].tolist() == ["background", "launch"]
    assert out.loc[1, "session_open"]


def test_a_duplicate_foreground_keeps_the_first_open(categories):
    out = enrich(events((1, "launch"), (1.5, "foreground"), (4, "background")), None, categories)
    assert out["session_id"].nunique() == 1
    assert out.loc[1, "session_flag"] == "duplicate_open"
    assert out.loc[2, "foreground_seconds"] == 180.0


@pytest.mark.parametrize(
    ("duration", "expected_seconds", "expected_start"),
    [
        (90.0, 90.0, at(5) - pd.Timedelta(seconds=90)),   # the client's figure is used
        (float("nan"), float("nan"), pd.NaT),             # no figure: unknown, not zero
        (-5.0, float("nan"), pd.NaT),                     # nonsense is not used
        (13 * 3600.0, float("nan"), pd.NaT),              # longer than MAX_SESSION is not used
    ],
)
def test_a_close_without_open_falls_back_to_the_client_duration(categories, duration, expected_seconds, expected_start):
    out = enrich(events((5, "background", SLACK, {"duration_seconds": duration})), None, categories)
    row = out.iloc[0]
    assert row["session_flag"] == "close_without_open"
    assert row["foreground_seconds"] == pytest.approx(expected_seconds, nan_ok=True)
    assert (pd.isna(row["session_start"]) and pd.isna(expected_start)) or row["session_start"] == expected_start
    assert isinstance(row["session_id"], str) and not row["session_open"]


def test_a_terminate_after_background_adds_no_foreground_time(categories):
    out = enrich(
        events((0, "launch"), (2, "background"), (3, "terminate", SLACK, {"duration_seconds": 180.0})),
        None, categories,
    )
    assert out.loc[2, "session_flag"] == "already_closed"
    assert out.loc[2, "session_id"] == out.loc[0, "session_id"]
    assert pd.isna(out.loc[2, "foreground_seconds"])
    assert out["foreground_seconds"].sum() == 120.0


def test_clock_skew_gives_no_negative_foreground_time(categories):
    # The close is delivered in a later window but stamped before the carried open.
    first = enrich(events((10, "launch")), None, categories)
    second = enrich(events((-20, "background"), window_start=W2), first, categories)
    row = second.iloc[0]
    assert row["session_flag"] == "clock_skew"
    assert pd.isna(row["foreground_seconds"])
    assert not row["session_open"]


def test_a_session_open_longer_than_the_maximum_is_abandoned(categories):
    out = enrich(events((0, "launch"), (13 * 60, "foreground"), (13 * 60 + 1, "background")), None, categories)
    assert out.loc[1, "session_flag"] == "previous_abandoned"
    assert out.loc[1, "session_id"] != out.loc[0, "session_id"]
    assert out.loc[2, "foreground_seconds"] == 60.0


def test_a_close_after_the_maximum_does_not_count_the_whole_gap(categories):
    out = enrich(events((0, "launch"), (13 * 60, "background")), None, categories)
    assert out.loc[1, "session_flag"] == "abandoned"
    assert pd.isna(out.loc[1, "foreground_seconds"])


def test_a_crash_closes_the_session_and_is_flagged(categories):
    out = enrich(events((0, "launch"), (1, "crash")), None, categories)
    assert out["is_crash"].tolist() == [False, True]
    assert out.loc[1, "foreground_seconds"] == 60.0


def test_sessions_are_per_app(categories):
    out = enrich(events((0, "launch"), (1, "launch", "com.spotify.client"), (2, "background")), None, categories)
    assert out.loc[2, "foreground_seconds"] == 120.0
    assert out.loc[1, "session_open"]


def test_missing_app_name_and_duration_pass_through(categories):
    out = enrich(events((0, "launch", SLACK, {"app_name": None})), None, categories)
    assert pd.isna(out.loc[0, "app_name"])
    assert pd.isna(out.loc[0, "client_duration_seconds"])


def test_rerunning_a_window_gives_identical_rows(categories):
    window = events((1, "launch"), (2, "background"), (3, "foreground"))
    pd.testing.assert_frame_equal(enrich(window, None, categories), enrich(window, None, categories))


@pytest.mark.parametrize("frame", [pd.DataFrame(), events()])
def test_empty_input_gives_the_output_columns(categories, frame):
    out = enrich(frame, pd.DataFrame(), categories)
    assert out.empty
    assert list(out.columns) == list(OUTPUT_COLUMNS["app_lifecycle_enriched"])
    assert out.dtypes.astype(str).to_dict() == {c: str(pd.Series(dtype=t).dtype) for c, t in ENRICHED_DTYPES.items()}


def test_lineage_columns_are_kept(categories):
    out = enrich(events((0, "launch")), None, categories)
    row = out.iloc[0]
    assert (row["source_topic"], row["source_partition"], row["source_offset"], row["message_id"]) == (
        "os.events.app_lifecycle.raw", 0, 0, "m1000-0")
    assert row["window_start"] == W1 and row["device_id"] == "phone-1"
    assert "model_version" not in out.columns
    assert app_lifecycle.MAX_SESSION == pd.Timedelta(hours=12)
