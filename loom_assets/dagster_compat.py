"""The Dagster internals Loom uses, in one place, so a Dagster upgrade that moves them breaks here.

Each import says why Loom needs it. Everything else comes from Dagster's public API (`BetaWarning`,
once private, is public as `dagster.BetaWarning`).
"""

from loom_assets.lazy import LazyModule

# Queueing a single-run backfill from `loom reprocess`: Dagster has no public API to submit one.
# Its module brings Dagster's backfill daemon along, so it is imported when a backfill is queued.
backfills = LazyModule("dagster._core.execution.backfill")

# The IO manager framework Loom's IO manager is built on (as dagster-duckdb's is).
from dagster._core.storage.db_io_manager import (
    DbClient,
    DbIOManager,
    DbTypeHandler,
    TableSlice,
)

# The tags that make one run cover a range of partitions (single-run backfills of late windows).
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

# The id a backfill submitted outside the UI needs, made as Dagster makes its own.
from dagster._core.utils import make_new_backfill_id

__all__ = [
    "ASSET_PARTITION_RANGE_END_TAG",
    "ASSET_PARTITION_RANGE_START_TAG",
    "DbClient",
    "DbIOManager",
    "DbTypeHandler",
    "backfills",
    "TableSlice",
    "make_new_backfill_id",
]
