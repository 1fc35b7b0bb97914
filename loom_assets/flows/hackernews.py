"""Hacker News: the fetcher publishes a user's favorites and submissions → items → embeddings."""

from loom_assets.flows.base import Flow

FLOW = Flow(
    name="hackernews",
    topics=("external.hackernews.activity.raw",),
    description="A Hacker News user's favorites and submissions, fetched by the HN fetcher.",
    alert_error_rate=0.2,  # SPEC §1.8 content_fetcher
)

raw = FLOW.raw
