"""The two envelopes, and decoding a Kafka record into a Message or an InvalidMessage."""

import re
import uuid
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NamedTuple

import orjson
from pydantic import ValidationError

from loom_assets.events.payloads import Payload
from loom_assets.events.topics import PAYLOAD_MODELS, TOPICS
from loom_assets.storable import ID, Stored, payload_problem, problem, time_problem

ENVELOPE_COLUMNS = (
    "device_id",
    "recorded_at",
    "received_at",
    "schema_version",
    "message_id",
    "trace_id",
)


class InvalidMessage(Exception):
    """A record that cannot become a row. `error_type` is a stable, countable label."""

    def __init__(self, error_type: str, message: str, device_id: str | None = None):
        super().__init__(message)
        self.error_type = error_type
        self.device_id = device_id  # when the envelope told it, for the error row


# Aliases seen on the wire for the same field (docs/messages.md#schema-versions-and-aliases).
_FIELD_ALIASES = {"security_type": "security", "bearing": "heading"}


class Record(NamedTuple):
    """One Kafka record as read from the broker (no decoding yet). A tuple: landing reads
    hundreds of thousands a window, and tuples are the cheapest objects to make."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None
    headers: dict[str, bytes]

    @property
    def timestamp(self) -> datetime | None:
        """The Kafka timestamp, or None where there is none or it is no sane time (a
        producer may set any int64)."""
        if not self.timestamp_ms:
            return None
        try:
            return in_time_range(datetime.fromtimestamp(self.timestamp_ms / 1000, UTC), "kafka timestamp")
        except (InvalidMessage, OverflowError, OSError, ValueError):
            return None


class Message(NamedTuple):
    """One decoded Kafka record: envelope fields plus the validated payload."""

    device_id: str
    recorded_at: datetime
    received_at: datetime | None
    schema_version: str
    message_id: str
    trace_id: str | None
    payload: Payload


_MAJOR = re.compile(r"^v?(\d{1,9})(?:\.\d{1,9})*$")


def major_version(schema_version: str) -> int:
    """`"1.0"`, `"v1"`, `"1.0.0"` and `"1"` are all major version 1 (docs/messages.md#envelopes,
    docs/messages.md#schema-versions-and-aliases)."""
    match = _MAJOR.match(schema_version.strip())
    if not match:
        raise InvalidMessage("invalid_schema_version", f"schema_version {schema_version!r}")
    return int(match.group(1))


def parse_time(value: Any) -> datetime | None:
    """ISO-8601 text or epoch seconds/milliseconds → aware UTC; naive times are UTC, as Loom v2 reads them.

    Raises `ValueError` for what is not a time, `InvalidMessage` (timestamp_out_of_range) for a
    time outside EARLIEST_TIME … LATEST_TIME."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 1e11 else value
        try:
            parsed = datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            raise InvalidMessage("timestamp_out_of_range", f"epoch time {value!r} is out of range") from None
        return in_time_range(parsed, "time")
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value)  # Python 3.11 reads "Z" itself
        try:
            parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        except OverflowError:  # year 1 with a positive offset, year 9999 with a negative one
            raise InvalidMessage("timestamp_out_of_range", f"time {value[:64]!r} is out of range") from None
        return in_time_range(parsed, "time")
    raise ValueError(f"not a time: {str(value)[:64]}")


def in_time_range(value: datetime, what: str) -> datetime:
    """`value` if it lies in EARLIEST_TIME … LATEST_TIME (naive is UTC), else timestamp_out_of_range."""
    if found := time_problem(value, what):
        raise InvalidMessage(*found)
    return value


def check_storable(where: str, value: Any, stored: Stored = ID) -> None:
    """Raise `InvalidMessage` if PostgreSQL could not store `value` (see `storable`)."""
    if found := problem(where, value, stored):
        raise InvalidMessage(*found)


@lru_cache(maxsize=256)
def payload_model(topic: str, schema_version: str) -> type[Payload]:
    versions = PAYLOAD_MODELS[topic]
    major = major_version(schema_version)
    if major not in versions:
        raise InvalidMessage(
            "unsupported_schema_version",
            f"{topic} has no reader for schema_version {schema_version!r} "
            f"(major {major}; known: {sorted(versions)})",
        )
    return versions[major]


def decode(
    topic: str,
    value: bytes | None,
    *,
    partition: int,
    offset: int,
    kafka_timestamp_ms: int | None = None,
    headers: dict[str, bytes] | None = None,
) -> Message:
    """Decode one Kafka record of `topic` in either Loom v2 envelope.

    Raises `InvalidMessage`, and only that, for anything that cannot become a row (an error
    nobody foresaw is `decode_failed`); the caller keeps the bytes.
    """
    try:
        return _decode(topic, value, partition, offset, kafka_timestamp_ms, headers)
    except InvalidMessage:
        raise
    except Exception as error:  # noqa: BLE001 - a record costs only itself
        raise _unforeseen(error) from error


def _unforeseen(error: Exception, device_id: str | None = None) -> InvalidMessage:
    return InvalidMessage("decode_failed", f"{type(error).__name__}: {str(error)[:500]}", device_id)


def _decode(topic: str, value: bytes | None, partition: int, offset: int,
            kafka_timestamp_ms: int | None, headers: dict[str, bytes] | None) -> Message:
    if not value:
        raise InvalidMessage("empty_message", "the record has no value")
    try:
        body = orjson.loads(value)  # also refuses invalid UTF-8
    except orjson.JSONDecodeError as error:
        raise InvalidMessage("malformed_json", str(error)) from None
    if not isinstance(body, dict):
        raise InvalidMessage("malformed_envelope", f"expected a JSON object, got {type(body).__name__}")

    nested = isinstance(body.get("data"), dict)
    fields = body["data"] if nested else body
    for alias, name in _FIELD_ALIASES.items():
        if alias in fields and name not in fields:
            fields[name] = fields.pop(alias)
    if nested and body.get("metadata") and "metadata" not in fields:
        fields["metadata"] = body["metadata"]

    device_id = body.get("device_id") or fields.get("device_id") or TOPICS[topic].default_device
    if not isinstance(device_id, str) or not device_id.strip():
        raise InvalidMessage("missing_device_id", "device_id is missing or not a string")
    check_storable("device_id", device_id, ID)
    try:
        return _message(topic, body, fields, device_id, partition, offset, kafka_timestamp_ms, headers)
    except InvalidMessage as error:
        error.device_id = device_id
        raise
    except Exception as error:  # noqa: BLE001 - as in decode, but the device is known here
        raise _unforeseen(error, device_id) from error


def _message(topic: str, body: dict, fields: dict, device_id: str, partition: int, offset: int,
             kafka_timestamp_ms: int | None, headers: dict[str, bytes] | None) -> Message:
    """The envelope's times and ids plus the validated payload of a record with a device."""
    schema_version = str(body.get("schema_version") or "1.0")
    model = payload_model(topic, schema_version)

    try:
        received_at = parse_time(body.get("timestamp"))
        recorded_at = (
            parse_time(fields.get("recorded_at") or body.get("recorded_at"))
            or parse_time(fields.get("timestamp"))
            or received_at
            or parse_time(kafka_timestamp_ms)
        )
    except ValueError as error:
        raise InvalidMessage("invalid_timestamp", str(error)[:500]) from None
    if recorded_at is None:
        raise InvalidMessage("missing_timestamp", "no recorded_at, timestamp or Kafka timestamp")

    try:
        payload = model.model_validate(fields)
    except ValidationError as error:
        # pydantic refuses integers past 64 bits itself: say so with the storability check's type.
        too_big = all(e["type"] == "int_parsing_size" for e in error.errors())
        raise InvalidMessage("integer_out_of_range" if too_big else "validation_error", _short(error)) from None
    if found := payload_problem(payload):
        raise InvalidMessage(*found)

    headers = headers or {}
    trace_id = body.get("trace_id") or _text(headers.get("trace_id"))
    # The unified route sends no message_id (docs/messages.md#unified-envelope): derive one from the
    # record's place in the log, so a re-run produces the same id.
    message_id = body.get("message_id") or fields.get("message_id") or str(
        uuid.uuid5(uuid.NAMESPACE_URL, f"kafka://{topic}/{partition}/{offset}")
    )
    message = Message(
        device_id=device_id,
        recorded_at=recorded_at,
        received_at=received_at,
        schema_version=schema_version,
        message_id=str(message_id),
        trace_id=str(trace_id) if trace_id else None,
        payload=payload,
    )
    for name in ("schema_version", "message_id", "trace_id"):
        check_storable(name, getattr(message, name), ID)
    return message


def payload_columns(topic: str) -> tuple[str, ...]:
    """Column names of a topic's v1 payload, in model order."""
    return tuple(PAYLOAD_MODELS[topic][1].model_fields)


def _text(value: bytes | None) -> str | None:
    return value.decode("utf-8", "replace") if value else None


def _short(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in error.errors()[:5]
    )


def blob_fields(topic: str) -> tuple[str, ...]:
    """The v1 payload fields of `topic` that hold media bytes (kept in the blob store)."""
    return TOPICS[topic].blob_fields
