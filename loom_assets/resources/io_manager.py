"""The IO manager for every table: Dagster's `DbIOManager` with a PostgreSQL `DbClient` and pandas
type handlers (as dagster-duckdb-pandas is built). Writing a window is DELETE of that half-open
window (for versioned outputs, only the model version being written) plus COPY, in one
transaction, which also records the version that wrote each window (`loom_stage_windows`).
Tables come from the `sql/` migrations, never from DataFrame dtypes."""

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

import pandas as pd
import psycopg
from dagster import (
    ConfigurableIOManagerFactory,
    InputContext,
    MetadataValue,
    OutputContext,
    TableColumn,
    TableSchema,
)
from psycopg import sql

from loom_assets import erasure
from loom_assets.dagster_compat import DbClient, DbIOManager, DbTypeHandler, TableSlice
from loom_assets.resources.offset_log import mark_landed
from loom_assets.resources.pg_copy import (
    copy_frame,
    copy_refusing,
    read_frame,
    table_columns,
)
from loom_assets.resources.stage_windows import Carry, StageOutput, record_windows
from loom_assets.resources.warehouse import (
    CONNECT_TIMEOUT_S,
    replace_errors,
    resolve_database_url,
)
from loom_assets.stages.landing import Landing, refused
from loom_assets.windows import DEFAULT_WINDOWS, window_size


def _window_clause(table_slice: TableSlice) -> tuple[sql.Composable, list]:
    clauses, params = [], []
    for dimension in table_slice.partition_dimensions or []:
        window = dimension.partitions
        clauses.append(sql.SQL("{col} >= %s AND {col} < %s").format(col=sql.Identifier(dimension.partition_expr)))
        params += [window.start, window.end]
    return (sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("TRUE")), params


def _slice_windows(table_slice: TableSlice) -> list[datetime]:
    """The window starts a slice covers (one, or a ranged run's every window), on the grid of
    the flow the table belongs to (`<flow>_<stage>`)."""
    flow = next((f for f in sorted(DEFAULT_WINDOWS, key=len, reverse=True) if table_slice.table.startswith(f + "_")), None)
    starts = []
    for dimension in table_slice.partition_dimensions or []:
        start, end = dimension.partitions.start, dimension.partitions.end
        if flow is None:
            starts.append(start)
            continue
        while start < end:
            starts.append(start)
            start += window_size(flow)
    return starts


def lock_windows(conn: psycopg.Connection, table: str, starts: Iterable[datetime]) -> None:
    """One writer per (table, window) at a time, until the caller's transaction ends: a second
    writer waits, then deletes and rewrites what the first committed, so a window never holds
    two writers' rows. Taken in order, so two ranged runs cannot deadlock."""
    minutes = sorted({int(start.timestamp() // 60) for start in starts})
    if minutes:
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s), m) FROM unnest(%s::integer[]) AS m",
                     (table, minutes))


class PostgresClient(DbClient):
    def __init__(self, database_url: str):
        self.database_url = database_url

    @staticmethod
    def delete_table_slice(context: OutputContext, table_slice: TableSlice, connection: psycopg.Connection) -> None:
        lock_windows(connection, table_slice.table, _slice_windows(table_slice))
        where, params = _window_clause(table_slice)
        model_version = (context.definition_metadata or {}).get("model_version")
        if model_version is not None:
            # ML/rule outputs: a reprocess adds the new version's rows beside the old ones.
            where = sql.SQL("{} AND model_version = %s").format(where)
            params.append(str(model_version))
        connection.execute(sql.SQL("DELETE FROM {} WHERE {}").format(sql.Identifier(table_slice.table), where), params)

    @staticmethod
    def get_select_statement(table_slice: TableSlice) -> str:
        columns = ", ".join(table_slice.columns) if table_slice.columns else "*"
        dims = " AND ".join(
            f"{d.partition_expr} >= '{d.partitions.start.isoformat()}' AND {d.partition_expr} < '{d.partitions.end.isoformat()}'"
            for d in table_slice.partition_dimensions or []
        )
        return f"SELECT {columns} FROM {table_slice.table}" + (f" WHERE {dims}" if dims else "")

    @staticmethod
    def get_table_name(table_slice: TableSlice) -> str:
        return f"{table_slice.schema}.{table_slice.table}"

    @staticmethod
    def ensure_schema_exists(context, table_slice: TableSlice, connection: psycopg.Connection) -> None:
        # Tables come from migrations: a missing table is a deployment error, said plainly.
        if connection.execute("SELECT to_regclass(%s)", (table_slice.table,)).fetchone()[0] is None:
            raise RuntimeError(
                f"table {table_slice.table!r} does not exist: run `loom migrate` (tables come from sql/)"
            )

    @contextmanager
    def connect(self, context, table_slice: TableSlice) -> Iterator[psycopg.Connection]:
        with psycopg.connect(self.database_url, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            with conn.transaction():
                erasure.hold_off_erasure(conn, context)
                yield conn


def write_stage(context: OutputContext, table_slice: TableSlice, output: StageOutput, connection) -> dict:
    """A stage's window(s): its rows, its error rows, the carry it leaves for the next window and
    the version that wrote each window, in the transaction that replaced the window."""
    columns = table_columns(connection, table_slice.table)
    output = erasure.keep_unerased(connection, table_slice.table, output, context)
    definition = context.definition_metadata or {}
    version = definition.get("model_version")
    frame = output.rows.copy()
    if version is not None:
        frame["model_version"] = str(version)
    rows = copy_frame(connection, table_slice.table, frame, columns)
    starts = _slice_windows(table_slice)
    span = [d.partitions for d in table_slice.partition_dimensions or []]
    if output.errors is not None and span:
        replace_errors(connection, output.error_source, span[0].start, span[0].end, output.errors)
    if output.carry is not None and span:
        connection.execute(sql.SQL("DELETE FROM {} WHERE window_start >= %s AND window_start < %s").format(
            sql.Identifier(output.carry_table)), (span[0].start, span[0].end))
        copy_frame(connection, output.carry_table, output.carry)
    restated = []
    if version is not None:
        carry = Carry.from_metadata(definition["carry"]) if "carry" in definition else None
        restated = record_windows(connection, table_slice.table, starts, frame, str(version), context.run_id,
                                  carry, output.state_read, output.read_snapshot)
    if restated:
        context.log.info(f"{table_slice.table}: the state window(s) {', '.join(f'{w:%Y-%m-%d %H:%M}' for w in restated)} "
                         "read has changed; they are run again")
    metadata = {
        "dagster/row_count": rows,
        "windows": len(starts),
        "errors": 0 if output.errors is None else len(output.errors),
        "state_changed_after": MetadataValue.json([w.isoformat() for w in restated]),
        "dagster/column_schema": TableSchema(
            columns=[TableColumn(name, type_name) for name, (type_name, _) in columns.items()]
        ),
    }
    if len(starts) == 1:  # the rows of the one partition written, as Dagster's IO managers report it
        metadata["dagster/partition_row_count"] = rows
    return metadata


class PostgresPandasTypeHandler(DbTypeHandler[pd.DataFrame]):
    """Reads a window's rows as a DataFrame; a DataFrame written is a stage's rows."""

    def handle_output(self, context: OutputContext, table_slice: TableSlice, obj: pd.DataFrame, connection):
        return write_stage(context, table_slice, StageOutput(obj), connection)

    def load_input(self, context: InputContext, table_slice: TableSlice, connection) -> pd.DataFrame:
        where, params = _window_clause(table_slice)
        # An upstream with several model versions feeds only its current (newest) one.
        wanted = (context.upstream_output.definition_metadata or {}).get("model_version")
        if wanted is not None:
            where = sql.SQL("{} AND model_version = %s").format(where)
            params = [*params, str(wanted)]
        # A stage that names the columns it reads (AssetIn metadata) gets only those.
        selected = (sql.SQL(", ").join(map(sql.Identifier, table_slice.columns))
                    if table_slice.columns else sql.SQL("*"))
        statement = sql.SQL("SELECT {} FROM {} WHERE {}").format(selected, sql.Identifier(table_slice.table), where)
        with connection.cursor() as cur:
            cur.execute(statement, params)
            return read_frame(cur.fetchall(), [d.name for d in cur.description])

    @property
    def supported_types(self) -> Sequence[type]:
        return [pd.DataFrame]


class PostgresStageTypeHandler(DbTypeHandler[StageOutput]):
    """A stage's output with its error rows and carry (see `write_stage`)."""

    def handle_output(self, context: OutputContext, table_slice: TableSlice, obj: StageOutput, connection):
        return write_stage(context, table_slice, obj, connection)

    def load_input(self, context: InputContext, table_slice: TableSlice, connection) -> StageOutput:
        raise NotImplementedError("stage tables load as DataFrames")

    @property
    def supported_types(self) -> Sequence[type]:
        return [StageOutput]


class PostgresLandingTypeHandler(DbTypeHandler[Landing]):
    """A raw window: its rows and its error rows in the one transaction that replaces the window
    (so a failed window keeps no error rows without its rows, and a retry adds none). Rows
    PostgreSQL still refuses become error rows; the asset finds them in the `Landing` it passed,
    updated here, and publishes its error topic after the commit."""

    def handle_output(self, context: OutputContext, table_slice: TableSlice, obj: Landing, connection):
        columns = table_columns(connection, table_slice.table)
        erasure.keep_unerased(connection, table_slice.table, obj, context)
        refusals = copy_refusing(connection, table_slice.table, obj.rows, columns)
        if refusals:
            context.log.warning(f"{table_slice.table}: PostgreSQL refused {len(refusals)} row(s); kept as error rows")
        landed = refused(obj, refusals)
        (window,) = [d.partitions for d in table_slice.partition_dimensions]
        replace_errors(connection, landed.flow, window.start, window.end, landed.errors)
        mark_landed(connection, landed.flow, window.start, window.end, context.run_id)
        obj.rows, obj.errors, obj.records = landed.rows, landed.errors, landed.records
        return {
            "dagster/row_count": len(landed.rows),
            "rows": len(landed.rows),
            "errors": len(landed.errors),
            "error_types": MetadataValue.json(landed.errors["error_type"].value_counts().to_dict()),
            "refused_by_database": len(refusals),
            "dagster/column_schema": TableSchema(
                columns=[TableColumn(name, type_name) for name, (type_name, _) in columns.items()]
            ),
        }

    def load_input(self, context: InputContext, table_slice: TableSlice, connection) -> Landing:
        raise NotImplementedError("raw tables load as DataFrames")

    @property
    def supported_types(self) -> Sequence[type]:
        return [Landing]


class _LoomDbIOManager(DbIOManager):
    """Tables are named `<flow>_<stage>` after the asset key `[flow, stage]`
    (docs/architecture.md#folder-layout)."""

    def _get_table_slice(self, context, output_context) -> TableSlice:
        table_slice = super()._get_table_slice(context, output_context)
        return table_slice._replace(table="_".join(context.asset_key.path), schema="public")


class PostgresPandasIOManager(ConfigurableIOManagerFactory):
    """Writes each asset's window to its table (a hypertable, or natively partitioned where
    TimescaleDB is absent): DELETE of the window + COPY, in one transaction."""

    database_url: str | None = None  # None: DATABASE_URL, read when used

    def create_io_manager(self, context) -> DbIOManager:
        return _LoomDbIOManager(
            type_handlers=[PostgresPandasTypeHandler(), PostgresStageTypeHandler(), PostgresLandingTypeHandler()],
            db_client=PostgresClient(resolve_database_url(self.database_url)),
            database="loom",
            io_manager_name="PostgresPandasIOManager",
            default_load_type=pd.DataFrame,
        )

