"""Property: whatever bytes reach a raw topic, each record becomes a storable row or an error
row, and no exception escapes decoding or landing (one bad record used to fail its
whole window)."""

import copy
import json
import math
from datetime import UTC, datetime

import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from loom_assets.events import PAYLOAD_MODELS, InvalidMessage, Record, decode
from loom_assets.stages.landing import ERROR_COLUMNS, land
from loom_assets.storable import EARLIEST_TIME, LATEST_TIME, MAX_ID_LENGTH, MAX_JSON_DEPTH

EXAMPLES = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
WINDOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WAV = "UklGRiQAAABXQVZFZm10IBAAAAABAAEAgD4AAAB9AAACABAAZGF0YQAAAAA="

# One valid payload per raw topic: the seeds that mutations start from.
VALID_PAYLOADS = {
    "os.events.app_lifecycle.raw": {"app_identifier": "com.whatsapp", "event_type": "foreground",
                                    "duration_seconds": 3.5, "metadata": {"os": "android", "n": [1, 2]}},
    "device.sensor.power.raw": {"battery_level": 42.5, "is_charging": True, "power_source": "usb"},
    "device.state.power.raw": {"battery_level": 80, "is_charging": False, "thermal_state": "nominal"},
    "device.network.wifi.raw": {"ssid": "Home", "bssid": "aa:bb:cc:dd:ee:ff", "signal_strength": -60,
                                "frequency": 5180.0, "channel": 36, "security_type": "WPA2", "connected": True},
    "device.sensor.gps.raw": {"latitude": 37.77, "longitude": -122.42, "accuracy": 5.0, "bearing": 90},
    "device.sensor.accelerometer.raw": {"x": 0.1, "y": 9.8, "z": 0.2, "accuracy": 3},
    "device.audio.raw": {"chunk_data": WAV, "sample_rate": 16000, "channels": 1, "duration_ms": 0},
    "device.image.screenshot.raw": {"image_data": PNG, "format": "png", "width": 1, "height": 1},
    "device.image.camera.raw": {"image_data": PNG, "width": 1, "height": 1, "camera_type": "rear"},
    "device.video.screen.raw": {"image_data": PNG, "width": 1, "height": 1},
    "external.email.events.raw": {"subject": "Hello", "sender": "a@example.com", "body": "Hi there",
                                  "uid": 7, "flags": ["\\Seen"], "internal_date": "2026-11-24T06:00:00Z"},
    "external.calendar.events.raw": {"event_id": "e-1", "summary": "Standup", "start_time": "2026-11-24T09:00:00Z",
                                     "end_time": "2026-11-24T09:15:00Z", "attendees": ["a@example.com"],
                                     "sequence": 2},
    "external.hackernews.activity.raw": {"story_id": 41800001, "type": "liked_story", "title": "A story",
                                         "score": 120, "comment_count": 33, "kids": [1, 2],
                                         "created_at": 1732428000},
}
TOPICS = sorted(PAYLOAD_MODELS)
assert set(VALID_PAYLOADS) == set(TOPICS), "every raw topic needs a valid seed"


def flat(payload: dict) -> dict:
    return {"schema_version": "1.0", "device_id": "phone-1", "recorded_at": "2026-11-24T06:01:00Z",
            "message_id": "m-1", "trace_id": "t-1", **payload}


def nested(payload: dict) -> dict:
    return {"schema_version": "1.0", "device_id": "phone-1", "message_type": "x",
            "data": {"timestamp": "2026-11-24T06:01:00Z", **payload}, "metadata": {"app": "loom"}}


# -- strategies ---------------------------------------------------------------------------------
nasty_text = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["", "\u0000", "a\u0000b", "\ufeff", "\ud800", "x" * (MAX_ID_LENGTH + 1), "NaN",
                     "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00", "2300-01-01", "1e400"]),
)
huge_numbers = st.one_of(
    st.integers(),
    st.sampled_from([2**31, -(2**31) - 1, 2**63, -(2**63) - 1, 2**64, 10**30, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e20, -1e20, 1e308, 253402300800, 253402300800000, -62135596801]),
)
json_scalars = st.one_of(st.none(), st.booleans(), huge_numbers, nasty_text)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(nasty_text, inner, max_size=3)),
    max_leaves=12,
)


# Values that reach PostgreSQL's limits: each must be an error of its own type, never a crash.
POISON = st.sampled_from([
    "\u0000", "ssid\u0000", {"k\u0000": 1}, {"k": ["v\u0000"]}, 2**31, 2**40, 2**63, -(2**63) - 1, 2**70,
    10**20, -(10**15), 1e300, "2300-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "x" * 10_000,
])


def deep(depth: int) -> object:
    value: object = 1
    for i in range(depth):
        value = {"a": value} if i % 2 else [value]
    return value


@st.composite
def mutated_body(draw, topic: str) -> dict:
    """A valid body of `topic` with fields swapped, dropped, added, or made huge or deep."""
    body = draw(st.sampled_from([flat, nested]))(dict(VALID_PAYLOADS[topic]))
    for _ in range(draw(st.sampled_from([1, 1, 2, 3]))):
        target = body["data"] if isinstance(body.get("data"), dict) and draw(st.booleans()) else body
        keys = sorted(target)
        action = draw(st.sampled_from(["swap", "drop", "add", "deep", "poison", "poison"]))
        if action == "poison" and keys:
            target[draw(st.sampled_from(keys))] = copy.deepcopy(draw(POISON))
        elif action == "drop" and keys:
            target.pop(draw(st.sampled_from(keys)))
        elif action == "add":
            target[draw(nasty_text)] = draw(json_values)
        elif action == "deep" and keys:
            target[draw(st.sampled_from(keys))] = deep(draw(st.sampled_from([MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1, 900])))
        elif keys:
            target[draw(st.sampled_from(keys))] = draw(json_values)
    return body


def to_bytes(body: dict) -> bytes:
    # json.dumps writes NaN/Infinity and lone surrogates (as escapes), as a careless sender would.
    # Its encoder recurses like any JSON writer: a body too deep for it goes through a text splice.
    try:
        return json.dumps(body, allow_nan=True).encode()
    except RecursionError:
        return b'{"device_id": "phone-1", "metadata": ' + b"[" * 1000 + b"]" * 1000 + b"}"


@st.composite
def mangled_bytes(draw, value: bytes) -> bytes:
    """`value` with bytes flipped, cut, or prefixed with a BOM or invalid UTF-8."""
    action = draw(st.sampled_from(["flip", "truncate", "bom", "invalid_utf8", "none", "none", "none"]))
    if action == "flip" and value:
        i = draw(st.integers(0, len(value) - 1))
        return value[:i] + bytes([value[i] ^ (1 << draw(st.integers(0, 7)))]) + value[i + 1:]
    if action == "truncate":
        return value[:draw(st.integers(0, len(value)))]
    if action == "bom":
        return b"\xef\xbb\xbf" + value
    if action == "invalid_utf8" and value:
        i = draw(st.integers(0, len(value)))
        return value[:i] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x00"])) + value[i:]
    return value


# -- what "storable" means, said independently of events.py ----------------------------------
def assert_storable(value, where: str = "", depth: int = 0) -> None:
    if isinstance(value, str):
        assert "\u0000" not in value, where
    elif isinstance(value, bool) or value is None:
        pass
    elif isinstance(value, int):
        assert -(2**63) <= value < 2**63, where
    elif isinstance(value, float):
        assert depth == 0 or math.isfinite(value), where
    elif isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        assert EARLIEST_TIME <= aware < LATEST_TIME, where
    elif isinstance(value, dict | list):
        assert depth < MAX_JSON_DEPTH, where
        for key, item in (value.items() if isinstance(value, dict) else enumerate(value)):
            assert_storable(key, where, depth + 1)
            assert_storable(item, where, depth + 1)


def outcome(topic: str, value: bytes) -> str:
    """`"row"` with the message checked storable, or the error type; any other exception fails."""
    try:
        message = decode(topic, value, partition=0, offset=0, kafka_timestamp_ms=int(WINDOW.timestamp() * 1000))
    except InvalidMessage as error:
        assert error.error_type and str(error)
        return error.error_type
    assert message.device_id.strip() and len(message.device_id) <= MAX_ID_LENGTH
    for name in ("device_id", "recorded_at", "received_at", "schema_version", "message_id", "trace_id"):
        assert_storable(getattr(message, name), name)
    for name, field in message.payload.__dict__.items():
        assert_storable(field, name)
    return "row"


def land_one_window(topic: str, values: list[bytes]):
    records = [(WINDOW, Record(topic, 0, i, None, v, int(WINDOW.timestamp() * 1000), {})) for i, v in enumerate(values)]
    landing = land("fuzz", [topic], records, WINDOW, max_message_bytes=10**6)
    assert len(landing.rows) + len(landing.errors) == len(values)
    assert sorted([*landing.rows["source_offset"], *landing.errors["source_offset"]]) == list(range(len(values)))
    assert list(landing.errors.columns) == list(ERROR_COLUMNS)
    for error in landing.errors.itertuples():
        assert_storable(error.error_message)
        if not pd.isna(error.device_id):
            assert isinstance(error.device_id, str) and len(error.device_id) <= MAX_ID_LENGTH
            assert_storable(error.device_id)
        assert error.original_value == values[error.source_offset]
    return landing


# -- the properties ------------------------------------------------------------------------------
@pytest.mark.parametrize("topic", TOPICS)
def test_every_seed_is_a_valid_row(topic):
    assert outcome(topic, to_bytes(flat(dict(VALID_PAYLOADS[topic])))) == "row"
    assert outcome(topic, to_bytes(nested(dict(VALID_PAYLOADS[topic])))) == "row"


@pytest.mark.parametrize("topic", TOPICS)
@EXAMPLES
@given(value=st.binary(max_size=200))
def test_arbitrary_bytes_are_a_row_or_an_error(topic, value):
    outcome(topic, value)


@pytest.mark.parametrize("topic", TOPICS)
@EXAMPLES
@given(data=st.data())
def test_mutated_valid_messages_are_a_row_or_an_error(topic, data):
    body = data.draw(mutated_body(topic))
    event(outcome(topic, data.draw(mangled_bytes(to_bytes(body)))))  # --hypothesis-show-statistics


@pytest.mark.parametrize("topic", TOPICS)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_a_window_of_mutated_messages_lands_every_record_once(topic, data):
    values = [data.draw(mangled_bytes(to_bytes(data.draw(mutated_body(topic))))) for _ in range(data.draw(st.integers(1, 8)))]
    land_one_window(topic, [to_bytes(flat(dict(VALID_PAYLOADS[topic]))), *values])


@pytest.mark.parametrize(("value", "error_type"), [
    (b"\xef\xbb\xbf" + to_bytes(flat(VALID_PAYLOADS["os.events.app_lifecycle.raw"])), "malformed_json"),
    (to_bytes(flat({**VALID_PAYLOADS["os.events.app_lifecycle.raw"], "app_identifier": "a\u0000"})), "invalid_text"),
    (to_bytes(flat({**VALID_PAYLOADS["os.events.app_lifecycle.raw"], "metadata": {"\u0000": 1}})), "invalid_text"),
    (to_bytes(flat({**VALID_PAYLOADS["os.events.app_lifecycle.raw"], "metadata": {"a": deep(MAX_JSON_DEPTH)}})),
     "too_deeply_nested"),
    (to_bytes({**flat(VALID_PAYLOADS["os.events.app_lifecycle.raw"]), "device_id": "d" * 10_000}), "id_too_long"),
    (to_bytes({**flat(VALID_PAYLOADS["os.events.app_lifecycle.raw"]), "recorded_at": 10**20}), "timestamp_out_of_range"),
    (to_bytes({**flat(VALID_PAYLOADS["os.events.app_lifecycle.raw"]), "recorded_at": "1969-12-31T23:59:59Z"}),
     "timestamp_out_of_range"),
    (to_bytes({**flat(VALID_PAYLOADS["os.events.app_lifecycle.raw"]), "schema_version": "1" * 5000}),
     "invalid_schema_version"),
])
def test_each_unstorable_kind_has_its_own_error_type(value, error_type):
    assert outcome("os.events.app_lifecycle.raw", value) == error_type


def test_json_may_nest_as_deep_as_the_stated_depth_and_no_deeper():
    app = VALID_PAYLOADS["os.events.app_lifecycle.raw"]
    assert outcome("os.events.app_lifecycle.raw", to_bytes(flat({**app, "metadata": {"a": deep(MAX_JSON_DEPTH - 1)}}))) == "row"
    assert outcome("os.events.app_lifecycle.raw", to_bytes(flat({**app, "metadata": {"a": deep(MAX_JSON_DEPTH)}}))) \
        == "too_deeply_nested"


@pytest.mark.parametrize(("payload", "error_type"), [
    ({"score": 2**31}, "integer_out_of_range"),         # score is an integer column
    ({"item_id": 2**63}, "integer_out_of_range"),       # item_id is bigint
    ({"kids": [2**64]}, "integer_out_of_range"),
    ({"created_at": "9999-01-01T00:00:00"}, "timestamp_out_of_range"),
    ({"title": "\u0000"}, "invalid_text"),
])
def test_hacker_news_fields_past_their_columns_are_errors(payload, error_type):
    value = to_bytes(flat({**VALID_PAYLOADS["external.hackernews.activity.raw"], **payload}))
    assert outcome("external.hackernews.activity.raw", value) == error_type


def test_an_integer_past_64_bits_on_the_wire_is_out_of_range():
    value = to_bytes(flat(VALID_PAYLOADS["external.hackernews.activity.raw"]))[:-1] + b', "score": 1' + b"0" * 30 + b"}"
    assert outcome("external.hackernews.activity.raw", value) == "integer_out_of_range"


def test_a_kafka_timestamp_past_any_date_leaves_the_error_row_without_one():
    landing = land("fuzz", ["os.events.app_lifecycle.raw"],
                   [(WINDOW, Record("os.events.app_lifecycle.raw", 0, 0, None, b"nope", 2**62, {}))], WINDOW, 10**6)
    assert landing.errors["kafka_timestamp"].isna().all()
    assert landing.errors["error_type"].tolist() == ["malformed_json"]
