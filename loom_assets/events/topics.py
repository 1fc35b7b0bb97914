"""Every raw topic Loom lands, declared once: its payload models by major version, how long Kafka
keeps it, its media fields and the device its records get when they name none. Landing, the
CLI (`loom topics create`), the flows and the tests read it (docs/messages.md#topics-and-retention)."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from loom_assets.events.payloads import (
    AccelerationV1,
    AppLifecycleV1,
    AudioChunkV1,
    CalendarEventV1,
    EmailMessageV1,
    GpsFixV1,
    HackerNewsItemV1,
    ImageV1,
    Payload,
    PowerReadingV1,
    ScreenCaptureV1,
    WifiReadingV1,
)


@dataclass(frozen=True)
class Topic:
    name: str
    payloads: Mapping[int, type[Payload]]  # major schema version -> its reader
    retention: timedelta
    # Records naming no device get this one instead of a missing_device_id error.
    default_device: str | None = None

    @property
    def blob_fields(self) -> tuple[str, ...]:
        """The v1 payload fields that hold media bytes (kept in the blob store)."""
        fields = self.payloads[1].model_fields
        return tuple(name for name, f in fields.items() if (f.json_schema_extra or {}).get("blob"))


WEEK, MONTH = timedelta(days=7), timedelta(days=30)

TOPICS: dict[str, Topic] = {topic.name: topic for topic in (
    Topic("os.events.app_lifecycle.raw", {1: AppLifecycleV1}, MONTH),
    Topic("device.sensor.power.raw", {1: PowerReadingV1}, MONTH),
    Topic("device.state.power.raw", {1: PowerReadingV1}, MONTH),
    Topic("device.network.wifi.raw", {1: WifiReadingV1}, WEEK),
    Topic("device.sensor.gps.raw", {1: GpsFixV1}, MONTH),
    Topic("device.sensor.accelerometer.raw", {1: AccelerationV1}, WEEK),  # docs/flows/motion.md#retention
    # Media: raw audio is kept a week (docs/flows/audio.md#retention); images as long.
    Topic("device.audio.raw", {1: AudioChunkV1}, WEEK),
    Topic("device.image.screenshot.raw", {1: ImageV1}, WEEK),
    Topic("device.image.camera.raw", {1: ImageV1}, WEEK),
    Topic("device.video.screen.raw", {1: ScreenCaptureV1}, WEEK),
    # What the fetchers publish can be fetched again; a month of log is plenty to reprocess.
    Topic("external.email.events.raw", {1: EmailMessageV1}, MONTH),
    Topic("external.calendar.events.raw", {1: CalendarEventV1}, MONTH),
    # The hackernews fetcher of Loom v2 sends `device_id: null` (docs/messages.md#fetcher-envelopes).
    Topic("external.hackernews.activity.raw", {1: HackerNewsItemV1}, MONTH, default_device="hackernews"),
)}

PAYLOAD_MODELS: dict[str, Mapping[int, type[Payload]]] = {name: topic.payloads for name, topic in TOPICS.items()}
