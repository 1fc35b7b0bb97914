"""Calendar: the calendar fetcher (ICS URLs, CalDAV) publishes events → events → embeddings."""

from loom_assets.flows.base import Flow

FLOW = Flow(
    name="calendar",
    topics=("external.calendar.events.raw",),
    description="Calendar events fetched from ICS URLs and CalDAV by the calendar fetcher.",
    alert_error_rate=0.1,  # SPEC §1.7 event_enrichment
)

raw = FLOW.raw
