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
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    BackfillPolicy,
    Backoff,
    BetaWarning,
    ConfigurableResource,
    Failure,
    HookContext,
    JobDefinition,
    MetadataValue,
    Output,
    RetryPolicy,
    ScheduleDefinition,
    TimeWindowPartitionMapping,
    asset,
    define_asset_job,
    in_process_executor,
    success_hook,
)

from loom_assets.erasure import erasure_positions
from loom_assets.events.topics import TOPICS
from loom_assets.flows.gpu import GPU_OP_TAGS, GPU_POOL, GPU_RUN_TAGS, stage_pool
from loom_assets.redaction import redact
from loom_assets.resources.blobs import BlobStore
from loom_assets.resources.kafka import KafkaResource, OffsetsGone
from loom_assets.resources.stage_windows import (
    Carry,
    StageOutput,
    carried_state,
    state_digest,
    unwritten_predecessors,
)
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
# docs/architecture.md#retries-and-alerts: every flow's raw landing retries 5 times with a 2 s
# backoff. Only transient faults (broker, database) fail a run; record faults become error rows.
RAW_RETRY = RetryPolicy(max_retries=5, delay=2, backoff=Backoff.EXPONENTIAL)


@dataclass(frozen=True)
class EventTime:
    """Rows of another asset's table by event time, from `before` ahead of a span to `after` past
    it. The span is the window's, or (`of`) that of an input's rows, from their `time_column` to
    their `end_column` (a backlog's rows may lie far from the window they landed in)."""

    asset: AssetKey
    before: timedelta = timedelta(0)
    after: timedelta = timedelta(0)
    of: str | None = None
    end_column: str = "recorded_at"
    time_column: str = "recorded_at"

    @property
    def table(self) -> str:
        """The raw table, or a stage's current rows (each window's newest version)."""
        table = "_".join(self.asset.path)
        return table if self.asset.path[-1] == "raw" else f"{table}_latest"

    def rows(self, warehouse: Warehouse, window, inputs: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
        start, end = window.start, window.end
        if self.of is not None:
            frame = inputs[self.of]
            if frame.empty:
                return pd.DataFrame()
            start, end = frame[self.time_column].min(), frame[self.end_column].max()
        return warehouse.rows_between(self.table, start - self.before, end + self.after, self.time_column)


@dataclass
class Flow:
    """A flow: raw Kafka topics landing in `<name>_raw`, then stage assets, one job."""

    name: str
    topics: tuple[str, ...]
    description: str
    # docs/architecture.md#retries-and-alerts: the alert error rate of the flow's first stage; the
    # asset check holds errors under it.
    alert_error_rate: float = 0.05
    stages: list[AssetsDefinition] = field(default_factory=list)
    # Whether a stage carries state across windows (set by `stage`): windows then run in order.
    ordered: bool = False
    # (stage, what it reads of another flow by event time), as the stages declare them.
    reads: list[tuple[AssetKey, EventTime]] = field(default_factory=list)
    # The job and schedule that fetch the flow's records from an outside source, if it has one.
    fetcher: tuple[JobDefinition, ScheduleDefinition] | None = None

    def __post_init__(self) -> None:
        unknown = [topic for topic in self.topics if topic not in TOPICS]
        if unknown:
            raise ValueError(f"flow {self.name}: topic(s) {', '.join(unknown)} are not declared in events/topics.py")

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
                            "(docs/architecture.md#retries-and-alerts).",
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
                landing, erased = without_erased(landing, erasure_positions(conn))
            landing.rows = store_blobs(landing.rows, flow.topics, blobs.put)
            ranges = [r for window_ranges in plans.values() for r in window_ranges]
            read = sum(r.count for r in ranges)
            metadata = {
                "offsets": MetadataValue.json(offsets_metadata(ranges)),
                "windows_planned": len(plans),
                "records_read": read,
                "erased_records_skipped": erased,
            }
            # The IO manager writes rows and error rows in one transaction (PostgresLandingTypeHandler) and
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
        carry: Carry | None = None,
        ordered: bool = False,
        reads: Mapping[str, EventTime] | None = None,
        media: Mapping[str, Mapping[str, str]] | None = None,
        stores: Mapping[str, str] | None = None,
        columns: Mapping[str, Sequence[str]] | None = None,
        pool: str | None = None,
        gpu: bool = False,
    ) -> Callable[[Callable], AssetsDefinition]:
        """Turn a plain function into the stage asset `[flow, fn.__name__]`; the framework does the
        plumbing and the lineage.

        The function's parameters say what it reads: a name of another stage of this flow (`raw`,
        `enriched`, …) is that stage's rows for the window; `state` is the state it carries
        (`carry`: its own rows of earlier windows); a parameter annotated with a resource gets the
        resource; `context` the Dagster context. It returns its rows, or a `StageOutput` with its
        error rows and the carry it leaves; the IO manager writes them with the version of each
        window in one transaction. The asset's code version is `<logic>+<rules/model>`, and its
        rows carry it as `model_version`.

        `carry` or `ordered` (the stage reads what earlier windows left, e.g. their raw tail):
        the flow's windows run one at a time, in order, and a window waits until every earlier
        one holding records has landed and been written by this stage. `reads`: parameter name ->
        another flow's rows by event time (lineage, the late-input sensor and the flows' order
        follow from it). `media`: input name -> {URI column: column to fill with the bytes from
        the blob store}. `stores`: output column of bytes -> the suffix its blobs are stored with
        (the column becomes `<column>_uri`). `columns`: input name -> the only columns the stage
        reads of it. `pool`: a Dagster concurrency pool shared with stages using the same service.
        `gpu`: its model uses CUDA when present: pool `gpu`, and a GPU from Kubernetes (flows/gpu.py).
        """
        reads = dict(reads or {})

        def decorator(fn: Callable) -> AssetsDefinition:
            stage_name = fn.__name__
            params = inspect.signature(fn).parameters
            resource_keys = {name for name, p in params.items() if _is_resource(p.annotation)}
            upstream = [name for name in params if name not in resource_keys | {"context", "state"} | reads.keys()]
            if "state" in params and carry is None:
                raise TypeError(f"{self.name}/{stage_name} reads `state` but declares no `carry`")
            deps = [AssetDep(read.asset) for read in reads.values()]
            self.reads.extend((self.key(stage_name), read) for read in reads.values())
            if carry or ordered:
                # Lineage, and the order of Dagster's own backfills.
                deps.append(AssetDep(self.key(stage_name), partition_mapping=TimeWindowPartitionMapping(-1, -1)))
                self.ordered = True
            code_version = f"{logic_version}+{rules_version}"
            table = f"{self.name}_{stage_name}"
            flow = self

            def body(context: AssetExecutionContext, **inputs):
                window = context.partition_time_window
                warehouse: Warehouse = context.resources.warehouse
                blobs: BlobStore = context.resources.blobs
                arguments = {name: getattr(context.resources, name) for name in resource_keys}
                if "context" in params:
                    arguments["context"] = context
                snapshot, state = flow.before_reading(context, table, carry, ordered, snapshot=bool(reads))
                # The digest of the state as read, before the stage could touch the frame.
                state_read = state_digest(state, carry) if carry is not None else None
                if "state" in params:
                    arguments["state"] = state
                for name, fields in (media or {}).items():
                    for uri_column, column in fields.items():
                        inputs[name] = blobs.attach(inputs[name], uri_column, column)
                arguments |= {name: inputs[name] for name in upstream}
                arguments |= {name: read.rows(warehouse, window, inputs) for name, read in reads.items()}
                result = fn(**arguments)
                output = result if isinstance(result, StageOutput) else StageOutput(result)
                for column, suffix in (stores or {}).items():
                    output.rows = output.rows.drop(columns=[column]).assign(**{f"{column}_uri": pd.Series(
                        [blobs.put(bytes(data), suffix) for data in output.rows[column]],
                        dtype="str", index=output.rows.index)})
                if output.errors is not None:
                    output.error_source = output.error_source or f"{flow.name}/{stage_name}"
                    output.errors = stage_errors(output.error_source, output.errors)
                output.state_read, output.read_snapshot = state_read, snapshot
                return output

            assets_def = asset(
                key=self.key(stage_name),
                ins={
                    name: AssetIn(key=self.key(name),
                                  metadata={"columns": list(columns[name])} if columns and name in columns else None)
                    for name in upstream
                },
                deps=deps,
                required_resource_keys=resource_keys | {"warehouse", "blobs"},
                partitions_def=self.partitions,
                backfill_policy=BackfillPolicy.single_run(),
                code_version=code_version,
                retry_policy=retry,
                pool=stage_pool(gpu, pool, f"{self.name}/{stage_name}"),
                op_tags=GPU_OP_TAGS if gpu else None,
                group_name=self.name,
                kinds={"pandas", "postgres"},
                metadata={
                    "partition_expr": "window_start",
                    "model_version": code_version,
                    "table": table,
                    **({"carry": carry.as_metadata()} if carry else {}),
                },
                description=inspect.getdoc(fn),
            )(body)
            self.stages.append(assets_def)
            return assets_def

        return decorator

    def before_reading(self, context, table: str, carry: Carry | None, ordered: bool,
                       snapshot: bool) -> tuple[str | None, pd.DataFrame | None]:
        """What a stage does before it reads: take the database snapshot it reads other flows in
        (`snapshot`; a landing it does not see may be missing, and the late-input sensors run the
        window again), wait for the windows before it (`carry`, `ordered`), and read its state."""
        if not (snapshot or carry or ordered):
            return None, None
        start = context.partition_time_window.start
        with context.resources.warehouse.connect() as conn:
            taken = conn.execute("SELECT pg_current_snapshot()::text").fetchone()[0] if snapshot else None
            if carry or ordered:
                self.wait_for_earlier_windows(conn, table, start, carry.lookback if carry else None)
            if carry is None:
                return taken, None
            state = carried_state(conn, table, carry, start)
        versions = sorted(state["model_version"].unique()) if "model_version" in state else []
        context.log.info(f"{table}: state of {len(state)} row(s) read"
                         + (f", written by version(s) {versions}" if versions else ""))
        return taken, state

    def wait_for_earlier_windows(self, conn, table: str, start: datetime, lookback: timedelta | None) -> None:
        """A window that reads what earlier windows left runs only once they have landed and been
        written; else it fails without retries and the window sensor asks for it again after
        them (its runs are queued one at a time, in window order)."""
        waiting = unwritten_predecessors(conn, self.name, table, start, lookback or 2 * self.window)
        if waiting:
            raise Failure(
                f"{table} {start:%Y-%m-%d %H:%M} waits for earlier window(s) "
                f"{', '.join(f'{w:%Y-%m-%d %H:%M}' for w in waiting[:5])}{' …' if len(waiting) > 5 else ''} "
                "to land and be processed first, since it continues their state; it is asked for again after them",
                allow_retries=False,
            )

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
            tags=self.run_tags,
            description=f"Land and process one {self.name} window.",
        )

    @property
    def stage_tables(self) -> list[str]:
        return [s.metadata_by_key[s.key]["table"] for s in self.stages]

    def stages_from(self, tables) -> list[AssetKey]:
        """The stages writing `tables` and every stage of the flow that reads them, in order."""
        chosen: set[AssetKey] = set()
        for stage in self.stages:
            if stage.metadata_by_key[stage.key]["table"] in tables or stage.dependency_keys & chosen:
                chosen.add(stage.key)
        return [s.key for s in self.stages if s.key in chosen]

    @property
    def run_tags(self) -> dict[str, str]:
        """Tags every run of the flow carries: `loom/ordered` makes the run queue run a flow whose
        stages carry state one window at a time, in the order asked (a concurrency limit of 1 per
        value in dagster.yaml); a flow with a GPU stage asks for a GPU pod (flows/gpu.py)."""
        gpu = GPU_RUN_TAGS if any(stage.op.pool == GPU_POOL for stage in self.stages) else {}
        return {"loom/flow": self.name, **({"loom/ordered": self.name} if self.ordered else {}), **gpu}

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
