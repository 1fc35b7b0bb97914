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
