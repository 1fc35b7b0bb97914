"""Audio: chunks of device audio (WAV or raw PCM, any rate), kept in the blob store.

This lands them; voice segments, transcripts and the acoustic environment build on it.
"""

from loom_assets.flows.base import Flow

FLOW = Flow(
    name="audio",
    topics=("device.audio.raw",),
    description="Audio chunks recorded by each device (base64 WAV or PCM; bytes in the blob store).",
    alert_error_rate=0.05,  # SPEC §1.1 voice_activity_detection
)

raw = FLOW.raw
