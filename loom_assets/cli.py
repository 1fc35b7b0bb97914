"""The `loom` command: dev, replay, process, fetch, search, erase, status, reprocess, topics, migrate."""

import json
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from loom_assets import stack as stack_file
from loom_assets.cli_errors import LoomGroup, needs
from loom_assets.cli_errors import die as _die
from loom_assets.events.topics import TOPICS
from loom_assets.settings import settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# docs/messages.md#topics-and-retention: 3 partitions; retention by topic (events/topics.py). Error topics keep a week.
ERROR_TOPIC_RETENTION_DAYS = 7
DEFAULT_PARTITIONS = 3
# Devices' clocks run ahead by minutes, not days.
MAX_TIMESTAMP_AHEAD_MS = 24 * 3600 * 1000


def _defs():
    from loom_assets import definitions

    return definitions


def _instance():
    """The Dagster instance: DAGSTER_HOME if set, else the local one under .loom/dagster."""
    from dagster import DagsterInstance

    if not os.environ.get("DAGSTER_HOME"):
        home = settings().home / "dagster"
        home.mkdir(parents=True, exist_ok=True)
        if not (home / "dagster.yaml").exists():
            shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
        os.environ["DAGSTER_HOME"] = str(home)
    return DagsterInstance.get()


def _flows(name: str | None):
    definitions = _defs()
    return [definitions.flow_named(name)] if name else list(definitions.FLOWS)


@click.group(cls=LoomGroup)
@click.pass_context
def main(ctx: click.Context) -> None:
    """Loom: personal device data → enriched, queryable time-series, on Dagster.

    Commands find the services of a running `loom dev` (LOOM_HOME/stack.json) for whatever
    DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS and LOOM_DAGSTER_URL leave unset."""
    if ctx.invoked_subcommand != "dev":  # `loom dev` starts the services it would find
        stack_file.apply_stack(settings().home)


@main.command()
@needs("database")
def migrate() -> None:
    """Apply pending sql/ migrations to DATABASE_URL."""
    from loom_assets.resources.warehouse import apply_migrations

    applied = apply_migrations(settings().database_url)
    click.echo(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")


@main.group()
def topics() -> None:
    """Kafka topics."""


def topic_specs() -> dict[str, tuple[int, dict[str, str]]]:
    day_ms = 24 * 3600 * 1000
    specs = {}
    for flow in _defs().FLOWS:
        for topic in flow.topics:
            retention_ms = int(TOPICS[topic].retention.total_seconds() * 1000)
            specs[topic] = (DEFAULT_PARTITIONS, {"retention.ms": str(retention_ms), "max.message.bytes": str(64 * 1024 * 1024),
                                                 # A record stamped far ahead would stall the timestamp
                                                 # lookups that plan windows: the broker refuses it.
                                                 "message.timestamp.after.max.ms": str(MAX_TIMESTAMP_AHEAD_MS)})
        specs[flow.error_topic] = (
            DEFAULT_PARTITIONS,
            {"retention.ms": str(ERROR_TOPIC_RETENTION_DAYS * day_ms), "max.message.bytes": str(64 * 1024 * 1024)},
        )
    return specs


@topics.command("create")
@needs("kafka")
def topics_create() -> None:
    """Create every raw and error topic the flows use (missing ones only)."""
    created = _defs().resources()["kafka"].create_topics(topic_specs())
    click.echo(f"created {len(created)} topic(s){': ' + ', '.join(created) if created else ''}")


@main.command()
@click.option("--flow", "flow_name", help="Only this flow.")
@click.option("--through-now", is_flag=True, help="Also plan and run the window in progress.")
@click.option("--max-rounds", default=20, show_default=True, help="Stop after this many plan/run rounds.")
@needs("database", "kafka")
def process(flow_name: str | None, through_now: bool, max_rounds: int) -> None:
    """Plan closed windows and run them in-process until caught up (headless; exits 1 on failure)."""
    from loom_assets.processing import process_until_caught_up

    ok = process_until_caught_up(_instance(), _flows(flow_name), through_now=through_now,
                                 max_rounds=max_rounds, echo=click.echo)
    if not ok:
        _die("some runs failed (see the Dagster run logs)")


@main.command()
@click.argument("source")
@needs("database", "kafka")
def fetch(source: str) -> None:
    """Run one fetcher now (email, calendar, hackernews) for every configured account: what it
    finds goes to its Kafka topic, for `loom process` or the sensors to pick up."""
    fetchers = {job.name.removesuffix("_fetch"): job for job in _defs().defs.resolve_all_job_defs()
                if job.name.endswith("_fetch")}
    if source not in fetchers:
        _die(f"no fetcher {source!r}; fetchers: {', '.join(sorted(fetchers))}")
    result = fetchers[source].execute_in_process(instance=_instance(), raise_on_error=False)
    if not result.success:
        _die(f"the {source} fetch failed (see the Dagster run logs)")
    click.echo(f"{source}: fetched")


@main.command()
@click.argument("query")
@click.option("--flow", "flow_name", help="Only this flow's texts (email, calendar, hackernews, audio, …).")
@click.option("--since", help="Recorded since a date/time (local unless it has an offset) or a duration: 12h, 7d, 2w.")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--ui-url", envvar="LOOM_DAGSTER_URL", default="http://localhost:3000", show_default=True,
              help="The Dagster UI the links point at (LOOM_DAGSTER_URL; else a running `loom dev`'s).")
@needs("database")
def search(query: str, flow_name: str | None, since: str | None, limit: int, as_json: bool, ui_url: str) -> None:
    """Search every text Loom holds (emails, events, HN items, transcripts, OCR text): semantic
    (pgvector) and full-text ranking merged, newest model only."""
    from loom_assets.resources.models import Models
    from loom_assets.resources.warehouse import resolve_database_url
    from loom_assets.search import format_hits, hybrid_search, since_time

    start = since_time(since, datetime.now(UTC)) if since else None
    hits = hybrid_search(resolve_database_url(None), query, Models().embedder, flow=flow_name,
                         since=start, limit=limit, ui_url=ui_url)
    if as_json:
        click.echo(json.dumps([hit.as_json() for hit in hits], indent=2))
    elif hits:
        click.echo(format_hits(hits))
    else:
        click.echo(f"No matches for {query!r}" + (f" in {flow_name}" if flow_name else "")
                   + (f" since {start.astimezone():%Y-%m-%d %H:%M}" if start else "") + ".")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@needs("database", "kafka")
def status(as_json: bool) -> None:
    """Per flow: watermarks, true lag, failing windows, lost records and gaps, rows per table, errors."""
    from loom_assets.processing import flow_status

    report = [flow_status(_instance(), flow) for flow in _flows(None)]
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    for item in report:
        click.echo(click.style(item["flow"], bold=True) + f"  window {item['window']}")
        click.echo(f"  last planned {item['last_planned']}   last landed {item['last_landed']}   lag {item['lag']}"
                   f" ({item['unlanded_records']} planned but not landed, {item['unplanned_records']} not planned yet)")
        if item["failing_windows"]:
            click.echo(click.style(f"  {item['failing_windows']} window(s) failing: asked for "
                                   "again and again without landing (see their runs)", fg="red"))
        if item["lost_records"]:
            click.echo(click.style(f"  {item['lost_records']} record(s) LOST: Kafka dropped them before they landed",
                                   fg="red"))
        for gap in item["gaps"]:
            click.echo(click.style(f"  gap {gap['partition']} {gap['offsets']} before {gap['window']}: "
                                   f"{gap['reason']} (never planned)", fg="yellow"))
        for tp, marks in item["partitions"].items():
            click.echo(f"  {tp:40s} low {marks['low']:>8} high {marks['high']:>8} committed {marks['committed']}")
        for table, rows in item["tables"].items():
            click.echo(f"  {table:40s} {rows:>10} rows")
        click.echo(f"  errors: {item['errors']}")


@main.group()
def regions() -> None:
    """Georegions: named circles and polygons whose enter/exit/dwell the location flow reports."""


def _database_url() -> str:
    if not settings().database_url:
        _die(stack_file.NO_DATABASE)
    return settings().database_url


@regions.command("add")
@click.argument("name")
@click.option("--type", "region_type", type=click.Choice(["home", "work", "custom"]), default="custom", show_default=True)
@click.option("--lat", "latitude", type=float, help="Centre latitude of a circle.")
@click.option("--lon", "longitude", type=float, help="Centre longitude of a circle.")
@click.option("--radius", "radius_m", type=float, default=100.0, show_default=True, help="Circle radius, metres.")
@click.option("--polygon", help="A GeoJSON Polygon/Feature, a [[lon, lat], ...] ring, or a file holding one.")
@click.option("--description")
@click.option("--replace", is_flag=True, help="Update the region of that name if it exists.")
def regions_add(name, region_type, latitude, longitude, radius_m, polygon, description, replace) -> None:
    """Add a circle (--lat --lon --radius) or a polygon (--polygon)."""
    from loom_assets.regions import add_region

    region = add_region(_database_url(), name, region_type=region_type, latitude=latitude,
                        longitude=longitude, radius_m=None if polygon else radius_m,
                        polygon=polygon, description=description, replace=replace)
    click.echo(f"region {region['id']} {name!r}: {region['geometry_type']} around "
               f"{region['center_latitude']:.6f}, {region['center_longitude']:.6f} "
               f"({region['radius_meters']:.0f} m)")
    click.echo("new windows use it; to apply it to past windows: "
               "loom reprocess --flow location --stage georegions --stage places --since <date>")


@regions.command("list")
@click.option("--json", "as_json", is_flag=True)
def regions_list(as_json: bool) -> None:
    """Every region, active or not."""
    from loom_assets.regions import list_regions

    rows = list_regions(_database_url())
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    for r in rows:
        click.echo(f"{r['id']:>4} {r['name']:24s} {r['type']:7s} {r['geometry_type']:8s} "
                   f"{r['center_latitude']:11.6f} {r['center_longitude']:12.6f} {r['radius_meters']:8.0f} m"
                   + ("" if r["is_active"] else "  (inactive)"))


@regions.command("remove")
@click.argument("name")
def regions_remove(name: str) -> None:
    """Delete a region (its past events keep its name)."""
    from loom_assets.regions import remove_region

    if not remove_region(_database_url(), name):
        _die(f"no region named {name!r}")
    click.echo(f"removed {name!r}")


@main.command()
@click.option("--device", "device_id", required=True, help="The device whose data to erase.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@needs("database", "kafka")
def erase(device_id: str, yes: bool) -> None:
    """Erase a device: its rows in every table, its error rows, the geocode cache entries its
    fixes used, the blobs only its rows held, and its records still in Kafka (landing skips
    those below each partition's position at the erase, whatever their event time). Counts
    again afterwards, and fails if any row of the device remains."""
    import psycopg

    from loom_assets.erasure import erase_device, high_watermarks, report
    from loom_assets.resources.blobs import BlobStore
    from loom_assets.resources.kafka import BrokerUnavailable

    if not yes:
        click.confirm(f"Erase every row and blob of device {device_id!r}?", abort=True)
    kafka = _defs().resources()["kafka"]
    topics = sorted({topic for flow in _defs().FLOWS for topic in flow.topics})
    try:
        with psycopg.connect(_database_url(), autocommit=True) as conn:
            done = erase_device(conn, BlobStore(), device_id,
                                lambda: high_watermarks(kafka, topics, lambda m: click.echo(m, err=True)))
    except BrokerUnavailable as error:
        _die(f"Kafka did not tell its partitions' positions ({error}): nothing was erased; try again")
    lines, left = report(done)
    click.echo("\n".join(lines))
    if left:
        _die(f"rows of {device_id!r} remain after the erase: "
             + ", ".join(f"{table} {n}" for table, n in sorted(left.items())))
    click.echo(f"0 rows of {device_id!r} remain in the {len(done.remaining)} tables that can hold them")


@main.group()
def train() -> None:
    """Train the models Loom ships, reproducibly."""


@train.command("activity")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Artifact path (.pt; a .json beside it). Default: under LOOM_HOME/models.")
@click.option("--seed", default=0, show_default=True)
def train_activity(out: str | None, seed: int) -> None:
    """Train the still/walking/stairs classifier on UCI HAPT and write a versioned artifact."""
    from loom_assets.models import activity

    path = Path(out) if out else settings().home / "models" / "activity.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    model, report = activity.train(seed=seed)
    path = model.save(path)
    click.echo(json.dumps(report, indent=2, default=str))
    click.echo(f"wrote {path} (version {activity.artifact_version(path)}); "
               f"use it with LOOM_ACTIVITY_MODEL_PATH={path}")


@main.command("serve-metrics")
@click.option("--port", default=9464, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@needs("database")
def serve_metrics(port: int, host: str) -> None:
    """Serve Prometheus metrics on /metrics, with /healthz and /readyz."""
    from loom_assets.metrics import metrics_server

    resources = _defs().resources()
    server = metrics_server(port, _flows(None), resources["warehouse"], resources["kafka"], _instance(), host)
    click.echo(f"metrics on http://{host}:{port}/metrics")
    server.serve_forever()


@main.command()
@click.option("--flow", "flow_name", required=True)
@click.option("--since", required=True, help="ISO date or time (UTC unless it has an offset).")
@click.option("--submit", is_flag=True, help="Queue the chunks as runs for the daemon instead of running them here.")
@click.option("--stage", "stages", multiple=True,
              help="Re-run this stage (and those reading it) in every window since, stale or not. Repeatable.")
@needs("database")
def reprocess(flow_name: str, since: str, submit: bool, stages: tuple[str, ...]) -> None:
    """Re-run windows whose materialization has an older code version, in chunks."""
    from loom_assets.processing import reprocess_flow

    try:
        since_at = datetime.fromisoformat(since.strip())
    except ValueError:
        _die(f"--since {since!r}: give an ISO date (2026-06-01) or time (2026-06-01T09:00, UTC unless it has an offset)")
    ok = reprocess_flow(_instance(), _defs().flow_named(flow_name),
                        since_at if since_at.tzinfo else since_at.replace(tzinfo=UTC), submit=submit,
                        echo=click.echo, stages=stages)
    if not ok:
        _die("some reprocessing runs failed")


@main.command()
@click.option("--demo", is_flag=True, required=True, help="Synthetic device events (the only source today).")
@click.option("--minutes", default=30.0, show_default=True, help="Minutes of event time to produce.")
@click.option("--speed", type=float, default=None, help="Event-time seconds per wall second (default: as fast as possible).")
@click.option("--devices", default=2, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--event-time", is_flag=True,
              help="Stamp each message with its event time, as a device would have sent it then (paced replays do).")
@needs("kafka")
def replay(demo: bool, minutes: float, speed: float | None, devices: int, seed: int, event_time: bool) -> None:
    """Produce realistic device events for every raw topic, in the real wire formats."""
    from loom_assets import demo as demo_events

    kafka = _defs().resources()["kafka"]
    kafka.create_topics(topic_specs())
    # Paced: events from now on, in real time. Unpaced: the last N minutes, all at once, stamped
    # now (one window per flow) or, with --event-time, at their own times (the windows they lived in).
    start = datetime.now(UTC) if speed else datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=minutes)
    messages = demo_events.demo_messages(start, minutes, devices=devices, seed=seed)
    count = demo_events.replay(kafka.producer(), messages, speed, event_timestamps=True if event_time else None)
    click.echo(f"produced {count} messages")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on (0.0.0.0: every one).")
@click.option("--port", default=3001, show_default=True)
@needs("database")
def serve(host: str, port: int) -> None:
    """Serve the day page (a timeline of your day over every flow) for DATABASE_URL, read-only."""
    from loom_assets import day

    config = settings()
    click.echo(f"Your day on http://{host}:{port} (Ctrl-C stops it)")
    day.server(config.database_url, host=host, port=port, dagster_url=config.dagster_url,
               tile_url=config.map_tile_url).run()


@main.command()
@click.option("--port", default=3000, show_default=True)
@click.option("--day-port", default=3001, show_default=True, help="The day page's port.")
@click.option("--no-demo", is_flag=True, help="Do not start the demo producer.")
def dev(port: int, day_port: int, no_demo: bool) -> None:
    """Run Loom on embedded defaults: PostgreSQL, Kafka, Dagster UI + daemon, the day page, demo producer."""
    from loom_assets import dev as dev_stack

    dev_stack.run(port, day_port, demo=not no_demo)


if __name__ == "__main__":
    main()
