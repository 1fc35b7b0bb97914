"""Location: GPS fixes. This issue lands them; georegions, geocoding and places build on it."""

from loom_assets.flows.base import Flow

FLOW = Flow(
    name="location",
    topics=("device.sensor.gps.raw",),
    description="GPS fixes of each device.",
    alert_error_rate=0.05,  # SPEC §1.2 georegion_detection
)

raw = FLOW.raw
