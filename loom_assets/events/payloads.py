"""Versioned payload models per topic (pydantic), and the registry of them by topic and major version."""

import base64
import binascii
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from loom_assets.storable import IdText, Int32


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
