"""The Loom v2 wire formats: the message envelope and versioned payload models per topic.

Two envelopes reach Kafka (docs/messages.md#envelopes): the flat REST envelope, whose payload fields
sit beside `device_id` and `recorded_at`, and the nested envelope of the unified route and fetchers,
whose payload is under `data`. `decode` reads both into one `Message`.

Payload models are versioned by major version: a v1.x reader accepts v1.y (unknown fields are
ignored, new optional fields default), and a major version nobody registered is an error
record, not a crash.
"""

import base64
import binascii
import re
import uuid
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any, Literal, NamedTuple

import orjson
from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from loom_assets.storable import (
    ID,
    IdText,
    Int32,
    Stored,
    payload_problem,
    problem,
    time_problem,
)

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


class Payload(BaseModel):
    """Base of every payload model: minor versions read each other, so extra fields are ignored."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    metadata: dict[str, Any] | None = None


# -- os.events.app_lifecycle.raw (docs/messages.md#payload-fields) ---------------------------------
class AppLifecycleV1(Payload):
    app_identifier: str = Field(min_length=1)
    app_name: str | None = None
    # Case-insensitive on the wire, lower case in the table (validated in pydantic-core).
    event_type: Annotated[str, StringConstraints(to_lower=True, pattern=r"^(launch|foreground|background|terminate|crash)$")]
    duration_seconds: float | None = Field(default=None, ge=0)


# -- device.sensor.power.raw and device.state.power.raw (docs/flows/power_state.md) ----------------
class PowerReadingV1(Payload):
    battery_level: float = Field(ge=0, le=100)
    is_charging: bool
    power_source: str | None = None
    lid_closed: bool | None = None
    thermal_state: Literal["nominal", "fair", "serious", "critical"] | None = None


# -- device.network.wifi.raw (docs/flows/network_events.md) ----------------------------------------
class WifiReadingV1(Payload):
    ssid: str | None = None
    bssid: str | None = None
    signal_strength: Int32 | None = None
    frequency: float | None = None
    channel: Int32 | None = None
    security: str | None = None  # `security_type` on some senders: see _FIELD_ALIASES
    connected: bool = False
    ip_address: str | None = None


# -- device.sensor.gps.raw (docs/messages.md#payload-fields) ---------------------------------------
class GpsFixV1(Payload):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    altitude: float | None = None
    accuracy: float | None = Field(default=None, ge=0)
    heading: float | None = None
    speed: float | None = None


# -- device.sensor.accelerometer.raw (docs/flows/motion.md) ----------------------------------------
class AccelerationV1(Payload):
    """One accelerometer sample: m/s² with gravity included (docs/messages.md#payload-fields)."""

    x: float = Field(allow_inf_nan=False)
    y: float = Field(allow_inf_nan=False)
    z: float = Field(allow_inf_nan=False)
    accuracy: Int32 | None = None  # Android's SENSOR_STATUS_* (0 unreliable … 3 high), when sent


# -- media: audio chunks and images (docs/messages.md#payload-fields, docs/messages.md#binary-payloads) ---
def _base64(value: Any) -> bytes:
    """The bytes of base64 text (a `data:` URL prefix allowed), strictly: the REST routes pass
    the client's base64 text through unchecked (docs/messages.md#binary-payloads), so this is where
    it is checked."""
    if not isinstance(value, str):
        raise ValueError("expected base64 text")
    if value.startswith("data:") and "," in value:
        value = value.split(",", 1)[1]
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64") from None
    if not data:
        raise ValueError("no bytes (empty base64)")
    return data


# Media bytes: landing decodes them, the raw asset stores them in the blob store and the raw
# table keeps `<field>_uri` and `<field>_bytes` (marked by `BLOB`).
BLOB = {"blob": True}
Base64Bytes = Annotated[bytes, BeforeValidator(_base64)]


class AudioChunkV1(Payload):
    """A chunk of audio: a whole WAV file or raw PCM (`format`/`encoding` pcm_s16le)."""

    data: Base64Bytes = Field(validation_alias=AliasChoices("data", "chunk_data", "audio_data"),
                              json_schema_extra=BLOB)
    sample_rate: Int32 = Field(gt=0, le=384_000)
    channels: Int32 = Field(default=1, ge=1, le=8)
    format: str = Field(default="wav", validation_alias=AliasChoices("format", "encoding"))
    duration_ms: Int32 | None = Field(default=None, ge=0)
    file_id: str | None = None
    chunk_number: Int32 | None = None


class ImageV1(Payload):
    """A camera photo or a screenshot (`camera_type` "screen")."""

    image_data: Base64Bytes = Field(json_schema_extra=BLOB)
    format: str = "jpeg"
    width: Int32 | None = Field(default=None, ge=0)
    height: Int32 | None = Field(default=None, ge=0)
    camera_type: str | None = None
    file_size: Int32 | None = Field(default=None, ge=0)


OptionalBase64Bytes = Annotated[bytes | None, BeforeValidator(lambda v: None if v is None else _base64(v))]


class ScreenCaptureV1(Payload):
    """`device.video.screen.raw`: a screenshot (the unified route sends `screenshot` here,
    docs/messages.md#unified-envelope) or a screen recording (`video_data`,
    docs/messages.md#payload-fields), exactly one of the two."""

    image_data: OptionalBase64Bytes = Field(default=None, json_schema_extra=BLOB)
    video_data: OptionalBase64Bytes = Field(default=None, json_schema_extra=BLOB)
    format: str = "png"
    width: Int32 | None = Field(default=None, ge=0)
    height: Int32 | None = Field(default=None, ge=0)
    camera_type: str | None = None
    file_size: Int32 | None = Field(default=None, ge=0)
    duration: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    fps: float | None = Field(default=None, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def one_capture(self):
        if (self.image_data is None) == (self.video_data is None):
            raise ValueError("a screen capture has either image_data or video_data")
        return self


# -- external.email.events.raw (docs/flows/email.md): whole RFC 822 messages from the email fetcher
class EmailMessageV1(Payload):
    """One email. Loom's fetcher sends the whole message (`raw_message`, base64 of the exact
    RFC 822 bytes, kept as bytea) and where it was found; Loom v2's email fetcher sends the
    fields it extracted (subject, sender, receiver, body, …; docs/messages.md#fetcher-envelopes) and
    no raw bytes."""

    raw_message: Base64Bytes | None = Field(default=None, validation_alias=AliasChoices("raw_message", "rfc822"))
    account: str | None = Field(default=None, validation_alias=AliasChoices("account", "source_account"))
    account_name: str | None = None
    account_index: Int32 | None = None
    folder: str | None = None
    uid: int | None = Field(default=None, ge=1)          # IMAP UID (32-bit unsigned)
    uidvalidity: int | None = Field(default=None, ge=1)
    flags: list[str] | None = None
    internal_date: datetime | None = None               # when the server received it
    size: int | None = Field(default=None, ge=0)         # RFC822.SIZE of the original
    gmail_thread_id: str | None = None                  # X-GM-THRID
    gmail_labels: list[str] | None = None               # X-GM-LABELS
    attachments: list[dict[str, Any]] | None = None     # [{filename, content_type, size}]
    # Loom v2's email fetcher (docs/messages.md#fetcher-envelopes)
    email_id: str | None = None
    content_hash: str | None = None
    # The Message-ID header (Loom v2 names it `message_id`, the envelope's name for Loom's own id).
    header_message_id: str | None = Field(default=None,
                                          validation_alias=AliasChoices("header_message_id", "message_id"))
    subject: str | None = None
    sender: str | None = None
    receiver: str | None = None
    date_received: str | None = None                    # Loom v2: naive local time, as sent
    body: str | None = None
    seen: bool | None = None

    @model_validator(mode="after")
    def _has_a_message(self):
        if self.raw_message is None and not any((self.subject, self.sender, self.body)):
            raise ValueError("an email needs raw_message, or Loom v2's subject/sender/body")
        return self


# -- external.calendar.events.raw (docs/flows/calendar.md, docs/messages.md#fetcher-envelopes) -----
class CalendarEventV1(Payload):
    """One occurrence of a calendar event (a recurring event arrives once per occurrence), from
    Loom's calendar fetcher or Loom v2's (docs/messages.md#fetcher-envelopes: `summary`,
    `source_calendar`, attendees as bare emails, no status). The same `event_id` again is a newer
    version of that occurrence."""

    event_id: IdText = Field(min_length=1)
    uid: str | None = None
    # The occurrence's original start (RECURRENCE-ID): a moved occurrence keeps its event_id.
    recurrence_id: datetime | None = None
    calendar_id: str | None = None
    calendar_name: str | None = Field(default=None, validation_alias=AliasChoices("calendar_name", "source_calendar"))
    account_name: str | None = None
    owner_email: str | None = None  # whose calendar: declined invitations and meeting types need it
    source_url: str | None = None
    title: str | None = Field(default=None, validation_alias=AliasChoices("title", "summary"))
    description: str | None = None
    location: str | None = None
    start_time: datetime
    end_time: datetime | None = None
    all_day: bool = False
    timezone: str | None = None  # the event's own time zone (IANA name, or a "+01:00" offset)
    recurring_rule: str | None = Field(default=None, validation_alias=AliasChoices("recurring_rule", "rrule"))
    # confirmed | tentative | cancelled | declined (lower-cased)
    status: Annotated[str, StringConstraints(to_lower=True)] | None = None
    organizer: str | None = Field(default=None, validation_alias=AliasChoices("organizer", "organizer_email"))
    # [{email, name, partstat, role, cutype}] from Loom's fetcher; bare emails from Loom v2's.
    attendees: list[dict[str, Any] | str] | None = None
    sequence: Int32 | None = None
    last_modified: datetime | None = None
    gps_point: str | None = None  # Loom v2's own Nominatim lookup, "POINT(lon lat)"
    content_hash: str | None = None

    @model_validator(mode="after")
    def times_in_utc(self):
        # Naive times (Loom v2's CalDAV path, floating iCalendar times) are UTC
        # (docs/messages.md#rest-envelope).
        for name in ("start_time", "end_time", "recurrence_id", "last_modified"):
            value = getattr(self, name)
            if value is not None:
                try:
                    setattr(self, name, value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC))
                except OverflowError:  # year 1 with a positive offset, year 9999 with a negative one
                    raise ValueError(f"{name} is out of range") from None
        if self.end_time is not None and self.end_time < self.start_time:
            raise ValueError("end_time is before start_time")
        return self


# -- external.hackernews.activity.raw (docs/flows/hackernews.md, docs/messages.md#fetcher-envelopes) ---
# Loom v2's hackernews-fetcher names the interaction in `type` (docs/messages.md#fetcher-envelopes).
_HN_INTERACTIONS = {"liked_story": "favorite", "submitted_story": "submission"}


def _hn_interaction(value: Any) -> Any:
    return _HN_INTERACTIONS.get(value, value) if isinstance(value, str) else value


class HackerNewsItemV1(Payload):
    """A Hacker News item a user favorited or submitted. Loom's fetcher sends the item's API
    fields under these names plus `kids` (for the top comments); Loom v2's sends `story_id`,
    `type` liked_story|submitted_story, `author`, `comment_count`, `url`, `title`, `score`."""

    item_id: int = Field(gt=0, validation_alias=AliasChoices("item_id", "story_id", "id"))
    interaction_type: Annotated[Literal["favorite", "submission"], BeforeValidator(_hn_interaction)] = Field(
        validation_alias=AliasChoices("interaction_type", "type"))
    item_type: str = "story"  # the API's `type`: story, poll or job (Loom v2 sends stories only)
    username: str | None = None  # whose favorite or submission (Loom v2 does not say)
    title: str | None = None
    url: str | None = None  # none for Ask HN and other text posts
    text: str | None = None  # the post's own text, HTML as the API gives it
    author: str | None = Field(default=None, validation_alias=AliasChoices("author", "by"))
    score: Int32 | None = None
    comment_count: Int32 | None = Field(default=None,
                                      validation_alias=AliasChoices("comment_count", "comments_count", "descendants"))
    kids: list[int] | None = None  # ids of the direct replies, in the site's ranking order
    created_at: datetime | None = Field(default=None, validation_alias=AliasChoices("created_at", "time"))
    interacted_at: datetime | None = None  # when the fetcher first saw the favorite or submission


# topic -> {major version -> model}
PAYLOAD_MODELS: dict[str, dict[int, type[Payload]]] = {
    "os.events.app_lifecycle.raw": {1: AppLifecycleV1},
    "device.sensor.power.raw": {1: PowerReadingV1},
    "device.state.power.raw": {1: PowerReadingV1},
    "device.network.wifi.raw": {1: WifiReadingV1},
    "device.sensor.gps.raw": {1: GpsFixV1},
    "device.sensor.accelerometer.raw": {1: AccelerationV1},
    "device.audio.raw": {1: AudioChunkV1},
    "device.image.screenshot.raw": {1: ImageV1},
    "device.image.camera.raw": {1: ImageV1},
    "device.video.screen.raw": {1: ScreenCaptureV1},
    "external.email.events.raw": {1: EmailMessageV1},
    "external.calendar.events.raw": {1: CalendarEventV1},
    "external.hackernews.activity.raw": {1: HackerNewsItemV1},
}

# Topics whose Loom v2 producers set no device (docs/messages.md#fetcher-envelopes: the
# hackernews-fetcher sends `device_id: null`): their records get this device id instead of a
# missing_device_id error.
DEFAULT_DEVICE_IDS = {"external.hackernews.activity.raw": "hackernews"}

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

    device_id = body.get("device_id") or fields.get("device_id") or DEFAULT_DEVICE_IDS.get(topic)
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
    fields = PAYLOAD_MODELS[topic][1].model_fields
    return tuple(name for name, f in fields.items() if (f.json_schema_extra or {}).get("blob"))
