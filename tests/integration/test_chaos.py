"""A broker that goes away: Loom fails fast and clearly, then catches up without loss."""

import time
import uuid
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from loom_assets.cli import main, topic_specs
from loom_assets.embedded.kafka import KafkaBroker
from loom_assets.embedded.postgres import create_database
from tests.conftest import CACHE, recreate_topics
from tests.integration.test_spine import flat, produce, table

pytestmark = pytest.mark.integration


def test_a_broker_restart_loses_nothing_and_a_dead_broker_fails_fast(postgres, services_dir, monkeypatch, tmp_path):
    from loom_assets.resources.warehouse import apply_migrations

    broker = KafkaBroker(services_dir / f"chaos-{uuid.uuid4().hex[:6]}", libs_dir=CACHE / "kafka-libs").start()
    url = create_database(postgres.uri, f"loom_chaos_{uuid.uuid4().hex[:8]}")
    apply_migrations(url)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap_servers)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("LOOM_WINDOW_GRACE_SECONDS", "0")
    monkeypatch.setenv("LOOM_KAFKA_TIMEOUT_SECONDS", "2")
    try:
        recreate_topics(broker.bootstrap_servers, {t: s for t, s in topic_specs().items() if "app_lifecycle" in t})
        produce(broker.bootstrap_servers, [("os.events.app_lifecycle.raw",
                                            flat(datetime.now(UTC), app_identifier=f"a{i}", event_type="launch"))
                                           for i in range(5)])
        broker.stop()

        started = time.monotonic()
        result = CliRunner().invoke(main, ["process", "--through-now", "--flow", "app_lifecycle"])
        assert result.exit_code == 1
        assert "Kafka is unavailable" in result.output
        assert time.monotonic() - started < 30  # every broker call has a timeout

        broker.start()  # same data folder: the topic and its messages are still there
        result = CliRunner().invoke(main, ["process", "--through-now", "--flow", "app_lifecycle"])
        assert result.exit_code == 0, result.output
        raw = table(url, "app_lifecycle_raw")
        assert sorted(raw["app_identifier"]) == [f"a{i}" for i in range(5)]
    finally:
        broker.stop()
