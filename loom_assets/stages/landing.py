"""Raw landing: Kafka records of a window -> validated rows and error rows.

Every record becomes exactly one of the two, so rows + errors always add up to the offsets read.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from loom_assets.events import ENVELOPE_COLUMNS, InvalidMessage, Record, decode, payload_columns

LINEAGE_COLUMNS = ("source_topic", "source_partition", "source_offset", "ingested_at")
ERROR_COLUMNS = (
    "window_start", "flow", "source_topic", "source_partition", "source_offset", "error_type",
    "error_message", "original_key", "original_value", "original_size", "kafka_timestamp", "device_id",
)


@dataclass(frozen=True)
class Landing:
    rows: pd.DataFrame
    errors: pd.DataFrame


def raw_columns(topics: Iterable[str]) -> list[str]:
    payload: list[str] = []
    for topic in topics:
        payload += [c for c in payload_columns(topic) if c not in payload]
    return ["window_start", *ENVELOPE_COLUMNS, *LINEAGE_COLUMNS, *payload]


def land(
    flow: str,
    topics: Iterable[str],
    records: Iterable[tuple[datetime, Record]],
    ingested_at: datetime,
    max_message_bytes: int,
) -> Landing:
    """Decode `(window_start, record)` pairs into raw rows and error rows (original bytes kept)."""
    rows, errors = [], []
    for window_start, record in records:
        try:
            size = len(record.value or b"")
            if size > max_message_bytes:
                raise InvalidMessage(
                    "payload_too_large", f"{size} bytes exceeds the limit of {max_message_bytes} bytes"
                )
            message = decode(
                record.topic, record.value, partition=record.partition, offset=record.offset,
                kafka_timestamp=record.timestamp, headers=record.headers,
            )
        except InvalidMessage as error:
            errors.append(_error_row(flow, window_start, record, error))
            continue
        rows.append({
            "window_start": window_start,
            **message.row(),
            "source_topic": record.topic,
            "source_partition": record.partition,
            "source_offset": record.offset,
            "ingested_at": ingested_at,
        })
    columns = raw_columns(topics)
    frame = pd.DataFrame.from_records(rows, columns=columns)
    for column in ("window_start", "recorded_at", "received_at", "ingested_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return Landing(frame, pd.DataFrame.from_records(errors, columns=list(ERROR_COLUMNS)))


def _error_row(flow: str, window_start: datetime, record: Record, error: InvalidMessage) -> dict:
    return {
        "window_start": window_start,
        "flow": flow,
        "source_topic": record.topic,
        "source_partition": record.partition,
        "source_offset": record.offset,
        "error_type": error.error_type,
        "error_message": str(error),
        "original_key": record.key,
        "original_value": record.value,
        "original_size": len(record.value or b""),
        "kafka_timestamp": record.timestamp,
        "device_id": record.key.decode("utf-8", "replace") if record.key else None,
    }
