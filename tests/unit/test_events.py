"""Decoding both Loom v2 envelopes, versions and the errors bad records become."""

import json
from datetime import UTC, datetime

import pytest

from loom_assets.events import InvalidMessage, decode, major_version, parse_time

DEVICE = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
APP = "os.events.app_lifecycle.raw"


def encode(body: dict) -> bytes:
    return json.dumps(body).encode()


def flat_app(**overrides) -> dict:
    return {"schema_version": "1.0", "device_id": DEVICE, "recorded_at": "2024-06-27T12:00:00.123000Z",
            "timestamp": "2024-06-27T12:00:00.500000Z", "message_id": "m-1", "trace_id": "t-1",
            "services_encountered": ["ingestion-api"], "app_identifier": "com.whatsapp",
            "event_type": "foreground", **overrides}


def test_flat_rest_envelope():
    message = decode(APP, encode(flat_app()), partition=0, offset=7)
    assert message.device_id == DEVICE
    assert message.recorded_at == datetime(2024, 6, 27, 12, 0, 0, 123000, tzinfo=UTC)
    assert message.received_at == datetime(2024, 6, 27, 12, 0, 0, 500000, tzinfo=UTC)
    assert (message.message_id, message.trace_id) == ("m-1", "t-1")
    assert message.payload.app_identifier == "com.whatsapp"


def test_nested_unified_envelope_takes_event_time_from_data_and_derives_a_stable_message_id():
    body = {"schema_version": "1.0", "device_id": DEVICE, "message_type": "power_state",
            "data": {"battery_level": 42.5, "is_charging": False, "timestamp": "2024-06-27T12:00:00Z"},
            "metadata": {"source": "x"}, "timestamp": None}
    first = decode("device.state.power.raw", encode(body), partition=1, offset=9, headers={"trace_id": b"h-1"})
    again = decode("device.state.power.raw", encode(body), partition=1, offset=9)
    other = decode("device.state.power.raw", encode(body), partition=1, offset=10)
    assert first.recorded_at == datetime(2024, 6, 27, 12, tzinfo=UTC)
    assert first.payload.battery_level == 42.5
    assert first.payload.metadata == {"source": "x"}
    assert first.trace_id == "h-1"
    assert first.message_id == again.message_id != other.message_id


def test_kafka_timestamp_is_the_last_resort_for_event_time():
    body = {"device_id": DEVICE, "data": {"ssid": "x", "connected": True}, "timestamp": None}
    at = datetime(2025, 1, 1, tzinfo=UTC)
    decoded = decode("device.network.wifi.raw", encode(body), partition=0, offset=0,
                     kafka_timestamp_ms=int(at.timestamp() * 1000))
    assert decoded.recorded_at == at


@pytest.mark.parametrize("version", ["1.0", "v1", "1.0.0", "1", "1.7"])
def test_minor_versions_read_each_other(version):
    message = decode(APP, encode(flat_app(schema_version=version, new_field_from_1_7="ignored")), partition=0, offset=0)
    assert message.schema_version == version


def test_field_aliases_on_the_wire_are_accepted():
    body = flat_app() | {"security_type": "WPA2", "ssid": "Home", "connected": True}
    assert decode("device.network.wifi.raw", encode(body), partition=0, offset=0).payload.security == "WPA2"


def test_naive_times_are_utc():
    assert parse_time("2024-06-27T12:00:00") == datetime(2024, 6, 27, 12, tzinfo=UTC)
    assert parse_time(1719489600000) == datetime(2024, 6, 27, 12, tzinfo=UTC)


@pytest.mark.parametrize(("value", "error_type"), [
    (b"", "empty_message"),
    (b"{not json", "malformed_json"),
    (b"\xff\xfe", "malformed_json"),
    (b"[1, 2]", "malformed_envelope"),
    (encode(flat_app(device_id=None)), "missing_device_id"),
    (encode(flat_app(schema_version="2.0")), "unsupported_schema_version"),
    (encode(flat_app(schema_version="banana")), "invalid_schema_version"),
    (encode(flat_app(event_type="explode")), "validation_error"),
    (encode(flat_app(duration_seconds="long")), "validation_error"),
    (encode(flat_app(app_identifier="")), "validation_error"),
    (encode(flat_app(recorded_at="yesterday")), "invalid_timestamp"),
    (encode(flat_app(app_identifier="com.\u0000")), "invalid_text"),
    (encode(flat_app(device_id="phone\u0000")), "invalid_text"),
    (encode(flat_app(metadata={"k": {"\u0000": 1}})), "invalid_text"),
    (encode(flat_app(device_id="d" * 10_000)), "id_too_long"),
    (encode(flat_app(recorded_at=10**20)), "timestamp_out_of_range"),
    (encode(flat_app(recorded_at="2200-01-01T00:00:00Z")), "timestamp_out_of_range"),
    (encode(flat_app(schema_version="1" * 5000)), "invalid_schema_version"),
])
def test_bad_records_raise_a_typed_error(value, error_type):
    with pytest.raises(InvalidMessage) as caught:
        decode(APP, value, partition=0, offset=0)
    assert caught.value.error_type == error_type


def test_battery_level_out_of_range_is_rejected():
    body = flat_app(battery_level=140, is_charging=True)
    with pytest.raises(InvalidMessage, match="battery_level"):
        decode("device.sensor.power.raw", encode(body), partition=0, offset=0)


def test_major_version():
    assert major_version("v2.1") == 2


def test_the_error_of_an_unstorable_device_id_names_no_device():
    with pytest.raises(InvalidMessage) as caught:
        decode(APP, encode(flat_app(device_id="d" * 300)), partition=0, offset=0)
    assert caught.value.device_id is None


def test_an_integer_column_takes_32_bits_and_a_bigint_column_64():
    wifi = {"device_id": DEVICE, "timestamp": "2024-06-27T12:00:00Z", "ssid": "x", "connected": True}
    assert decode("device.network.wifi.raw", encode(wifi | {"channel": 2**31 - 1}), partition=0, offset=0)
    with pytest.raises(InvalidMessage) as caught:
        decode("device.network.wifi.raw", encode(wifi | {"channel": 2**31}), partition=0, offset=0)
    assert caught.value.error_type == "integer_out_of_range"
    email = {"device_id": DEVICE, "timestamp": "2024-06-27T12:00:00Z", "subject": "s", "uid": 2**40}
    assert decode("external.email.events.raw", encode(email), partition=0, offset=0).payload.uid == 2**40
