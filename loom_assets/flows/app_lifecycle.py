"""App lifecycle: OS app events → enriched with category, foreground sessions and crashes."""

import pandas as pd
from dagster import RetryPolicy

from loom_assets.flows.base import Carry, Flow
from loom_assets.settings import settings
from loom_assets.stages import app_lifecycle

FLOW = Flow(
    name="app_lifecycle",
    topics=("os.events.app_lifecycle.raw",),
    description="App launches, foreground/background switches, terminations and crashes.",
    alert_error_rate=0.05,  # docs/flows/app_lifecycle.md#retries-and-alerts
)
# The category mapping is versioned data; a new version makes every window stale (reprocess).
CATEGORIES = app_lifecycle.load_app_categories(settings().app_categories_path)

raw = FLOW.raw


@FLOW.stage(
    logic_version="1",
    rules_version=f"categories{CATEGORIES.version}",
    retry=RetryPolicy(max_retries=2, delay=1),  # docs/flows/app_lifecycle.md#retries-and-alerts: 2 retries, 1 s backoff
    carry=Carry(per=("device_id", "app_identifier")),
)
def enriched(raw: pd.DataFrame, state: pd.DataFrame) -> pd.DataFrame:
    """Each app event with its category, its foreground session (continued from earlier windows)
    and a crash flag."""
    return app_lifecycle.enrich(raw, state, CATEGORIES)
