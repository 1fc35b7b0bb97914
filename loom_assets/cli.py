"""The `loom` command: dev, replay, process, fetch, search, erase, status, reprocess, topics, migrate."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from loom_assets.events.topics import TOPICS
from loom_assets.redaction import redact
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


def _die(message: str) -> None:
    # Messages quote errors of libraries, which may quote a URL with its password or token.
    click.echo(click.style(redact(message), fg="red"), err=True)
    sys.exit(1)


@click.group()
def main() -> None:
    """Loom: personal device data → enriched, queryable time-series, on Dagster."""


@main.command()
def migrate() -> None:
    """Apply pending sql/ migrations to DATABASE_URL."""
    from loom_assets.resources.warehouse import apply_migrations

    if not settings().database_url:
        _die("DATABASE_URL is not set")
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
def topics_create() -> None:
    """Create every raw and error topic the flows use (missing ones only)."""
    created = _defs().resources()["kafka"].create_topics(topic_specs())
    click.echo(f"created {len(created)} topic(s){': ' + ', '.join(created) if created else ''}")


@main.command()
@click.option("--flow", "flow_name", help="Only this flow.")
@click.option("--through-now", is_flag=True, help="Also plan and run the window in progress.")
@click.option("--max-rounds", default=20, show_default=True, help="Stop after this many plan/run rounds.")
def process(flow_name: str | None, through_now: bool, max_rounds: int) -> None:
    """Plan closed windows and run them in-process until caught up (headless; exits 1 on failure)."""
    from loom_assets.processing import process_until_caught_up
    from loom_assets.resources.kafka import BrokerUnavailable

    try:
        ok = process_until_caught_up(_instance(), _flows(flow_name), through_now=through_now,
                                     max_rounds=max_rounds, echo=click.echo)
    except BrokerUnavailable as error:
        _die(f"Kafka is unavailable ({settings().kafka_bootstrap_servers}): {error}")
    if not ok:
        _die("some runs failed (see the Dagster run logs)")


@main.command()
@click.argument("source")
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
              help="The Dagster UI the links point at (LOOM_DAGSTER_URL).")
def search(query: str, flow_name: str | None, since: str | None, limit: int, as_json: bool, ui_url: str) -> None:
    """Search every text Loom holds (emails, events, HN items, transcripts, OCR text): semantic
    (pgvector) and full-text ranking merged, newest model only."""
    from loom_assets.resources.models import Models
    from loom_assets.resources.warehouse import resolve_database_url
    from loom_assets.search import format_hits, hybrid_search, since_time

    try:
        start = since_time(since, datetime.now(UTC)) if since else None
        hits = hybrid_search(resolve_database_url(None), query, Models().embedder, flow=flow_name,
                             since=start, limit=limit, ui_url=ui_url)
    except RuntimeError as error:  # SearchError, no DATABASE_URL, a model that does not load
        _die(str(error))
    if as_json:
        click.echo(json.dumps([hit.as_json() for hit in hits], indent=2))
    elif hits:
        click.echo(format_hits(hits))
    else:
        click.echo(f"No matches for {query!r}" + (f" in {flow_name}" if flow_name else "")
                   + (f" since {start.astimezone():%Y-%m-%d %H:%M}" if start else "") + ".")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
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
        _die("DATABASE_URL is not set (`loom dev` prints it)")
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
    from loom_assets.regions import RegionError, add_region

    try:
        region = add_region(_database_url(), name, region_type=region_type, latitude=latitude,
                            longitude=longitude, radius_m=None if polygon else radius_m,
                            polygon=polygon, description=description, replace=replace)
    except RegionError as error:
        _die(str(error))
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
def serve_metrics(port: int, host: str) -> None:
    """Serve Prometheus metrics on /metrics, with /healthz and /readyz."""
    from loom_assets.metrics import metrics_server

    resources = _defs().resources()
    server = metrics_server(port, _flows(None), resources["warehouse"], resources["kafka"], _instance(), host)
    click.echo(f"metrics on http://{host}:{port}/metrics")
    server.serve_forever()


@main.command()
@click.option("--flow", "flow_name", required=True)
@click.option("--since", required=True, help="ISO date or time (UTC).")
@click.option("--submit", is_flag=True, help="Queue the chunks as runs for the daemon instead of running them here.")
@click.option("--stage", "stages", multiple=True,
              help="Re-run this stage (and those reading it) in every window since, stale or not. Repeatable.")
def reprocess(flow_name: str, since: str, submit: bool, stages: tuple[str, ...]) -> None:
    """Re-run windows whose materialization has an older code version, in chunks."""
    from loom_assets.processing import reprocess_flow

    since_at = datetime.fromisoformat(since).replace(tzinfo=UTC) if "+" not in since else datetime.fromisoformat(since)
    try:
        ok = reprocess_flow(_instance(), _defs().flow_named(flow_name), since_at, submit=submit,
                            echo=click.echo, stages=stages)
    except ValueError as error:
        _die(str(error))
    if not ok:
        _die("some reprocessing runs failed")


@main.command()
@click.option("--demo", is_flag=True, required=True, help="Synthetic device events (the only source today).")
@click.option("--minutes", default=30.0, show_default=True, help="Minutes of event time to produce.")
@click.option("--speed", type=float, default=None, help="Event-time seconds per wall second (default: as fast as possible).")
@click.option("--devices", default=2, show_default=True)
@click.option("--seed", default=0, show_default=True)
def replay(demo: bool, minutes: float, speed: float | None, devices: int, seed: int) -> None:
    """Produce realistic device events for every raw topic, in the real wire formats."""
    from loom_assets import demo as demo_events

    kafka = _defs().resources()["kafka"]
    kafka.create_topics(topic_specs())
    # Paced: events from now on, in real time. Unpaced: the last N minutes, all at once.
    start = datetime.now(UTC) if speed else datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=minutes)
    messages = demo_events.demo_messages(start, minutes, devices=devices, seed=seed)
    count = demo_events.replay(kafka.producer(), messages, speed)
    click.echo(f"produced {count} messages")


@main.command()
@click.option("--port", default=3000, show_default=True)
@click.option("--no-demo", is_flag=True, help="Do not start the demo producer.")
def dev(port: int, no_demo: bool) -> None:
    """Run Loom on embedded defaults: PostgreSQL, Kafka, Dagster UI + daemon, demo producer."""
    from loom_assets.embedded import services

    config = settings()
    config.home.mkdir(parents=True, exist_ok=True)
    given_url = os.environ.get("DATABASE_URL")
    stack = services.start_dev_services(config)
    os.environ.update(stack.environment)
    # The embedded database's URL is printed whole, for other shells to use; one from the
    # environment is the user's own, and its password stays out of the terminal.
    click.echo(f"PostgreSQL: {redact(given_url) if given_url else stack.environment['DATABASE_URL']}")
    click.echo(f"Kafka:      {stack.environment['KAFKA_BOOTSTRAP_SERVERS']} ({stack.broker_kind})")
    from loom_assets.resources.warehouse import apply_migrations

    apply_migrations(stack.environment["DATABASE_URL"])
    created = _defs().resources()["kafka"].create_topics(topic_specs())
    click.echo(f"migrations applied; {len(created)} topic(s) created")
    instance = _instance()
    _fail_orphaned_runs(instance)
    from loom_assets.flows.location import GEOCODER_POOL

    instance.event_log_storage.set_concurrency_slots(GEOCODER_POOL, 1)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)  # a plain `kill` also stops the services
    child = None
    try:
        if not no_demo:
            _add_demo_regions(stack.environment["DATABASE_URL"])
            _demo_session(instance, port)  # on a fresh home: the catch-up, before the daemon starts
        click.echo(f"Dagster UI on http://127.0.0.1:{port} (Ctrl-C stops everything)")
        command = [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(port),
                   "-w", str(PROJECT_ROOT / "workspace.yaml")]
        # `dagster dev` ignores SIGINT if it inherits it ignored: reset it for the child. It runs in
        # DAGSTER_HOME, beside its own dagster.yaml (the repository's copy would only confuse it).
        child = subprocess.Popen(command, cwd=os.environ["DAGSTER_HOME"],
                                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        child.wait()
    except KeyboardInterrupt:
        if child is not None:
            child.send_signal(signal.SIGINT)
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
    finally:
        stack.stop()


def _fail_orphaned_runs(instance) -> None:
    """Runs a previous `loom dev` left started died with it; marked failed, they free their
    run-queue slots (and their windows can be re-run)."""
    from dagster import DagsterRunStatus, RunsFilter

    live = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
    for run in instance.get_runs(RunsFilter(statuses=live)):
        instance.report_run_failed(run, "the Dagster process running it stopped (loom dev restarted)")
        click.echo(f"marked orphaned run {run.run_id} failed")


def _stop_on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt


def _add_demo_regions(url: str) -> None:
    """The demo person's Home and Work, when no georegion is defined yet."""
    from loom_assets.demo import DEMO_REGIONS
    from loom_assets.regions import add_region, list_regions

    if list_regions(url):
        return
    for name, region_type, place, radius_m in DEMO_REGIONS:
        add_region(url, name, region_type=region_type, latitude=place.lat, longitude=place.lon, radius_m=radius_m)
    click.echo(f"added the demo georegions: {', '.join(r[0] for r in DEMO_REGIONS)}")


def _demo_session(instance, port: int) -> None:
    """`loom dev`'s demo: on a fresh LOOM_HOME, yesterday and today so far at once (Kafka
    timestamps = event times), processed here in ranged runs before the daemon starts (the UI
    alone shows them meanwhile); then live events from the very instant the catch-up ended."""
    from loom_assets.demo import LOCAL_TZ, session
    from loom_assets.processing import process_backlog

    start = session.demo_start(settings().home, datetime.now(UTC))
    session.mark_started(settings().home, start)
    if start.catch_up_from is not None:
        session.produce_catch_up(_defs().resources()["kafka"].producer(), start, echo=click.echo)
    threading.Thread(target=_demo_forever, args=(start.live_from, start.catch_up_from is None), daemon=True).start()
    if start.catch_up_from is not None:
        # The UI without the daemon (whose sensors would ask for the same windows again).
        ui = subprocess.Popen([sys.executable, "-m", "dagster_webserver", "-h", "127.0.0.1", "-p", str(port),
                               "-w", str(PROJECT_ROOT / "workspace.yaml")], cwd=os.environ["DAGSTER_HOME"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        click.echo(f"Dagster UI on http://127.0.0.1:{port} while the catch-up runs (the daemon starts after it)")
        try:
            ok = process_backlog(instance, _defs().FLOWS, datetime.now(UTC), echo=click.echo)
        finally:
            ui.terminate()
            ui.wait(timeout=30)
        click.echo(f"caught up to {start.live_from.astimezone(LOCAL_TZ):%H:%M}{'' if ok else ' (some runs failed)'}; "
                   "continuing live")


def _demo_forever(live_from: datetime, calendar_on_start: bool = True) -> None:
    """The demo producer of `loom dev`: real-time synthetic events from `live_from` on."""
    from loom_assets.demo.session import produce_live

    kafka = _defs().resources()["kafka"]
    produce_live(kafka.producer, live_from, calendar_on_start)

if __name__ == "__main__":
    main()
