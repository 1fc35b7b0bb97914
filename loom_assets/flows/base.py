"""What every flow shares: its partitions, the raw-landing asset, the stage decorator, its job.

This is the one place that knows about offsets and windows; flow modules only declare stages.
"""

import inspect
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetDep,
    AssetIn,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    Backoff,
    BackfillPolicy,
    BetaWarning,
    ConfigurableResource,
    Failure,
    HookContext,
    MetadataValue,
    Output,
    RetryPolicy,
    TimeWindowPartitionMapping,
    asset,
    define_asset_job,
    in_process_executor,
    success_hook,
)

from loom_assets.erasure import erased_devices
from loom_assets.redaction import redact
from loom_assets.resources.blobs import BlobStore
from loom_assets.resources.kafka import KafkaResource, OffsetsGone
from loom_assets.resources.warehouse import Warehouse, offsets_metadata
from loom_assets.run_logs import RUN_LOG_CONFIG
from loom_assets.settings import settings
from loom_assets.stages.landing import land, store_blobs, without_erased
from loom_assets.windows import OffsetRange, partitions_def, window_size

# Single-run backfills (a range of windows in one run) are how Loom backfills; Dagster marks
# the parameter beta.
warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=BetaWarning)
# A flow's job holds the raw asset (a few windows per run) and its stages (a range per run);
# Dagster takes the smaller for a job backfill, which is what Loom wants, and says so each time.
warnings.filterwarnings("ignore", message=".*varying BackfillPolicies.*", category=UserWarning)

RAW_LOGIC_VERSION = "1"
# A raw backfill lands at most this many windows per run, so a run holds a few windows' records
# in memory, never a month's.
RAW_WINDOWS_PER_RUN = 4
# SPEC §1: every flow's database_writer retries 5 times with a 2 s backoff. Only transient faults
# (broker, database) fail a run; record faults become error rows.
RAW_RETRY = RetryPolicy(max_retries=5, delay=2, backoff=Backoff.EXPONENTIAL)


@dataclass
class Flow:
    """A flow: raw Kafka topics landing in `<name>_raw`, then stage assets, one job, one sensor."""

    name: str
    topics: tuple[str, ...]
    description: str
    # SPEC §1 alert_on_error_rate of the flow's first stage; the asset check holds errors under it.
    alert_error_rate: float = 0.05
    stages: list[AssetsDefinition] = field(default_factory=list)

    @property
    def window(self) -> timedelta:
        return window_size(self.name)

    @property
    def error_topic(self) -> str:
        return f"processing.errors.{self.name}"

    @property
    def consumer_group(self) -> str:
        return f"loom.{self.name}"

    @cached_property
    def partitions(self):
        return partitions_def(self.name, settings().retention)

    def key(self, stage: str) -> AssetKey:
        return AssetKey([self.name, stage])

    # -- assets ---------------------------------------------------------------------------
    @cached_property
    def topic_specs(self) -> list[AssetSpec]:
        """The raw topics as external assets: the root of every row's lineage."""
        return [
            AssetSpec(
                key=AssetKey(["kafka", topic]),
                description=f"Kafka topic `{topic}` (external: produced by devices and fetchers).",
                group_name=self.name,
                kinds={"kafka"},
            )
            for topic in self.topics
        ]

    @cached_property
    def raw(self) -> AssetsDefinition:
        flow = self

        @asset(
            key=self.key("raw"),
            deps=[spec.key for spec in self.topic_specs],
            partitions_def=self.partitions,
            backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=RAW_WINDOWS_PER_RUN),
            code_version=RAW_LOGIC_VERSION,
            retry_policy=RAW_RETRY,
            group_name=self.name,
            kinds={"kafka", "postgres"},
            metadata={"partition_expr": "window_start", "table": f"{self.name}_raw"},
            check_specs=[AssetCheckSpec(
                "error_rate", asset=self.key("raw"),
                description=f"Share of records that became errors stays under {self.alert_error_rate:.0%} "
                            "(SPEC §1 alert_on_error_rate).",
            )],
            description=(
                f"Raw landing of {', '.join(f'`{t}`' for t in self.topics)}: the planned offsets of each "
                "window, validated, one row per record with its topic, partition and offset. Bad "
                f"records go to `{self.error_topic}` and `processing_errors` with the original bytes."
            ),
        )
        def raw(context, kafka: KafkaResource, warehouse: Warehouse, blobs: BlobStore):
            window = context.partition_time_window
            plans = landable_plans(flow, warehouse, kafka, window.start, window.end)
            records = (
                (window_start, record)
                for window_start, ranges in plans.items()
                for record in kafka.read(ranges, flow.consumer_group)
            )
            try:
                landing = land(flow.name, flow.topics, records, datetime.now(UTC), settings().max_message_bytes)
            except OffsetsGone as error:
                raise Failure(f"{error}: Kafka dropped planned offsets while the window was read; "
                              "its rows are left as they were", allow_retries=False) from error
            with warehouse.connect() as conn:
                landing, erased = without_erased(landing, erased_devices(conn))
            landing.rows = store_blobs(landing.rows, flow.topics, blobs.put)
            ranges = [r for window_ranges in plans.values() for r in window_ranges]
            read = sum(r.count for r in ranges)
            metadata = {
                "offsets": MetadataValue.json(offsets_metadata(ranges)),
                "windows_planned": len(plans),
                "records_read": read,
                "erased_records_skipped": erased,
            }
            # The IO manager writes rows and error rows in one transaction (LandingHandler) and
            # moves rows PostgreSQL refuses into `landing.errors`; the code after this yield runs
            # once it has committed, so the error topic never announces what did not land.
            yield Output(landing, metadata=metadata)
            unannounced = landing.errors[landing.errors["published_at"].isna()]
            if not unannounced.empty:
                kafka.publish(flow.error_topic, error_messages(unannounced))
                warehouse.mark_published(flow.name, window.start, window.end, unannounced)
            context.log.info(
                f"{flow.name} {window.start:%Y-%m-%d %H:%M}–{window.end:%H:%M}: {read} records read, "
                f"{len(landing.rows)} rows, {len(landing.errors)} errors "
                f"{landing.errors['error_type'].value_counts().to_dict()}"
            )
            rate = len(landing.errors) / read if read else 0.0
            yield AssetCheckResult(
                check_name="error_rate",
                passed=rate <= flow.alert_error_rate,
                severity=AssetCheckSeverity.WARN,
                metadata={"error_rate": rate, "errors": len(landing.errors), "records": read},
            )

        return raw

    def stage(
        self,
        *,
        logic_version: str,
        rules_version: str,
        retry: RetryPolicy,
        carries_state: bool = False,
        uses: tuple[AssetKey, ...] = (),
        columns: Mapping[str, Sequence[str]] | None = None,
        pool: str | None = None,
    ) -> Callable[[Callable], AssetsDefinition]:
        """Turn a thin function into the stage asset `[flow, fn.__name__]`.

        Parameters named like another stage of this flow (`raw`, `enriched`, …) are that stage's
        rows for the window; parameters annotated with a resource get the resource. The asset's
        code version is `<logic>+<rules/model>`, and its rows carry it as `model_version`.
        `carries_state`: the stage reads its own previous rows, so it depends on its own previous
        window (Dagster orders backfills and shows the chain). `uses`: other assets read by event
        time (lineage only). `columns`: input name -> the only columns the stage reads of it
        (a 50 Hz raw window is cheaper to load without its envelope columns). `pool`: a Dagster
        concurrency pool shared with other stages using the same outside service.
        """

        def decorator(fn: Callable) -> AssetsDefinition:
            stage_name = fn.__name__
            params = inspect.signature(fn).parameters
            upstream = [
                name for name, p in params.items()
                if name != "context" and not _is_resource(p.annotation)
            ]
            deps = [AssetDep(key) for key in uses]
            if carries_state:
                deps.append(AssetDep(self.key(stage_name), partition_mapping=TimeWindowPartitionMapping(-1, -1)))
            code_version = f"{logic_version}+{rules_version}"
            assets_def = asset(
                key=self.key(stage_name),
                ins={
                    name: AssetIn(key=self.key(name),
                                  metadata={"columns": list(columns[name])} if columns and name in columns else None)
                    for name in upstream
                },
                deps=deps,
                partitions_def=self.partitions,
                backfill_policy=BackfillPolicy.single_run(),
                code_version=code_version,
                retry_policy=retry,
                pool=pool,
                group_name=self.name,
                kinds={"pandas", "postgres"},
                metadata={
                    "partition_expr": "window_start",
                    "model_version": code_version,
                    "table": f"{self.name}_{stage_name}",
                },
                description=inspect.getdoc(fn),
            )(fn)
            self.stages.append(assets_def)
            return assets_def

        return decorator

    # -- job ------------------------------------------------------------------------------
    @cached_property
    def job(self):
        return define_asset_job(
            name=f"{self.name}_job",
            selection=[self.key("raw"), *(s.key for s in self.stages)],
            partitions_def=self.partitions,
            executor_def=in_process_executor,
            hooks={commit_consumer_group(self)},
            config=RUN_LOG_CONFIG,
            description=f"Land and process one {self.name} window.",
        )

    @property
    def assets(self) -> list:
        return [*self.topic_specs, self.raw, *self.stages]


def _is_resource(annotation) -> bool:
    return inspect.isclass(annotation) and issubclass(annotation, ConfigurableResource)


def error_messages(errors: pd.DataFrame):
    """Error-topic messages: the original key and bytes untouched, the error in headers
    (the dead-letter convention of Kafka Connect)."""
    for row in errors.itertuples(index=False):
        yield row.original_key, row.original_value or b"", {
            "loom.error.type": row.error_type.encode(),
            "loom.error.message": redact(row.error_message).encode()[:4096],
            "loom.source.topic": row.source_topic.encode(),
            "loom.source.partition": str(row.source_partition).encode(),
            "loom.source.offset": str(row.source_offset).encode(),
            "loom.window": row.window_start.isoformat().encode(),
        }


def stage_errors(source: str, errors: pd.DataFrame) -> pd.DataFrame:
    """A stage's error rows (window_start, device_id, recorded_at, source_topic/partition/offset,
    error_type, error_message) in `processing_errors`' shape, under `source` (`<flow>/<stage>`,
    so a re-run of the raw landing never deletes them). The original stays in the raw row; a
    stage whose input is itself the original (an email's bytes) passes it as `original`.
    Messages are redacted: a stage's error often quotes a library's, and that may quote a URL."""
    original = errors["original"] if "original" in errors else pd.Series([None] * len(errors), index=errors.index)
    return pd.DataFrame({
        "window_start": errors["window_start"], "flow": source, "source_topic": errors["source_topic"],
        "source_partition": errors["source_partition"], "source_offset": errors["source_offset"],
        "error_type": errors["error_type"],
        "error_message": errors["error_message"].map(lambda m: redact(m) if isinstance(m, str) else m),
        "original_key": None, "original_value": original,
        "original_size": [len(o) if isinstance(o, bytes | bytearray | memoryview) else 0 for o in original],
        "kafka_timestamp": errors["recorded_at"], "device_id": errors["device_id"],
    })


def landable_plans(flow: Flow, warehouse: Warehouse, kafka: KafkaResource, start: datetime, end: datetime
                   ) -> dict[datetime, list[OffsetRange]]:
    """The planned ranges of the windows in [start, end), once it is sure they can be landed in
    full: a run reaching past the last planned window (the live sensor may plan and land those
    meanwhile) and a window whose offsets Kafka no longer holds both fail at once, without
    retries, and delete nothing."""
    last_end = warehouse.last_planned_end(flow.name)
    if last_end is None or end > last_end:
        raise Failure(
            f"{flow.name}: windows up to {end:%Y-%m-%d %H:%M} are not planned yet (planned through "
            f"{last_end:%Y-%m-%d %H:%M} UTC); the sensor plans a window once it has closed" if last_end else
            f"{flow.name}: no window is planned yet; the sensor plans a window once it has closed",
            allow_retries=False,
        )
    plans = warehouse.planned_ranges(flow.name, start, end)
    gone = kafka.unheld(r for ranges in plans.values() for r in ranges)
    if gone:
        raise Failure(
            f"{flow.name}: Kafka no longer holds planned offsets "
            + ", ".join(f"{r.topic}/{r.partition} [{r.start}, {r.end})" for r in gone)
            + " (retention or a recreated topic); the raw table is the only copy now, so the window is "
              "not landed again and its rows are left as they are",
            allow_retries=False,
        )
    return plans


def commit_consumer_group(flow: Flow):
    """After the raw window has landed (step success comes after its output is written), commit
    each partition's contiguous landed prefix for the flow's consumer group: never past a window
    that has not landed, never backwards."""

    @success_hook(name=f"{flow.name}_commit_offsets", required_resource_keys={"kafka", "warehouse"})
    def commit(context: HookContext) -> None:
        if context.step_key != flow.raw.op.name:
            return
        ends = context.resources.warehouse.landed_prefix(flow.name)
        kafka: KafkaResource = context.resources.kafka
        committed = kafka.committed(flow.consumer_group, ends)
        forward = {tp: end for tp, end in ends.items() if committed.get(tp) is None or committed[tp] < end}
        kafka.commit(flow.consumer_group, forward)

    return commit


def model_version(context) -> str:
    """The version a stage's rows carry: its code version (logic + rules/model)."""
    return context.assets_def.code_versions_by_key[context.asset_key]
