"""Demo messages and their envelopes: flat REST and unified, as the ingestion API sends them."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from loom_assets.demo.constants import (
    PRODUCER_SERVICE,
    RECEIVE_LATENCY_MS,
    SCHEMA_VERSION,
    SERVICES_ENCOUNTERED,
)

# --------------------------------------------------------------------------------------------
# Messages and envelopes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoMessage:
    topic: str
    key: bytes  # device_id as UTF-8 (docs/messages.md#rest-envelope: Kafka key = device_id)
    value: bytes  # UTF-8 JSON exactly as Loom v2 produces it
    timestamp: datetime  # event time (UTC); the Kafka message timestamp when replaying at speed
    headers: tuple[tuple[str, bytes], ...]  # trace_id, services_encountered, producer_service


def format_datetime(dt: datetime) -> str:
    """Pydantic v2 JSON datetime (docs/messages.md#rest-envelope): ``2024-06-27T12:00:00.123000Z``.

    Like pydantic, a value with zero microseconds has no fraction (``2024-06-27T12:00:00Z``).
    """
    dt = dt.astimezone(timezone.utc)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if dt.microsecond:
        text += f".{dt.microsecond:06d}"
    return text + "Z"


def _uuid4(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _headers(trace_id: str) -> tuple[tuple[str, bytes], ...]:
    return (
        ("trace_id", trace_id.encode()),
        ("services_encountered", ",".join(SERVICES_ENCOUNTERED).encode()),
        ("producer_service", PRODUCER_SERVICE.encode()),
    )


def _to_ms(dt: datetime) -> datetime:
    """Client clocks (Dart/Swift) report milliseconds."""
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


def rest_message(
    topic: str, device_id: str, recorded_at: datetime, payload: dict[str, Any], rng: random.Random
) -> DemoMessage:
    """A flat REST envelope (docs/messages.md#rest-envelope) followed by the payload fields
    (docs/messages.md#payload-fields)."""
    recorded_at = _to_ms(recorded_at)
    received = recorded_at + timedelta(milliseconds=rng.uniform(*RECEIVE_LATENCY_MS))
    trace_id = _uuid4(rng)
    return _flat_message(topic, device_id, recorded_at, received, _uuid4(rng), trace_id, payload)


def _flat_message(
    topic: str,
    device_id: str,
    recorded_at: datetime,
    received: datetime,
    message_id: str,
    trace_id: str,
    payload: dict[str, Any],
) -> DemoMessage:
    body = {
        "schema_version": SCHEMA_VERSION,
        "device_id": device_id,
        "recorded_at": format_datetime(recorded_at),
        "timestamp": format_datetime(received),
        "message_id": message_id,
        "trace_id": trace_id,
        "services_encountered": list(SERVICES_ENCOUNTERED),
        **payload,
    }
    return DemoMessage(topic, device_id.encode(), json.dumps(body).encode(), recorded_at,
                       _headers(trace_id))


def unified_message(
    topic: str,
    device_id: str,
    message_type: str,
    recorded_at: datetime,
    data: dict[str, Any],
    rng: random.Random,
) -> DemoMessage:
    """The unified ``POST /ingest/message`` envelope (docs/messages.md#unified-envelope): no
    recorded_at, message_id or trace_id in the body and ``timestamp: null``; the trace id travels
    only in the headers."""
    recorded_at = _to_ms(recorded_at)
    trace_id = _uuid4(rng)
    body = {
        "schema_version": SCHEMA_VERSION,
        "device_id": device_id,
        "message_type": message_type,
        "data": data,
        "metadata": {},
        "timestamp": None,
    }
    return DemoMessage(topic, device_id.encode(), json.dumps(body).encode(), recorded_at,
                       _headers(trace_id))
