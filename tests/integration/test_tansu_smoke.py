"""Smoke test of Loom on the Tansu fallback broker (memory only; no timestamp lookups)."""

import uuid
from datetime import UTC, datetime

import pytest

from loom_assets.embedded.kafka import start_local_broker
from tests.conftest import prepare_loom_env
from tests.integration.test_spine import flat, invoke, produce, table

pytestmark = pytest.mark.integration


@pytest.fixture
def tansu_env(postgres, services_dir, monkeypatch, tmp_path):
    broker = start_local_broker(services_dir / f"tansu-{uuid.uuid4().hex[:6]}", prefer="tansu")
    yield prepare_loom_env(postgres, broker.bootstrap_servers, monkeypatch, tmp_path, flows=("app_lifecycle",))
    broker.stop()


def test_messages_land_through_the_tansu_fallback(tansu_env):
    now = datetime.now(UTC)
    # One record per produce call: Tansu's high watermark only counts a batch's first record.
    for i in range(3):
        produce(tansu_env["bootstrap"], [("os.events.app_lifecycle.raw", flat(now, app_identifier=f"com.app{i}",
                                                                              event_type="launch"))])
    invoke("process", "--through-now", "--flow", "app_lifecycle")
    raw = table(tansu_env["database_url"], "app_lifecycle_raw")
    assert len(raw) == 3
    assert len(table(tansu_env["database_url"], "app_lifecycle_enriched")) == 3


def test_hours_old_messages_land_through_the_tansu_fallback_without_through_now(tansu_env):
    """Tansu answers every timestamp lookup with 0: closed windows must still take the records
    (they once planned empty for ever, and `loom process` exited 0 with nothing landed)."""
    from confluent_kafka import Producer

    hours_ago = datetime.now(UTC).timestamp() - 3 * 3600
    producer = Producer({"bootstrap.servers": tansu_env["bootstrap"]})
    for i in range(3):
        producer.produce("os.events.app_lifecycle.raw", key=b"device", timestamp=int(hours_ago * 1000),
                         value=flat(datetime.fromtimestamp(hours_ago, UTC), app_identifier=f"com.old{i}",
                                    event_type="launch"))
        assert producer.flush(10) == 0
    invoke("process", "--flow", "app_lifecycle")
    assert len(table(tansu_env["database_url"], "app_lifecycle_raw")) == 3
