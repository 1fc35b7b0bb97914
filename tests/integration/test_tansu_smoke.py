"""Smoke test of Loom on the Tansu fallback broker (memory only; no timestamp lookups)."""

import uuid
from datetime import UTC, datetime

import pytest

from loom_assets.embedded.kafka import start_local_broker
from loom_assets.embedded.postgres import create_database
from tests.conftest import recreate_topics
from tests.integration.test_spine import flat, invoke, produce, table

pytestmark = pytest.mark.integration


@pytest.fixture
def tansu_env(postgres, services_dir, monkeypatch, tmp_path):
    from loom_assets.cli import topic_specs
    from loom_assets.resources.warehouse import apply_migrations

    broker = start_local_broker(services_dir / f"tansu-{uuid.uuid4().hex[:6]}", prefer="tansu")
    url = create_database(postgres.uri, f"loom_tansu_{uuid.uuid4().hex[:8]}")
    apply_migrations(url)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap_servers)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("LOOM_WINDOW_GRACE_SECONDS", "0")
    recreate_topics(broker.bootstrap_servers, {t: s for t, s in topic_specs().items() if "app_lifecycle" in t})
    yield {"database_url": url, "bootstrap": broker.bootstrap_servers}
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
