"""Raw landing: Kafka records of a window -> validated rows and error rows.

Every record becomes exactly one of the two, so rows + errors always add up to the offsets read.
"""

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from loom_assets.events import (
    ENVELOPE_COLUMNS,
    InvalidMessage,
    Record,
    blob_fields,
    decode,
    payload_columns,
)
from loom_assets.redaction import redact
from loom_assets.storable import ID, problem

LINEAGE_COLUMNS = ("source_topic", "source_partition", "source_offset", "ingested_at")
ERROR_COLUMNS = (
    "window_start", "flow", "source_topic", "source_partition", "source_offset", "error_type",
    "error_message", "original_key", "original_value", "original_size", "kafka_timestamp", "device_id",
    "published_at",  # when it went to the error topic: the write fills in earlier announcements
)


# An error row's message is for people: long enough to say what went wrong, never the record.
MAX_ERROR_MESSAGE = 2000


@dataclass
class Landing:
    """A window's rows and error rows. `records[i]` is the Kafka record of `rows.iloc[i]`, kept
    so that a row PostgreSQL still refuses can become an error row with its original bytes."""

    rows: pd.DataFrame
    errors: pd.DataFrame
    records: list[Record] = field(default_factory=list)
    flow: str = ""


HEAD_COLUMNS = ("window_start", *ENVELOPE_COLUMNS, *LINEAGE_COLUMNS)


def raw_columns(topics: Iterable[str]) -> list[str]:
    """Every raw table: the window, the envelope, the lineage, then the payload fields."""
    payload: list[str] = []
    for topic in topics:
        payload += [c for c in payload_columns(topic) if c not in payload]
    return [*HEAD_COLUMNS, *payload]


def store_blobs(rows: pd.DataFrame, topics: Iterable[str], put: Callable[[bytes], str]) -> pd.DataFrame:
    """Media bytes out of the rows and into the blob store (`put` returns a blob's URI): each
    media field becomes `<field>_uri` and `<field>_bytes`."""
    for field in dict.fromkeys(f for topic in topics for f in blob_fields(topic)):
        data = rows.pop(field)
        rows[f"{field}_uri"] = [put(b) if b is not None else None for b in data]
        rows[f"{field}_bytes"] = pd.array([len(b) if b is not None else None for b in data], dtype="Int64")
    return rows


def land(
    flow: str,
    topics: Iterable[str],
    records: Iterable[tuple[datetime, Record]],
    ingested_at: datetime,
    max_message_bytes: int,
) -> Landing:
    """Decode `(window_start, record)` pairs into raw rows and error rows (original bytes kept)."""
    columns = raw_columns(topics)
    payload = columns[len(HEAD_COLUMNS):]
    rows, errors, kept = [], [], []
    for window_start, record in records:
        try:
            size = len(record.value or b"")
            if size > max_message_bytes:
                raise InvalidMessage(
                    "payload_too_large", f"{size} bytes exceeds the limit of {max_message_bytes} bytes"
                )
            message = decode(
                record.topic, record.value, partition=record.partition, offset=record.offset,
                kafka_timestamp_ms=record.timestamp_ms, headers=record.headers,
            )
        except InvalidMessage as error:
            errors.append(_error_row(flow, window_start, record, error))
            continue
        fields = message.payload.__dict__  # the validated fields, without model_dump's copy
        rows.append((
            window_start, message.device_id, message.recorded_at, message.received_at,
            message.schema_version, message.message_id, message.trace_id,
            record.topic, record.partition, record.offset, ingested_at,
            *[fields.get(name) for name in payload],
        ))
        kept.append(record)
    frame = pd.DataFrame.from_records(rows, columns=columns)
    for column in ("window_start", "recorded_at", "received_at", "ingested_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return Landing(frame, error_frame(errors), kept, flow)


def error_frame(errors: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(errors, columns=list(ERROR_COLUMNS))
    frame["published_at"] = pd.to_datetime(frame["published_at"], utc=True)
    return frame


def _error_row(flow: str, window_start: datetime, record: Record, error: InvalidMessage) -> dict:
    return {
        "window_start": window_start,
        "flow": flow,
        "source_topic": record.topic,
        "source_partition": record.partition,
        "source_offset": record.offset,
        "error_type": error.error_type,
        # The message may quote the record: it must be storable text itself, and a URL it quotes
        # loses its credentials and query (the original keeps them).
        "error_message": _storable_text(redact(str(error))[:MAX_ERROR_MESSAGE]),
        "original_key": record.key,
        "original_value": record.value,
        "original_size": len(record.value or b""),
        "kafka_timestamp": record.timestamp,
        # From the envelope when it was readable; the Kafka key is not always the device (fetchers
        # key by content hash).
        "device_id": error.device_id if problem("device_id", error.device_id, ID) is None else None,
    }


def _storable_text(text: str) -> str:
    """`text` without what PostgreSQL text (NUL) or UTF-8 (lone surrogates) cannot hold, escaped."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def refused(landing: Landing, refusals: Mapping[int, str]) -> Landing:
    """`landing` with the rows at positions `refusals` (position -> PostgreSQL's reason) moved to
    error rows (`refused_by_database`, original bytes kept): what validation let through but
    the database would not store."""
    if not refusals:
        return landing
    rows = landing.rows
    new_errors = [
        _error_row(landing.flow, rows["window_start"].iloc[i], landing.records[i],
                   InvalidMessage("refused_by_database", refusals[i], rows["device_id"].iloc[i]))
        for i in sorted(refusals)
    ]
    keep = [i for i in range(len(rows)) if i not in refusals]
    errors = error_frame(new_errors) if landing.errors.empty else pd.concat(
        [landing.errors, error_frame(new_errors)], ignore_index=True)
    return Landing(rows.iloc[keep].reset_index(drop=True), errors,
                   [landing.records[i] for i in keep], landing.flow)


# An erased device's records still in Kafka, per device: (topic, partition) -> the high watermark
# when it was erased. Its records below that offset are the erased ones.
ErasedPositions = Mapping[str, Mapping[tuple[str, int], int]]


def record_devices(key: bytes | None, value: bytes | None) -> set[str]:
    """The devices a Kafka record may belong to: its key (devices key their messages by device
    id) and the device ids its JSON envelope names, at the top or in `data`, whether or not the
    record is otherwise valid."""
    devices = set()
    if key:
        # A binary key (a fetcher's content hash) decodes to no device's id.
        devices.add(key.decode("utf-8", "replace"))
    if value:
        try:
            body = json.loads(value)
        except (ValueError, RecursionError):
            body = None  # not JSON: the key is all there is to go by
        if isinstance(body, dict):
            for envelope in (body, body.get("data")):
                if isinstance(envelope, dict) and isinstance(envelope.get("device_id"), str):
                    devices.add(envelope["device_id"])
    return devices


def erased_mask(frame: pd.DataFrame, positions: ErasedPositions, devices: Iterable[set[str]] | None = None
                ) -> pd.Series:
    """True for the rows of `frame` (source_topic, source_partition, source_offset, device_id)
    that are records of an erased device below its erasure's position. `devices`: per row, more
    devices it may belong to (an error row's key and envelope)."""
    if frame.empty or not positions:
        return pd.Series(False, index=frame.index, dtype=bool)
    owners = frame["device_id"].map(lambda d: {d} if isinstance(d, str) else set())
    if devices is not None:
        owners = pd.Series([own | more for own, more in zip(owners, devices, strict=True)], index=frame.index)

    def below(own: set[str], topic, partition, offset) -> bool:
        if pd.isna(partition) or pd.isna(offset):  # a stage row that names no record
            return False
        return any(int(offset) < positions[d].get((topic, int(partition)), -1) for d in own if d in positions)

    at = zip(owners, frame["source_topic"], frame["source_partition"], frame["source_offset"], strict=True)
    return pd.Series([below(*row) for row in at], index=frame.index, dtype=bool)


def without_erased(landing: Landing, positions: ErasedPositions) -> tuple[Landing, int]:
    """`landing` without the records of erased devices (`loom erase`) that Kafka held when they
    were erased (below the partition's recorded position), rows and error rows alike, whatever
    their event time; records sent after the erase land. Returns how many went."""
    if not positions:
        return landing, 0
    rows = ~erased_mask(landing.rows, positions)
    errors = ~erased_mask(landing.errors, positions,
                          [record_devices(k, v) for k, v in zip(landing.errors["original_key"],
                                                                 landing.errors["original_value"], strict=True)])
    dropped = int((~rows).sum() + (~errors).sum())
    if not dropped:
        return landing, 0
    records = [r for r, keep in zip(landing.records, rows, strict=True) if keep] if landing.records else []
    return Landing(landing.rows[rows].reset_index(drop=True), landing.errors[errors].reset_index(drop=True),
                   records, landing.flow), dropped
