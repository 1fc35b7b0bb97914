"""The one Definitions object: every flow, sensor, check, schedule and resource."""

from collections.abc import Sequence

from dagster import Definitions

from loom_assets.flows import (
    app_lifecycle,
    audio,
    calendar,
    camera_vision,
    email,
    hackernews,
    location,
    motion,
    network_events,
    power_state,
    screenshot_ocr,
)
from loom_assets.flows.base import Flow
from loom_assets.housekeeping import housekeeping_job, housekeeping_schedule
from loom_assets.resources.blobs import BlobStore
from loom_assets.resources.business import BusinessProviderResource
from loom_assets.resources.geocoder import GeocoderResource
from loom_assets.resources.io_manager import PostgresPandasIOManager
from loom_assets.resources.kafka import KafkaResource
from loom_assets.resources.models import Models
from loom_assets.resources.warehouse import Warehouse
from loom_assets.run_logs import console_logger
from loom_assets.sensors.kafka_windows import windows_sensor
from loom_assets.sensors.late_inputs import rerun_when_landed
from loom_assets.sensors.reprocessing import reprocess_schedule


def in_reading_order(flows: Sequence[Flow]) -> tuple[Flow, ...]:
    """`flows` with each after the flows whose tables its stages read (`loom process` lands
    those first), otherwise as given."""
    by_name = {flow.name: flow for flow in flows}
    ordered: dict[str, Flow] = {}

    def visit(flow: Flow) -> None:
        for _, read in flow.reads:
            source = read.asset.path[0]
            if source != flow.name and source not in ordered:
                visit(by_name[source])
        ordered.setdefault(flow.name, flow)

    for flow in flows:
        visit(flow)
    return tuple(ordered.values())


FLOWS = in_reading_order((app_lifecycle.FLOW, motion.FLOW, location.FLOW, power_state.FLOW, network_events.FLOW,
                          audio.FLOW, screenshot_ocr.FLOW, camera_vision.FLOW, email.FLOW, calendar.FLOW,
                          hackernews.FLOW))


class UnknownFlow(KeyError):
    """A flow name that no flow has (`loom … --flow`)."""


def flow_named(name: str):
    for flow in FLOWS:
        if flow.name == name:
            return flow
    raise UnknownFlow(f"no flow {name!r}; flows: {', '.join(f.name for f in FLOWS)}")


def resources() -> dict:
    """Resources read KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL when used, not at import."""
    return {
        "kafka": KafkaResource(),
        "warehouse": Warehouse(),
        "io_manager": PostgresPandasIOManager(),
        "models": Models(),
        "geocoder": GeocoderResource(),
        "businesses": BusinessProviderResource(),
        "blobs": BlobStore(),
    }


defs = Definitions(
    assets=[a for flow in FLOWS for a in flow.assets],
    jobs=[*(flow.job for flow in FLOWS), *(flow.fetcher[0] for flow in FLOWS if flow.fetcher), housekeeping_job],
    sensors=[
        windows_sensor(FLOWS),
        # A stage reading another flow by event time runs again when that flow's window of its
        # time lands after it read (motion's 5-minute windows run before the GPS of their time).
        *(rerun_when_landed(flow_named(read.asset.path[0]), flow, stage)
          for flow in FLOWS for stage, read in flow.reads),
    ],
    schedules=[housekeeping_schedule, *(reprocess_schedule(flow) for flow in FLOWS if flow.stages),
               *(flow.fetcher[1] for flow in FLOWS if flow.fetcher)],
    resources=resources(),
    # Run logs as redacted JSON lines for log shippers; the flow and fetch jobs select it in
    # their config.
    loggers={"console": console_logger},
)
