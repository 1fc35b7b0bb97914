"""Kafka, through confluent-kafka. Every broker call carries a timeout."""

import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic
from dagster import ConfigurableResource

from loom_assets.events import Record
from loom_assets.offsets import OffsetRange
from loom_assets.settings import settings

# Large enough for the biggest payload the platform accepts (images, audio) plus headroom, so
# that an oversized record reaches the landing code and becomes an error row instead of a stall.
MAX_RECORD_BYTES = 64 * 1024 * 1024
# librdkafka's own log lines ("Connect to … failed") go through Python logging under this name
# instead of straight to stderr, so that `loom` can report a broker that is down in one line.
LOG = logging.getLogger("loom.kafka")


class BrokerUnavailable(RuntimeError):
    """A broker call timed out or failed: transient, so runs retry (RetryPolicy)."""


class OffsetsGone(RuntimeError):
    """Planned offsets Kafka no longer holds (retention, a recreated topic): retrying cannot help."""


class KafkaResource(ConfigurableResource):
    """The Kafka cluster Loom reads raw topics from and writes error (and output) topics to."""

    # None: KAFKA_BOOTSTRAP_SERVERS, read when used (so one Definitions serves every environment).
    bootstrap_servers: str | None = None
    timeout_s: float | None = None

    @property
    def servers(self) -> str:
        return self.bootstrap_servers or settings().kafka_bootstrap_servers

    @property
    def timeout(self) -> float:
        return self.timeout_s or settings().kafka_timeout_s

    def _config(self, **extra) -> dict:
        return {"bootstrap.servers": self.servers, "logger": LOG, **extra}

    @contextmanager
    def _consumer(self, group_id: str = "loom-metadata", offset_reset: str = "earliest") -> Iterator[Consumer]:
        consumer = Consumer(
            self._config(
                **{
                    "group.id": group_id,
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                    "auto.offset.reset": offset_reset,
                    "fetch.max.bytes": MAX_RECORD_BYTES,
                    "max.partition.fetch.bytes": MAX_RECORD_BYTES,
                    "receive.message.max.bytes": MAX_RECORD_BYTES + 1024 * 1024,
                    "socket.timeout.ms": int(self.timeout * 1000),
                }
            )
        )
        try:
            yield consumer
        finally:
            consumer.close()

    def partitions(self, topics: Iterable[str]) -> list[tuple[str, int]]:
        """Topic partitions that exist now; a topic that does not exist yet has none."""
        admin = AdminClient(self._config())
        try:
            metadata = admin.list_topics(timeout=self.timeout)
        except KafkaException as error:
            raise BrokerUnavailable(f"listing topics: {error}") from error
        found = []
        for topic in topics:
            meta = metadata.topics.get(topic)
            if meta is not None and meta.error is None:
                found.extend((topic, p) for p in sorted(meta.partitions))
        return found

    def watermarks(self, tps: Iterable[tuple[str, int]]) -> dict[tuple[str, int], tuple[int, int]]:
        with self._consumer() as consumer:
            try:
                return {
                    tp: consumer.get_watermark_offsets(
                        TopicPartition(*tp), timeout=self.timeout, cached=False
                    )
                    for tp in tps
                }
            except KafkaException as error:
                raise BrokerUnavailable(f"watermarks: {error}") from error

    def offsets_at(self, tps: Iterable[tuple[str, int]], instants: Sequence[datetime]
                   ) -> dict[datetime, dict[tuple[str, int], int | None]]:
        """Per instant, the first offset at or after it per partition (None: no message that
        late). One consumer answers them all."""
        tps = list(tps)
        if not tps or not instants:
            return {}
        answers = {}
        with self._consumer() as consumer:
            for instant in instants:
                millis = int(instant.timestamp() * 1000)
                try:
                    found = consumer.offsets_for_times(
                        [TopicPartition(t, p, millis) for t, p in tps], timeout=self.timeout
                    )
                except KafkaException as error:
                    raise BrokerUnavailable(f"offsets_for_times: {error}") from error
                answers[instant] = {(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None) for tp in found}
        return answers

    def oldest_timestamp(self, lows: Mapping[tuple[str, int], int], highs: Mapping[tuple[str, int], int]
                         ) -> datetime | None:
        """The Kafka timestamp of the oldest record still held (the first record of each
        non-empty partition); None when every partition is empty."""
        firsts = [OffsetRange(t, p, lows[(t, p)], lows[(t, p)] + 1) for t, p in lows if highs[(t, p)] > lows[(t, p)]]
        stamps = [record.timestamp_ms for record in self.read(firsts, "loom-metadata")]
        return datetime.fromtimestamp(min(stamps) / 1000, UTC) if stamps else None

    def read(self, ranges: Iterable[OffsetRange], group_id: str, idle_timeout_s: float = 30.0) -> Iterator[Record]:
        """Every record of the planned ranges, each exactly once, in offset order per partition.

        Raises BrokerUnavailable when no progress is made for `idle_timeout_s` (a transient
        fault: the run's RetryPolicy re-reads the same planned range).
        """
        pending = {(r.topic, r.partition): r for r in ranges if r.end > r.start}
        remaining = sum(r.count for r in pending.values())
        if not pending:
            return
        # A planned offset Kafka no longer holds is an error, never a silent jump to another offset.
        with self._consumer(group_id, offset_reset="error") as consumer:
            consumer.assign([TopicPartition(r.topic, r.partition, r.start) for r in pending.values()])
            last_progress = time.monotonic()

            def done(tp: tuple[str, int]) -> None:
                del pending[tp]
                consumer.incremental_unassign([TopicPartition(*tp)])

            while pending:
                # Ask for no more than is left: consume() waits its whole timeout for a full batch.
                batch = consumer.consume(num_messages=max(1, min(5000, remaining)), timeout=1.0)
                if not batch and time.monotonic() - last_progress > idle_timeout_s:
                    raise BrokerUnavailable(
                        f"no progress reading {sorted(pending)} for {idle_timeout_s} s"
                    )
                for message in batch:
                    tp = (message.topic(), message.partition())
                    planned = pending.get(tp)
                    if message.error():
                        # End of partition past the plan: the last offsets were not records
                        # (transaction markers), so the range is complete.
                        if message.error().code() == KafkaError._PARTITION_EOF:
                            if planned is not None and message.offset() >= planned.end:
                                done(tp)
                            continue
                        if message.error().code() == KafkaError._AUTO_OFFSET_RESET:
                            raise OffsetsGone(f"reading {tp} from offset {planned.start if planned else '?'}: "
                                              f"{message.error().str()}")
                        raise BrokerUnavailable(f"reading {tp}: {message.error()}")
                    if planned is None or message.offset() >= planned.end:
                        continue
                    last_progress = time.monotonic()
                    remaining -= 1
                    yield _record(message)
                    if message.offset() + 1 >= planned.end:
                        done(tp)

    def unheld(self, ranges: Iterable[OffsetRange]) -> list[OffsetRange]:
        """The non-empty ranges with offsets Kafka no longer holds (or never did)."""
        ranges = [r for r in ranges if r.count]
        marks = self.watermarks({(r.topic, r.partition) for r in ranges})
        return [r for r in ranges if not (marks[(r.topic, r.partition)][0] <= r.start
                                          and r.end <= marks[(r.topic, r.partition)][1])]

    def commit(self, group_id: str, ends: Mapping[tuple[str, int], int]) -> None:
        """Commit `ends` for the consumer group, so standard Kafka lag tools see Loom's progress."""
        if not ends:
            return
        with self._consumer(group_id) as consumer:
            try:
                consumer.commit(
                    offsets=[TopicPartition(t, p, end) for (t, p), end in ends.items()],
                    asynchronous=False,
                )
            except KafkaException as error:
                raise BrokerUnavailable(f"commit {group_id}: {error}") from error

    def committed(self, group_id: str, tps: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int | None]:
        with self._consumer(group_id) as consumer:
            answer = consumer.committed([TopicPartition(*tp) for tp in tps], timeout=self.timeout)
        return {(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None) for tp in answer}

    def producer(self, **extra) -> Producer:
        return Producer(
            self._config(
                **{
                    "message.max.bytes": MAX_RECORD_BYTES,
                    "compression.type": "lz4",
                    "linger.ms": 20,
                    **extra,
                }
            )
        )

    def publish(self, topic: str, messages: Iterable[tuple[bytes | None, bytes, dict[str, bytes]]]) -> int:
        """Produce (key, value, headers) messages and wait for every delivery."""
        producer = self.producer()
        failures: list[str] = []

        def delivered(error, _message):
            if error is not None:
                failures.append(str(error))

        count = 0
        for key, value, headers in messages:
            # Stamped here rather than by librdkafka: one clock (Python's) for Loom's windows and
            # its own messages, which a test can shift.
            producer.produce(topic, value=value, key=key, headers=list(headers.items()), on_delivery=delivered,
                             timestamp=time.time_ns() // 1_000_000)
            producer.poll(0)
            count += 1
        remaining = producer.flush(self.timeout * 6)
        if remaining or failures:
            raise BrokerUnavailable(f"{topic}: {remaining} undelivered, errors {failures[:3]}")
        return count

    def create_topics(self, specs: Mapping[str, tuple[int, Mapping[str, str]]]) -> list[str]:
        """Create missing topics: name -> (partitions, config). Returns the names created."""
        admin = AdminClient(self._config())
        existing = set(admin.list_topics(timeout=self.timeout).topics)
        wanted = [
            NewTopic(name, num_partitions=partitions, replication_factor=1, config=dict(config))
            for name, (partitions, config) in specs.items()
            if name not in existing
        ]
        if not wanted:
            return []
        for name, future in admin.create_topics(wanted, operation_timeout=self.timeout).items():
            try:
                future.result(timeout=self.timeout * 2)
            except KafkaException as error:
                if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
        return [t.topic for t in wanted]


def _record(message) -> Record:
    _, millis = message.timestamp()
    headers = message.headers()
    return Record(
        message.topic(),
        message.partition(),
        message.offset(),
        message.key(),
        message.value(),
        millis if millis > 0 else None,
        {k: v for k, v in headers if v is not None} if headers else {},
    )

