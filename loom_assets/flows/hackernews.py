"""Hacker News: the fetcher publishes a user's favorites and submissions → items → embeddings."""

import pandas as pd
from dagster import RetryPolicy

from loom_assets.fetchers import hackernews as fetcher_hn
from loom_assets.fetchers.base import fetcher
from loom_assets.flows.base import Flow, StageOutput
from loom_assets.flows.embeddings import Embedded, embeddings_stage
from loom_assets.stages import hackernews as hn

FLOW = Flow(
    name="hackernews",
    topics=(fetcher_hn.TOPIC,),
    description="A Hacker News user's favorites and submissions, fetched by the HN fetcher.",
    alert_error_rate=0.2,  # docs/flows/hackernews.md#retries-and-alerts
    # Its fetcher: a job and its schedule, publishing to the flow's topic.
    fetcher=fetcher(
        fetcher_hn.SOURCE, fetcher_hn.TOPIC, fetcher_hn.accounts, fetcher_hn.fetch,
        cron="0 */6 * * *",  # docs/flows/hackernews.md#fetcher: every 6 hours
        description="Publish new Hacker News favorites and submissions of each LOOM_HACKERNEWS_USERNAME "
                    "(at most 100 item requests a run) to external.hackernews.activity.raw.",
    ),
)
RULES = hn.HackerNewsRules()
# Stages that read pages off the open web share one concurrency pool, so a backfill of many
# windows does not open many downloads at once (dagster.yaml's default pool limit applies).
WEB_POOL = "web"

raw = FLOW.raw


@FLOW.stage(
    logic_version="1",
    rules_version=f"rules{RULES.version}",
    retry=RetryPolicy(max_retries=2, delay=60),  # docs/flows/hackernews.md#retries-and-alerts: 2 retries, 60 s
    pool=WEB_POOL,
)
def items(raw: pd.DataFrame) -> StageOutput:
    """Each favorite or submission with its linked article (fetched if robots.txt allows, ≤ 10 MB
    within 30 s, extracted by trafilatura: title, text, summary) and its top 5 live comments from
    the HN API. A link that cannot be read is written with `article_status` saying why."""
    result = hn.items(
        raw,
        fetch_article=fetcher_hn.ArticleFetcher(RULES.max_article_bytes, RULES.article_timeout_s),
        fetch_comments=fetcher_hn.HackerNewsClient.from_settings().top_comments,
        rules=RULES,
    )
    return StageOutput(result.rows, errors=result.errors)


def _embedded_items(items: pd.DataFrame) -> Embedded:
    chosen = hn.embedding_items(items)
    return Embedded(chosen, chosen["message_id"], chosen["title"], hn.embedding_text(chosen, RULES))


embeddings = embeddings_stage(
    FLOW, of="items", embedded=_embedded_items,
    description="Each item's title, article summary (a text post's own text) and top comments with their "
                "vector (all-MiniLM-L6-v2 by default, 384 dims), once per user and item, so `loom search` "
                "finds what you favorited and submitted.",
)
