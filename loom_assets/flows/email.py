"""Email: the email fetcher (IMAP) publishes whole messages → messages → embeddings."""

from loom_assets.flows.base import Flow

FLOW = Flow(
    name="email",
    topics=("external.email.events.raw",),
    description="Email messages fetched over IMAP (INBOX and Sent) by the email fetcher.",
    alert_error_rate=0.1,  # SPEC §1.6 email_parser
)

raw = FLOW.raw
