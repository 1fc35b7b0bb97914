"""App lifecycle: OS app events → enriched with category, foreground sessions and crashes."""

import pandas as pd
from dagster import AssetExecutionContext, RetryPolicy

from loom_assets.flows.base import Flow, model_version
from loom_assets.resources.warehouse import Warehouse
from loom_assets.settings import settings
from loom_assets.stages import app_lifecycle

FLOW = Flow(
    name="app_lifecycle",
    topics=("os.events.app_lifecycle.raw",),
    description="App launches, foreground/background switches, terminations and crashes.",
    alert_error_rate=0.05,  # SPEC §1.3 event_enrichment
)
# The category mapping is versioned data; a new version makes every window stale (reprocess).
CATEGORIES = app_lifecycle.load_app_categories(settings().app_categories_path)

raw = FLOW.raw


@FLOW.stage(
    logic_version="1",
    rules_version=f"categories{CATEGORIES.version}",
    retry=RetryPolicy(max_retries=2, delay=1),  # SPEC §1.3: 2 retries, 1 s backoff
    carries_state=True,
)
def enriched(context: AssetExecutionContext, raw: pd.DataFrame, warehouse: Warehouse) -> pd.DataFrame:
    """Each app event with its category, its foreground session (continued from earlier windows)
    and a crash flag."""
    open_sessions = warehouse.last_rows(
        "app_lifecycle_enriched",
        before=context.partition_time_window.start,
        per=("device_id", "app_identifier"),
        model_version=model_version(context),
    )
    return app_lifecycle.enrich(raw, open_sessions, CATEGORIES)
