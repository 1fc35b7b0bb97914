"""The Loom v2 wire formats: the message envelope and versioned payload models per topic.

Two envelopes reach Kafka (docs/messages.md#envelopes): the flat REST envelope, whose payload fields
sit beside `device_id` and `recorded_at`, and the nested envelope of the unified route and fetchers,
whose payload is under `data`. `decode` reads both into one `Message`.

Payload models are versioned by major version: a v1.x reader accepts v1.y (unknown fields are
ignored, new optional fields default), and a major version nobody registered is an error
record, not a crash.
"""

from loom_assets.events.envelope import (
    ENVELOPE_COLUMNS,
    InvalidMessage,
    Message,
    Record,
    blob_fields,
    check_storable,
    decode,
    in_time_range,
    major_version,
    parse_time,
    payload_columns,
    payload_model,
)
from loom_assets.events.payloads import (
    BLOB,
    AccelerationV1,
    AppLifecycleV1,
    AudioChunkV1,
    Base64Bytes,
    CalendarEventV1,
    EmailMessageV1,
    GpsFixV1,
    HackerNewsItemV1,
    ImageV1,
    OptionalBase64Bytes,
    Payload,
    PowerReadingV1,
    ScreenCaptureV1,
    WifiReadingV1,
)
from loom_assets.events.topics import PAYLOAD_MODELS, TOPICS, Topic
