"""Camera photos, kept in the blob store. This lands them; vision stages build on it."""

from loom_assets.flows.base import Flow

FLOW = Flow(
    name="camera_vision",
    topics=("device.image.camera.raw",),
    description="Camera photos of each device (bytes in the blob store).",
    alert_error_rate=0.1,  # SPEC §1.9 image_preprocessing
)

raw = FLOW.raw
