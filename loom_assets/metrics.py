"""Prometheus metrics, `/healthz` and `/readyz` for `loom serve-metrics`.

Runs are separate processes, so nothing is counted in memory: each scrape reads the figures
from where they already are — the tables, the errors table, the offset log and Dagster's
event log. Names follow the system Loom replaces; the lag figures are Loom's own.
"""

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from dagster import DagsterInstance
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from loom_assets.flows.base import Flow
from loom_assets.resources.kafka import KafkaResource
from loom_assets.resources.warehouse import Warehouse
from loom_assets.windows import unplanned_records, window_from_key

# Records per window; batch sizes are read over the last day of planned windows.
BATCH_BUCKETS = (0, 1, 10, 100, 1_000, 10_000, 100_000, float("inf"))
BATCH_LOOKBACK = timedelta(days=1)


class LoomCollector:
    """Reads the platform's figures at scrape time."""

    def __init__(self, flows: Sequence[Flow], warehouse: Warehouse, instance: DagsterInstance,
                 kafka: KafkaResource | None = None):
        self.flows, self.warehouse, self.instance, self.kafka = flows, warehouse, instance, kafka

    def collect(self) -> Iterator:
        events = CounterMetricFamily(
            "events_processed", "Records of planned windows that became rows (within the offset log's retention).",
            labels=["service", "topic"])
        errors = CounterMetricFamily("errors", "Records that became error rows (within retention).",
                                     labels=["service", "error_type"])
        latency = GaugeMetricFamily("processing_latency_seconds",
                                    "Seconds from the end of the latest materialized window to its materialization.",
                                    labels=["service", "stage"])
        batches = HistogramMetricFamily("batch_size_histogram", "Records per planned window (last day).",
                                        labels=["service"])
        lag = GaugeMetricFamily("loom_lag_records", "Records not landed yet: planned but not landed, and on the "
                                "topics but not planned yet.", labels=["service", "state"])
        failing = GaugeMetricFamily("loom_windows_failing", "Windows asked for again and again without landing.",
                                    labels=["service"])
        lost = GaugeMetricFamily("loom_records_lost", "Records Kafka dropped before they landed.", labels=["service"])
        # Small tables only (offset log, errors): a scrape never counts the data tables.
        with self.warehouse.connect() as conn:
            planned = conn.execute(
                "SELECT flow, topic, sum(end_offset - start_offset) FROM loom_offset_log"
                " WHERE landed_at IS NOT NULL GROUP BY 1, 2").fetchall()
            failed = dict(((flow, topic), n) for flow, topic, n in conn.execute(
                "SELECT flow, source_topic, count(*) FROM processing_errors GROUP BY 1, 2").fetchall())
            for flow_name, topic, records in planned:
                events.add_metric([flow_name, topic], records - failed.get((flow_name, topic), 0))
            for flow_name, error_type, count in conn.execute(
                    "SELECT flow, error_type, count(*) FROM processing_errors GROUP BY 1, 2").fetchall():
                errors.add_metric([flow_name, error_type], count)
            since = datetime.now(UTC) - BATCH_LOOKBACK
            for flow in self.flows:
                sizes = [n for (n,) in conn.execute(
                    "SELECT sum(end_offset - start_offset) FROM loom_offset_log"
                    " WHERE flow = %s AND window_start >= %s GROUP BY window_start", (flow.name, since)).fetchall()]
                batches.add_metric([flow.name], _buckets(sizes), sum_value=float(sum(sizes)))
        for flow in self.flows:
            state = self.warehouse.landing_state(flow.name)
            lag.add_metric([flow.name, "planned"], state["unlanded_records"])
            failing.add_metric([flow.name], state["failing_windows"])
            lost.add_metric([flow.name], state["lost_records"])
            if self.kafka is not None:
                lag.add_metric([flow.name, "unplanned"], self._unplanned(flow))
        for flow in self.flows:
            for key in [flow.key("raw"), *(s.key for s in flow.stages)]:
                event = self.instance.get_latest_materialization_event(key)
                if event is None or not event.dagster_event or not event.dagster_event.partition:
                    continue
                window_end = window_from_key(event.dagster_event.partition) + flow.window
                latency.add_metric([flow.name, key.path[-1]], event.timestamp - window_end.timestamp())
        yield from (events, errors, latency, batches, lag, failing, lost)

    def _unplanned(self, flow: Flow) -> int:
        _, ends = self.warehouse.last_planned(flow.name)
        return unplanned_records(ends, self.kafka.watermarks(self.kafka.partitions(flow.topics)))


def _buckets(sizes: list[int]) -> list[tuple[str, int]]:
    return [("+Inf" if bound == float("inf") else str(bound), sum(1 for s in sizes if s <= bound))
            for bound in BATCH_BUCKETS]


def ready(warehouse: Warehouse, kafka: KafkaResource) -> tuple[bool, str]:
    """Ready when the database answers and the broker lists topics."""
    try:
        with warehouse.connect() as conn:
            conn.execute("SELECT 1")
        kafka.partitions([])
    except Exception as error:  # any failure means "not ready": say which and why
        return False, f"{type(error).__name__}: {error}"
    return True, "ready"


def metrics_server(port: int, flows: Sequence[Flow], warehouse: Warehouse, kafka: KafkaResource,
                   instance: DagsterInstance, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    registry = CollectorRegistry()
    registry.register(LoomCollector(flows, warehouse, instance, kafka))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                self._send(200, b"ok\n")
            elif self.path == "/readyz":
                ok, why = ready(warehouse, kafka)
                self._send(200 if ok else 503, why.encode() + b"\n")
            else:
                self._send(404, b"not found\n")

        def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # scrapes every few seconds: keep the console quiet
            pass

    return ThreadingHTTPServer((host, port), Handler)
