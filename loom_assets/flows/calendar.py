"""Calendar: the calendar fetcher (ICS URLs, CalDAV) publishes events → events → embeddings."""

import pandas as pd
from dagster import RetryPolicy

from loom_assets.fetchers import calendar as calendar_fetcher
from loom_assets.fetchers.base import fetcher
from loom_assets.flows.base import Flow
from loom_assets.flows.embeddings import Embedded, embeddings_stage
from loom_assets.flows.location import GEOCODER, GEOCODER_POOL
from loom_assets.resources.geocoder import GeocoderResource, place_cache
from loom_assets.resources.warehouse import Warehouse
from loom_assets.settings import settings
from loom_assets.stages import calendar

FLOW = Flow(
    name="calendar",
    topics=(calendar_fetcher.TOPIC,),
    description="Calendar events fetched from ICS URLs and CalDAV by the calendar fetcher.",
    alert_error_rate=0.1,  # docs/flows/calendar.md#retries-and-alerts
    # Its fetcher: a job and its schedule, publishing to the flow's topic.
    fetcher=fetcher(
        source=calendar_fetcher.SOURCE,
        topic=calendar_fetcher.TOPIC,
        accounts=calendar_fetcher.accounts,
        fetch=calendar_fetcher.fetch,
        # docs/flows/calendar.md#fetcher: every 30 minutes
        cron=calendar_fetcher.fetch_cron(settings().calendar_fetch_interval_minutes),
        description="Fetch calendar events (ICS URLs, CalDAV; 30 days back to 60 ahead, recurring events "
                    "expanded, declined invitations skipped) and publish what changed to "
                    f"`{calendar_fetcher.TOPIC}`.",
    ),
)
RULES = calendar.CalendarRules(internal_domains=settings().calendar_internal_domains)

raw = FLOW.raw


@FLOW.stage(
    logic_version="1",
    rules_version=f"{RULES.key}-{GEOCODER}",
    retry=RetryPolicy(max_retries=2, delay=2),  # docs/flows/calendar.md#retries-and-alerts: 2 retries, 2 s
    pool=GEOCODER_POOL,
)
def events(raw: pd.DataFrame, warehouse: Warehouse, geocoder: GeocoderResource) -> pd.DataFrame:
    """The newest version of each event occurrence of the window with its attendee count,
    meeting type (none / 1:1 / team / external by the attendees' mail domains), duration
    category (≤ 30 min short, ≤ 60 min medium, else long), time of day in the event's own
    time zone, recurrence pattern from its RRULE, video-call link, and its location geocoded
    (text → place, cached; video calls are not geocoded)."""
    found = calendar.events(raw, RULES)
    with warehouse.connect() as conn:
        return calendar.with_places(found, geocoder.geocoder(), place_cache(geocoder, conn), RULES)


embeddings = embeddings_stage(
    FLOW, of="events",
    embedded=lambda events: Embedded(events, events["event_id"], events["title"], calendar.embedding_text(events)),
    description="Each event's title, description, location and attendees as a 384-dimension vector "
                "(all-MiniLM-L6-v2 unless LOOM_EMBEDDING_MODEL says otherwise), for `loom search`. Cancelled "
                "and declined events are left out.",
)
