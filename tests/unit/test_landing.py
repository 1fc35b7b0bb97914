"""Raw landing: every record becomes exactly one row or one error."""

import json
from datetime import UTC, datetime

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from loom_assets.events import Record
from loom_assets.stages.landing import ERROR_COLUMNS, land, raw_columns, record_devices, refused, without_erased

WINDOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
TOPIC = "device.sensor.power.raw"


def record(offset: int, value: bytes) -> tuple[datetime, Record]:
    return WINDOW, Record(TOPIC, 0, offset, b"dev", value, int(WINDOW.timestamp() * 1000), {})


def reading(level) -> bytes:
    return json.dumps({"device_id": "dev", "recorded_at": "2026-11-24T06:01:00Z",
                       "battery_level": level, "is_charging": False}).encode()


def test_rows_and_errors_add_up_to_the_records_read():
    records = [record(0, reading(50)), record(1, b"nope"), record(2, reading("high")), record(3, reading(49.5)),
               record(4, reading(48) + b" " * 300)]
    landing = land("power_state", [TOPIC], records, WINDOW, max_message_bytes=200)
    assert landing.rows["source_offset"].tolist() == [0, 3]
    assert landing.errors["source_offset"].tolist() == [1, 2, 4]
    assert landing.errors["error_type"].tolist() == ["malformed_json", "validation_error", "payload_too_large"]
    assert landing.errors["original_value"].iloc[0] == b"nope"
    assert list(landing.rows.columns) == raw_columns([TOPIC])
    assert list(landing.errors.columns) == list(ERROR_COLUMNS)


def test_an_empty_window_has_typed_empty_frames():
    landing = land("power_state", [TOPIC], [], WINDOW, max_message_bytes=200)
    assert landing.rows.empty and landing.errors.empty
    assert str(landing.rows["recorded_at"].dtype).startswith("datetime64")


def test_an_error_row_names_the_device_only_when_the_envelope_does():
    bad_reading = json.dumps({"device_id": "phone-7", "recorded_at": "2026-11-24T06:01:00Z",
                              "battery_level": "high", "is_charging": False}).encode()
    landing = land("power_state", [TOPIC], [record(0, bad_reading), record(1, b"nope")], WINDOW,
                   max_message_bytes=1000)
    assert landing.errors["device_id"].iloc[0] == "phone-7"
    assert pd.isna(landing.errors["device_id"].iloc[1])


def power(device: str, at: str, level=50) -> bytes:
    return json.dumps({"device_id": device, "recorded_at": at, "battery_level": level,
                       "is_charging": False}).encode()


def test_records_of_an_erased_device_are_skipped_below_its_erasure_position():
    records = [record(0, power("gone", "2026-11-24T06:01:00Z")), record(1, power("kept", "2026-11-24T06:01:00Z")),
               record(2, power("gone", "2026-11-25T06:09:00Z")),  # a day ahead: still before the erase
               record(3, power("gone", "2026-11-24T06:01:00Z", "x")),
               record(4, power("kept", "2026-11-24T06:01:00Z", "x")),
               record(5, power("gone", "2026-11-24T06:01:00Z"))]  # sent after the erase
    landing = land("power_state", [TOPIC], records, WINDOW, max_message_bytes=1000)
    kept, dropped = without_erased(landing, {"gone": {(TOPIC, 0): 5}})
    assert dropped == 3
    assert kept.rows["source_offset"].tolist() == [1, 5]
    assert [r.offset for r in kept.records] == [1, 5]
    assert kept.errors["source_offset"].tolist() == [4]
    assert without_erased(landing, {}) == (landing, 0)
    # Another partition, or one the erase did not know (created after it), keeps its records.
    assert without_erased(landing, {"gone": {(TOPIC, 1): 5}}) == (landing, 0)


def test_an_error_record_is_the_devices_by_its_key_or_its_envelope():
    def keyed(offset: int, key: bytes, value: bytes) -> tuple[datetime, Record]:
        return WINDOW, Record(TOPIC, 0, offset, key, value, int(WINDOW.timestamp() * 1000), {})

    records = [keyed(0, b"gone", b"not json"),
               keyed(1, b"\xff\x00hash", json.dumps({"device_id": 7, "data": {"device_id": "gone"}}).encode()),
               keyed(2, b"kept", b"not json either"),
               keyed(3, b"\xff\x00hash", json.dumps([{"device_id": "gone"}]).encode())]
    landing = land("power_state", [TOPIC], records, WINDOW, max_message_bytes=1000)
    assert landing.errors["device_id"].isna().all()
    kept, dropped = without_erased(landing, {"gone": {(TOPIC, 0): 10}})
    assert (dropped, kept.errors["source_offset"].tolist()) == (2, [2, 3])  # a JSON list is no envelope
    assert record_devices(b"gone", b'{"device_id": "x", "data": {"device_id": "y"}}') == {"gone", "x", "y"}


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["gone", "kept"]),
                          st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1),
                                       timezones=st.just(UTC))),
                min_size=1, max_size=12),
       st.integers(min_value=0, max_value=12))
def test_no_record_of_an_erased_device_below_its_position_lands_whatever_its_event_time(sent, position):
    records = [record(i, power(device, at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))) for i, (device, at) in enumerate(sent)]
    landing = land("power_state", [TOPIC], records, WINDOW, max_message_bytes=1000)
    kept, _ = without_erased(landing, {"gone": {(TOPIC, 0): position}})

    def pairs(frame: pd.DataFrame) -> set[tuple[str, int]]:
        return set(zip(frame["device_id"], frame["source_offset"], strict=True))

    # Rows and error rows (a time the envelope refuses) alike.
    for after, before in ((kept.rows, landing.rows), (kept.errors, landing.errors)):
        assert pairs(after) == {(d, o) for d, o in pairs(before) if d == "kept" or o >= position}


def test_rows_the_database_refuses_become_error_rows_with_their_original_bytes():
    records = [record(i, reading(50 + i)) for i in range(4)] + [record(4, b"nope")]
    landing = land("power_state", [TOPIC], records, WINDOW, max_message_bytes=1000)
    after = refused(landing, {1: "CheckViolation: battery_level", 3: "CharacterNotInRepertoire: 0x00"})
    assert after.rows["source_offset"].tolist() == [0, 2]
    assert [r.offset for r in after.records] == [0, 2]
    assert after.errors["source_offset"].tolist() == [4, 1, 3]
    assert after.errors["error_type"].tolist() == ["malformed_json", "refused_by_database", "refused_by_database"]
    assert after.errors["original_value"].tolist() == [b"nope", records[1][1].value, records[3][1].value]
    assert after.errors["device_id"].tolist()[1:] == ["dev", "dev"]
    assert refused(landing, {}) is landing


def test_an_error_message_quoting_a_nul_is_stored_escaped():
    bad = json.dumps({"device_id": "dev", "recorded_at": "yesterday\u0000",
                      "battery_level": 5, "is_charging": False}).encode()
    landing = land("power_state", [TOPIC], [record(0, bad)], WINDOW, max_message_bytes=1000)
    message = landing.errors["error_message"].iloc[0]
    assert landing.errors["error_type"].iloc[0] == "invalid_timestamp"
    assert "\x00" not in message and "\\x00" in message


def test_an_error_message_quoting_a_url_loses_its_secrets_while_the_original_keeps_them():
    bad = json.dumps({"schema_version": "https://u:hunter2@example.com/v?token=SECRET", "device_id": "dev",
                      "timestamp": "2026-11-24T06:01:00Z", "data": {"battery_level": 5}}).encode()
    landing = land("power_state", [TOPIC], [record(0, bad)], WINDOW, max_message_bytes=1000)
    message = landing.errors["error_message"].iloc[0]
    assert landing.errors["error_type"].iloc[0] == "invalid_schema_version"
    assert "https://example.com/v?…" in message and "hunter2" not in message and "SECRET" not in message
    assert landing.errors["original_value"].iloc[0] == bad


def test_only_errors_that_blame_the_rows_are_bisected_into_error_rows():
    import psycopg

    from loom_assets.resources.warehouse import refuses_data

    assert refuses_data(psycopg.errors.CharacterNotInRepertoire("NUL"))
    assert refuses_data(psycopg.errors.CheckViolation("check"))
    assert refuses_data(psycopg.errors.ProgramLimitExceeded("index row too large"))
    assert refuses_data(OverflowError("int too big to convert"))
    assert refuses_data(RecursionError())
    assert not refuses_data(psycopg.errors.UniqueViolation("another writer's row"))
    assert not refuses_data(psycopg.OperationalError("connection lost"))
    assert not refuses_data(psycopg.errors.AdminShutdown("terminating connection"))
    assert not refuses_data(ConnectionError())


def test_stage_error_rows_and_error_topic_headers_carry_redacted_messages():
    from loom_assets.flows.base import error_messages, stage_errors

    quoted = "ConnectionError: Max retries exceeded with url: https://u:hunter2@example.com/a?token=SECRET"
    errors = pd.DataFrame({"window_start": [WINDOW], "source_topic": [TOPIC], "source_partition": [0],
                           "source_offset": [7], "error_type": ["fetch_failed"], "error_message": [quoted],
                           "recorded_at": [WINDOW], "device_id": ["dev"]})
    rows = stage_errors("power_state/enriched", errors)
    assert rows["error_message"].tolist() == ["ConnectionError: Max retries exceeded with url: https://example.com/a?…"]
    [(_, _, headers)] = error_messages(errors.assign(original_key=None, original_value=None))
    assert headers["loom.error.message"] == rows["error_message"].iloc[0].encode()
