"""Email: the email fetcher (IMAP) publishes whole messages → messages → embeddings."""

import pandas as pd
from dagster import RetryPolicy

from loom_assets.fetchers import email as email_fetcher
from loom_assets.fetchers.base import fetcher
from loom_assets.flows.base import Flow, StageOutput
from loom_assets.flows.embeddings import Embedded, embeddings_stage
from loom_assets.stages import email

FLOW = Flow(
    name="email",
    topics=(email_fetcher.TOPIC,),
    description="Email messages fetched over IMAP (INBOX and Sent) by the email fetcher.",
    alert_error_rate=0.1,  # docs/flows/email.md#retries-and-alerts
    # Its fetcher: a job and its schedule, publishing to the flow's topic.
    fetcher=fetcher(
        "email", email_fetcher.TOPIC, email_fetcher.accounts, email_fetcher.fetch,
        cron=f"*/{email_fetcher.FETCH_INTERVAL_MINUTES} * * * *",
        description="Fetch new mail of INBOX and Sent (≤ 30 days) from every LOOM_EMAIL_ADDRESS_i account "
                    "over IMAP/TLS and publish it whole to external.email.events.raw.",
    ),
)

raw = FLOW.raw


@FLOW.stage(
    logic_version="1",
    rules_version=f"rules{email.RULES_VERSION}",
    retry=RetryPolicy(max_retries=2, delay=5),  # docs/flows/email.md#retries-and-alerts: 2 retries, 5 s
)
def messages(raw: pd.DataFrame) -> StageOutput:
    """Each message parsed: Message-ID, thread (Gmail's thread id, else the References root),
    from/to/cc, subject, date, folder, the new text (HTML sanitised to text when there is no
    text part) apart from the quoted replies, attachments' metadata, headers, charset problems.
    One row per (message_id, folder) in a window; a message whose MIME structure or charset is
    broken becomes an error row with its bytes."""
    result = email.email_messages(raw)
    return StageOutput(result.rows, errors=result.errors)


def _embedded_messages(messages: pd.DataFrame) -> Embedded:
    items = email.embedding_items(messages)
    return Embedded(items, items["message_id"], items["subject"], email.embedding_text(items))


embeddings = embeddings_stage(
    FLOW, of="messages", embedded=_embedded_messages,
    logic_version=f"1-text{email.RULES_VERSION}",  # the embedded text is the stage's logic too
    description="Each message's vector (all-MiniLM-L6-v2 by default, 384 dimensions) of \"From: …\", "
                "\"Subject: …\" and its new text (≤ 2000 characters), once per Message-ID.",
)
