"""A broker that goes away: Loom fails fast and clearly, then catches up without loss."""

import time
import uuid
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from loom_assets.cli import main
from loom_assets.embedded.kafka import KafkaBroker
from tests.conftest import CACHE, prepare_loom_env
from tests.integration.test_spine import flat, produce, table

pytestmark = pytest.mark.integration


def test_a_broker_restart_loses_nothing_and_a_dead_broker_fails_fast(postgres, services_dir, monkeypatch, tmp_path):
    broker = KafkaBroker(services_dir / f"chaos-{uuid.uuid4().hex[:6]}", libs_dir=CACHE / "kafka-libs").start()
    monkeypatch.setenv("LOOM_KAFKA_TIMEOUT_SECONDS", "2")
    try:
        url = prepare_loom_env(postgres, broker.bootstrap_servers, monkeypatch, tmp_path,
                               flows=("app_lifecycle",))["database_url"]
        produce(broker.bootstrap_servers, [("os.events.app_lifecycle.raw",
                                            flat(datetime.now(UTC), app_identifier=f"a{i}", event_type="launch"))
                                           for i in range(5)])
        broker.stop()

        started = time.monotonic()
        result = CliRunner().invoke(main, ["process", "--through-now", "--flow", "app_lifecycle"])
        assert result.exit_code == 1
        assert "Kafka at " in result.output and len(result.output.strip().splitlines()) == 1
        assert time.monotonic() - started < 30  # every broker call has a timeout

        broker.start()  # same data folder: the topic and its messages are still there
        result = CliRunner().invoke(main, ["process", "--through-now", "--flow", "app_lifecycle"])
        assert result.exit_code == 0, result.output
        raw = table(url, "app_lifecycle_raw")
        assert sorted(raw["app_identifier"]) == [f"a{i}" for i in range(5)]
    finally:
        broker.stop()
