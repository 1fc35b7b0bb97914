"""`loom serve-metrics`: Prometheus figures read from the tables and Dagster's event log."""

import re
import threading
import urllib.error
import urllib.request
from datetime import UTC, datetime

import pytest
from dagster import DagsterInstance

from tests.integration.test_landing_errors_and_offsets import TOPIC
from tests.integration.test_spine import flat, invoke, produce

pytestmark = pytest.mark.integration


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_metrics_health_and_readiness(loom_env):
    from loom_assets import definitions
    from loom_assets.metrics import metrics_server

    now = datetime.now(UTC)
    produce(loom_env["bootstrap"], [(TOPIC, flat(now, app_identifier="a", event_type="launch")),
                                    (TOPIC, flat(now, app_identifier="b", event_type="launch")),
                                    (TOPIC, b"not json")])
    invoke("process", "--through-now", "--flow", "app_lifecycle")

    resources = definitions.resources()
    server = metrics_server(0, definitions.FLOWS, resources["warehouse"], resources["kafka"], DagsterInstance.get())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        status, body = get(base + "/metrics")
        assert status == 200
        assert 'events_processed_total{service="app_lifecycle",topic="os.events.app_lifecycle.raw"} 2.0' in body
        assert 'errors_total{error_type="malformed_json",service="app_lifecycle"} 1.0' in body
        assert 'processing_latency_seconds{service="app_lifecycle",stage="enriched"}' in body
        # The 3 records in windows of at most 10: one window, or two when the run came just after
        # a window boundary (the window in progress is planned too, with what it holds).
        windows = float(re.search(r'batch_size_histogram_count\{service="app_lifecycle"\} (\S+)', body)[1])
        assert 1 <= windows <= 2
        assert f'batch_size_histogram_bucket{{le="10",service="app_lifecycle"}} {windows}' in body
        assert 'batch_size_histogram_sum{service="app_lifecycle"} 3.0' in body
        # Everything planned has landed; one record more on the topic is not planned yet.
        produce(loom_env["bootstrap"], [(TOPIC, flat(now, app_identifier="c", event_type="launch"))])
        status, body = get(base + "/metrics")
        assert 'loom_lag_records{service="app_lifecycle",state="planned"} 0.0' in body
        assert 'loom_lag_records{service="app_lifecycle",state="unplanned"} 1.0' in body
        assert 'loom_windows_failing{service="app_lifecycle"} 0.0' in body
        assert 'loom_records_lost{service="app_lifecycle"} 0.0' in body
        assert get(base + "/healthz") == (200, "ok\n")
        assert get(base + "/readyz")[0] == 200
    finally:
        server.shutdown()


def test_readiness_fails_clearly_without_a_database(monkeypatch):
    from loom_assets.metrics import ready
    from loom_assets.resources.kafka import KafkaResource
    from loom_assets.resources.warehouse import Warehouse

    ok, why = ready(Warehouse(database_url="postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"),
                    KafkaResource(bootstrap_servers="127.0.0.1:1", timeout_s=1))
    assert not ok and "OperationalError" in why
