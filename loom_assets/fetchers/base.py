"""What every fetcher shares: the Loom v2 nested envelope, cursors in PostgreSQL, publishing,
and the Dagster job + schedule that runs a fetch for every configured account."""

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from dagster import (
    DefaultScheduleStatus,
    Failure,
    JobDefinition,
    OpExecutionContext,
    RetryPolicy,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    job,
    op,
    schedule,
)

from loom_assets.redaction import redact
from loom_assets.resources.kafka import KafkaResource
from loom_assets.resources.warehouse import Warehouse
from loom_assets.run_logs import RUN_LOG_CONFIG


@dataclass(frozen=True)
class Fetched:
    """One message for a raw topic: `data` goes inside the nested envelope
    (docs/messages.md#fetcher-envelopes)."""

    key: str  # Kafka key: the item's stable id, so one item always lands on one partition
    device_id: str  # the fetcher's "device": e.g. email-fetcher-account-1
    timestamp: datetime  # event time (received, event start, story time) → recorded_at
    data: dict[str, Any]
    content_hash: str | None = None


@dataclass
class FetchResult:
    messages: list[Fetched] = field(default_factory=list)
    cursor: dict[str, Any] = field(default_factory=dict)  # stored after the messages are in Kafka


def content_hash(*parts: Any) -> str:
    return hashlib.sha256("\x1f".join("" if p is None else str(p) for p in parts).encode()).hexdigest()


def envelope(message: Fetched) -> bytes:
    """The nested "v1" envelope Loom v2's fetchers produce, UTF-8 JSON."""
    body = {
        "schema_version": "v1",
        "device_id": message.device_id,
        "timestamp": message.timestamp.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "message_id": message.content_hash or content_hash(message.key),
        "content_hash": message.content_hash,
        "data": message.data,
        "metadata": {},
    }
    return orjson.dumps(body, default=str)


class Cursors:
    """Per (source, account) JSON state in `fetch_cursors`."""

    def __init__(self, warehouse: Warehouse, source: str):
        self.warehouse, self.source = warehouse, source

    def get(self, account: str) -> dict[str, Any]:
        with self.warehouse.connect() as conn:
            row = conn.execute("SELECT state FROM fetch_cursors WHERE source = %s AND account = %s",
                               (self.source, account)).fetchone()
        return row[0] if row else {}

    def put(self, account: str, state: dict[str, Any]) -> None:
        with self.warehouse.connect() as conn:
            conn.execute(
                "INSERT INTO fetch_cursors (source, account, state) VALUES (%s, %s, %s::jsonb)"
                " ON CONFLICT (source, account) DO UPDATE SET state = EXCLUDED.state, updated_at = now()",
                (self.source, account, json.dumps(state, default=str)),
            )


def publish(kafka: KafkaResource, topic: str, messages: Sequence[Fetched]) -> int:
    headers = {"producer_service": b"loom-fetcher"}
    return kafka.publish(topic, ((m.key.encode(), envelope(m), headers) for m in messages))


Fetch = Callable[[Any, dict[str, Any], datetime], FetchResult]


def fetch_all(context, kafka: KafkaResource, cursors: Cursors, topic: str,
              accounts: Sequence[Any], fetch: Fetch, now: datetime) -> dict[str, int]:
    """Fetch every account; one failing account does not stop the others, but fails the run
    (after the others are published) so Dagster shows it and retries."""
    published, failed = {}, {}
    for account in accounts:
        name = account.name
        try:
            result = fetch(account, cursors.get(name), now)
            published[name] = publish(kafka, topic, result.messages) if result.messages else 0
            cursors.put(name, result.cursor)
        except Exception as error:  # noqa: BLE001 - reported per account below, then raised
            # An HTTP error quotes the URL, and a private calendar's URL carries its key.
            failed[name] = redact(f"{type(error).__name__}: {error}")
            context.log.error(f"{cursors.source} account {name!r}: {failed[name]}")
    context.log.info(f"{cursors.source}: published {published}")
    if failed:
        raise Failure(f"{cursors.source}: {len(failed)} of {len(accounts)} accounts failed: {failed}",
                      metadata={"published": published, "failed": failed})
    return published


def fetcher(source: str, topic: str, accounts: Callable[[], Sequence[Any]], fetch: Fetch, cron: str,
            description: str) -> tuple[JobDefinition, ScheduleDefinition]:
    """A `<source>_fetch` job (one op) and its schedule, running when accounts are configured."""

    @op(name=f"fetch_{source}", description=description,
        retry_policy=RetryPolicy(max_retries=3, delay=300))  # docs/architecture.md#fetchers: 3 / 300 s
    def fetch_op(context: OpExecutionContext, kafka: KafkaResource, warehouse: Warehouse) -> None:
        configured = list(accounts())
        if not configured:
            context.log.info(f"{source}: no accounts configured")
            return
        fetch_all(context, kafka, Cursors(warehouse, source), topic, configured, fetch, datetime.now(UTC))

    @job(name=f"{source}_fetch", description=description, tags={"loom/fetcher": source}, config=RUN_LOG_CONFIG)
    def fetch_job():
        fetch_op()

    @schedule(name=f"{source}_fetch_schedule", job=fetch_job, cron_schedule=cron, execution_timezone="UTC",
              default_status=DefaultScheduleStatus.RUNNING)
    def fetch_schedule(context: ScheduleEvaluationContext):
        # No run (and no noise in the run list) until an account is configured.
        if not accounts():
            return SkipReason(f"no {source} accounts configured")
        return RunRequest(run_key=None)

    return fetch_job, fetch_schedule
